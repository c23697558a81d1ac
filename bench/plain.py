"""The baseline: plain ``ffmpeg -i in.mp4 -vn -c:a libmp3lame out.mp3``, timed from process start."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def plain_command(ffmpeg: str, source: Path, target: Path) -> list[str]:
    """The command users would run by hand (``-y -nostdin -v error`` only silence it)."""
    return [ffmpeg, "-nostdin", "-v", "error", "-y", "-i", str(source), "-vn", "-c:a", "libmp3lame", str(target)]


def plain_seconds(ffmpeg: str, source: Path, target: Path) -> float:
    """Wall time of one plain conversion, seconds."""
    started = time.perf_counter()
    subprocess.run(plain_command(ffmpeg, source, target), check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def plain_batch_seconds(ffmpeg: str, sources: list[Path], out_dir: Path, parallel: int) -> float:
    """Wall time of converting every source with ``parallel`` ffmpeg processes at a time, seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(
            pool.map(lambda pair: plain_seconds(ffmpeg, pair[1], out_dir / f"plain-{pair[0]}.mp3"), enumerate(sources))
        )
    return time.perf_counter() - started
