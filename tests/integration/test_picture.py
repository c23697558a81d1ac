"""The cover picture, made with PyAV in a forked child, on real files (services/conversion/picture.py)."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from mutagen.mp4 import MP4

from services.conversion.encode import Cover
from services.conversion.picture import JPEG, PNG, PictureMaker, make_picture
from tests.support.sources import ffmpeg, make_covered_m4a

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
    maker = PictureMaker(video, Cover(index=0, at_seconds=1.0), tmp_path / "cover.jpg")
    pid = maker._call._pid
    picture = maker.result()
    assert picture is not None and picture.mime == JPEG and picture.path.stat().st_size > 1000
    with pytest.raises(ChildProcessError):
        __import__("os").waitpid(pid, 0)  # already reaped: no zombie left behind


def test_a_stream_that_is_not_video_gives_no_picture_and_no_exception(video, tmp_path):
    audio = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", str(audio))
    maker = PictureMaker(audio, Cover(index=0, at_seconds=0.5), tmp_path / "cover.jpg")
    assert maker.result() is None
