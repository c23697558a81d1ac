"""siphon's benchmark against plain ffmpeg: ``./scripts/bench`` (or ``python -m bench``).

    inputs.py      generates the test videos with ffmpeg's lavfi sources, cached under var/bench/
    client.py      a lean client of the public API (sendfile upload, long-poll, download to disk)
    plain.py       the plain ffmpeg baseline
    phases.py      the four measurements: latency, throughput, memory, /status load
    procs.py       peak RSS of the stack's Python processes (/proc/<pid>/status VmHWM)
    load.py        the /status load generator (wrk, or a Python thread pool without it)
    machine.py     what machine the numbers come from
    report.py      the table printed and written to docs/performance.md
    __main__.py    the command line

The stack under test is ``tests.support.stack.Stack``: every service as a real process with its
own AMQP prefix, Redis prefix and storage, removed afterwards.
"""
