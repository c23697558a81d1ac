"""Every file of the media corpus (``../shared/media``) through the API, on both storage backends.

Each file either completes with an MP3 that really holds audio, as long as what plain
``ffmpeg -i FILE -map 0:a:0 -c:a libmp3lame out.mp3`` makes of it, or fails with its own
``error.code``. The outcome of every file is written down in :data:`EXPECTED_OUTCOMES`; a corpus
file missing from that table fails :func:`test_outcome_table_covers_the_whole_corpus`.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from tests.support.http import assert_json_error
from tests.support.media import (
    MP3_SAMPLE_RATES_HZ,
    duration_tolerance,
    probe_audio,
    read_manifest,
    reference_mp3_seconds,
)
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

OK = "ok"
EXPECTED_OUTCOMES = {
    "ordinary_h264_aac_stereo_48k_faststart_2s.mp4": OK,
    "ordinary_h264_aac_stereo_48k_2997fps_10s.mp4": OK,
    "ordinary_h264_aac_stereo_48k_8s.mp4": OK,
    "phone_h264_aac_mono_48k_gps_2s.mp4": OK,
    "iphone_hevc_dolbyvision_aac_stereo.MOV": OK,
    "moov_at_end_h264_aac_stereo_44k_1s.mp4": OK,
    "moov_at_end_h264_aac_stereo_44k_10s.mp4": OK,
    "fmp4_h264_aac_stereo_48k_15s.mp4": OK,
    "fmp4_h264_aac_mono_bogus_duration.mp4": OK,  # the container claims 143165 s of a 1 s clip
    "fmp4_opus_stereo_48k_audio_only.mp4": OK,
    "fmp4_init_segment_only_aac_no_samples.mp4": "no_audio_frames",  # plain ffmpeg writes a 338-byte empty MP3
    "m4a_aac_lc_mono_44k_10s.m4a": OK,
    "mp4_audio_only_aac_stereo_48k_sidx.mp4": OK,
    "no_audio_h264_1s.mp4": "no_audio_stream",
    "no_audio_h264_plus_100_subtitle_tracks.mp4": "no_audio_stream",
    "two_audio_tracks_ac3_5.1_plus_aac_stereo.mp4": OK,
    "ac3_5.1_48k_audio_only.mp4": OK,
    "eac3_5.1_48k_audio_only.mp4": OK,  # FFmpeg 5.1 decodes 0.31 s of the 1.73 s the container claims
    "mono_h264_aac_44k_1s.mp4": OK,
    "sr8k_aac_lc_mono.m4a": OK,
    "mp3_in_mp4_h264_stereo_44k_10s.mp4": OK,
    "mp3_in_mp4_h264_stereo_audio_longer_than_video.mp4": OK,
    "opus_in_mp4_stereo_audio_only.mp4": OK,  # edit list: 1.03 s of audio in a 1.46 s container
    "ac4_stereo_unsupported_codec.mp4": "unsupported_codec",
    "pcm_s16be_twos_in_mp4_h264.mp4": OK,
    "audio_shorter_than_video_h264_aac.mp4": OK,
    "mov_h264_aac_mono_44k.mov": OK,
    "webm_vp9_opus_no_duration.webm": OK,
    "webm_opus_audio_only_stereo.webm": OK,
    "avi_mpeg4_mp3_stereo_48k.avi": OK,
    "flv_h264_aac_mono_44k.flv": OK,
    "ts_h264_aac_stereo_48k_hls_segment.ts": OK,
    "3gp_h263_aac_8k_mono.3gp": OK,
    "zero_byte.mp4": "empty_file",  # refused by POST /convert itself
    "not_media_text_file.mp4": "not_media",  # text: refused by POST /convert itself (415)
    "not_media_js_comment.mp4": "not_media",  # text: refused by POST /convert itself (415)
    "truncated_init_segment_100b.mp4": "truncated",
    "truncated_mdat_size_past_eof.mp4": OK,  # the mdat box claims 8 bytes past the end; every sample is there
    "corrupt_malformed_free_box_no_moov.mp4": "corrupt_media",
    "encrypted_cenc_fmp4_clearkey.mp4": "encrypted",
    "minimal_mp4_262_bytes_no_tracks.mp4": "no_audio_stream",
}
"""Each corpus file's outcome: ``"ok"`` (a completed job) or the ``error.code`` it must fail with."""

REFUSED_AT_UPLOAD = {"empty_file": 400, "not_media": 415}
"""The status ``POST /convert`` answers itself for the corpus files expected to fail with these codes
(all of them are empty or text, judged from their first bytes): no job is made."""

CORPUS_TIMEOUT_SECONDS = 120
"""How long the whole corpus may take to reach completed/failed on one stack, seconds."""

MANIFEST_OK = re.compile(r"^ok ~(?P<seconds>[0-9.]+) s")


@dataclass
class CorpusRun:
    """The whole corpus posted to one stack: each file's POST answer, and each job's last status."""

    stack: Stack
    posted: dict[str, requests.Response]
    statuses: dict[str, dict]

    def job_id(self, name: str) -> str:
        response = self.posted[name]
        assert response.status_code == 202, (name, response.status_code, response.text[:300])
        return response.json()["job_id"]

    def final_status(self, name: str) -> dict:
        body = self.statuses[self.job_id(name)]
        assert body["status"] in ("completed", "failed"), (
            f"{name} is still {body['status']} after {CORPUS_TIMEOUT_SECONDS} s"
        )
        return body


