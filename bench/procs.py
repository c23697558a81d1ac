"""Peak resident memory of the stack's Python processes, from ``/proc/<pid>/status`` (``VmHWM``).

VmHWM is the kernel's own high-water mark of a process's RSS, so no sampling can miss a spike.
It counts the process itself, not its children (ffmpeg's memory is ffmpeg's, and constant).
"""

from __future__ import annotations

import os
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
