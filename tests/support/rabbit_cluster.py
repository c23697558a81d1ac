"""A 3-node RabbitMQ cluster, one node per :class:`~tests.support.hosts.Host`, started by the tests.

Each node is named ``rabbit@<its address>`` (Erlang long names, so no resolver is involved), listens
for AMQP on ``<address>:5672`` and for distribution on ``<address>:25672``, and keeps its data, logs
and config under its own directory owned by the ``rabbitmq`` user. The nodes form one cluster at boot
through classic-config peer discovery (RabbitMQ docs, "Cluster Formation and Peer Discovery"). They
share the machine's Erlang cookie (/var/lib/rabbitmq/.erlang.cookie), run their own epmd inside
their namespace, and ignore the machine's /etc/rabbitmq files (``RABBITMQ_CONF_ENV_FILE`` and
``RABBITMQ_CONFIG_FILE`` point at their own): the pre-started broker on 127.0.0.1:5672 is untouched.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import pika

from tests.support.hosts import Host
from tests.support.net import wait_until

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
RABBIT_HOME = Path("/var/lib/rabbitmq")
AMQP_PORT = 5672
DIST_PORT = 25672


class RabbitNode:
    """One node on ``host`` with its files under ``base`` (made here, owned by ``rabbitmq``)."""

    def __init__(self, host: Host, base: Path, peers: list[str]):
        self.host = host
        self.base = base
        self.name = f"rabbit@{host.address}"
        self.url = f"amqp://guest:guest@{host.address}:{AMQP_PORT}/%2F"
        self.process: subprocess.Popen | None = None
        self._write_files(peers)

    def _write_files(self, peers: list[str]) -> None:
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("")
        (self.base / "rabbitmq-env.conf").write_text("")
        lines = [
            f"listeners.tcp.1 = {self.host.address}:{AMQP_PORT}",
            "loopback_users = none",  # guest over the bridge (test-only credentials)
            "cluster_formation.peer_discovery_backend = classic_config",
            *(f"cluster_formation.classic_config.nodes.{i} = {peer}" for i, peer in enumerate(peers, 1)),
            "cluster_partition_handling = pause_minority",
            "vm_memory_high_watermark.relative = 0.2",
            "disk_free_limit.absolute = 50MB",
            "log.console = false",
            "log.file.level = info",
        ]
        (self.base / "rabbitmq.conf").write_text("\n".join(lines) + "\n")
        user = pwd.getpwnam("rabbitmq")
        for path in (self.base, *self.base.rglob("*")):
            os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def env(self) -> dict[str, str]:
        b = self.base
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(RABBIT_HOME),  # the machine's cookie: every node and the CLI share it
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_USE_LONGNAME": "true",
            "RABBITMQ_NODE_IP_ADDRESS": self.host.address,
            "RABBITMQ_DIST_PORT": str(DIST_PORT),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
        }

    def _as_rabbitmq(self, argv: list[str]) -> list[str]:
        return self.host.command(["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups", *argv])

    def start(self) -> None:
        """Start the node (returns at once; :meth:`wait` for it)."""
        with open(self.base / "server.out", "ab") as out:
            self.process = subprocess.Popen(
                self._as_rabbitmq([str(RABBIT_BIN / "rabbitmq-server")]),
                env=self.env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def ctl(self, *args: str, tool: str = "rabbitmqctl", timeout: float = 60) -> str:
        """Run ``rabbitmqctl`` (or ``tool``) against this node from its host; return stdout.

        Raises:
            subprocess.CalledProcessError: the command failed.
        """
        argv = self._as_rabbitmq([str(RABBIT_BIN / tool), "--longnames", "-n", self.name, *args])
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, argv, result.stdout, result.stderr)
        return result.stdout

    def accepts_amqp(self) -> bool:
        """Whether an AMQP connection opens (the node booted and its listener is up)."""
        try:
            params = pika.URLParameters(self.url)
            params.socket_timeout = params.stack_timeout = 2
            pika.BlockingConnection(params).close()
            return True
        except pika.exceptions.AMQPError:
            return False

    def kill(self) -> None:
        """SIGKILL the node (and its host's epmd): the node dies as in a power cut."""
        self.host.kill()
        if self.process is not None:
            self.process.wait(10)


class RabbitCluster:
    """Three :class:`RabbitNode` on three hosts, clustered; :meth:`close` stops them and deletes their files."""

    def __init__(self, hosts: list[Host], base: Path):
        self.base = base
        peers = [f"rabbit@{h.address}" for h in hosts]
        self.nodes = [RabbitNode(h, base / h.name, peers) for h in hosts]

    @property
    def amqp_url(self) -> str:
        """Every node's URL, comma-separated: siphon's ``AMQP_URL`` for this cluster."""
        return ",".join(n.url for n in self.nodes)

    def start(self, timeout: float = 120) -> RabbitCluster:
        """Start the nodes together and wait until each accepts AMQP and sees all three as running.

        Raises:
            TimeoutError: the cluster did not form within ``timeout`` seconds.
        """
        first, *others = self.nodes
        first.start()
        wait_until(first.accepts_amqp, timeout, 0.5, f"{first.name} to accept AMQP")
        for node in others:  # the seed is up: the others find it and join it
            node.start()
        for node in others:
            wait_until(node.accepts_amqp, timeout, 0.5, f"{node.name} to accept AMQP")
        wait_until(lambda: len(self.running_nodes()) == len(self.nodes), timeout, 0.5, "all three nodes clustered")
        return self

    def running_nodes(self, via: RabbitNode | None = None) -> list[str]:
        """The cluster's running nodes as ``via`` (default: the first live node) sees them."""
        for node in [via] if via else self.nodes:
            try:
                status = json.loads(node.ctl("cluster_status", "--formatter", "json", timeout=20))
                return status.get("running_nodes", [])
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError):
                continue
        return []

    def node_named(self, name: str) -> RabbitNode:
        return next(n for n in self.nodes if n.name == name)

    def queue_leader(self, queue: str) -> RabbitNode:
        """The node holding quorum queue ``queue``'s leader (``rabbitmqctl list_queues name leader``).

        Raises:
            LookupError: no live node knows the queue.
        """
        for node in self.nodes:
            try:
                rows = json.loads(node.ctl("list_queues", "name", "leader", "members", "--formatter", "json"))
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError):
                continue
            for row in rows:
                if row["name"] == queue:
                    return self.node_named(row["leader"])
        raise LookupError(f"no node knows queue {queue}")

    def queue_members(self, queue: str) -> list[str]:
        """The nodes quorum queue ``queue`` is replicated on."""
        for node in self.nodes:
            try:
                rows = json.loads(node.ctl("list_queues", "name", "members", "--formatter", "json"))
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError):
                continue
            return next((sorted(r["members"]) for r in rows if r["name"] == queue), [])
        return []

    def restart(self, node: RabbitNode, timeout: float = 60) -> None:
        """Start a killed ``node`` again on its data; wait until it rejoined."""
        node.start()
        wait_until(node.accepts_amqp, timeout, 0.5, f"{node.name} to accept AMQP again")
        wait_until(lambda: len(self.running_nodes()) == len(self.nodes), timeout, 0.5, "the node to rejoin")

    def close(self) -> None:
        """Kill every node (the hosts' namespaces go with the network) and delete their files."""
        for node in self.nodes:
            node.kill()
        time.sleep(0.1)
        shutil.rmtree(self.base, ignore_errors=True)
