"""Looking for processes a test may have left behind, from ``/proc`` (Linux); zombies count as gone."""

from __future__ import annotations

from pathlib import Path


def _live() -> list[tuple[int, int, bytes]]:
    """``(pid, process group, argv bytes)`` of every process that is not a zombie."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # exited while we looked
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if state != "Z":
            found.append((int(entry.name), int(pgrp), cmdline))
    return found


def live_in_group(pgid: int) -> list[int]:
    """Pids of the live processes in process group ``pgid``."""
    return [pid for pid, group, _ in _live() if group == pgid]


def live_mentioning(text: str) -> list[int]:
    """Pids of the live processes whose command line contains ``text``."""
    needle = text.encode()
    return [pid for pid, _, cmdline in _live() if needle in cmdline]
