"""Peak resident memory of the stack's Python processes, from ``/proc/<pid>/status`` (``VmHWM``).

VmHWM is the kernel's own high-water mark of a process's RSS, so no sampling can miss a spike.
It counts the process itself, not its children (ffmpeg's memory is ffmpeg's, and constant).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

KIB = 1024


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers under its master)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def peak_rss_bytes(pid: int) -> int:
    """The process's peak RSS so far (VmHWM), bytes; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * KIB
    except OSError:
        pass
    return 0


def service_pids(processes: dict) -> dict[str, list[int]]:
    """``{service: [pids]}`` of the Python processes that do the work: gunicorn's workers (not the
    master, which only supervises) and each conversion worker; ``processes`` is ``Stack.processes``."""
    pids: dict[str, list[int]] = {}
    for name, process in processes.items():
        service = name.split("-")[0] if name.startswith("conversion") else name
        own = children(process.pid) if name in ("gateway", "upload", "metadata") else [process.pid]
        pids.setdefault(service, []).extend(own)
    return pids


def peak_rss_by_service(processes: dict) -> dict[str, int]:
    """The largest VmHWM among each service's processes, bytes."""
    return {
        service: max((peak_rss_bytes(pid) for pid in pids), default=0)
        for service, pids in service_pids(processes).items()
    }


TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """``(own, children)`` CPU seconds (user + system) of a process; children counts the ones it
    has reaped (ffprobe and ffmpeg under a conversion worker). ``(0, 0)`` if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return (utime + stime) / TICKS_PER_SECOND, (cutime + cstime) / TICKS_PER_SECOND


def stack_cpu_seconds(processes: dict) -> tuple[float, float]:
    """CPU seconds used so far by every service process: ``(Python's own, ffmpeg/ffprobe children)``."""
    own = media = 0.0
    for pids in service_pids(processes).values():
        for pid in pids:
            mine, reaped = cpu_seconds(pid)
            own += mine
            media += reaped
    return own, media


def service_cpu_seconds(processes: dict, services: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the workers of each of ``services``, by service."""
    pids = service_pids(processes)
    return {service: sum(cpu_seconds(pid)[0] for pid in pids.get(service, [])) for service in services}


# --- CPU of whole process trees, the brokers, and the machine ------------------------------------

SERVICE_OF = {
    "gateway": "gateway",
    "upload": "upload",
    "upload-queue-intake": "upload",
    "metadata": "metadata",
    "metadata-consumer": "metadata",
    "metadata-notifier": "metadata",
}
"""The service each of ``Stack.processes``' names belongs to (``conversion-N`` is ``conversion``)."""

BROKERS = {"redis": "redis-server", "rabbitmq": "beam.smp"}
"""The shared servers siphon's jobs cost CPU in, by the ``comm`` of their server process."""


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant of it (``/proc/<pid>/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children(current))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of the tree under ``pid`` so far: each live process's own, plus
    what each has reaped (``cutime``/``cstime``: the ffprobe, bwrap and ffmpeg runs, forked children).
    A process that ends between two readings moves from its own figure to its reaper's, so the
    difference of two readings counts it once."""
    return sum(sum(cpu_seconds(p)) for p in tree(pid))


def broker_pids() -> dict[str, list[int]]:
    """``{"redis": [...], "rabbitmq": [...]}``: the PIDs whose ``/proc/<pid>/comm`` is the server's."""
    found: dict[str, list[int]] = {name: [] for name in BROKERS}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except OSError:
            continue
        for name, command in BROKERS.items():
            if comm == command:
                found[name].append(int(entry.name))
    return found


def server_cpu_seconds(processes: dict, brokers: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far by part: each service's process trees (``conversion`` includes the
    ffprobe/bwrap/ffmpeg it ran), then Redis and RabbitMQ (their server processes' own CPU)."""
    spent: dict[str, float] = {}
    for name, process in processes.items():
        service = SERVICE_OF.get(name, name.split("-")[0])
        spent[service] = spent.get(service, 0.0) + tree_cpu_seconds(process.pid)
    for name, pids in brokers.items():
        spent[name] = sum(cpu_seconds(pid)[0] for pid in pids)
    return spent


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine has been busy since boot (``/proc/stat``: all but idle
    and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / TICKS_PER_SECOND


def own_cpu_seconds() -> float:
    """CPU seconds of this benchmark process and the children it has reaped (the client threads,
    plain ffmpeg, wrk)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


SAMPLE_SECONDS = 0.005
"""How often :class:`SandboxSampler` reads the conversion workers' process trees, seconds."""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class SandboxSampler:
    """The CPU of what runs inside bwrap under the conversion workers, which no parent's
    ``cutime`` shows: bwrap's sandboxed child lives in new user and PID namespaces, and its CPU
    never reaches the worker's reaped-children figure (measured: a one-minute ffmpeg under bwrap
    added 3 ms to the worker's ``cutime``, bare it added 770 ms).

    A thread reads every process below a ``bwrap`` in the workers' trees each
    :data:`SAMPLE_SECONDS` and keeps each one's last CPU reading; what a process spent after its
    last reading is missed (at most one interval per process, under 1 % of a one-minute
    encode). ``ffmpeg`` and ``ffprobe`` are summed as ``media``, the rest (bwrap's init) as ``other``.
    """

    def __init__(self, roots: list[int], interval: float = SAMPLE_SECONDS):
        """Sample the trees under ``roots`` (PIDs) every ``interval`` seconds."""
        self.roots = roots
        self.interval = interval
        self.last: dict[tuple[int, str], tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> SandboxSampler:
        self._thread.start()
        return self

    def stop(self) -> tuple[float, float]:
        """Stop sampling; return ``(media, other)`` CPU seconds of the sandboxed processes seen."""
        self._stop.set()
        self._thread.join()
        media = sum(cpu for comm, cpu in self.last.values() if comm in ("ffmpeg", "ffprobe"))
        other = sum(cpu for comm, cpu in self.last.values() if comm not in ("ffmpeg", "ffprobe"))
        return media, other

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for root in self.roots:
                for pid in self._sandboxed(root):
                    try:
                        stat = Path(f"/proc/{pid}/stat").read_text()
                    except OSError:
                        continue
                    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                    fields = stat.rsplit(")", 1)[1].split()
                    started = fields[19]  # starttime: tells a reused PID apart
                    self.last[(pid, started)] = (comm, (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND)

    @staticmethod
    def _sandboxed(root: int) -> list[int]:
        found, todo = [], [(root, False)]
        while todo:
            pid, inside = todo.pop()
            if inside:
                found.append(pid)
            below = inside or _comm(pid) == "bwrap"
            todo.extend((child, below) for child in children(pid))
        return found


class CpuMeter:
    """CPU spent between :meth:`start` and :meth:`stop`: by the server (:func:`server_cpu_seconds`,
    plus what ran inside bwrap: :class:`SandboxSampler`), by this benchmark (client, baselines), by
    the whole machine, and so by everything else on it.

    ``server`` is ``{part: seconds}`` (``conversion`` includes its ffmpeg; ``ffmpeg`` alone is in
    :attr:`ffmpeg`); ``other`` is the machine's busy CPU seconds that neither the server nor the
    benchmark spent (other users' work, the kernel's); ``wall`` is seconds.
    """

    def __init__(self, processes: dict, sample_seconds: float = SAMPLE_SECONDS):
        """Meter ``Stack.processes``; the sandbox is sampled every ``sample_seconds`` (a coarser
        interval costs the machine less and misses more of short runs: :class:`SandboxSampler`)."""
        self.processes = processes
        self.brokers = broker_pids()
        self.server: dict[str, float] = {}
        self.ffmpeg = 0.0
        self.bench = self.machine = self.wall = 0.0
        roots = [p.pid for name, p in processes.items() if name.startswith("conversion")]
        self.sampler = SandboxSampler(roots, sample_seconds)

    def _read(self) -> tuple[dict[str, float], float, float, float]:
        import time

        return (
            server_cpu_seconds(self.processes, self.brokers),
            own_cpu_seconds(),
            machine_cpu_seconds(),
            time.monotonic(),
        )

    def start(self) -> CpuMeter:
        """Start metering; no sandboxed process may be running yet (its earlier CPU would count)."""
        self.sampler.start()
        self._before = self._read()
        return self

    def stop(self) -> CpuMeter:
        """Stop metering, once every job has ended (a sandbox still running would be cut short)."""
        server, bench, machine, wall = self._read()
        media, jail = self.sampler.stop()
        before = self._before
        self.server = {part: server[part] - before[0].get(part, 0.0) for part in server}
        self.server["conversion"] = self.server.get("conversion", 0.0) + media + jail
        self.ffmpeg = media
        self.bench, self.machine, self.wall = bench - before[1], machine - before[2], wall - before[3]
        return self

    @property
    def server_total(self) -> float:
        return sum(self.server.values())

    @property
    def other(self) -> float:
        """Busy CPU seconds of everything else on the machine (never below 0)."""
        return max(0.0, self.machine - self.server_total - self.bench)
