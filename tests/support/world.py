"""Everything siphon runs on, spread over hosts: a 3-node RabbitMQ cluster (a host each), moto's
S3 server on a host of its own, and a relay to the machine's Redis (which listens on loopback
only) on the bridge's address. Built by :func:`world`, torn down on exit even on failure.

And the live load the host scenarios put on a stack: :class:`Load` submits jobs at a steady
pace from a thread of its own and keeps when each answer came and what it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import requests

from tests.support.faults import log_lines
from tests.support.hosts import Host, Network, Relay, remove_stale
from tests.support.net import free_port, wait_until
from tests.support.rabbit_cluster import RabbitCluster
from tests.support.stack import REDIS_URL, TERMINAL, Stack

RABBIT_DIR_PREFIX = "siphon-rabbit-"


@dataclass
class World:
    """The network, the cluster, moto's host and endpoint, and the Redis URL hosts use."""

    network: Network
    cluster: RabbitCluster
    moto_host: Host
    moto_endpoint: str
    host_redis_url: str

    def add_host(self, name: str) -> Host:
        """One more host on the network (for services)."""
        return self.network.add_host(name)


def _remove_stale_rabbit_dirs() -> None:
    for path in Path(tempfile.gettempdir()).glob(f"{RABBIT_DIR_PREFIX}*-*"):
        pid = path.name.removeprefix(RABBIT_DIR_PREFIX).split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _start_moto(host: Host, log_dir: Path) -> tuple[subprocess.Popen, str]:
    port = 5000
    log = open(log_dir / "moto-host.log", "ab")
    moto_bin = Path(sys.executable).with_name("moto_server")
    process = host.run(
        [str(moto_bin), "-H", host.address, "-p", str(port)],
        stdout=log,
        stderr=log,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
        start_new_session=True,
    )
    log.close()
    endpoint = f"http://{host.address}:{port}"

    def up() -> bool:
        try:
            return requests.get(endpoint + "/moto-api/", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(up, 30, 0.1, "moto_server on its host")
    return process, endpoint


@contextmanager
def world(log_dir: Path) -> Iterator[World]:
    """Build the :class:`World` (about 30 s, mostly RabbitMQ booting); remove it all on exit:
    the hosts with every process on them, the nodes' files, the relay. Leftovers of a crashed
    earlier run go first."""
    remove_stale()
    _remove_stale_rabbit_dirs()
    with ExitStack() as cleanup:
        network = Network()
        cleanup.callback(network.close)
        rabbit_hosts = [network.add_host(f"rabbit{i}") for i in (1, 2, 3)]
        moto_host = network.add_host("s3")
        base = Path(tempfile.mkdtemp(prefix=f"{RABBIT_DIR_PREFIX}{os.getpid()}-"))
        base.chmod(0o755)  # the rabbitmq user walks into it
        cluster = RabbitCluster(rabbit_hosts, base)
        cleanup.callback(cluster.close)
        cluster.start()
        moto, endpoint = _start_moto(moto_host, log_dir)
        cleanup.callback(lambda: (moto.kill(), moto.wait(10)))
        redis = urlsplit(REDIS_URL)
        relay_port = free_port()
        relay = Relay(network.gateway, relay_port, f"{redis.hostname}:{redis.port or 6379}", log_dir / "relay.log")
        cleanup.callback(relay.close)
        host_redis = urlunsplit(redis._replace(netloc=f"{network.gateway}:{relay_port}"))
        yield World(network, cluster, moto_host, endpoint, host_redis)


@dataclass
class Submission:
    """One ``POST /convert`` of the load: when it was sent and answered (monotonic seconds), its
    HTTP status and (202) its job id."""

    sent: float
    answered: float
    status: int
    job_id: str | None = None


@dataclass
class Load:
    """Submits ``count`` copies of ``path`` to ``stack``, one every ``interval`` seconds, from a
    thread; another thread polls each accepted job's ``/status`` and keeps when it ended."""

    stack: Stack
    path: Path
    count: int = 30
    interval: float = 0.3
    submissions: list[Submission] = field(default_factory=list)
    ended: dict[str, tuple[float, dict]] = field(default_factory=dict)
    """Each ended job's monotonic end time (when the poller first saw it terminal) and status body."""

    def __post_init__(self):
        self._submitter = threading.Thread(target=self._submit, name="load", daemon=True)
        self._poller = threading.Thread(target=self._poll, name="load-poll", daemon=True)
        self._stop = threading.Event()

    def start(self) -> Load:
        self._submitter.start()
        self._poller.start()
        return self

    def wait(self, timeout: float) -> dict[str, dict]:
        """Wait until every submission was answered and every accepted job ended, or ``timeout``
        seconds; stop polling; return each accepted job's last known status body."""
        deadline = time.monotonic() + timeout
        self._submitter.join(timeout)
        while time.monotonic() < deadline and any(j not in self.ended for j in self.accepted):
            time.sleep(0.2)
        self._stop.set()
        self._poller.join(10)
        return {j: self.ended[j][1] if j in self.ended else {"status": "unknown"} for j in self.accepted}

    def _submit(self) -> None:
        for _ in range(self.count):
            sent = time.monotonic()
            try:
                with open(self.path, "rb") as f:
                    r = requests.post(f"{self.stack.url}/convert", files={"file": (self.path.name, f)}, timeout=30)
                job_id = r.json().get("job_id") if r.status_code == 202 else None
                self.submissions.append(Submission(sent, time.monotonic(), r.status_code, job_id))
            except (requests.RequestException, ValueError):
                self.submissions.append(Submission(sent, time.monotonic(), 0))
            time.sleep(max(0.0, self.interval - (time.monotonic() - sent)))

    def _poll(self) -> None:
        while not self._stop.is_set():
            for job_id in [j for j in self.accepted if j not in self.ended]:
                try:
                    body = requests.get(f"{self.stack.url}/status/{job_id}", timeout=5).json()
                except (requests.RequestException, ValueError):
                    continue
                if body.get("status") in TERMINAL:
                    self.ended[job_id] = (time.monotonic(), body)
            self._stop.wait(0.2)

    @property
    def accepted(self) -> list[str]:
        return [s.job_id for s in list(self.submissions) if s.status == 202]

    @property
    def refused(self) -> list[Submission]:
        return [s for s in self.submissions if s.status != 202]

    def first_accepted_after(self, t: float) -> float | None:
        """Seconds from ``t`` to the answer of the first submission sent after ``t`` that was accepted."""
        return next((s.answered - t for s in self.submissions if s.sent >= t and s.status == 202), None)

    def first_completed_after(self, t: float, accepted_after: bool = False) -> float | None:
        """Seconds from ``t`` to the first job seen completed after ``t`` (with ``accepted_after``:
        of the jobs whose submission was sent after ``t``, so whose task was published after it)."""
        later = {s.job_id for s in self.submissions if s.sent >= t and s.status == 202}
        ends = [
            end - t
            for job_id, (end, body) in list(self.ended.items())
            if end >= t and body["status"] == "completed" and (not accepted_after or job_id in later)
        ]
        return min(ends, default=None)


def completions_applied(stack: Stack) -> Counter:
    """How many ``completed`` transitions the metadata consumer applied per job (from its log):
    more than one for a job is a duplicate."""
    return Counter(
        r.get("job_id") for r in log_lines(stack, "metadata-consumer") if r["msg"].startswith("job completed ")
    )


@dataclass
class Tally:
    """A scenario's numbers, as docs/reliability.md's "hosts and partitions" table gives them."""

    accepted: int
    completed: int
    lost: int
    duplicated: int
    recovery_seconds: float

    def line(self, scenario: str) -> str:
        return (
            f"HOSTS {scenario}: accepted {self.accepted}, completed {self.completed}, lost {self.lost}, "
            f"duplicated {self.duplicated}, recovery {self.recovery_seconds:.1f} s"
        )


def tally(stack: Stack, load: Load, final: dict[str, dict], recovery_seconds: float) -> Tally:
    """The :class:`Tally` of ``load`` once every job ended (``final``: each job's last status body,
    from :meth:`Load.wait`): an accepted job that did not complete is lost."""
    completed = [j for j in load.accepted if final[j]["status"] == "completed"]
    applied = completions_applied(stack)
    return Tally(
        accepted=len(load.accepted),
        completed=len(completed),
        lost=len(load.accepted) - len(completed),
        duplicated=sum(1 for j in load.accepted if applied[j] > 1),
        recovery_seconds=recovery_seconds,
    )
