"""Turning the OpenAPI document into what templates/docs.html shows: operations and schemas.

Only the parts of OpenAPI that openapi.yaml uses are rendered: paths with their parameters,
request bodies, responses (media types, headers) and the component schemas they refer to.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from markupsafe import Markup, escape

HTTP_METHODS = ("get", "head", "post", "put", "patch", "delete")
CODE_SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Response:
    status: str
    description: str
    media: dict[str, dict] = field(default_factory=dict)
    headers: dict[str, dict] = field(default_factory=dict)


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: str
    tag: str
    parameters: list[dict]
    request: dict[str, dict]
    responses: list[Response]

    @property
    def anchor(self) -> str:
        return f"{self.method.lower()}-{re.sub(r'[^a-z0-9]+', '-', self.path.lower()).strip('-') or 'root'}"


def resolve(spec: dict, node: dict) -> dict:
    """``node``, or what its local ``$ref`` (``#/components/...``) points at."""
    while "$ref" in node:
        target = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def operations(spec: dict) -> list[Operation]:
    """Every operation in the document, in the document's order."""
    found = []
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                found.append(_operation(spec, method, path, item[method]))
    return found


def _operation(spec: dict, method: str, path: str, op: dict) -> Operation:
    body = resolve(spec, op.get("requestBody", {}))
    responses = [
        Response(
            status,
            (resolved := resolve(spec, response)).get("description", ""),
            media=resolved.get("content", {}),
            headers={name: resolve(spec, header) for name, header in resolved.get("headers", {}).items()},
        )
        for status, response in op["responses"].items()
    ]
    return Operation(
        method=method.upper(),
        path=path,
        summary=op.get("summary", ""),
        description=op.get("description", ""),
        tag=(op.get("tags") or [""])[0],
        parameters=[resolve(spec, p) for p in op.get("parameters", [])],
        request=body.get("content", {}),
        responses=responses,
    )


def schemas(spec: dict) -> dict[str, dict]:
    """The named schemas under ``components.schemas``."""
    return spec.get("components", {}).get("schemas", {})


def schema_label(schema: dict) -> Markup:
    """A short HTML label for a schema: a link to a named one, else its type, const or pattern."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return Markup('<a href="#schema-{0}">{0}</a>').format(name)
    if "const" in schema:
        return Markup("<code>{}</code>").format(repr(schema["const"]).replace("'", '"'))
    for choice in ("oneOf", "anyOf"):
        if choice in schema:
            return Markup(" | ").join(schema_label(s) for s in schema[choice])
    kind = schema.get("type", "any")
    if "format" in schema:
        kind = f"{kind} ({schema['format']})"
    if "pattern" in schema:
        return Markup("{} <code>{}</code>").format(kind, schema["pattern"])
    return Markup("{}").format(kind)


def inline_markdown(text: str) -> Markup:
    """The little Markdown the document uses: `code` spans and blank-line paragraphs."""
    paragraphs = [p.strip() for p in str(text).split("\n\n") if p.strip()]
    html = [CODE_SPAN.sub(r"<code>\1</code>", str(escape(p))) for p in paragraphs]
    return Markup("".join(f"<p>{p}</p>" for p in html))
