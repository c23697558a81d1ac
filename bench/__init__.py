"""siphon's benchmark against plain ffmpeg: ``./scripts/bench`` (or ``python -m bench``).

    inputs.py      generates the test videos with ffmpeg's lavfi sources, cached under
                   ~/.cache/siphon-bench/; a distinct stream-copied variant per job (the output cache)
    client.py      a lean client of the public API (sendfile upload, long-poll or polling, download)
    plain.py       the two baselines: ffmpeg with siphon's encoder settings, and as a user types it
    phases.py      the measurements: latency, CPU, throughput, memory, /status load
    procs.py       peak RSS (VmHWM); CPU of whole process trees, of what runs inside bwrap
                   (sampled), of Redis and RabbitMQ, and of the machine
    load.py        the /status load generator (wrk, or a Python thread pool without it)
    machine.py     what machine the numbers come from
    report.py      the table printed and written to docs/performance.md
    __main__.py    the command line

The stack under test is ``tests.support.stack.Stack``: every service as a real process with its
own AMQP prefix, Redis prefix and storage, removed afterwards.
"""
