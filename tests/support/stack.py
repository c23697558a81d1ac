"""The whole siphon stack as real processes on loopback, isolated per test run.

Each :class:`Stack` gets its own AMQP prefix (exchanges and queues), Redis key prefix, storage
(a temp dir, or a fresh bucket on the moto server), work dir and ports, and removes all of them
on :meth:`Stack.stop`. Services are started exactly as ``./scripts/up`` starts them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pika
import redis
import requests

from services.metadata.rqueues import rq_slug
from shared.broker import Topology
from tests.support.hosts import Host
from tests.support.moto import create_bucket, list_keys, s3_client
from tests.support.net import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TERMINAL = ("completed", "failed", "cancelled", "expired")


def amqp_connection(url: str = AMQP_URL) -> pika.BlockingConnection:
    """A plain pika connection to the first node of ``url`` (one URL or several, comma-separated)
    that answers.

    Raises:
        pika.exceptions.AMQPConnectionError: no node answered.
    """
    return pika.BlockingConnection([pika.URLParameters(u.strip()) for u in url.split(",") if u.strip()])


@dataclass
class Stack:
    """A running stack. ``backend`` is ``local`` or ``s3`` (then ``s3_endpoint`` is the moto URL).

    ``wait_for_consumers=False`` starts it without waiting for queue consumers (a stack whose
    ``AMQP_URL`` points at no broker has none).

    Across hosts (tests/support/hosts.py): ``placement`` puts services (``gateway``,
    ``conversion-2``, ...) on a :class:`~tests.support.hosts.Host`, where they listen on its address
    and get ``host_env`` on top of their environment (say, a ``REDIS_URL`` through a relay); the
    others run in the root namespace and listen on ``bind_host``. ``amqp_url`` may name a cluster's
    nodes, comma-separated.
    """

    base_dir: Path
    backend: str = "local"
    s3_endpoint: str | None = None
    workers: int = 2
    env_overrides: dict[str, str] = field(default_factory=dict)
    wait_for_consumers: bool = True
    redis_url: str = REDIS_URL
    """The Redis the test reads and cleans (with ``REDIS_SENTINELS`` in ``env_overrides``, the
    primary the Sentinels name: a test that fails Redis over sets it to the new one)."""
    amqp_url: str = AMQP_URL
    bind_host: str = "127.0.0.1"
    placement: dict[str, Host] = field(default_factory=dict)
    host_env: dict[str, str] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    """``METRICS_PORT`` of each process without an HTTP API of its own (conversion-N, metadata-consumer)."""

    def __post_init__(self):
        self.ports = {"gateway": free_port(), "upload": free_port(), "metadata": free_port()}
        self.log_dir = self.base_dir / "logs"
        self.storage_dir = self.base_dir / "storage"
        self.work_dir = self.base_dir / "work"
        self.bucket = f"siphon-{self.run_id}"
        self.prefix = f"test-{self.run_id}"
        self.redis_prefix = f"test-{self.run_id}:"
        self.topology = Topology(
            prefix=self.prefix,
            jobs_queue=f"{self.prefix}.transcoding_jobs",
            progress_queue=f"{self.prefix}.transcoding_progress",
        )

    # --- lifecycle ------------------------------------------------------------------------
    def address(self, name: str) -> str:
        """The address service ``name`` listens on: its host's, or ``bind_host``."""
        host = self.placement.get(name)
        return host.address if host is not None else self.bind_host

    def base_url(self, name: str) -> str:
        """``http://<address>:<port>`` of HTTP service ``name``."""
        return f"http://{self.address(name)}:{self.ports[name]}"

    @property
    def url(self) -> str:
        return self.base_url("gateway")

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "AMQP_URL": self.amqp_url,
            "AMQP_PREFIX": self.prefix,
            "REDIS_URL": self.redis_url,
            "REDIS_PREFIX": self.redis_prefix,
            "STORAGE_BACKEND": self.backend,
            "STORAGE_DIR": str(self.storage_dir),
            "WORK_DIR": str(self.work_dir),
            "UPLOAD_URL": self.base_url("upload"),
            "METADATA_URL": self.base_url("metadata"),
            "WEB_WORKERS": "1",
            "WEB_THREADS": "16",
            "LOG_LEVEL": "INFO",
            "TRANSCODING_JOBS_QUEUE": self.topology.jobs_queue,
            "TRANSCODING_PROGRESS_QUEUE": self.topology.progress_queue,
            # Per-caller limits off: the tests post many jobs from one address, and compare Redis keys
            # before and after; tests/e2e/test_limits.py turns them on.
            "QUOTA_SUBMISSIONS_PER_MINUTE": "0",
            "QUOTA_UNFINISHED_JOBS": "0",
            "QUOTA_UPLOAD_BYTES_PER_DAY": "0",
            "QUOTA_EMAILS_PER_HOUR": "0",
        }
        if self.backend == "s3":
            env.update(
                S3_ENDPOINT_URL=self.s3_endpoint,
                S3_BUCKET=self.bucket,
                AWS_ACCESS_KEY_ID="testing",
                AWS_SECRET_ACCESS_KEY="testing",
                S3_REGION="us-east-1",
            )
        env.update(self.env_overrides)
        return env

    def start(self) -> Stack:
        for d in (self.log_dir, self.storage_dir, *self.work_dirs):
            d.mkdir(parents=True, exist_ok=True)
        if self.backend == "s3":
            create_bucket(self.s3_endpoint, self.bucket)
        self._spawn("metadata", self._gunicorn("metadata"))
        self._spawn("metadata-consumer", [sys.executable, "-m", "services.metadata.consumer"])
        self._spawn("metadata-notifier", [sys.executable, "-m", "services.metadata.notifier"])
        self._spawn("upload", self._gunicorn("upload"))
        self._spawn("upload-queue-intake", [sys.executable, "-m", "services.upload.queue_intake"])
        for i in range(1, self.workers + 1):
            self.start_worker(i)
        self._spawn("gateway", self._gunicorn("gateway"))
        for name in ("metadata", "upload", "gateway"):
            wait_until(lambda n=name: self._healthy(n), 30, 0.1, f"{name} /healthz")
        if self.wait_for_consumers:
            wait_until(self._consumers_ready, 30, 0.1, "queue consumers")
        return self

    def host_work_dir(self, host: Host) -> Path:
        """The scratch directory of the workers on ``host``: a host has a disk of its own (and a
        worker clears its job's leftovers there when a task comes back to it)."""
        return self.base_dir / f"{self.work_dir.name}-{host.name}"

    @property
    def work_dirs(self) -> list[Path]:
        """The root namespace's work dir and each host's."""
        hosts = {h.name: h for h in self.placement.values()}.values()
        return [self.work_dir, *(self.host_work_dir(h) for h in hosts)]

    def _gunicorn(self, service: str, port: int | None = None) -> list[str]:
        return [
            str(BIN / "gunicorn"),
            "--config",
            str(ROOT / f"services/{service}/gunicorn.conf.py"),
            "--bind",
            f"{self.address(service)}:{port or self.ports[service]}",
            f"services.{service}.wsgi:app",
        ]

    def start_gateway(self, name: str) -> subprocess.Popen:
        """Start one more gateway instance, ``name``, on a port of its own (``ports[name]``); wait for it."""
        self.ports[name] = free_port()
        process = self._spawn(name, self._gunicorn("gateway", self.ports[name]))
        wait_until(lambda: self._healthy(name), 30, 0.1, f"{name} /healthz")
        return process

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        env = self.env
        if name == "metadata-consumer" or name.startswith("conversion-"):
            env["METRICS_PORT"] = str(self.metrics_ports.setdefault(name, free_port()))
            env["METRICS_HOST"] = "127.0.0.1"  # loopback only
        host = self.placement.get(name)
        if host is not None:
            env.update(self.host_env)
            env["WORK_DIR"] = str(self.host_work_dir(host))
        process = subprocess.Popen(
            host.command(argv) if host is not None else argv,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = process
        self.commands[name] = argv
        return process

    def restart(self, name: str) -> subprocess.Popen:
        """Start service ``name`` again with the command and environment it was first started with
        (the previous process must have exited)."""
        return self._spawn(name, self.commands[name])

    def start_worker(self, i: int, module: str = "services.conversion") -> subprocess.Popen:
        """Start conversion worker number ``i`` (1-based); tests may run another entry ``module``."""
        return self._spawn(f"conversion-{i}", [sys.executable, "-m", module])

    def signal(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the process group of service ``name``."""
        os.killpg(self.processes[name].pid, sig)

    def _healthy(self, name: str) -> bool:
        try:
            return requests.get(f"{self.base_url(name)}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    def _consumers_ready(self) -> bool:
        try:
            connection = amqp_connection(self.amqp_url)
        except pika.exceptions.AMQPError:
            return False
        try:
            channel = connection.channel()
            tasks = channel.queue_declare(self.topology.conversion_queue, passive=True).method.consumer_count
            events = channel.queue_declare(self.topology.metadata_queue, passive=True).method.consumer_count
            intake = channel.queue_declare(self.topology.jobs_queue, passive=True).method.consumer_count
            return tasks >= self.workers and events >= 1 and intake >= 1
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if connection.is_open:
                connection.close()

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL), then remove queues, keys, objects and dirs."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._delete_topology()
        self._delete_redis_keys()
        if self.backend == "s3":
            self._delete_bucket()
        shutil.rmtree(self.storage_dir, ignore_errors=True)
        for directory in self.work_dirs:
            shutil.rmtree(directory, ignore_errors=True)

    def _delete_topology(self) -> None:
        connection = amqp_connection(self.amqp_url)
        channel = connection.channel()
        for queue in (*self.topology.queues, *self.topology.retired_queues):
            channel.queue_delete(queue)
        for exchange in self.topology.exchanges:
            channel.exchange_delete(exchange)
        connection.close()

    def _delete_redis_keys(self) -> None:
        """The stack's keys, and rq's keys of its queues, jobs and notifiers (their names all hold
        the prefix's rq slug, ``services/metadata/rqueues.py``)."""
        client = redis.Redis.from_url(self.redis_url)
        slug = rq_slug(self.redis_prefix)
        keys = list(client.scan_iter(f"{self.redis_prefix}*")) + list(client.scan_iter(f"rq:*{slug}*"))
        if keys:
            client.delete(*keys)
        for registry in ("rq:queues", "rq:workers"):
            members = [m for m in client.smembers(registry) if slug.encode() in m]
            if members:
                client.srem(registry, *members)

    def _delete_bucket(self) -> None:
        s3 = s3_client(self.s3_endpoint)
        for obj in s3.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            s3.delete_object(Bucket=self.bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=self.bucket)

    # --- what the stack holds ---------------------------------------------------------------
    def stored_keys(self) -> list[str]:
        """Every object key in this stack's storage (its directory or its bucket), sorted."""
        if self.backend == "s3":
            return sorted(list_keys(self.s3_endpoint, self.bucket))
        return sorted(p.relative_to(self.storage_dir).as_posix() for p in self.storage_dir.rglob("*") if p.is_file())

    def redis_keys(self) -> list[str]:
        """Every Redis key under this stack's prefix, sorted."""
        return sorted(key.decode() for key in redis.Redis.from_url(self.redis_url).scan_iter(f"{self.redis_prefix}*"))

    def job_record(self, job_id: str) -> dict:
        """The metadata service's full record of a job (its internal ``GET /jobs/<id>``)."""
        response = requests.get(f"{self.base_url('metadata')}/jobs/{job_id}", timeout=10)
        response.raise_for_status()
        return response.json()

    # --- the public API, as a client uses it -----------------------------------------------
    def convert(self, path: Path, filename: str | None = None, **fields) -> requests.Response:
        """POST ``path`` to /convert as the ``file`` part."""
        with open(path, "rb") as f:
            return requests.post(
                f"{self.url}/convert", files={"file": (filename or path.name, f)}, data=fields, timeout=60
            )

    def status(self, job_id: str) -> requests.Response:
        return requests.get(f"{self.url}/status/{job_id}", timeout=10)

    def wait_for_job(self, job_id: str, timeout: float = 60, states: tuple[str, ...] = TERMINAL) -> dict:
        """Poll /status until the job reaches one of ``states``; return the status body."""

        def reached():
            body = self.status(job_id).json()
            return body if body["status"] in states else None

        return wait_until(reached, timeout, 0.05, f"job {job_id} to reach {states}")

    def wait_for_jobs(self, job_ids: Iterable[str], timeout: float) -> dict[str, dict]:
        """Poll /status until every job is terminal or ``timeout`` seconds passed; return the last
        status body of each (a job still ``queued`` or ``processing`` at the deadline stays so)."""
        last: dict[str, dict] = {}
        pending = set(job_ids)
        deadline = time.monotonic() + timeout
        while pending:
            for job_id in sorted(pending):
                last[job_id] = self.status(job_id).json()
                if last[job_id]["status"] in TERMINAL:
                    pending.discard(job_id)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        return last

    def download(self, job_id: str, extension: str = "mp3", **headers) -> requests.Response:
        return requests.get(f"{self.url}/download/{job_id}.{extension}", headers=headers, timeout=60)

    def cancel(self, job_id: str, method: str = "DELETE") -> requests.Response:
        """Cancel a job with ``DELETE /jobs/<id>`` or (``method="POST"``) ``POST /cancel/<id>``."""
        path = f"/jobs/{job_id}" if method == "DELETE" else f"/cancel/{job_id}"
        return requests.request(method, f"{self.url}{path}", timeout=30)


@contextmanager
def running_stack(base_dir: Path, **options) -> Iterator[Stack]:
    """A started :class:`Stack` built with ``options``, stopped on exit (also when start-up failed)."""
    stack = Stack(base_dir, **options)
    try:
        yield stack.start()
    finally:
        stack.stop()
