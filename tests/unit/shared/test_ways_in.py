"""The shared parts of the other ways in (queue jobs, S3 events, direct uploads): their settings,
their RabbitMQ names, presigned URLs, and tasks that name objects outside ``jobs/``."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from shared.broker import Topology
from shared.config import load_settings
from shared.errors import ConfigError, NotSupported
from shared.messages import ConversionTask
from shared.storage import LocalStorage, S3Storage

JOB_ID = "a" * 32
OTHER_JOB = "b" * 32


def test_defaults_name_the_public_queues_as_the_issue_does_and_prefix_the_rest():
    t = Topology.from_settings(load_settings(amqp_prefix="p"))
    assert (t.jobs_queue, t.progress_queue) == ("transcoding_jobs", "transcoding_progress")
    assert {t.progress_exchange, t.s3_events_exchange, t.s3_events_queue} == {"p.progress", "p.s3-events"}
    custom = Topology.from_settings(
        load_settings(transcoding_jobs_queue="legacy.jobs", transcoding_progress_queue="legacy.progress")
    )
    assert (custom.jobs_queue, custom.progress_queue) == ("legacy.jobs", "legacy.progress")


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"s3_incoming_prefix": "jobs/"}, "S3_INCOMING_PREFIX"),
        ({"s3_incoming_prefix": "j"}, "S3_INCOMING_PREFIX"),
        ({"s3_incoming_prefix": "/incoming/"}, "S3_INCOMING_PREFIX"),
        ({"s3_output_prefix": "incoming/converted/"}, "S3_OUTPUT_PREFIX"),
        ({"s3_incoming_prefix": "media/", "s3_output_prefix": "media/"}, "S3_OUTPUT_PREFIX"),
        ({"presigned_url_expiry_seconds": 0}, "PRESIGNED_URL_EXPIRY_SECONDS"),
        ({"presigned_url_expiry_seconds": 8 * 24 * 3600}, "PRESIGNED_URL_EXPIRY_SECONDS"),
        ({"transcoding_jobs_queue": "has space"}, "TRANSCODING_JOBS_QUEUE"),
    ],
)
def test_prefixes_that_would_loop_or_clash_stop_the_service_naming_the_variable(overrides, variable):
    with pytest.raises(ConfigError, match=f"^{variable}: "):
        load_settings(**overrides)


class RecordingChannel:
    def __init__(self):
        self.declared = {}

    def queue_declare(self, name, durable, arguments=None):
        self.declared[name] = ("queue", durable, arguments)

    def exchange_declare(self, name, kind, durable):
        self.declared[name + " (exchange)"] = (kind, durable)

    def queue_bind(self, queue, exchange, routing_key=None):
        self.declared.setdefault("bindings", []).append((queue, exchange, routing_key))

    def queue_delete(self, name):
        self.declared.setdefault("deleted", []).append(name)


def test_public_queues_are_declared_plain_so_a_producers_own_declaration_matches():
    channel = RecordingChannel()
    Topology(prefix="p").declare_intake(channel)
    assert channel.declared["transcoding_jobs"] == ("queue", True, None)
    assert channel.declared["transcoding_progress"] == ("queue", True, None)
    assert channel.declared["p.s3-events (exchange)"] == ("fanout", True)  # as MINIO_NOTIFY_AMQP_* declares it
    assert ("transcoding_progress", "p.progress", None) in channel.declared["bindings"]
    assert not any(exchange == "p.events" for _, exchange, _ in channel.declared["bindings"]), "metadata's alone"


def test_the_intake_deletes_the_retired_progress_relay_queue_so_no_upgrade_leaves_it_filling_up():
    channel = RecordingChannel()
    Topology(prefix="p").declare_intake(channel)
    assert channel.declared["deleted"] == ["p.progress-relay"]
    assert "p.progress-relay" not in channel.declared


def test_local_storage_cannot_presign_and_says_so_with_a_501(tmp_path):
    with pytest.raises(NotSupported) as refused:
        LocalStorage(tmp_path).presign_put("jobs/x/input", 10, 60)
    assert refused.value.status == 501 and "STORAGE_BACKEND=s3" in refused.value.message


def test_s3_presigned_urls_sign_the_length_and_expire_for_the_public_endpoint():
    storage = S3Storage.from_settings(
        load_settings(
            storage_backend="s3",
            s3_endpoint_url="http://minio:9000",
            s3_public_endpoint_url="https://files.example.com",
            aws_access_key_id="k",
            aws_secret_access_key="s",
            s3_bucket="siphon",
        )
    )
    url = urlsplit(storage.presign_put("jobs/x/input", 1234, 600))
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == ("https", "files.example.com", "/siphon/jobs/x/input")
    assert query["X-Amz-Expires"] == ["600"]
    assert query["X-Amz-SignedHeaders"] == ["content-length;host"]


def test_without_a_public_endpoint_urls_name_the_services_endpoint():
    storage = S3Storage.from_settings(
        load_settings(
            storage_backend="s3",
            s3_endpoint_url="http://127.0.0.1:9000",
            aws_access_key_id="k",
            aws_secret_access_key="s",
        )
    )
    url = storage.presign_put("k", 1, 1)
    assert url.startswith("http://127.0.0.1:9000/siphon/k?") and "X-Amz-SignedHeaders=content-length%3Bhost" in url


@pytest.mark.parametrize(
    ("input_key", "output_key"),
    [
        (f"jobs/{JOB_ID}/input", f"jobs/{JOB_ID}/output.mp3"),
        ("videos/talk.mov", "audio/talk.mp3"),
        ("incoming/a/b.mov", "outputs/a/b.mp3"),
    ],
)
def test_a_task_may_name_its_own_keys_or_keys_outside_jobs(input_key, output_key):
    ConversionTask(job_id=JOB_ID, input_key=input_key, output_key=output_key)


@pytest.mark.parametrize(
    ("input_key", "output_key"),
    [
        (f"jobs/{OTHER_JOB}/input", "audio/talk.mp3"),
        ("videos/talk.mov", f"jobs/{OTHER_JOB}/output.mp3"),
        ("videos/talk.mov", f"jobs/{JOB_ID}/job.json"),
    ],
)
def test_a_task_naming_another_jobs_files_is_still_malformed(input_key, output_key):
    with pytest.raises(ValueError):
        ConversionTask(job_id=JOB_ID, input_key=input_key, output_key=output_key)
