"""``POST /jobs/<id>/retry``: queue again a job that failed for a retryable reason; and the health
checks, ``GET /healthz`` and ``GET /readyz`` (storage and RabbitMQ answer)."""

from __future__ import annotations

from flask import Blueprint, jsonify

from services.upload.bootstrap import parts
from shared.broker import connect
from shared.errors import JobNotFound
from shared.jobs import is_valid_job_id

RESUBMITTED_MESSAGE = "Conversion job submitted again."

jobs = Blueprint("jobs", __name__)


@jobs.post("/jobs/<job_id>/retry")
def retry(job_id: str):
    if not is_valid_job_id(job_id):
        raise JobNotFound("Job not found.")
    job = parts().intake.retry(job_id)
    return jsonify(job_id=job.job_id, status=job.status.value, message=RESUBMITTED_MESSAGE), 202


@jobs.get("/healthz")
def healthz():
    return jsonify(status="ok", auth=parts().auth.mode)


@jobs.get("/readyz")
def readyz():
    parts().intake.storage.check()
    connect(parts().settings).close()
    return jsonify(status="ready")
