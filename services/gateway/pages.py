"""What people open in a browser, and the API's own description of itself.

GET /               the web page: static/index.html (its app.js and app.css come from /static/)
GET /openapi.json   the OpenAPI 3.1 document, openapi.yaml beside this file, read once at start-up
GET /docs           that document as a readable page (templates/docs.html, no JavaScript)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml
from flask import Blueprint, Response, render_template, send_from_directory

from services.gateway import apidocs

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
