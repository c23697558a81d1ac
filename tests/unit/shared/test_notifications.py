"""The notification fields of ``POST /convert`` (``shared/notifications.py``)."""

from __future__ import annotations

import pytest

from shared.callbacks import CallbackGuard
from shared.notifications import InvalidField, NotificationTargets, targets_from_form
from tests.unit.fakes import FakeResolver

PUBLIC = CallbackGuard(resolve=FakeResolver({"hooks.example.org": ["93.184.215.14"], "example.org": ["93.184.215.14"]}))


def test_absent_or_empty_fields_ask_for_nothing():
    assert targets_from_form({}) == NotificationTargets()
    assert targets_from_form({"email": "", "callback_url": "  "}) == NotificationTargets()


def test_valid_fields_are_kept():
    targets = targets_from_form(
        {"email": "ana.b+mp3@mail.example.org", "callback_url": "https://hooks.example.org/x?a=1"}, PUBLIC
    )
    assert targets == NotificationTargets("ana.b+mp3@mail.example.org", "https://hooks.example.org/x?a=1")


@pytest.mark.parametrize(
    "email",
    [
        "plain",
        "a@b",
        "a@@b.org",
        "a b@c.org",
        "a@b.org\r\nBcc: c@d.org",
        "<a@b.org>",
        "Ana <a@b.org>",
        "x" * 250 + "@b.org",
    ],
)
def test_a_malformed_email_is_refused_naming_the_field(email):
    with pytest.raises(InvalidField) as refused:
        targets_from_form({"email": email})
    assert refused.value.to_dict()["field"] == "email"
    assert (refused.value.status, refused.value.code) == (400, "invalid_field")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "example.org/hook",
        "http://",
        "http:///x",
        "http://example.org:70000/",
        "http://exa mple.org/",
        "https://example.org/\x00",
        "http://e.org/" + "a" * 3000,
    ],
)
def test_a_callback_url_that_is_not_http_to_a_host_is_refused(url):
    with pytest.raises(InvalidField) as refused:
        targets_from_form({"callback_url": url}, PUBLIC)
    assert refused.value.field == "callback_url"


def test_a_callback_to_a_private_address_is_refused_naming_the_field_and_the_reason():
    with pytest.raises(InvalidField) as refused:
        targets_from_form({"callback_url": "http://10.0.0.1/"}, PUBLIC)
    assert (refused.value.field, refused.value.code) == ("callback_url", "invalid_field")
    assert "private (RFC 1918)" in refused.value.message


def test_a_callback_host_that_does_not_resolve_is_refused():
    with pytest.raises(InvalidField) as refused:
        targets_from_form({"callback_url": "https://nowhere.example.net/"}, PUBLIC)
    assert "does not resolve" in refused.value.message
