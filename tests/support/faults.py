"""Tools for injecting faults into a running :class:`~tests.support.stack.Stack` on loopback, and
the invariants every fault test checks afterwards.

* :func:`tone` — a long FLAC sine tone made with ffmpeg's lavfi, so a conversion lasts seconds.
* :func:`ffmpeg_processes` / :func:`wait_for_ffmpeg` — the ffmpeg (and ffprobe) processes working
  in a stack's work dir, found through ``/proc``.
* :class:`TcpProxy` — a loopback TCP forwarder that can be cut (a dependency that goes away) and
  restored, without touching the shared RabbitMQ or moto server behind it.
* :class:`OutageClock` — how long a port refused connections (a broker restart's real outage).
* :func:`small_filesystem` — a tiny tmpfs to fill up.
* :func:`assert_stack_clean` — no job left ``queued``/``processing``, no orphaned object or Redis
  record, no leftover work files, no ffmpeg running, no task left in the queue.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import redis
import requests

from tests.support.net import free_port, wait_until
from tests.support.sources import ffmpeg
from tests.support.stack import AMQP_URL, Stack, amqp_connection

TONE_SAMPLE_RATE_HZ = 48000
"""Stereo 48 kHz: converting it to MP3 costs about 4 ms of CPU per second of audio here."""

JOB_FILES = {"input", "output.mp3", "job.json"}
"""Every object a job may leave in storage."""

LIVE = ("queued", "processing")
"""The states no job may be left in once a fault test is over."""


# --- inputs ----------------------------------------------------------------------------------
def tone(directory: Path, seconds: int) -> Path:
    """A FLAC file holding ``seconds`` of a 440 Hz stereo sine (about 13 KB per second); cached."""
    path = directory / f"tone-{seconds}s.flac"
    if not path.exists():
        ffmpeg(
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}:sample_rate={TONE_SAMPLE_RATE_HZ}",
            "-ac", "2", "-c:a", "flac", str(path),
        )  # fmt: skip
    return path


# --- processes -------------------------------------------------------------------------------
def work_dir(stack: Stack) -> Path:
    return Path(stack.env["WORK_DIR"])


def ffmpeg_processes(stack: Stack) -> list[int]:
    """Pids of ffmpeg/ffprobe processes whose arguments name the stack's work dir."""
    needle = str(work_dir(stack)).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"ff" in Path(argv[0].decode(errors="replace")).name.encode() and any(needle in a for a in argv):
            pids.append(int(entry.name))
    return pids


def wait_for_ffmpeg(stack: Stack, timeout: float = 30) -> int:
    """Wait until an ffmpeg encode (not ffprobe) runs in the stack's work dir; return its pid."""

    def encoding() -> int | None:
        for pid in ffmpeg_processes(stack):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"libmp3lame" in argv:
                return pid
        return None

    return wait_until(encoding, timeout, 0.02, "ffmpeg to run")


def wait_for_exit(process: subprocess.Popen, timeout: float) -> float:
    """Seconds until ``process`` exited; raises ``subprocess.TimeoutExpired`` past ``timeout``."""
    started = time.monotonic()
    process.wait(timeout)
    return time.monotonic() - started


def wait_for_services(stack: Stack, timeout: float = 30) -> None:
    """Wait until the stack's HTTP services answer /healthz and its queue consumers are back."""
    for name in ("metadata", "upload", "gateway"):
        wait_until(lambda n=name: _healthy(stack, n), timeout, 0.1, f"{name} /healthz")
    workers = sum(name.startswith("conversion-") and p.poll() is None for name, p in stack.processes.items())
    wait_until(
        lambda: (
            consumer_count(stack, stack.topology.conversion_queue) >= workers
            and consumer_count(stack, stack.topology.metadata_queue) >= 1
        ),
        timeout,
        0.1,
        "queue consumers",
    )


def _healthy(stack: Stack, name: str) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{stack.ports[name]}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def log_lines(stack: Stack, service: str) -> list[dict]:
    """The JSON log records a service wrote (non-JSON lines are skipped)."""
    path = stack.log_dir / f"{service}.log"
    records = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else ():
        with contextlib.suppress(ValueError):
            records.append(json.loads(line))
    return records


