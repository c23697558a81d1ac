"""The README's three curl lines, on both storage backends."""

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_convert_status_download(make_stack, media_dir, backend):
    stack = make_stack(backend)
    response = stack.convert(media_dir / "ordinary_h264_aac_stereo_48k_8s.mp4")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["message"] == "Conversion job submitted successfully."
    final = stack.wait_for_job(body["job_id"], timeout=30)
    assert final["status"] == "completed", final
    assert final["download_url"].endswith(f"/download/{body['job_id']}.mp3")
    mp3 = stack.download(body["job_id"])
    assert mp3.status_code == 200
    assert mp3.headers["Content-Type"] == "audio/mpeg"
    assert mp3.content[:3] == b"ID3" or mp3.content[0] == 0xFF
