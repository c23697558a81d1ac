"""The upload service's gunicorn settings (``services/upload/gunicorn.conf.py``)."""

from __future__ import annotations

import runpy
from pathlib import Path

from gunicorn.http.unreader import SocketUnreader

from services.upload.receive import BODY_READ_BYTES

CONF = Path(__file__).resolve().parents[3] / "services/upload/gunicorn.conf.py"


class RecordingSocket:
    """A socket that records how much each ``recv`` asked for."""

    def __init__(self):
        self.asked: list[int] = []

    def recv(self, size: int) -> bytes:
        self.asked.append(size)
        return b""


def test_a_worker_receives_a_body_in_the_parsers_read_size(monkeypatch):
    monkeypatch.setattr(SocketUnreader, "max_body_chunk", SocketUnreader.max_body_chunk)  # restored after
    conf = runpy.run_path(str(CONF))
    monkeypatch.setattr("shared.gunicorn_base.keep_large_buffers", lambda: True)
    conf["post_fork"](server=None, worker=None)
    assert conf["BODY_RECV_BYTES"] == BODY_READ_BYTES
    socket = RecordingSocket()
    SocketUnreader(socket).chunk(size_hint=10 * BODY_READ_BYTES)  # what gunicorn asks with a body's length left
    assert socket.asked == [BODY_READ_BYTES]
