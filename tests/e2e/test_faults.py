"""Faults survived (issue 3, items 1–10): each test injects one fault into a stack running on
loopback and asserts the outcome; then :func:`assert_stack_clean` checks that no job is left
``queued``/``processing``, no object or Redis record is orphaned, and no ffmpeg is left running.

docs/reliability.md tells what each test does and what it proved.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests

from shared.changes import changes_key
from shared.jobs import input_key, new_job_id, output_key
from tests.support.faults import (
    OutageClock,
    TcpProxy,
    amqp_channel,
    assert_stack_clean,
    consumer_count,
    dead_letters,
    descends_from,
    ffmpeg_processes,
    log_lines,
    pid_alive,
    publish_raw_task,
    queue_depth,
    small_filesystem,
    tone,
    wait_for_ffmpeg,
    wait_for_services,
)
from tests.support.net import wait_until
from tests.support.not_media import write_unreadable
from tests.support.stack import AMQP_URL, REDIS_URL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """``tones(seconds)``: a FLAC sine tone of that length (converting 600 s takes ~2.5 s of CPU)."""
    directory = tmp_path_factory.mktemp("tones")
    return lambda seconds: tone(directory, seconds)


@pytest.fixture
def fault_stack(make_stack):
    """``make_stack``, plus :func:`assert_stack_clean` on every stack once the test passed.
    The output cache is off: every upload is converted, even a tone another test sent."""
    stacks = []

    def make(*args, **env):
        stacks.append(make_stack(*args, **{"OUTPUT_CACHE": "false", **env}))
        return stacks[-1]

    yield make
    for stack in stacks:
        assert_stack_clean(stack)


def mp3_objects(stack, job_id: str) -> list[str]:
    """The names of the job's stored outputs (everything but its input and its manifest)."""
    return sorted(
        name
        for key in stack.stored_keys()
        if key.startswith(f"jobs/{job_id}/") and (name := key.rsplit("/", 1)[1]) not in ("input", "job.json")
    )


def submit(stack, path: Path) -> str:
    response = stack.convert(path)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def worker_running(stack, ffmpeg_pid: int) -> str:
    """The name of the worker process whose ffmpeg has pid ``ffmpeg_pid`` (its parent, or with the
    sandbox on an ancestor: bubblewrap stands between them)."""
    return next(name for name, p in stack.processes.items() if descends_from(ffmpeg_pid, p.pid))


def settled_tasks(stack, worker: str) -> list[dict]:
    """A worker's log records of finishing a task (converted, failed, or nothing to do)."""
    return [
        r
        for r in log_lines(stack, worker)
        if r["msg"].startswith(("converted", "job failed", "input gone, output stored"))
    ]


def applied_events(stack, job_id: str, status: str) -> list[dict]:
    """The metadata consumer's log records of ``status`` transitions it applied to the job."""
    return [
        r
        for r in log_lines(stack, "metadata-consumer")
        if r.get("job_id") == job_id and r["msg"].startswith(f"job {status} ")
    ]


# --- 1 ----------------------------------------------------------------------------------------
def test_worker_killed_mid_ffmpeg_is_redelivered(fault_stack, tones):
    stack = fault_stack(workers=2)
    job_id = submit(stack, tones(300))
    ffmpeg = wait_for_ffmpeg(stack)
    victim = worker_running(stack, ffmpeg)

    stack.signal(victim, signal.SIGKILL)
    wait_until(lambda: not pid_alive(ffmpeg), 5, 0.05, "the dead worker's ffmpeg to end")

    final = stack.wait_for_job(job_id, timeout=60)
    assert final["status"] == "completed", final
    record = stack.job_record(job_id)
    assert record["attempts"] == 2
    assert mp3_objects(stack, job_id) == ["output.mp3"]
    assert record["output_duration_seconds"] == pytest.approx(300, abs=1)
    assert stack.processes[victim].wait(5) == -signal.SIGKILL


