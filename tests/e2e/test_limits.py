"""Per-caller limits over HTTP against a real stack (issue #14 item 5; docs/security.md#limits-per-caller).

One stack (no conversion workers, so jobs stay queued) with small limits, two gateways and the
shipped nginx in front of them. ``TRUSTED_PROXIES`` is 127.0.0.1, nginx's address towards the
gateways: a test that connects from 127.0.0.1 names its caller in X-Forwarded-For, so each test
counts against an address of its own; clients that must be untrusted connect from 127.0.0.2 and up
(all of 127/8 is this machine).

Every refusal is checked to be a 429 with its headers that leaves nothing behind: no object, no job
record, no task on the queue (only the refused caller's counters change).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator

import pytest
import requests
from requests_toolbelt.adapters.source import SourceAddressAdapter

from tests.e2e.test_nginx import MAIN_CONFIG, NGINX, SHIPPED_CONFIG, accepts, site_config
from tests.support.keys import KeyFile
from tests.support.net import free_port, wait_until
from tests.support.queues import channel
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

SUBMISSIONS_PER_MINUTE = 4
UNFINISHED_JOBS = 2
UPLOAD_BYTES_PER_DAY = 50_000
EMAILS_PER_HOUR = 1
NGINX_ADDRESS = "127.0.0.1"


@pytest.fixture(scope="module")
def stack(module_stack) -> Stack:
    stack = module_stack(
        "local",
        workers=0,
        QUOTA_SUBMISSIONS_PER_MINUTE=str(SUBMISSIONS_PER_MINUTE),
        QUOTA_UNFINISHED_JOBS=str(UNFINISHED_JOBS),
        QUOTA_UPLOAD_BYTES_PER_DAY=str(UPLOAD_BYTES_PER_DAY),
        QUOTA_EMAILS_PER_HOUR=str(EMAILS_PER_HOUR),
        TRUSTED_PROXIES=NGINX_ADDRESS,
    )
    stack.start_gateway("gateway-2")
    return stack


@pytest.fixture(scope="module")
def nginx(stack, tmp_path_factory) -> Iterator[str]:
    """The shipped nginx config on loopback in front of both gateways; yields its base URL."""
    tmp = tmp_path_factory.mktemp("nginx")
    port = free_port()
    gateways = [stack.ports["gateway"], stack.ports["gateway-2"]]
    (tmp / "siphon.conf").write_text(site_config(SHIPPED_CONFIG.read_text(), gateways, port))
    (tmp / "nginx.conf").write_text(MAIN_CONFIG.format(tmp=tmp))
    argv = [NGINX, "-p", str(tmp), "-e", str(tmp / "error.log"), "-c", str(tmp / "nginx.conf")]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: accepts(port) or process.poll() is not None, 10, 0.05, "nginx to listen")
        assert process.poll() is None, (tmp / "error.log").read_text()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(10)


# --- helpers -----------------------------------------------------------------------------------
def client_from(source: str) -> requests.Session:
    """A client whose connections come from the loopback address ``source``."""
    session = requests.Session()
    session.mount("http://", SourceAddressAdapter(source))
    return session


def convert(url: str, caller: str, size: int = 1000, client=requests, **fields) -> requests.Response:
    """POST a ``size``-byte file to ``url``/convert, naming ``caller`` in X-Forwarded-For."""
    files = {"file": ("clip.mp4", b"\0" * size)}
    return client.post(f"{url}/convert", files=files, data=fields, headers={"X-Forwarded-For": caller}, timeout=30)


def begin_upload(url: str, caller: str, client=requests) -> requests.Response:
    """``POST /uploads`` (501 on local storage, but counted as a submission first)."""
    return client.post(f"{url}/uploads", json={"size": 10}, headers={"X-Forwarded-For": caller}, timeout=30)


def accepted(response: requests.Response) -> str:
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def held(stack: Stack) -> tuple[list[str], list[str], int]:
    """What submissions leave: stored objects, Redis keys (but the rate limit counters), queued tasks."""
    with channel() as ch:
        tasks = ch.queue_declare(stack.topology.conversion_queue, passive=True).method.message_count
    counters = f"{stack.redis_prefix}ratelimit:"
    return stack.stored_keys(), [key for key in stack.redis_keys() if not key.startswith(counters)], tasks


def assert_rate_limited(response: requests.Response, limit: int, remaining: int = 0) -> int:
    """A 429 ``rate_limited`` with its headers; returns ``RateLimit-Reset`` (seconds)."""
    assert response.status_code == 429, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == str(remaining)
    reset = int(response.headers["RateLimit-Reset"])
    assert reset > 0 and response.headers["Retry-After"] == str(reset)
    return reset


# --- each limit --------------------------------------------------------------------------------
def test_a_submission_over_the_per_minute_limit_is_429_and_keeps_nothing(stack):
    caller = "203.0.113.1"
    accepted(convert(stack.url, caller))
    accepted(convert(stack.url, caller))
    assert begin_upload(stack.url, caller).status_code == 501  # counted all the same
    assert begin_upload(stack.url, caller).status_code == 501
    before = held(stack)
    assert assert_rate_limited(convert(stack.url, caller), SUBMISSIONS_PER_MINUTE) <= 60
    assert_rate_limited(begin_upload(stack.url, caller), SUBMISSIONS_PER_MINUTE)
    assert held(stack) == before
    accepted(convert(stack.url, "203.0.113.2"))  # another caller is not limited


def test_a_submission_over_the_unfinished_jobs_limit_is_429_until_one_ends(stack):
    caller = "203.0.113.11"
    first = accepted(convert(stack.url, caller))
    accepted(convert(stack.url, caller))
    before = held(stack)
    refused = convert(stack.url, caller)
    assert assert_rate_limited(refused, UNFINISHED_JOBS) == 30
    assert held(stack) == before
    assert stack.cancel(first).status_code == 200
    accepted(convert(stack.url, caller))


def test_an_upload_over_the_bytes_per_day_limit_is_429_and_keeps_nothing(stack):
    caller = "203.0.113.21"
    first = convert(stack.url, caller, size=30_000)
    accepted(first)
    used = int(first.request.headers["Content-Length"])
    before = held(stack)
    assert_rate_limited(convert(stack.url, caller, size=30_000), UPLOAD_BYTES_PER_DAY, UPLOAD_BYTES_PER_DAY - used)
    assert held(stack) == before


def test_an_upload_without_content_length_is_411_while_bytes_are_limited(stack):
    body = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.mp4"\r\n\r\nabc\r\n--x--\r\n'
    before = held(stack)
    response = requests.post(
        f"{stack.url}/convert",
        data=iter([body]),  # a generator: chunked, no Content-Length
        headers={"Content-Type": "multipart/form-data; boundary=x", "X-Forwarded-For": "203.0.113.31"},
        timeout=30,
    )
    assert response.status_code == 411 and response.json()["error"]["code"] == "length_required"
    assert held(stack) == before


def test_a_submission_with_an_email_over_the_hourly_limit_is_429_and_its_file_is_not_kept(stack):
    caller = "203.0.113.41"
    accepted(convert(stack.url, caller, email="first@example.com"))
    before = held(stack)
    refused = convert(stack.url, caller, email="second@example.com")  # refused by the upload service
    assert_rate_limited(refused, EMAILS_PER_HOUR)
    assert held(stack) == before
    accepted(convert(stack.url, caller))  # without an email it is taken


# --- who the caller is ------------------------------------------------------------------------
def test_x_forwarded_for_from_an_untrusted_peer_is_ignored(stack):
    client = client_from("127.0.0.2")
    job_id = accepted(convert(stack.url, "198.51.100.7", client=client))
    assert stack.job_record(job_id)["quota_subject"] == "addr:127.0.0.2"
    trusted = accepted(convert(stack.url, "198.51.100.8"))
    assert stack.job_record(trusted)["quota_subject"] == "addr:198.51.100.8"


def test_a_client_cannot_dodge_the_limit_with_x_forwarded_for(stack):
    client = client_from("127.0.0.3")
    for i in range(SUBMISSIONS_PER_MINUTE):
        assert begin_upload(stack.url, f"198.51.100.{20 + i}", client=client).status_code == 501
    assert_rate_limited(begin_upload(stack.url, "198.51.100.99", client=client), SUBMISSIONS_PER_MINUTE)


def test_the_counters_hold_across_gateway_replicas(stack):
    caller = "203.0.113.51"
    gateways = [stack.url, f"http://127.0.0.1:{stack.ports['gateway-2']}"]
    for i in range(SUBMISSIONS_PER_MINUTE):
        assert begin_upload(gateways[i % 2], caller).status_code == 501
    for gateway in gateways:
        assert_rate_limited(begin_upload(gateway, caller), SUBMISSIONS_PER_MINUTE)


def test_through_nginx_the_client_is_the_address_nginx_saw(stack, nginx):
    client = client_from("127.0.0.4")
    job_id = accepted(convert(nginx, "198.51.100.66", client=client))  # the client's own XFF is kept on the left
    assert stack.job_record(job_id)["quota_subject"] == "addr:127.0.0.4"


def test_through_nginx_the_counters_hold_for_one_client_whichever_gateway_answers(stack, nginx):
    client = client_from("127.0.0.5")
    for _ in range(SUBMISSIONS_PER_MINUTE):  # nginx takes turns between the two gateways
        assert begin_upload(nginx, "198.51.100.1", client=client).status_code == 501
    assert_rate_limited(begin_upload(nginx, "198.51.100.2", client=client), SUBMISSIONS_PER_MINUTE)


# --- with API keys --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> KeyFile:
    key_file = KeyFile(tmp_path_factory.mktemp("keys") / "api_keys")
    key_file.add("alice")
    key_file.add("bob")
    return key_file


@pytest.fixture(scope="module")
def keyed_stack(module_stack, keys) -> Stack:
    return module_stack(
        "local",
        workers=0,
        API_KEYS_FILE=str(keys.path),
        DOWNLOAD_LINK_SECRET="test-download-link-secret-0123456789",
        QUOTA_SUBMISSIONS_PER_MINUTE="3",
        TRUSTED_PROXIES=NGINX_ADDRESS,
    )


def test_with_keys_the_limit_is_the_keys_wherever_its_requests_come_from(keyed_stack, keys):
    url = keyed_stack.url
    files = {"file": ("clip.mp4", b"\0" * 100)}
    job = requests.post(f"{url}/convert", files=files, headers=keys.auth("alice"), timeout=30)
    assert keyed_stack.job_record(accepted(job))["quota_subject"] == "key:alice"
    answers = [
        requests.post(
            f"{url}/uploads", json={"size": 10}, headers={**keys.auth("alice"), "X-Forwarded-For": ip}, timeout=30
        )
        for ip in ("198.51.100.1", "198.51.100.2")
    ]
    assert [answer.status_code for answer in answers] == [501, 501]
    other_address = client_from("127.0.0.6")
    refused = other_address.post(f"{url}/uploads", json={"size": 10}, headers=keys.auth("alice"), timeout=30)
    assert_rate_limited(refused, 3)
    bobs = other_address.post(f"{url}/uploads", json={"size": 10}, headers=keys.auth("bob"), timeout=30)
    assert bobs.status_code == 501