@pytest.fixture(scope="session")
def reference_seconds(media_dir, tmp_path_factory) -> dict[str, float | None]:
    """Per corpus file, the duration of plain ffmpeg's MP3 (None: it makes no audio of the file)."""
    work_dir = tmp_path_factory.mktemp("reference")
    names = sorted(read_manifest(media_dir))
    with ThreadPoolExecutor(max_workers=2) as pool:
        durations = pool.map(lambda name: reference_mp3_seconds(media_dir / name, work_dir), names)
        return dict(zip(names, durations, strict=True))


@pytest.fixture(scope="module", params=["local", "s3"])
def corpus_run(request, tmp_path_factory, moto_endpoint, media_dir) -> CorpusRun:
    """All corpus files posted at once to a fresh stack on one backend, then waited for (bounded)."""
    backend = request.param
    with running_stack(
        tmp_path_factory.mktemp(f"corpus-{backend}"),
        backend=backend,
        s3_endpoint=moto_endpoint if backend == "s3" else None,
    ) as stack:
        posted = {name: stack.convert(media_dir / name) for name in sorted(read_manifest(media_dir))}
        job_ids = [response.json()["job_id"] for response in posted.values() if response.status_code == 202]
        yield CorpusRun(stack, posted, stack.wait_for_jobs(job_ids, CORPUS_TIMEOUT_SECONDS))


def test_outcome_table_covers_the_whole_corpus(media_dir):
    manifest = read_manifest(media_dir)
    on_disk = {path.name for path in media_dir.iterdir() if path.name != "MANIFEST.tsv"}
    assert set(manifest) == on_disk, "MANIFEST.tsv and the files in the corpus differ"
    assert sorted(set(manifest) - set(EXPECTED_OUTCOMES)) == [], "corpus files without an expected outcome"
    assert sorted(set(EXPECTED_OUTCOMES) - set(manifest)) == [], "expected outcomes of files not in the corpus"
    disagreeing = [
        name
        for name, row in manifest.items()
        if (EXPECTED_OUTCOMES[name] == OK) != row["ffmpeg_to_mp3"].startswith("ok")
    ]
    assert disagreeing == [], "the table and MANIFEST.tsv's ffmpeg_to_mp3 column disagree"


def test_reference_conversion_agrees_with_the_manifest(media_dir, reference_seconds):
    """The reference itself is checked, so a broken reference cannot pass a wrong conversion."""
    for name, row in read_manifest(media_dir).items():
        claimed = MANIFEST_OK.match(row["ffmpeg_to_mp3"])
        if claimed is None:
            assert reference_seconds[name] is None, f"plain ffmpeg makes audio of {name}"
        else:
            expected = float(claimed["seconds"])
            assert reference_seconds[name] == pytest.approx(expected, abs=duration_tolerance(expected)), name


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTCOMES))
def test_corpus_file(corpus_run, reference_seconds, name, tmp_path):
    if EXPECTED_OUTCOMES[name] == OK:
        check_converted(corpus_run, name, reference_seconds[name], tmp_path)
    else:
        check_failed(corpus_run, name, EXPECTED_OUTCOMES[name], reference_seconds[name])


def check_converted(run: CorpusRun, name: str, reference: float | None, tmp_path) -> None:
    """Completed, downloadable, a real MP3 with audio frames, as long as plain ffmpeg's."""
    job_id, final = run.job_id(name), run.final_status(name)
    assert final == {
        "job_id": job_id,
        "status": "completed",
        "message": "Conversion completed.",
        "download_url": f"{run.stack.url}/download/{job_id}.mp3",
    }
    download = run.stack.download(job_id)
    assert download.status_code == 200 and download.headers["Content-Type"] == "audio/mpeg"
    mp3 = tmp_path / "download.mp3"
    mp3.write_bytes(download.content)
    facts = probe_audio(mp3)
    assert facts is not None, f"ffprobe finds no audio stream in the MP3 made of {name}"
    assert (facts.format_name, facts.codec) == ("mp3", "mp3"), facts
    assert facts.frames > 0 and facts.duration_seconds > 0, f"the MP3 holds no audio: {facts}"
    assert facts.sample_rate_hz in MP3_SAMPLE_RATES_HZ and facts.channels in (1, 2), facts
    assert reference is not None, f"plain ffmpeg makes no audio of {name}, yet the job completed"
    assert facts.duration_seconds == pytest.approx(reference, abs=duration_tolerance(reference)), (
        f"{name}: {facts.duration_seconds} s of audio, plain ffmpeg gives {reference} s"
    )
    record = run.stack.job_record(job_id)
    assert record["output_size"] == len(download.content), record
    assert record["output_duration_seconds"] == pytest.approx(
        facts.duration_seconds, abs=duration_tolerance(facts.duration_seconds)
    ), f"the job record claims {record['output_duration_seconds']} s for an MP3 of {facts.duration_seconds} s"


def check_failed(run: CorpusRun, name: str, code: str, reference: float | None) -> None:
    """Refused at once, or failed with ``code`` and a message; nothing to download, no MP3 stored."""
    assert reference is None, f"plain ffmpeg makes {reference} s of audio of {name}, yet it must fail"
    posted = run.posted[name]
    if code in REFUSED_AT_UPLOAD:
        assert_json_error(posted, REFUSED_AT_UPLOAD[code], code)
        return
    job_id, final = run.job_id(name), run.final_status(name)
    assert set(final) == {"job_id", "status", "message", "error"}, final
    assert final["status"] == "failed" and final["error"]["code"] == code, final
    message = final["error"]["message"]
    assert set(final["error"]) == {"code", "message"} and message.strip(), final
    assert final["message"] == f"Conversion failed. {message}", final
    assert_json_error(run.stack.download(job_id), 409, "job_failed")
    assert f"jobs/{job_id}/output.mp3" not in run.stack.stored_keys()
