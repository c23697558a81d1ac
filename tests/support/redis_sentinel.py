"""A Redis primary, a replica and three Sentinels as processes on loopback, started and stopped
by the tests (issue 18, scenario c).

Each node gets a free port, its own directory under the test's temp dir and a log file; nothing
is persisted (``save ""``, no AOF). The replica reaches the primary through a :class:`TcpProxy`,
so a test can cut the replication link while clients keep writing to the primary: those writes
are acknowledged and never replicated, which is how Redis' asynchronous replication loses them
when the primary dies (https://redis.io/docs/latest/operate/oss_and_stack/management/replication/).

The Sentinels watch the primary as :data:`MASTER_NAME` with a quorum of 2 and call it down after
:data:`DOWN_AFTER_MS`; the Sentinel docs' example settings otherwise, but a long failover timeout
(https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.faults import TcpProxy
from tests.support.net import free_port, wait_until

MASTER_NAME = "siphon"
DOWN_AFTER_MS = 1000
"""How long the primary must not answer before a Sentinel thinks it down, milliseconds."""
FAILOVER_TIMEOUT_MS = 180_000
"""Long, for the cut replication link to hold: a Sentinel "fixes" a replica that follows another
address than the primary's (the proxy) once its configuration is this old; the failover itself
does not wait for it."""
SENTINELS = 3
QUORUM = 2
REDIS_SERVER = os.environ.get("REDIS_SERVER", "redis-server")


class SentinelGroup:
    """The five processes, under ``base_dir``. Use as a context manager: every process it started
    is stopped on exit (SIGTERM, then SIGKILL), and the replication proxy closed."""

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.primary_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(SENTINELS)]
        self.link = TcpProxy("127.0.0.1", self.primary_port)
        self.processes: dict[str, subprocess.Popen] = {}

    # --- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> SentinelGroup:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> SentinelGroup:
        self._server("primary", self.primary_port)
        self.link.restore()
        self._server("replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.link.port))
        wait_until(self._replica_in_sync, 30, 0.05, "the replica to sync")
        for i, port in enumerate(self.sentinel_ports, 1):
            self._sentinel(f"sentinel-{i}", port)
        wait_until(self._sentinels_see_everyone, 30, 0.1, "the Sentinels to find the replica and each other")
        return self

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.link.cut()

    def _spawn(self, name: str, argv: list[str]) -> None:
        directory = self.base_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                argv, cwd=directory, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )

    def _server(self, name: str, port: int, *extra: str) -> None:
        argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self._spawn(name, [*argv, "--dir", str(self.base_dir / name), *extra])
        wait_until(lambda: self._answers(port), 10, 0.05, f"redis {name} on port {port}")

    def _sentinel(self, name: str, port: int) -> None:
        directory = self.base_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"  # Sentinel rewrites its own config: a file of its own
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        self._spawn(name, [REDIS_SERVER, str(config), "--sentinel"])
        wait_until(lambda: self._answers(port), 10, 0.05, f"{name} on port {port}")

    # --- what a test asks -----------------------------------------------------------------
    @property
    def sentinels(self) -> str:
        """``REDIS_SENTINELS`` for a stack: ``127.0.0.1:<port>,...``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def primary(self) -> tuple[str, int] | None:
        """The primary a majority of the Sentinels name now, or None while they disagree."""
        named = [self._ask(port) for port in self.sentinel_ports]
        for address in set(named):
            if address is not None and named.count(address) >= QUORUM:
                return address
        return None

    def primary_url(self) -> str:
        """``redis://`` URL of the primary the Sentinels name now."""
        host, port = self.primary() or ("127.0.0.1", self.primary_port)
        return f"redis://{host}:{port}/0"

    def kill_primary(self) -> float:
        """SIGKILL the first primary (no chance to flush anything); return ``time.monotonic()`` of the kill."""
        process = self.processes["primary"]
        os.killpg(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        process.wait(10)
        return killed_at

    def cut_replication(self) -> None:
        """Cut the replica off the primary: from now on, the primary's writes are not replicated."""
        self.link.cut()

    def wait_for_failover(self, timeout: float = 30) -> float:
        """Wait until the Sentinels name the replica as the primary; return ``time.monotonic()`` then."""
        wait_until(lambda: self.primary() == ("127.0.0.1", self.replica_port), timeout, 0.05, "the failover")
        return time.monotonic()

    def _ask(self, sentinel_port: int) -> tuple[str, int] | None:
        try:
            client = redis.Redis(port=sentinel_port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True)
            host, port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            client.close()
            return host, int(port)
        except (redis.RedisError, TypeError):
            return None

    @staticmethod
    def _answers(port: int) -> bool:
        try:
            return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping()
        except redis.RedisError:
            return False

    def _replica_in_sync(self) -> bool:
        info = redis.Redis(port=self.replica_port, socket_timeout=1).info("replication")
        return info.get("master_link_status") == "up"

    def _sentinels_see_everyone(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
            master = client.sentinel_master(MASTER_NAME)
            if int(master["num-slaves"]) < 1 or int(master["num-other-sentinels"]) < SENTINELS - 1:
                return False
        return True
