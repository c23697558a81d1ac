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


def with_video_codecs(openapi: dict, codecs: tuple[str, ...]) -> dict:
    """A copy of ``openapi`` with ``ConversionOptions.video_codec``'s enum set to the ``codecs``
    this deployment offers (``shared.video_codecs``: ``VIDEO_CODECS``, or what ffmpeg encodes)."""
    openapi = copy.deepcopy(openapi)
    field = openapi["components"]["schemas"]["ConversionOptions"]["properties"]["video_codec"]
    field["enum"] = list(codecs)
    return openapi


def with_offered_formats(openapi: dict, video_codecs: tuple[str, ...]) -> dict:
    """:func:`with_video_codecs`, and ``ConversionOptions.format`` as this deployment offers it: the
    enum holds every audio format and each video format that has an offered codec, and its
    ``x-video-codecs`` extension maps each of those video formats to its offered codecs, the
    format's default first. The web page builds its format and codec choices from these, so it
    offers only what the server takes.

    Raises:
        KeyError: ``openapi`` has no ``ConversionOptions`` with ``format`` and ``video_codec``.
    """
    offered = with_video_codecs(openapi, video_codecs)
    by_format = {
        f.name: [codec for codec in f.video_codecs if codec in video_codecs] for f in FORMATS.values() if f.is_video
    }
    by_format = {name: codecs for name, codecs in by_format.items() if codecs}
    fmt = offered["components"]["schemas"]["ConversionOptions"]["properties"]["format"]
    fmt["enum"] = [f.name for f in FORMATS.values() if not f.is_video or f.name in by_format]
    fmt["x-video-codecs"] = by_format
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