# --- 2 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["after_output_stored", "before_ack"])
def test_worker_killed_before_ack_redelivery_is_harmless(fault_stack, tones, point):
    stack = fault_stack(workers=0, FAULT_POINT=point)
    dying = stack.start_worker(1, module="tests.support.fault_worker")
    wait_until(lambda: consumer_count(stack, stack.topology.conversion_queue) == 1, 30, 0.1, "the dying worker")
    job_id = submit(stack, tones(20))

    assert dying.wait(30) == -signal.SIGKILL
    first = stack.job_record(job_id)
    stack.start_worker(2)

    final = stack.wait_for_job(job_id, timeout=30)
    assert final["status"] == "completed", final
    wait_until(lambda: settled_tasks(stack, "conversion-2"), 30, 0.1, "the redelivered task to be settled")
    record = stack.job_record(job_id)
    assert mp3_objects(stack, job_id) == ["output.mp3"]
    assert len(applied_events(stack, job_id, "completed")) == 1
    if point == "after_output_stored":
        assert first["status"] == "processing"
        assert record["attempts"] == 2
    else:  # completed before the kill (its input deleted then): the redelivery changed nothing
        assert first["status"] == "completed"
        assert record == first
        assert "nothing to do" in settled_tasks(stack, "conversion-2")[0]["msg"]
    assert queue_depth(stack, stack.topology.dead_letter_queue) == 0
    assert stack.download(job_id).content == stack.download(job_id).content


# --- 3 ----------------------------------------------------------------------------------------
def connection_heartbeats(pid: int) -> set[int]:
    """Negotiated heartbeat timeouts (s) of the AMQP connections process ``pid`` holds."""
    ss = subprocess.run(["ss", "-tnpH", "dport = :5672"], capture_output=True, text=True, check=True).stdout
    ports = {line.split()[3].rsplit(":", 1)[1] for line in ss.splitlines() if f"pid={pid}," in line}
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "peer_port", "timeout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {int(timeout) for port, timeout in (line.split() for line in listing.splitlines()) if port in ports}


def test_conversion_longer_than_three_heartbeats_keeps_its_connection(fault_stack, tones):
    stack = fault_stack(workers=1, AMQP_HEARTBEAT_SECONDS="1")
    job_id = submit(stack, tones(1200))
    wait_for_ffmpeg(stack)
    assert connection_heartbeats(stack.processes["conversion-1"].pid) == {1}

    final = stack.wait_for_job(job_id, timeout=90)
    assert final["status"] == "completed", final
    record = stack.job_record(job_id)
    assert record["attempts"] == 1
    assert record["finished_at"] - record["started_at"] > 3
    worker_log = log_lines(stack, "conversion-1")
    assert [r["msg"] for r in worker_log if "lost RabbitMQ" in r["msg"]] == []
    assert sum(r["msg"].endswith("consuming") for r in worker_log) == 1


# --- 4 ----------------------------------------------------------------------------------------
def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


def reconnect_delays(stack, service: str) -> list[float]:
    """The backoff delays (s) a service logged while it could not reach RabbitMQ."""
    return [
        float(r["msg"].rsplit("reconnecting in ", 1)[1].split()[0])
        for r in log_lines(stack, service)
        if "reconnecting in" in r["msg"]
    ]


@pytest.mark.broker_restart
def test_broker_restart_loses_no_task_and_every_service_reconnects(fault_stack, tones):
    stack = fault_stack(workers=1)
    pids = {name: process.pid for name, process in stack.processes.items()}
    in_flight = submit(stack, tones(1200))
    wait_for_ffmpeg(stack)
    queued = [submit(stack, tones(30)) for _ in range(3)]

    broker = urlsplit(AMQP_URL)
    with OutageClock(broker.hostname, broker.port or 5672) as outage:
        rabbitmqctl("stop_app")
        rabbitmqctl("start_app")

    finals = stack.wait_for_jobs([in_flight, *queued], timeout=120)
    assert {job_id: body["status"] for job_id, body in finals.items()} == dict.fromkeys(finals, "completed")
    assert stack.job_record(in_flight)["attempts"] == 2  # its worker lost the channel mid-conversion
    later = submit(stack, tones(5))  # the upload service's publisher reconnects on its next publish
    assert stack.wait_for_job(later, timeout=60)["status"] == "completed"
    assert {name: process.pid for name, process in stack.processes.items() if process.poll() is None} == pids
    for service in ("conversion-1", "metadata-consumer"):
        delays = reconnect_delays(stack, service)  # doubling from 0.5 s, back to 0.5 s once connected
        steps = zip(delays, delays[1:], strict=False)
        assert delays[0] == 0.5 and all(b in (0.5, min(2 * a, 15)) for a, b in steps), (service, delays)
        assert sum(r["msg"].endswith("consuming") for r in log_lines(stack, service)) >= 2
    assert 0 < outage.seconds < 10, f"RabbitMQ was down {outage.seconds:.1f} s"


