"""``GET /healthz`` (the process answers; says whether API keys are on) and ``GET /readyz``
(storage answers too), free of any key."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services.gateway.bootstrap import parts

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz():
    return jsonify(status="ok", auth=parts().auth.mode)


@health.get("/readyz")
def readyz():
    parts().storage.check()
    return jsonify(status="ready")
