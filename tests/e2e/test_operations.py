"""Operations, end to end: every service's Prometheus metrics and JSON log lines, after real jobs.

One stack (gunicorn with two worker processes per HTTP service, so the gateway's counters must be
summed across processes), one job that completes and one that fails; then every service's
``/metrics`` is read, and every line of every service's log file is parsed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.not_media import UNREADABLE_BYTES, write_unreadable
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

VIDEO = "ordinary_h264_aac_stereo_48k_8s.mp4"
NOT_FOUND_REQUESTS = 6


@dataclass(frozen=True)
class Jobs:
    completed: str
    failed: str
    input_bytes: int
    mp3_bytes: int


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    return module_stack(workers=1, WEB_WORKERS="2")


@pytest.fixture(scope="module")
def jobs(stack, media_dir, tmp_path_factory) -> Jobs:
    """A completed job (downloaded once), a failed one, and a few 404s, each on a fresh connection."""
    completed = stack.convert(media_dir / VIDEO).json()["job_id"]
    not_media = write_unreadable(tmp_path_factory.mktemp("inputs") / "notes.mp4")  # text is refused at upload
    failed = stack.convert(not_media).json()["job_id"]
    finals = stack.wait_for_jobs([completed, failed], timeout=60)
    assert (finals[completed]["status"], finals[failed]["status"]) == ("completed", "failed"), finals
    mp3 = stack.download(completed)
    assert mp3.status_code == 200
    for _ in range(NOT_FOUND_REQUESTS):
        assert requests.get(f"{stack.url}/status/{'f' * 32}", timeout=10).status_code == 404
    return Jobs(completed, failed, (media_dir / VIDEO).stat().st_size, len(mp3.content))


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` of the ``/metrics`` on ``port``."""
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


# --- metrics -----------------------------------------------------------------------------------
def test_gateway_counts_error_answers_by_code_across_its_processes_and_bytes_sent(stack, jobs):
    samples = scrape(stack.ports["gateway"])
    assert value(samples, "siphon_http_errors_total", code="not_found") == NOT_FOUND_REQUESTS
    assert value(samples, "siphon_download_bytes_total") == jobs.mp3_bytes


def test_upload_counts_the_bytes_it_took_in(stack, jobs, media_dir):
    samples = scrape(stack.ports["upload"])
    assert value(samples, "siphon_upload_bytes_total") == jobs.input_bytes + len(UNREADABLE_BYTES)


def test_metadata_reports_jobs_by_state(stack, jobs):
    samples = scrape(stack.ports["metadata"])
    assert value(samples, "siphon_jobs", state="completed") == 1
    assert value(samples, "siphon_jobs", state="failed") == 1
    assert value(samples, "siphon_jobs", state="queued") == 0


def test_the_worker_observes_its_conversions_and_failures_on_its_metrics_port(stack, jobs):
    samples = scrape(stack.metrics_ports["conversion-1"])
    assert value(samples, "siphon_conversion_seconds_count") == 1
    assert value(samples, "siphon_conversion_realtime_factor_count") == 1
    assert value(samples, "siphon_conversion_realtime_factor_sum") > 1, "an 8 s clip converts faster than realtime"
    assert value(samples, "siphon_conversion_output_bytes_total") == jobs.mp3_bytes
    assert value(samples, "siphon_conversion_failures_total", code="not_media") == 1


def test_the_event_consumer_reports_the_queues_depth_on_its_metrics_port(stack, jobs):
    samples = scrape(stack.metrics_ports["metadata-consumer"])
    assert value(samples, "siphon_queue_messages", queue="conversion") == 0
    assert value(samples, "siphon_queue_consumers", queue="conversion") == 1
    assert value(samples, "siphon_queue_messages", queue="dead_letter") == 0


# --- logs --------------------------------------------------------------------------------------
def test_every_log_line_of_every_service_is_json_and_names_the_job_it_mentions(stack, jobs):
    job_ids = (jobs.completed, jobs.failed)
    lines_about = {job_id: set() for job_id in job_ids}
    logs = sorted(stack.log_dir.glob("*.log"))
    assert {"gateway.log", "upload.log", "metadata.log", "metadata-consumer.log", "conversion-1.log"} <= {
        log.name for log in logs
    }
    for log in logs:
        for number, text in enumerate(log.read_text().splitlines(), 1):
            if not text.strip():
                continue
            try:
                entry = json.loads(text)
            except ValueError:
                pytest.fail(f"{log.name}:{number} is not JSON: {text[:300]}")
            assert {"ts", "level", "service", "logger", "msg"} <= set(entry), f"{log.name}:{number}: {text[:300]}"
            for job_id in job_ids:
                if job_id in text:
                    assert entry.get("job_id") == job_id, f"{log.name}:{number} lacks its job_id: {text[:300]}"
                    lines_about[job_id].add(log.stem)
    # The job's lines come from every service it went through: upload, the workers, the event consumer,
    # and the access lines of /status and /download at the gateway and of /jobs/<id> at metadata.
    assert {"gateway", "upload", "metadata", "metadata-consumer", "conversion-1"} <= lines_about[jobs.completed]
