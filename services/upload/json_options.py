"""Conversion options sent as a JSON object (a queue job's ``transcode_options``, the JSON body of
``POST /convert``), validated like the multipart fields of ``POST /convert`` (``shared/options.py``).

Unlike form fields, a JSON object is structured, so an unknown name is an error rather than
ignored. A GStreamer pipeline (``filesrc location=in.mov ! decodebin ! lamemp3enc ! filesink``),
which the system siphon replaces accepted here, is refused by name: siphon never runs one.
"""

from __future__ import annotations

from shared.errors import RequestRejected
from shared.options import OPTION_FIELDS, ConversionOptions, InvalidOption, options_from_form

FREE_TEXT_FIELDS = frozenset({"title", "artist", "album"})
"""Options whose text may hold ``!`` for its own sake ("Help!"); any other string with one is a pipeline."""

PIPELINE_KEYS = frozenset({"pipeline", "gst_pipeline", "gstreamer"})

PIPELINE_MESSAGE = (
    "transcode_options holds a GStreamer pipeline; siphon never runs pipelines. Send the options as "
    'a JSON object of the API\'s option names instead, e.g. {"format": "mp3", "bitrate": 192}.'
)


class PipelineRefused(RequestRejected):
    """The options are a GStreamer pipeline (400 ``pipeline_refused``)."""

    code = "pipeline_refused"


def options_from_json(value: object, video_codecs: tuple[str, ...]) -> ConversionOptions:
    """Options from a decoded JSON value: an object of option names, or None / {} for the defaults;
    ``video_codecs`` as :func:`~shared.options.options_from_form` takes them.

    Raises:
        PipelineRefused: ``value`` is (or holds) a GStreamer pipeline.
        InvalidOption: not an object, an unknown name, or a value out of range (names the field).
    """
    if value is None:
        return ConversionOptions()
    if _is_pipeline(value):
        raise PipelineRefused(PIPELINE_MESSAGE)
    if not isinstance(value, dict):
        raise InvalidOption(
            "transcode_options",
            "a JSON object of option names",
            'The options must be a JSON object, e.g. {"format": "mp3", "bitrate": 192}.',
        )
    unknown = sorted(set(value) - set(OPTION_FIELDS))
    if unknown:
        raise InvalidOption(unknown[0], ", ".join(OPTION_FIELDS), f"Unknown option '{unknown[0]}'.")
    return options_from_form({name: _scalar(name, raw) for name, raw in value.items()}, video_codecs)


def _is_pipeline(value: object) -> bool:
    if isinstance(value, str):
        return "!" in value
    if isinstance(value, dict):
        return bool(PIPELINE_KEYS & set(value)) or any(
            isinstance(raw, str) and "!" in raw for name, raw in value.items() if name not in FREE_TEXT_FIELDS
        )
    return False


def _scalar(name: str, raw: object) -> object:
    """A JSON value as the form parser takes it: numbers and strings pass, anything else is refused
    (``true`` is no bitrate, and a list is no title)."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float | None):
        raise InvalidOption(name, "a string or a number", f"Invalid '{name}': must be a string or a number.")
    return raw
