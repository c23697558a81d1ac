"""The web page as a person uses it, in headless Chromium (Debian's ``chromium`` driven by Playwright):
pick or drop videos, watch each upload and job, download the MP3; a file that is no video is
refused with a message a person can read.

``SIPHON_UPDATE_SCREENSHOT=1`` also writes the page's screenshot to docs/web-page.png.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.support.media import (
    DURATION_TOLERANCE_FLOOR_SECONDS,
    DURATION_TOLERANCE_RATIO,
    probe_audio,
    reference_mp3_seconds,
)
from tests.support.stack import ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "docs" / "web-page.png"
VIDEO = "ordinary_h264_aac_stereo_48k_8s.mp4"
OTHER_VIDEO = "mov_h264_aac_mono_44k.mov"
JOB_TIMEOUT_MS = 60_000
NOT_MEDIA_MESSAGE = "The file is not a video or audio file. It looks like text."
"""What POST /convert answers (415 not_media) for a text file, before any job exists."""


@pytest.fixture(scope="module")
def stack(module_stack):
    return module_stack()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: Debian's chromium package (scripts/lib.sh installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(accept_downloads=True, viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.goto(stack.url)
    yield page
    context.close()


def drop_file(page, name: str, text: str) -> None:
    """Drop a file made in the page onto the drop zone, as dragging it from the desktop does."""
    transfer = page.evaluate_handle(
        "([name, text]) => { const t = new DataTransfer();"
        " t.items.add(new File([text], name, {type: 'text/plain'})); return t; }",
        [name, text],
    )
    page.dispatch_event("#drop-zone", "drop", {"dataTransfer": transfer})


def test_a_picked_video_converts_and_its_mp3_downloads(page, media_dir, tmp_path):
    page.set_input_files("#file-input", str(media_dir / VIDEO))
    card = page.locator(".job")
    expect(card).to_have_count(1)
    expect(card).to_have_attribute("data-state", "completed", timeout=JOB_TIMEOUT_MS)
    expect(card).to_have_attribute("data-upload-percent", "100")
    expect(card.locator(".message")).to_have_text("Conversion completed.")
    expect(card.locator(".state-badge")).to_have_text("Done")

    with page.expect_download() as started:
        card.locator(".download").click()
    download = started.value
    assert download.suggested_filename == f"{Path(VIDEO).stem}.mp3"
    mp3 = tmp_path / download.suggested_filename
    download.save_as(mp3)
    facts = probe_audio(mp3)
    assert facts is not None and facts.codec == "mp3" and facts.frames > 0
    expected = reference_mp3_seconds(media_dir / VIDEO, tmp_path)
    assert abs(facts.duration_seconds - expected) <= max(
        expected * DURATION_TOLERANCE_RATIO, DURATION_TOLERANCE_FLOOR_SECONDS
    )


def test_a_dropped_text_file_is_refused_with_a_clear_message(page):
    drop_file(page, "notes.txt", "Shopping list: milk, eggs, a video converter.")
    card = page.locator(".job")
    expect(card).to_have_attribute("data-state", "refused", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".message")).to_have_text(NOT_MEDIA_MESSAGE)
    expect(card.locator(".state-badge")).to_have_text("Refused")
    expect(card.locator(".download")).to_be_hidden()
    card.locator("summary").click()
    expect(card.locator(".error-code")).to_have_text("not_media")


def test_an_empty_file_is_refused_by_the_server_before_any_job(page, tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    page.set_input_files("#file-input", str(empty))
    card = page.locator(".job")
    expect(card).to_have_attribute("data-state", "refused", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".message")).to_have_text("The uploaded file is empty.")


def test_several_files_at_once_each_get_their_own_job(page, media_dir, tmp_path):
    notes = tmp_path / "meeting notes.txt"
    notes.write_text("Not a video at all.\n")
    page.set_input_files("#file-input", [str(media_dir / VIDEO), str(media_dir / OTHER_VIDEO), str(notes)])
    cards = page.locator(".job")
    expect(cards).to_have_count(3)
    for name, state in ((VIDEO, "completed"), (OTHER_VIDEO, "completed"), (notes.name, "refused")):
        card = cards.filter(has_text=name)
        expect(card).to_have_attribute("data-state", state, timeout=JOB_TIMEOUT_MS)
    cards.filter(has_text=notes.name).locator("summary").click()
    shot = tmp_path / "web-page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SIPHON_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, SCREENSHOT)
