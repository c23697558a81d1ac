"""A job record as the version before ``services/metadata/records.py`` wrote it: every field on
``shared.jobs.Job`` (notifications, cache key, quota subject and all), serialised with
``Job.model_dump_json()`` to Redis and to ``job.json``. Tests load it to prove such records still
load; :func:`old_record` gives it under another job id and with other fields."""

from __future__ import annotations

import json
from typing import Any

OLD_JOB_ID = "0123456789abcdef0123456789abcdef"

OLD_RECORD = (
    '{"job_id":"0123456789abcdef0123456789abcdef","owner":"alice","status":"completed","created_at":100.0,'
    '"started_at":101.0,"finished_at":105.5,"original_filename":"holiday.mov",'
    '"input_key":"jobs/0123456789abcdef0123456789abcdef/input","input_size":1234,'
    '"output_key":"jobs/0123456789abcdef0123456789abcdef/output.mp3","output_size":16000,'
    '"output_duration_seconds":1.0,"media":{"container":"mov,mp4","audio_codec":"aac","duration_seconds":1.0,'
    '"sample_rate_hz":null,"channels":null,"video_codec":null},"attempts":2,"retries":1,"error":null,'
    '"options":{"bitrate":192},"progress":100,"speed":12.5,"email":"me@example.com",'
    '"callback_url":"https://hooks.example.org/siphon","notifications":[{"kind":"webhook","attempt":1,'
    '"at":106.0,"outcome":"delivered","status_code":200,"detail":null}],'
    '"content_sha256":"abababababababababababababababababababababababababababababababab",'
    '"cache_key":"abababababababababababababababababababababababababababababababab-0123456789abcdef",'
    '"cached":false,"quota_subject":"key:alice"}'
)
"""The record, as the previous version wrote it (``shared.jobs.Job.model_dump_json`` with the metadata
fields on it), to Redis and to ``job.json``."""


def old_record(job_id: str, **fields: Any) -> str:
    """:data:`OLD_RECORD` for ``job_id`` (its storage keys too) with ``fields`` replaced, as JSON."""
    record = json.loads(OLD_RECORD.replace(OLD_JOB_ID, job_id))
    return json.dumps({**record, **fields}, separators=(",", ":"))
