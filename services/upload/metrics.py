"""The upload service's Prometheus metrics (served at ``/metrics``; see ``shared/metrics.py``)."""

from prometheus_client import Counter

UPLOAD_BYTES = Counter(
    "siphon_upload_bytes_total",
    "Bytes of the files POST /convert received and stored (direct uploads to storage are not counted).",
)
