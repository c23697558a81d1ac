"""Which video codecs this deployment offers: those the configured ffmpeg can encode.

``VIDEO_CODECS=auto`` (the default) asks ``ffmpeg -hide_banner -encoders`` once per process, at
start; an explicit list is taken as given, for a process without ffmpeg (the gateway's container
only shows the list in ``/openapi.json``). The upload service refuses a video job whose codec is
not offered (400 ``invalid_option``, ``field`` ``video_codec``); the worker uses the first encoder
of :data:`ENCODERS` its ffmpeg has.
"""

from __future__ import annotations

import subprocess
from functools import lru_cache

from shared.options import VIDEO_CODECS

ENCODERS = {
    "h264": ("libx264",),
    "hevc": ("libx265",),
    "vp9": ("libvpx-vp9",),
    "av1": ("libsvtav1", "libaom-av1"),
}
"""FFmpeg encoders for each codec, preferred first (ffmpeg-codecs(1)): SVT-AV1 is several times
faster than libaom at equal quality, so it is taken when the build has both."""

ENCODERS_TIMEOUT_SECONDS = 10
"""Wall-clock limit of the one ``ffmpeg -encoders`` run, seconds."""


def ffmpeg_encoders(ffmpeg: str) -> frozenset[str]:
    """The encoder names ``ffmpeg -hide_banner -encoders`` lists; empty when ffmpeg cannot run."""
    return ffmpeg_listing(ffmpeg, "-encoders")


def ffmpeg_filters(ffmpeg: str) -> frozenset[str]:
    """The filter names ``ffmpeg -hide_banner -filters`` lists (``zscale`` only where built with zimg)."""
    return ffmpeg_listing(ffmpeg, "-filters")


@lru_cache(maxsize=16)
def ffmpeg_listing(ffmpeg: str, what: str) -> frozenset[str]:
    """The names in ``ffmpeg -hide_banner <what>`` (``-encoders``, ``-filters``), asked once per
    process; empty when ffmpeg cannot run."""
    try:
        done = subprocess.run(
            [ffmpeg, "-hide_banner", what],
            capture_output=True,
            timeout=ENCODERS_TIMEOUT_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    names = set()
    for line in done.stdout.decode(errors="replace").splitlines():
        parts = line.split()
        # An entry is " V....D libx264  text" (encoders) or " TS. bwdif  V->V  text" (filters); the
        # legend above has "=" in its second field.
        if len(parts) >= 2 and len(parts[0]) in (3, 6) and "=" not in parts[1] and parts[1] != "=":
            names.add(parts[1])
    return frozenset(names)


def encoder_for(codec: str, ffmpeg: str) -> str | None:
    """The encoder ``ffmpeg`` would use for ``codec`` (one of :data:`ENCODERS`), None if it has none."""
    available = ffmpeg_encoders(ffmpeg)
    return next((name for name in ENCODERS[codec] if name in available), None)


def offered_video_codecs(setting: str, ffmpeg: str) -> tuple[str, ...]:
    """The codecs offered, in :data:`~shared.options.VIDEO_CODECS` order: ``setting``'s list, or for
    ``auto`` those ``ffmpeg`` has an encoder for (see the module docstring)."""
    if setting != "auto":
        return tuple(codec for codec in VIDEO_CODECS if codec in setting.split(","))
    return tuple(codec for codec in VIDEO_CODECS if encoder_for(codec, ffmpeg) is not None)