# --- 5 ----------------------------------------------------------------------------------------
def proxied_amqp_url(port: int) -> str:
    parts = urlsplit(AMQP_URL)
    return urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{port}"))


def test_broker_down_while_posting_answers_503_and_leaves_nothing(fault_stack, tones):
    broker = urlsplit(AMQP_URL)
    with TcpProxy(broker.hostname, broker.port or 5672) as proxy:
        stack = fault_stack(workers=1, AMQP_URL=proxied_amqp_url(proxy.port))
        before = submit(stack, tones(5))  # the upload service now holds a publisher connection
        assert stack.wait_for_job(before, timeout=30)["status"] == "completed"
        kept = stack.stored_keys(), stack.redis_keys()

        proxy.cut()
        response = stack.convert(tones(5))
        assert response.status_code == 503
        assert response.headers["Content-Type"] == "application/json"
        assert response.json()["error"]["code"] == "broker_unavailable"
        assert (stack.stored_keys(), stack.redis_keys()) == kept

        proxy.restore()
        after = submit(stack, tones(5))
        assert stack.wait_for_job(after, timeout=60)["status"] == "completed"


# --- 6 ----------------------------------------------------------------------------------------
def forget_redis(stack) -> None:
    """Delete every Redis key of the stack (the shared Redis holds other runs' keys too)."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = stack.redis_keys()
    if keys:
        client.delete(*keys)


def test_redis_data_lost_every_job_is_still_answered(fault_stack, tones, tmp_path):
    stack = fault_stack(workers=1)
    not_media = write_unreadable(tmp_path / "notes.mp4")  # fails in the worker (text is refused at upload)
    completed, failed = submit(stack, tones(5)), submit(stack, not_media)
    stack.wait_for_jobs([completed, failed], timeout=30)
    answers = {job_id: stack.status(job_id).json() for job_id in (completed, failed)}
    mp3 = stack.download(completed).content
    in_flight = submit(stack, tones(600))
    wait_for_ffmpeg(stack)

    forget_redis(stack)
    assert stack.redis_keys() == []

    assert {job_id: stack.status(job_id).json() for job_id in (completed, failed)} == answers
    assert answers[failed]["error"]["code"] == "not_media"
    assert stack.download(completed).content == mp3
    assert stack.status(in_flight).json()["status"] == "processing"
    assert stack.wait_for_job(in_flight, timeout=60)["status"] == "completed"
    assert stack.job_record(in_flight)["attempts"] == 1


# --- 7 ----------------------------------------------------------------------------------------
def retry_job(stack, job_id: str) -> requests.Response:
    """The public ``POST /jobs/<id>/retry`` (the gateway passes it to the upload service)."""
    return requests.post(f"{stack.url}/jobs/{job_id}/retry", timeout=30)


def storage_backoff(stack, service: str) -> list[float]:
    """The waits (s) between storage tries a worker logged (tenacity's before_sleep)."""
    return [
        float(r["msg"].split(" in ", 1)[1].split()[0])
        for r in log_lines(stack, service)
        if r["msg"].startswith("Retrying ") and "StorageUnavailable" in r["msg"]
    ]


def test_storage_unreachable_503_at_upload_then_job_fails_and_can_be_retried(fault_stack, tones, moto_endpoint):
    moto = urlsplit(moto_endpoint)
    with TcpProxy(moto.hostname, moto.port) as proxy:
        stack = fault_stack("s3", workers=0, S3_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}", STORAGE_RETRIES="3")

        proxy.cut()
        response = stack.convert(tones(5))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "storage_unavailable"
        proxy.restore()
        # The change feed's stream exists from the start: the queue intake's consumer group made it.
        assert stack.stored_keys() == [] and stack.redis_keys() in ([], [changes_key(stack.redis_prefix)])

        job_id = submit(stack, tones(5))
        proxy.cut()
        stack.start_worker(1)
        wait_until(
            lambda: [r for r in log_lines(stack, "conversion-1") if "storage unavailable after" in r["msg"]],
            60,
            0.1,
            "the worker to give up on storage",
        )
        assert storage_backoff(stack, "conversion-1") == [0.5, 1.0]
        assert stack.status(job_id).json()["status"] == "queued"  # nothing is recorded without its manifest
        proxy.restore()

        failed = stack.wait_for_job(job_id, timeout=30)
        assert failed["status"] == "failed" and failed["error"]["code"] == "storage_unavailable", failed
        assert retry_job(stack, job_id).status_code == 202
        assert stack.wait_for_job(job_id, timeout=30)["status"] == "completed"
        record = stack.job_record(job_id)
        assert (record["retries"], record["attempts"], record["error"]) == (1, 1, None)
        assert retry_job(stack, job_id).json()["error"]["code"] == "job_not_retryable"


# --- 8 ----------------------------------------------------------------------------------------
def encoding_workers(stack) -> set[str]:
    """Names of the workers whose ffmpeg is encoding right now."""
    names = set()
    for pid in ffmpeg_processes(stack):
        with contextlib.suppress(OSError, StopIteration):
            if b"libmp3lame" in Path(f"/proc/{pid}/cmdline").read_bytes():
                names.add(worker_running(stack, pid))
    return names


def exit_times(stack, timeout: float) -> dict[str, float]:
    """Seconds each stack process took to exit from now (``inf`` if it outlived ``timeout``)."""
    started, times = time.monotonic(), {}
    while len(times) < len(stack.processes) and time.monotonic() - started < timeout:
        for name, process in stack.processes.items():
            if name not in times and process.poll() is not None:
                times[name] = time.monotonic() - started
        time.sleep(0.05)
    return {name: times.get(name, float("inf")) for name in stack.processes}


def slow_upload(stack, path: Path, seconds: float, answer: dict) -> threading.Thread:
    """POST ``path`` to /convert in a thread, its body trickling in over ``seconds``; the response
    lands in ``answer["response"]``."""
    boundary = "siphon-slow-upload"
    data = path.read_bytes()

    def body():
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="slow.flac"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for i in range(20):
            yield data[i * len(data) // 20 : (i + 1) * len(data) // 20]
            time.sleep(seconds / 20)
        yield f"\r\n--{boundary}--\r\n".encode()

    def post():
        answer["response"] = requests.post(
            f"{stack.url}/convert",
            data=body(),
            timeout=60,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    thread = threading.Thread(target=post, name="slow-upload")
    thread.start()
    return thread


def test_sigterm_to_every_service_finishes_or_requeues_and_loses_nothing(fault_stack, tones):
    grace = 5
    stack = fault_stack(workers=2, SHUTDOWN_GRACE_SECONDS=str(grace))
    long_job = submit(stack, tones(600))
    long_ffmpeg = wait_for_ffmpeg(stack)
    os.kill(long_ffmpeg, signal.SIGSTOP)  # however fast this machine is, it outlives the grace period
    short_job = submit(stack, tones(120))  # ~0.5 s of CPU: finishes within it
    wait_until(lambda: len(encoding_workers(stack)) == 2, 30, 0.02, "both workers to encode")
    upload = {}
    uploading = slow_upload(stack, tones(5), 2, upload)
    time.sleep(0.5)

    for name in stack.processes:
        stack.signal(name, signal.SIGTERM)
    exits = exit_times(stack, grace + 30)
    uploading.join(30)

    assert max(exits.values()) < grace + 10, exits
    assert ffmpeg_processes(stack) == []
    # The request in flight was answered, not cut: accepted, or refused cleanly because the
    # metadata service it needed had stopped taking requests (nothing is left of it then).
    assert upload["response"].headers["Content-Type"] == "application/json"
    assert upload["response"].status_code in (202, 503), upload["response"].text
    for name in list(stack.processes):
        stack.restart(name)
    wait_for_services(stack)
    jobs = [long_job, short_job] + ([upload["response"].json()["job_id"]] if upload["response"].ok else [])
    finals = stack.wait_for_jobs(jobs, timeout=90)
    assert {body["status"] for body in finals.values()} == {"completed"}, finals
    assert stack.job_record(long_job)["attempts"] == 2  # aborted at the end of the grace period, requeued
    assert stack.job_record(short_job)["attempts"] == 1  # finished and acked during the grace period


# --- 9 ----------------------------------------------------------------------------------------
SMALL_WORK_DIR_BYTES = 2 * 1024 * 1024
"""The full disk: 2 MiB holds a 125 s tone (1.7 MB of FLAC) but not its MP3 beside it."""


@pytest.fixture
def small_work_dir(tmp_path):
    """A 2 MiB tmpfs for WORK_DIR, mounted before the stack starts and removed after it stopped."""
    try:
        with small_filesystem(tmp_path / "small-work", SMALL_WORK_DIR_BYTES) as path:
            yield path
    except PermissionError as exc:
        pytest.skip(f"no way to make a small filesystem here: {exc}")


def test_work_dir_full_fails_the_job_with_disk_full_and_the_worker_goes_on(small_work_dir, fault_stack, tones):
    # On S3 the worker downloads the input into WORK_DIR (the local backend's file is read in place).
    stack = fault_stack("s3", workers=1, WORK_DIR=str(small_work_dir))
    worker = stack.processes["conversion-1"].pid
    input_too_big = submit(stack, tones(300))  # 4 MB of FLAC: the download fills the disk
    output_too_big = submit(stack, tones(125))  # 1.7 MB fits; ffmpeg fills the disk writing 0.75 MB of MP3
    fine = submit(stack, tones(5))

    finals = stack.wait_for_jobs([input_too_big, output_too_big, fine], timeout=60)
    for job_id in (input_too_big, output_too_big):
        assert finals[job_id]["status"] == "failed", finals[job_id]
        assert finals[job_id]["error"]["code"] == "disk_full", finals[job_id]
    assert finals[fine]["status"] == "completed", finals[fine]
    assert list(small_work_dir.iterdir()) == []
    assert shutil.disk_usage(small_work_dir).used == 0
    assert stack.processes["conversion-1"].pid == worker and stack.processes["conversion-1"].poll() is None


# --- 10 ---------------------------------------------------------------------------------------
MAX_ATTEMPTS = 3
"""The default MAX_ATTEMPTS: deliveries of a task before the worker dead-letters it."""

CRASHING_FFMPEG = "#!/bin/sh\n# crashes like an ffmpeg that segfaults on its input, every time\nkill -SEGV $$\n"


def test_poison_messages_are_dead_lettered_with_their_reason_and_nothing_loops(fault_stack, tones, tmp_path):
    ffmpeg = tmp_path / "ffmpeg"
    ffmpeg.write_text(CRASHING_FFMPEG)
    ffmpeg.chmod(0o755)
    stack = fault_stack(workers=0, FFMPEG_PATH=str(ffmpeg))
    misnamed = submit(stack, tones(5))
    with amqp_channel() as channel:  # its own task goes; a malformed one naming it comes instead
        channel.queue_purge(stack.topology.conversion_queue)
    crashing = submit(stack, tones(5))
    stranger = new_job_id()
    poison = {
        b"\x00\xff not JSON {": "invalid_task",
        json.dumps({"job_id": "../../etc", "input_key": 5}).encode(): "invalid_task",
        json.dumps(
            {"job_id": misnamed, "input_key": f"jobs/{crashing}/input", "output_key": f"jobs/{crashing}/job.json"}
        ).encode(): "invalid_task",
        json.dumps(
            {"job_id": stranger, "input_key": input_key(stranger), "output_key": output_key(stranger)}
        ).encode(): "input_missing",
    }
    for body in poison:
        publish_raw_task(stack, body)
    stack.start_worker(1)

    finals = stack.wait_for_jobs([misnamed, crashing], timeout=60)
    assert finals[misnamed]["status"] == "failed" and finals[misnamed]["error"]["code"] == "invalid_task"
    assert finals[crashing]["status"] == "failed" and finals[crashing]["error"]["code"] == "decode_failed"
    assert stack.job_record(crashing)["attempts"] == MAX_ATTEMPTS
    wait_until(
        lambda: queue_depth(stack, stack.topology.dead_letter_queue) == len(poison) + 1,
        30,
        0.1,
        "every poison message in the dead-letter queue",
    )
    handled = len(task_logs(stack))
    time.sleep(1)  # nothing comes back for another try
    assert len(task_logs(stack)) == handled
    parked = dead_letters(stack)
    assert sorted(headers["x-siphon-code"] for _, headers in parked) == sorted([*poison.values(), "decode_failed"])
    assert all(headers["x-siphon-reason"] for _, headers in parked)
    assert {body for body, _ in parked} >= set(poison)
    assert stack.status(stranger).status_code == 404  # the unknown job stays unknown


def task_logs(stack) -> list[dict]:
    """The worker's records of settling a task: failures, conversions, dead-lettering, requeueing."""
    return [
        r
        for r in log_lines(stack, "conversion-1")
        if r["msg"].startswith(("job failed", "converted", "dead-lettering", "conversion interrupted"))
    ]
