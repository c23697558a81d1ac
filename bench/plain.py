"""The two baselines, plain ffmpeg on the same file in the same run:

* ``user``: ``ffmpeg -i in.mp4 -vn out.mp3``, as a user types it (FFmpeg picks libmp3lame and its
  default, 128 kbps CBR);
* ``equal``: ffmpeg with the encoder settings siphon uses for a default MP3 job
  (``services/conversion/encode.py``: the first audio stream only, LAME VBR ``-q:a`` =
  ``MP3_VBR_QUALITY`` (2), 48 kHz stereo as the inputs are, ID3v2.4, no metadata copied).

``-nostdin -v error -y`` only silence them. Times are wall seconds from process start.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shared.config import load_settings

BASELINES = ("equal", "user")


def plain_command(ffmpeg: str, source: Path, target: Path, kind: str = "user") -> list[str]:
    """The argv of baseline ``kind`` (``equal`` or ``user``) converting ``source`` to ``target``."""
    quiet = [ffmpeg, "-nostdin", "-v", "error", "-y"]
    if kind == "user":
        return [*quiet, "-i", str(source), "-vn", str(target)]
    quality = str(load_settings().mp3_vbr_quality)
    return [
        *quiet,
        "-i",
        str(source),
        *("-map", "0:a:0", "-vn", "-sn", "-dn", "-map_metadata", "-1"),
        *("-c:a", "libmp3lame", "-q:a", quality, "-ar", "48000", "-ac", "2", "-id3v2_version", "4"),
        str(target),
    ]


def plain_seconds(ffmpeg: str, source: Path, target: Path, kind: str = "user") -> float:
    """Wall time of one plain conversion, seconds."""
    started = time.perf_counter()
    subprocess.run(plain_command(ffmpeg, source, target, kind), check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def plain_batch_seconds(ffmpeg: str, sources: list[Path], out_dir: Path, parallel: int, kind: str = "user") -> float:
    """Wall time of converting every source with ``parallel`` ffmpeg processes at a time, seconds."""
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(
            pool.map(
                lambda pair: plain_seconds(ffmpeg, pair[1], out_dir / f"plain-{kind}-{pair[0]}.mp3", kind),
                enumerate(sources),
            )
        )
    for i in range(len(sources)):
        (out_dir / f"plain-{kind}-{i}.mp3").unlink(missing_ok=True)
    return time.perf_counter() - started
