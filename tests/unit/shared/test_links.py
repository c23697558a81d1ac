"""Signed download links (shared/links.py)."""

from __future__ import annotations

from urllib.parse import parse_qs

import pytest

from shared.errors import LinkRefused, SiphonError
from shared.jobs import Job
from shared.links import LinkQuery, LinkSigner

JOB_ID = "0123456789abcdef0123456789abcdef"
SECRET = "a-secret-of-some-length"


def signed(signer: LinkSigner, job: Job) -> LinkQuery:
    query = parse_qs(signer.query(job))
    return LinkQuery(query["expires"][0], query["signature"][0])


@pytest.fixture
def job() -> Job:
    return Job.new(JOB_ID, "clip.mp4", 10).model_copy(update={"finished_at": 1000.0})


def test_a_link_expires_with_the_output(job):
    signer = LinkSigner(SECRET, 3600, clock=lambda: 2000.0)
    link = signed(signer, job)
    assert link.expires == "4600"
    signer.check(JOB_ID, "mp3", link)


def test_a_link_past_its_expiry_is_gone(job):
    link = signed(LinkSigner(SECRET, 3600), job)
    with pytest.raises(SiphonError) as caught:
        LinkSigner(SECRET, 3600, clock=lambda: 4601.0).check(JOB_ID, "mp3", link)
    assert (caught.value.status, caught.value.code) == (410, "job_expired")


@pytest.mark.parametrize(
    ("job_id", "extension", "expires", "secret"),
    [
        ("f" * 32, "mp3", None, SECRET),
        (JOB_ID, "m4a", None, SECRET),
        (JOB_ID, "mp3", "4601", SECRET),
        (JOB_ID, "mp3", "46oo", SECRET),
        (JOB_ID, "mp3", None, "a-rotated-secret-of-some-length"),
    ],
)
def test_a_changed_link_is_forbidden(job, job_id, extension, expires, secret):
    link = signed(LinkSigner(SECRET, 3600), job)
    link = LinkQuery(expires or link.expires, link.signature)
    with pytest.raises(LinkRefused):
        LinkSigner(secret, 3600, clock=lambda: 2000.0).check(job_id, extension, link)


def test_a_garbage_signature_is_forbidden(job):
    with pytest.raises(LinkRefused):
        LinkSigner(SECRET, 3600).check(JOB_ID, "mp3", LinkQuery("4600", "é" * 10))
