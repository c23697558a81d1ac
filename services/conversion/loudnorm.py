"""EBU R128 loudness normalisation in two passes with FFmpeg's ``loudnorm`` filter (ffmpeg-filters(1),
"loudnorm"; the two-pass recipe is the one its documentation and its author describe).

Pass 1 decodes the chosen (trimmed) audio through ``loudnorm=...:print_format=json`` into the null
muxer and reads the measured integrated loudness, true peak, loudness range and threshold from the
JSON block it logs at the end. Pass 2 encodes with those measurements and ``linear=true``, which
scales the whole file by one gain (no dynamic compression) whenever the targets allow it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from services.conversion.encode import EncodeLimits, EncodePlan, input_options

TRUE_PEAK_DBTP = -1.5
"""Maximum true peak, dBTP (loudnorm's default; EBU R128 allows -1)."""

LOUDNESS_RANGE_LU = 11.0
"""Target loudness range, LU (loudnorm's default)."""

_JSON_BLOCK = re.compile(r"\{[^{}]*\"input_i\"[^{}]*\}")


@dataclass(frozen=True)
class Loudness:
    """What pass 1 measured: integrated loudness (LUFS), true peak (dBTP), range (LU), threshold (LUFS)
    and the offset gain loudnorm suggests (LU)."""

    integrated: float
    true_peak: float
    loudness_range: float
    threshold: float
    offset: float


def measure_command(ffmpeg: str, plan: EncodePlan, source: Path, limits: EncodeLimits, target_lufs: float) -> list[str]:
    """Pass 1's argv: the plan's audio stream, trimmed and limited as the encode will be, measured only.
    Logs at ``info``, the level loudnorm prints its measurement at."""
    measure = f"loudnorm=I={target_lufs:g}:TP={TRUE_PEAK_DBTP:g}:LRA={LOUDNESS_RANGE_LU:g}:print_format=json"
    return [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "info",
        *input_options(plan, source),
        "-map",
        f"0:{plan.audio_index}",
        "-vn",
        "-sn",
        "-dn",
        "-af",
        measure,
        "-t",
        f"{limits.max_duration_seconds:.6f}",
        "-progress",
        "pipe:1",
        "-f",
        "null",
        "-",
    ]


def parse_measurement(log: str) -> Loudness | None:
    """The measurement in pass 1's log, or None when there is none or it is not finite (silence
    measures ``-inf``: there is nothing to normalise)."""
    blocks = _JSON_BLOCK.findall(log)
    if not blocks:
        return None
    try:
        data = json.loads(blocks[-1])
        values = Loudness(
            integrated=float(data["input_i"]),
            true_peak=float(data["input_tp"]),
            loudness_range=float(data["input_lra"]),
            threshold=float(data["input_thresh"]),
            offset=float(data["target_offset"]),
        )
    except (ValueError, KeyError, TypeError):
        return None
    return values if all(math.isfinite(v) for v in vars(values).values()) else None


def normalize_filter(target_lufs: float, measured: Loudness) -> str:
    """Pass 2's filter: loudnorm told what pass 1 measured, linear."""
    return (
        f"loudnorm=I={target_lufs:g}:TP={TRUE_PEAK_DBTP:g}:LRA={LOUDNESS_RANGE_LU:g}"
        f":measured_I={measured.integrated:.2f}:measured_TP={measured.true_peak:.2f}"
        f":measured_LRA={measured.loudness_range:.2f}:measured_thresh={measured.threshold:.2f}"
        f":offset={measured.offset:.2f}:linear=true:print_format=none"
    )
