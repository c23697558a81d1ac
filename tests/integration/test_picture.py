"""The cover picture, made with PyAV in a forked child, on real files (services/conversion/picture.py)."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest
from mutagen.mp4 import MP4

from services.conversion.picture import JPEG, PNG, PictureMaker, make_picture
from services.conversion.plan import Cover
from shared.options import FORMATS
from tests.support.sources import ffmpeg, make_covered_m4a, make_tagged_video

pytestmark = pytest.mark.integration

KEYFRAME_SECONDS = 2.0
"""The test video's keyframe interval (``-g 50`` at 25 frames/s), seconds."""


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """8 s of 320x180 test pattern (a moving picture with a frame counter) with a keyframe every 2 s."""
    path = tmp_path_factory.mktemp("picture") / "pattern.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=8",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-keyint_min", "50", "-sc_threshold", "0",
        str(path),
    )  # fmt: skip
    return path


def frame_of(video: Path, seconds: float, folder: Path) -> bytes:
    """The luma plane of ``video``'s frame at ``seconds`` as ffmpeg's accurate seek decodes it."""
    still = folder / f"ref-{seconds}.png"
    ffmpeg("-ss", str(seconds), "-i", str(video), "-frames:v", "1", str(still))
    return luma(still)


def luma(picture: Path) -> bytes:
    with av.open(str(picture)) as container:
        frame = next(container.decode(video=0))
        return bytes(frame.reformat(format="gray").planes[0])


def nearest(picture: Path, references: dict[float, bytes]) -> float:
    """Which reference frame ``picture`` (a lossy JPEG of one of them) is closest to."""
    mine = luma(picture)
    return min(references, key=lambda at: sum(abs(a - b) for a, b in zip(mine, references[at], strict=True)))


def test_the_default_frame_is_the_keyframe_at_or_before_the_time(video, tmp_path):
    references = {at: frame_of(video, at, tmp_path) for at in (2.0, 3.0, 4.0)}
    target = tmp_path / "cover.jpg"
    assert make_picture(video, Cover(index=0, at_seconds=3.0), target) == JPEG
    assert target.read_bytes()[:2] == b"\xff\xd8"
    assert nearest(target, references) == KEYFRAME_SECONDS


def test_a_named_time_gets_exactly_that_frame(video, tmp_path):
    references = {at: frame_of(video, at, tmp_path) for at in (2.0, 3.0, 4.0)}
    target = tmp_path / "cover.jpg"
    assert make_picture(video, Cover(index=0, at_seconds=3.0, exact=True), target) == JPEG
    assert nearest(target, references) == 3.0


def test_a_source_picture_is_kept_byte_for_byte(tmp_path):
    m4a = make_covered_m4a(tmp_path / "covered.m4a")
    stored = bytes(MP4(m4a).tags["covr"][0])
    target = tmp_path / "cover"
    assert make_picture(m4a, Cover(index=1), target) == JPEG
    assert target.read_bytes() == stored


def test_a_png_source_picture_stays_png(tmp_path):
    png = tmp_path / "poster.png"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:duration=1", "-frames:v", "1", str(png))
    m4a = tmp_path / "png-covered.m4a"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=duration=1", "-i", str(png), "-map", "0:a", "-map", "1:v",
        "-c:a", "aac", "-c:v", "copy", "-disposition:v:0", "attached_pic", str(m4a),
    )  # fmt: skip
    target = tmp_path / "cover"
    assert make_picture(m4a, Cover(index=1), target) == PNG
    assert target.read_bytes() == png.read_bytes()


def test_the_child_answers_and_is_reaped(video, tmp_path):
    maker = PictureMaker.start(video, Cover(index=0, at_seconds=1.0), tmp_path / "cover.jpg")
    pid = maker._call._pid
    picture = maker.result()
    assert picture is not None and picture.mime == JPEG and picture.path.stat().st_size > 1000
    proc = Path(f"/proc/{pid}")  # a zombie keeps its /proc entry until reaped (on a thread of the call's)
    deadline = time.monotonic() + 10
    while proc.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not proc.exists(), "reaped: no zombie left behind"


def test_a_stream_that_is_not_video_gives_no_picture_and_no_exception(video, tmp_path):
    audio = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(audio))
    maker = PictureMaker.start(audio, Cover(index=0, at_seconds=0.5), tmp_path / "cover.jpg")
    assert maker.result() is None


