"""What people open in a browser, and the API's own description of itself.

GET /               the web page: static/index.html (its app.js and app.css come from /static/)
GET /openapi.json   the OpenAPI 3.1 document, openapi.yaml beside this file, read once at start-up,
                    with the formats and video codecs this deployment offers (:func:`with_offered_formats`)
GET /docs           that document as a readable page (templates/docs.html, no JavaScript)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from flask import Blueprint, Response, render_template, send_from_directory

from services.gateway import apidocs
from shared.options import FORMATS

OPENAPI_PATH = Path(__file__).with_name("openapi.yaml")
STATIC_DIR = Path(__file__).with_name("static")


def load_openapi(path: Path = OPENAPI_PATH) -> dict:
    """The OpenAPI document as a dict; raises ``OSError`` or ``yaml.YAMLError`` if it cannot be read."""
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def with_offered_formats(openapi: dict, video_codecs: tuple[str, ...]) -> dict:
    """A copy of ``openapi`` whose ``ConversionOptions`` says what this deployment offers: the
    ``format`` enum (every audio format, and each video format that has an offered codec), its
    ``x-video-codecs`` extension (each video format's offered codecs, its default first) and the
    ``video_codec`` enum (``video_codecs``, from ``VIDEO_CODECS``: ``shared.video_codecs``). The web
    page builds its format and codec choices from these, so it offers only what the server takes.

    Raises:
        KeyError: ``openapi`` has no ``components.schemas.ConversionOptions.properties``.
    """
    offered = copy.deepcopy(openapi)
    properties = offered["components"]["schemas"]["ConversionOptions"]["properties"]
    by_format = {
        f.name: [codec for codec in f.video_codecs if codec in video_codecs] for f in FORMATS.values() if f.is_video
    }
    by_format = {name: codecs for name, codecs in by_format.items() if codecs}
    fmt = properties.setdefault("format", {"type": "string"})
    fmt["enum"] = [f.name for f in FORMATS.values() if not f.is_video or f.name in by_format]
    fmt["x-video-codecs"] = by_format
    codec = properties.setdefault("video_codec", {"type": "string"})
    codec.setdefault(
        "description",
        "Video codec of a video format (default: the format's first); those this server's ffmpeg encodes.",
    )
    if video_codecs:
        codec["enum"] = list(video_codecs)
    else:
        codec.pop("enum", None)
    return offered


def pages_blueprint(openapi: dict) -> Blueprint:
    """The blueprint serving the web page, ``openapi`` as JSON, and ``openapi`` rendered as HTML."""
    pages = Blueprint("pages", __name__, template_folder="templates")
    openapi_json = json.dumps(openapi, ensure_ascii=False)

    @pages.get("/")
    def web_page():
        return send_from_directory(STATIC_DIR, "index.html")

    @pages.get("/openapi.json")
    def openapi_document():
        return Response(openapi_json, mimetype="application/json")

    @pages.get("/docs")
    def docs():
        return render_template(
            "docs.html",
            spec=openapi,
            operations=apidocs.operations(openapi),
            schemas=apidocs.schemas(openapi),
            label=apidocs.schema_label,
            md=apidocs.inline_markdown,
        )

    return pages