# --- the broker ------------------------------------------------------------------------------
@contextlib.contextmanager
def amqp_channel(url: str = AMQP_URL) -> Iterator:
    """A channel on a plain pika connection to ``url`` (one node or several, comma-separated)."""
    connection = amqp_connection(url)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def publish_raw_task(stack: Stack, body: bytes) -> None:
    """Publish ``body`` to the stack's tasks exchange exactly as the upload service routes a task."""
    with amqp_channel(stack.amqp_url) as channel:
        channel.confirm_delivery()
        channel.basic_publish(
            stack.topology.tasks_exchange,
            "conversion",
            body,
            pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )


def dead_letters(stack: Stack) -> list[tuple[bytes, dict]]:
    """Take every message out of the stack's dead-letter queue: ``(body, headers)`` each."""
    taken = []
    with amqp_channel(stack.amqp_url) as channel:
        while True:
            method, properties, body = channel.basic_get(stack.topology.dead_letter_queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((body, properties.headers or {}))


def queue_depth(stack: Stack, queue: str) -> int:
    """Messages ready in ``queue`` (not counting unacknowledged ones)."""
    with amqp_channel(stack.amqp_url) as channel:
        return channel.queue_declare(queue, passive=True).method.message_count


def consumer_count(stack: Stack, queue: str) -> int:
    with amqp_channel(stack.amqp_url) as channel:
        return channel.queue_declare(queue, passive=True).method.consumer_count


# --- a dependency that goes away ------------------------------------------------------------
class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream`` until :meth:`cut`.

    :meth:`cut` closes the listener and every open connection, so clients see what a dead host
    on loopback gives them: connection refused and reset. :meth:`restore` listens again on the
    same port. The shared server behind the proxy never notices.
    """

    def __init__(self, upstream_host: str, upstream_port: int):
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def __enter__(self) -> TcpProxy:
        return self.restore()

    def __exit__(self, *exc) -> None:
        self.cut()

    def restore(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="proxy-accept").start()
        return self

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        with self._lock:
            doomed = list(self._sockets) + ([listener] if listener else [])
            self._sockets.clear()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    upstream.close()
                    return
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True, name="proxy-pump").start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class OutageClock:
    """Measures, while its block runs, how long ``host:port`` refuses TCP connections (probing
    every ``interval`` seconds): :attr:`seconds` from the first refusal to the last."""

    def __init__(self, host: str, port: int, interval: float = 0.05):
        self.address = (host, port)
        self.interval = interval
        self._refused: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._probe, daemon=True, name="outage-clock")

    def __enter__(self) -> OutageClock:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return self._refused[-1] - self._refused[0] + self.interval if self._refused else 0.0

    def _probe(self) -> None:
        while not self._done.wait(self.interval):
            try:
                socket.create_connection(self.address, timeout=self.interval).close()
            except OSError:
                self._refused.append(time.monotonic())


# --- a disk that fills up -------------------------------------------------------------------
@contextlib.contextmanager
def small_filesystem(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a ``size_bytes`` tmpfs at ``path`` for the block (needs CAP_SYS_ADMIN).

    Raises:
        PermissionError: this machine does not let us mount one (the caller skips).
    """
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        raise PermissionError(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# --- invariants -----------------------------------------------------------------------------
def assert_stack_clean(stack: Stack, timeout: float = 30) -> None:
    """What every fault test must leave behind, checked once the stack is quiet.

    * no job the stack knows (Redis records and storage manifests) is ``queued`` or ``processing``,
      and Redis and storage agree on each;
    * every object and every per-job Redis key belongs to a job with a manifest; a job's storage
      holds only its own files (no temp upload parts), a completed job its MP3 and a failed job none
      (whether the input is still kept is the lifecycle policy's business, not checked here);
    * no ffmpeg or ffprobe process works in the stack's work dir, which is empty;
    * the conversion queue holds no task.
    """
    _eventually(lambda: not _unfinished_jobs(stack), timeout)
    assert _unfinished_jobs(stack) == [], "jobs left queued or processing"
    _eventually(lambda: not ffmpeg_processes(stack), 10)
    assert ffmpeg_processes(stack) == [], "ffmpeg still running"
    _eventually(lambda: not _work_dir_entries(stack), 10)
    assert _work_dir_entries(stack) == [], "files left in the work dir"
    manifests = _manifests(stack)
    for key in stack.stored_keys():
        parts = key.split("/")
        assert len(parts) == 3 and parts[0] == "jobs" and parts[2] in JOB_FILES, f"unexpected object {key}"
        assert parts[1] in manifests, f"object {key} belongs to no job (no manifest)"
    stored = set(stack.stored_keys())
    for job_id, job in manifests.items():
        keys = {k.rsplit("/", 1)[1] for k in stored if k.startswith(f"jobs/{job_id}/")}
        if job["status"] == "completed":  # its own MP3, or (cached: true) the identical earlier job's
            assert job["output_key"] in stored, f"completed job {job_id} has no MP3"
        elif job["status"] != "expired":  # an expired job's MP3 stays while a cached job still holds it
            assert "output.mp3" not in keys, f"{job['status']} job {job_id} has an MP3"
    client = redis.Redis.from_url(stack.redis_url)
    for key in stack.redis_keys():
        job_id, detail = _redis_job_key(stack, key)
        if job_id is None:
            continue  # not about one job (service-wide counters, change feeds)
        assert job_id in manifests, f"Redis key {key} belongs to no job (no manifest)"
        if detail:  # e.g. the store's "job is terminal" marker that wakes long-polls
            continue
        cached = json.loads(client.get(key))
        assert cached["status"] == manifests[job_id]["status"], f"Redis and manifest disagree on {job_id}"
    assert queue_depth(stack, stack.topology.conversion_queue) == 0, "tasks left in the conversion queue"


def _manifests(stack: Stack) -> dict[str, dict]:
    found = {}
    for key in stack.stored_keys():
        if key.endswith("/job.json"):
            job_id = key.split("/")[1]
            found[job_id] = stack.job_record(job_id) if _metadata_up(stack) else _read_manifest(stack, key)
    return found


def _read_manifest(stack: Stack, key: str) -> dict:
    if stack.backend == "s3":
        from tests.support.moto import s3_client

        return json.loads(s3_client(stack.s3_endpoint).get_object(Bucket=stack.bucket, Key=key)["Body"].read())
    return json.loads((stack.storage_dir / key).read_text())


def _metadata_up(stack: Stack) -> bool:
    process = stack.processes.get("metadata")
    return process is not None and process.poll() is None


def _redis_job_key(stack: Stack, key: str) -> tuple[str | None, str]:
    """``(job_id, detail)`` of a key ``<prefix>job:<job_id>[:<detail>]``; ``(None, "")`` for other keys."""
    if not key.startswith(f"{stack.redis_prefix}job:"):
        return None, ""
    job_id, _, detail = key.removeprefix(f"{stack.redis_prefix}job:").partition(":")
    return job_id, detail


def _unfinished_jobs(stack: Stack) -> list[str]:
    unfinished = [job_id for job_id, job in _manifests(stack).items() if job["status"] in LIVE]
    client = redis.Redis.from_url(stack.redis_url)
    for key in stack.redis_keys():
        job_id, detail = _redis_job_key(stack, key)
        if job_id is None or detail:
            continue
        raw = client.get(key)
        if raw is not None and json.loads(raw).get("status") in LIVE:
            unfinished.append(key)
    return unfinished


def _work_dir_entries(stack: Stack) -> list[str]:
    roots = [work_dir(stack), *stack.work_dirs[1:]]  # and those of workers on other hosts
    return sorted(p.name for root in roots if root.exists() for p in root.iterdir() if p.name != "lost+found")


def _eventually(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.2)


def parent_pid(pid: int) -> int:
    """The parent of process ``pid`` (from ``/proc/<pid>/stat``; 0 for the kernel's own).

    Raises:
        OSError: the process is gone.
    """
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def descends_from(pid: int, ancestor: int) -> bool:
    """Whether process ``pid`` is ``ancestor`` or runs below it (with the sandbox on, bubblewrap stands
    between a worker and its ffmpeg). False once either is gone."""
    try:
        while pid > 1 and pid != ancestor:
            pid = parent_pid(pid)
    except OSError:
        return False
    return pid == ancestor


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
