"""The notification fields of ``POST /convert`` (``shared/notifications.py``)."""

from __future__ import annotations

import pytest

from shared.notifications import InvalidField, NotificationTargets, host_allowed, targets_from_form


def test_absent_or_empty_fields_ask_for_nothing():
    assert targets_from_form({}) == NotificationTargets()
    assert targets_from_form({"email": "", "callback_url": "  "}) == NotificationTargets()


def test_valid_fields_are_kept():
    targets = targets_from_form(
        {"email": "ana.b+mp3@mail.example.org", "callback_url": "https://hooks.example.org/x?a=1"}
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
        targets_from_form({"callback_url": url})
    assert refused.value.field == "callback_url"


def test_callback_hosts_can_be_limited():
    assert host_allowed("http://127.0.0.1:9/x", "127.0.0.1,localhost")
    assert host_allowed("https://a.hooks.example.org/", "*.hooks.example.org")
    assert not host_allowed("https://evil.example.net/", "*.hooks.example.org")
    with pytest.raises(InvalidField):
        targets_from_form({"callback_url": "http://10.0.0.1/"}, allowed_hosts="hooks.example.org")