# --- the picture made in the probe's own child (Converter.probe with options) --------------------
@pytest.fixture
def converter(tmp_path):
    from services.conversion.converter import Converter
    from shared.config import load_settings

    return Converter(load_settings(work_dir=tmp_path / "work"))


@pytest.fixture(scope="module")
def tagged_video(tmp_path_factory) -> Path:
    return make_tagged_video(tmp_path_factory.mktemp("src") / "tagged.mp4")


def convert_like_a_task(converter, source: Path, folder: Path, probe_form: dict, convert_form: dict | None = None):
    """Probe and convert as ``tasks.py`` does: the probe's child makes the picture ``probe_form`` calls for."""
    from shared.options import VIDEO_CODECS, options_from_form

    options = options_from_form(probe_form, VIDEO_CODECS)
    target = folder / f"out.{options.output_format.extension}"
    probed = converter.probe_for(source, options, picture_to=target.with_suffix(".cover"))
    converter.convert(
        probed.result,
        source,
        target,
        options_from_form(convert_form or probe_form, VIDEO_CODECS),
        early_picture=probed.early_picture,
    )
    return target


def forbid_picture_children(monkeypatch) -> list:
    from services.conversion import picture

    started = []
    monkeypatch.setattr(picture, "ForkedCall", lambda *args, **kwargs: started.append(args) or 1 / 0)
    return started


@pytest.mark.parametrize(
    "form",
    [{"cover": "frame"}, {"cover_at": "3"}, {"cover": "frame", "cover_at": "3"}, {"format": "flac", "cover": "frame"}],
)
def test_the_probes_child_makes_the_picture_and_no_other_child_is_started(
    converter, tagged_video, tmp_path, monkeypatch, form
):
    started = forbid_picture_children(monkeypatch)
    target = convert_like_a_task(converter, tagged_video, tmp_path, form)
    assert started == [] and not target.with_suffix(".cover").exists()
    import mutagen

    tags = mutagen.File(target)
    pictures = tags.pictures if hasattr(tags, "pictures") else tags.tags.getall("APIC")
    assert len(pictures) == 1 and pictures[0].data[:2] == b"\xff\xd8"


def test_a_picture_that_failed_in_the_probes_child_is_not_tried_again(converter, tagged_video, tmp_path, monkeypatch):
    from mutagen.id3 import ID3

    from services.conversion import picture

    monkeypatch.setattr(picture, "make_picture", lambda source, cover, target: 1 / 0)
    started = forbid_picture_children(monkeypatch)
    target = convert_like_a_task(converter, tagged_video, tmp_path, {"cover": "frame"})
    assert started == [] and ID3(target).getall("APIC") == []


def test_another_cover_than_the_probed_one_gets_a_child_of_its_own(converter, tagged_video, tmp_path):
    from mutagen.id3 import ID3

    target = convert_like_a_task(converter, tagged_video, tmp_path, {"cover": "none"}, {"cover": "frame"})
    assert len(ID3(target).getall("APIC")) == 1


def test_every_corpus_video_gets_its_picture(media_dir, tmp_path):
    """Every file of the corpus that siphon converts and that has a picture to give gets one: its
    own cover by default, else a frame on request (odd tags, moov at the end, fragments, attached
    pictures included)."""
    from services.conversion.plan import choose_cover
    from services.conversion.probe import probe_media
    from shared.errors import MediaError
    from shared.options import ConversionOptions

    missing, covered = {}, 0
    for path in sorted(p for p in media_dir.iterdir() if p.suffix != ".tsv"):
        try:
            probe = probe_media(path)
            probe.default_audio()
        except MediaError:
            continue  # refused: nothing is converted, so no picture is due
        mp3 = FORMATS["mp3"]
        cover = choose_cover(probe, ConversionOptions(), mp3) or choose_cover(
            probe, ConversionOptions(cover="frame"), mp3
        )
        if cover is None:
            continue
        target = tmp_path / f"{path.stem}.cover"
        try:
            mime = make_picture(path, cover, target)
        except Exception as exc:  # noqa: BLE001 - collected, to name every file that fails
            missing[path.name] = repr(exc)
            continue
        if mime is None or target.stat().st_size < 100:
            missing[path.name] = f"no picture ({mime})"
        covered += 1
    assert missing == {} and covered >= 15
