"""The progress bars, drawn by rich on stderr so that stdout carries only results.

Transfers count bytes; a job shows its percent when the server sends ``progress`` (0–100), else a
pulsing bar and its state (queued, processing, ...).
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

stderr = Console(stderr=True)


def transfer_bars(enabled: bool) -> Progress:
    """Bars for uploads and downloads: bytes done, bytes in all, speed."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=stderr,
        disable=not enabled,
    )


def job_bars(enabled: bool) -> Progress:
    """Bars for conversions: percent when known, and the job's state."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=stderr,
        disable=not enabled,
    )


def show_job(bars: Progress, task: TaskID, body: dict) -> None:
    """Move a job's bar to what its status body says."""
    state, percent = body.get("status", "?"), body.get("progress")
    if state == "completed":
        bars.update(task, total=100, completed=100, state=state)
    elif isinstance(percent, int | float):
        bars.update(task, total=100, completed=percent, state=state)
    elif state in ("queued", "processing"):
        bars.update(task, total=None, state=state)  # no percent from the server: a pulsing bar
    else:
        bars.update(task, state=state)
