"""The web page as a person uses it, in headless Chromium (Debian's ``chromium`` driven by Playwright):
pick or drop videos, watch each upload and job, download the MP3; a file that is no video is
refused with a message a person can read. Choose a video format instead and the page offers the
server's codecs for it and shows the result in a ``<video>`` that plays to its end: one output of
each container (mp4/h264, webm/vp9, mkv/h264 and mkv/vp9), its ``duration`` close to the source's
and no ``error`` event (issue #17, deliverables 6 and 7). On a stack with API keys the page asks for a key, keeps
it, sends it, and offers the signed download link; "Forget API key" drops it.

``SIPHON_UPDATE_SCREENSHOT=1`` also writes the page's screenshots to docs/web-page.png and (asking
for a key) docs/web-page-key.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright

from tests.support.keys import KeyFile
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
KEY_SCREENSHOT = ROOT / "docs" / "web-page-key.png"
VIDEO = "ordinary_h264_aac_stereo_48k_8s.mp4"
OTHER_VIDEO = "mov_h264_aac_mono_44k.mov"
JOB_TIMEOUT_MS = 60_000
NOT_MEDIA_MESSAGE = "The file is not a video or audio file. It looks like text."
"""What POST /convert answers (415 not_media) for a text file, before any job exists."""
LINK_SECRET = "web-page-test-download-link-secret-0123"
KEY_STORAGE = "siphon.apiKey"
PLAYBACK_RATE = 4.0
"""How fast the test plays the outputs (8 s of video in about 2 s), × realtime."""
VIDEO_DURATION_TOLERANCE_RATIO = 0.03
"""A video output's duration within 3 % of its source's (issue #17, deliverable 7)."""
PLAYED_TIMEOUT_MS = 30_000
RECORD_MEDIA_ERRORS = """
window.mediaErrors = [];
document.addEventListener("error", (event) => {
  if (event.target instanceof HTMLMediaElement) {
    const error = event.target.error;
    window.mediaErrors.push(error ? `${error.code}: ${error.message}` : "error without MediaError");
  }
}, true);
"""
"""Run in every page before its own script: media ``error`` events do not bubble, but the capture
phase at the document sees each, whoever made the element."""


@pytest.fixture(scope="module")
def stack(module_stack):
    return module_stack()


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> KeyFile:
    key_file = KeyFile(tmp_path_factory.mktemp("keys") / "api_keys")
    key_file.add("alice")
    return key_file


@pytest.fixture(scope="module")
def keyed_stack(module_stack, keys):
    return module_stack(workers=1, API_KEYS_FILE=str(keys.path), DOWNLOAD_LINK_SECRET=LINK_SECRET)


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


@pytest.fixture
def watched_page(browser, stack):
    """The page, recording every media element's ``error`` event in ``window.mediaErrors``."""
    context = browser.new_context(viewport={"width": 900, "height": 900})
    context.add_init_script(RECORD_MEDIA_ERRORS)
    page = context.new_page()
    page.goto(stack.url)
    yield page
    context.close()


@pytest.fixture
def keyed_page(browser, keyed_stack):
    context = browser.new_context(accept_downloads=True, viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.goto(keyed_stack.url)
    yield page
    context.close()


def assert_is_the_mp3_of(mp3: Path, source: Path, work_dir: Path) -> None:
    facts = probe_audio(mp3)
    assert facts is not None and facts.codec == "mp3" and facts.frames > 0
    expected = reference_mp3_seconds(source, work_dir)
    assert abs(facts.duration_seconds - expected) <= max(
        expected * DURATION_TOLERANCE_RATIO, DURATION_TOLERANCE_FLOOR_SECONDS
    )


def source_seconds(path: Path) -> float:
    """The container's duration (ffprobe ``format=duration``), seconds."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=30,
    )
    return float(json.loads(done.stdout)["format"]["duration"])


def choose_output(page, format_name: str, codec: str | None = None, height: str | None = None) -> None:
    page.select_option("#format", format_name)
    if codec is not None:
        page.select_option("#video-codec", codec)
    if height is not None:
        page.select_option("#height", height)


PLAY_TO_THE_END = """(v, timeoutMs) => new Promise((done, fail) => {
  if (v.ended) return done();
  v.addEventListener("ended", done);
  v.addEventListener("error", () => fail(String(v.error && v.error.message)));
  setTimeout(() => fail(`not ended at ${v.currentTime} of ${v.duration}`), timeoutMs);
})"""


def play_to_the_end(player) -> float:
    """Play ``player`` (muted, at :data:`PLAYBACK_RATE`) until it ends; return its ``duration``, seconds."""
    player.evaluate("(v, rate) => { v.muted = true; v.playbackRate = rate; return v.play(); }", PLAYBACK_RATE)
    player.evaluate(PLAY_TO_THE_END, PLAYED_TIMEOUT_MS)
    return player.evaluate("v => v.duration")


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
    assert_is_the_mp3_of(mp3, media_dir / VIDEO, tmp_path)


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


# --- video formats (issue #17) ---------------------------------------------------------------------
def offered_video_codecs(stack) -> dict[str, list[str]]:
    document = requests.get(f"{stack.url}/openapi.json", timeout=10).json()
    return document["components"]["schemas"]["ConversionOptions"]["properties"]["format"]["x-video-codecs"]


def test_the_page_groups_the_formats_and_offers_a_video_format_only_the_servers_codecs(page, stack):
    offered = offered_video_codecs(stack)
    assert offered, "the stack offers no video codec: is ffmpeg built with libx264?"
    audio = page.locator("#audio-formats option")
    expect(page.locator("#video-formats option")).to_have_count(len(offered))
    assert page.locator("#video-formats option").evaluate_all("os => os.map(o => o.value)") == list(offered)
    assert "mp3" in audio.evaluate_all("os => os.map(o => o.value)")
    assert page.locator("#format").input_value() == "mp3"  # the default is still the MP3
    expect(page.locator("#video-codec-choice")).to_be_hidden()
    for format_name, codecs in offered.items():
        choose_output(page, format_name)
        expect(page.locator("#video-codec-choice")).to_be_visible()
        expect(page.locator("#height-choice")).to_be_visible()
        assert page.locator("#video-codec option").evaluate_all("os => os.map(o => o.value)") == codecs
    choose_output(page, "opus")
    expect(page.locator("#video-codec-choice")).to_be_hidden()


def test_an_mp4_plays_in_a_video_element_to_its_end_and_its_link_downloads_it(watched_page, media_dir, tmp_path):
    page = watched_page
    choose_output(page, "mp4", "h264", "240")
    page.set_input_files("#file-input", str(media_dir / VIDEO))
    card = page.locator(".job")
    expect(card).to_have_attribute("data-state", "completed", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".download")).to_have_text("Download MP4")
    expect(card.locator(".result audio")).to_have_count(0)
    player = card.locator(".result video")
    expect(player).to_be_visible()
    expected = source_seconds(media_dir / VIDEO)
    assert abs(play_to_the_end(player) - expected) <= expected * VIDEO_DURATION_TOLERANCE_RATIO
    assert player.evaluate("v => v.videoHeight") == 240
    assert page.evaluate("window.mediaErrors") == []
    assert card.get_attribute("data-player-error") is None
    with page.expect_download() as started:
        card.locator(".download").click()
    assert started.value.suggested_filename == f"{Path(VIDEO).stem}.mp4"


@pytest.mark.parametrize(
    ("format_name", "codec"), [("webm", "vp9"), ("mkv", "h264"), ("mkv", "vp9")], ids=lambda value: value
)
def test_each_container_plays_to_its_end_in_chromium(watched_page, media_dir, format_name, codec):
    page = watched_page
    choose_output(page, format_name, codec, "240")
    page.set_input_files("#file-input", str(media_dir / VIDEO))
    card = page.locator(".job")
    expect(card).to_have_attribute("data-state", "completed", timeout=JOB_TIMEOUT_MS)
    player = card.locator(".result video")
    expected = source_seconds(media_dir / VIDEO)
    assert abs(play_to_the_end(player) - expected) <= expected * VIDEO_DURATION_TOLERANCE_RATIO
    assert page.evaluate("window.mediaErrors") == []


def test_an_audio_format_shows_an_audio_element(page, media_dir):
    page.set_input_files("#file-input", str(media_dir / VIDEO))
    card = page.locator(".job")
    expect(card).to_have_attribute("data-state", "completed", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".result audio")).to_have_count(1)
    expect(card.locator(".result video")).to_have_count(0)
    assert card.locator(".result audio").get_attribute("src") == card.locator(".download").get_attribute("href")


# --- a server with API keys ----------------------------------------------------------------------
def test_with_keys_the_page_asks_for_a_key_then_converts_and_the_signed_link_downloads(
    keyed_page, keys, media_dir, tmp_path
):
    page, key = keyed_page, keys.keys["alice"][0]
    form = page.locator("#key-form")
    expect(form).to_be_visible()  # asked at once: /healthz says "auth":"keys"
    expect(page.locator("#forget-key")).to_be_hidden()
    shot = tmp_path / "web-page-key.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("SIPHON_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, KEY_SCREENSHOT)

    page.fill("#key-input", "not-a-key")
    page.click("#key-form button")
    expect(page.locator("#key-problem")).to_have_text("The server does not know this key. Check it and try again.")
    expect(form).to_be_visible()
    assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") is None

    page.fill("#key-input", key)
    page.press("#key-input", "Enter")
    expect(form).to_be_hidden()
    expect(page.locator("#forget-key")).to_be_visible()
    assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") == key

    page.set_input_files("#file-input", str(media_dir / VIDEO))
    card = page.locator(".job")
    expect(card).to_have_attribute("data-state", "completed", timeout=JOB_TIMEOUT_MS)
    link = card.locator(".download")
    assert "signature=" in link.get_attribute("href") and "expires=" in link.get_attribute("href")
    with page.expect_download() as started:
        link.click()  # a plain navigation: no header, the signature lets it in
    download = started.value
    assert download.suggested_filename == f"{Path(VIDEO).stem}.mp3"
    mp3 = tmp_path / download.suggested_filename
    download.save_as(mp3)
    assert_is_the_mp3_of(mp3, media_dir / VIDEO, tmp_path)
    assert key not in page.locator("#jobs").inner_html()
    page.screenshot(path=str(tmp_path / "web-page-keyed-job.png"), full_page=True)


def test_the_key_is_kept_across_visits_until_forgotten(keyed_page, keys, keyed_stack):
    page, key = keyed_page, keys.keys["alice"][0]
    page.fill("#key-input", key)
    page.click("#key-form button")
    expect(page.locator("#key-form")).to_be_hidden()

    page.goto(keyed_stack.url)  # another visit, same browser
    expect(page.locator("#forget-key")).to_be_visible()
    expect(page.locator("#key-form")).to_be_hidden()

    page.click("#forget-key")
    expect(page.locator("#key-form")).to_be_visible()
    expect(page.locator("#forget-key")).to_be_hidden()
    assert page.evaluate(f"localStorage.getItem('{KEY_STORAGE}')") is None


def test_a_file_picked_before_the_key_waits_for_it_and_a_refused_saved_key_is_asked_again(
    keyed_page, keys, keyed_stack, media_dir
):
    page = keyed_page
    page.evaluate(f"localStorage.setItem('{KEY_STORAGE}', 'a-key-the-server-dropped')")
    page.goto(keyed_stack.url)  # a saved key: no question until the server refuses it
    expect(page.locator("#key-form")).to_be_hidden()

    page.set_input_files("#file-input", str(media_dir / VIDEO))
    card = page.locator(".job")
    expect(page.locator("#key-problem")).to_have_text("The server refused the saved key. Enter a valid one.")
    expect(card).to_have_attribute("data-state", "waiting")
    expect(card.locator(".message")).to_have_text("Waiting for an API key…")

    page.fill("#key-input", keys.keys["alice"][0])
    page.click("#key-form button")
    expect(card).to_have_attribute("data-state", "completed", timeout=JOB_TIMEOUT_MS)
    expect(card.locator(".download")).to_be_visible()
