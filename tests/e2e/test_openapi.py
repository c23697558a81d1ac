"""The OpenAPI document against the live gateway: schemathesis generates requests from it (valid
and invalid ones), and the gateway never answers 5xx and always answers as the document says."""

from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, not_a_server_error, positive_data_acceptance

from services.gateway.pages import OPENAPI_PATH, load_openapi, with_offered_formats
from shared.options import VIDEO_CODECS, InvalidOption, options_from_form
from shared.sniff import not_media_kind

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 25

NOT_FAULTS_ON_LOCAL_STORAGE = {"/uploads": [not_a_server_error]}
"""This stack stores locally, where POST /uploads answers its documented 501 (presigned URLs need S3)."""


@pytest.fixture(scope="module")
def gateway(module_stack):
    # Generated callback URLs are moved to this host (on_loopback), listed so that it may be called.
    return module_stack(workers=1, CALLBACK_ALLOWED_HOSTS="127.0.0.1")


# Loaded from the file the gateway serves (checked below): schemathesis' lazy loader
# (``schemathesis.pytest.from_fixture``) does not work with pytest 9. GET /events never ends by
# design (a live stream), so it is left to tests/e2e/test_live_updates.py.
schema = schemathesis.openapi.from_path(OPENAPI_PATH).exclude(path="/events")


def test_gateway_serves_the_document_with_the_codecs_it_offers(gateway):
    served = requests.get(f"{gateway.url}/openapi.json", timeout=10).json()
    offered = tuple(served["components"]["schemas"]["ConversionOptions"]["properties"]["video_codec"].get("enum", ()))
    assert set(offered) <= set(VIDEO_CODECS)
    assert served == with_offered_formats(load_openapi(), offered)


@schema.parametrize()
# derandomize: the same examples on every run, so CI does not flake on a newly drawn input.
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_gateway_answers_as_documented(case, gateway):
    excluded = list(NOT_FAULTS_ON_LOCAL_STORAGE.get(case.path, []))
    if breaks_a_cross_field_option_rule(case) or sends_a_file_that_is_not_media(case):
        excluded.append(positive_data_acceptance)
    if case.path == "/convert" and isinstance(case.body, dict) and isinstance(case.body.get("callback_url"), str):
        case.body["callback_url"] = on_loopback(case.body["callback_url"])
    if case.media_type == "multipart/form-data":
        # A form field is text: a "boolean" album arrives as the title "true", a "string" normalize as
        # "-16". Types cannot be violated in multipart, so its negative cases prove nothing; the form's
        # values are checked by shared.options, tested in tests/e2e/test_options.py.
        excluded.append(negative_data_rejection)
    case.call_and_validate(base_url=gateway.url, excluded_checks=excluded)


def on_loopback(url: str) -> str:
    """``url`` with its host replaced by 127.0.0.1 (port, path and query kept). The upload service
    resolves a callback's host, and a generated name would be a DNS query off this machine; whether
    a host may be called is no part of the document (tests/e2e/test_notifications.py tests it)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return url  # malformed: refused as such, before any lookup
    return urlunsplit(parts._replace(netloc=f"127.0.0.1{port}")) if parts.hostname else url


def sends_a_file_that_is_not_media(case) -> bool:
    """Whether a multipart ``POST /convert`` carries a ``file`` that is empty or whose first bytes
    show it is not media (schemathesis draws PNGs and text for a binary part): its 400
    ``empty_file`` or 415 ``not_media`` is then right, as the document says, not a refusal of valid
    data. JSON Schema cannot say "a video"."""
    if case.path != "/convert" or not isinstance(case.body, dict) or "file" not in case.body:
        return False
    data = case.body["file"]
    data = data.encode() if isinstance(data, str) else data
    return isinstance(data, bytes) and (not data or not_media_kind(data) is not None)


def breaks_a_cross_field_option_rule(case) -> bool:
    """Whether a multipart ``POST /convert`` carries options that only rules across fields refuse
    (``end`` after ``start``, ``bitrate`` or ``quality`` but not both, the sample rates of each
    format), which JSON Schema cannot state: its 400 ``invalid_option`` is then right, not a refusal
    of valid data."""
    if case.path != "/convert" or not isinstance(case.body, dict) or "file" not in case.body:
        return False
    try:
        options_from_form({name: str(value) for name, value in case.body.items() if name != "file"}, VIDEO_CODECS)
    except InvalidOption:
        return True
    return False
