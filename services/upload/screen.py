"""The verdict on an upload from its first bytes, given before anything is stored.

A file that is clearly not audio or video (text, an HTML page, an archive, an image, an
executable: ``shared/sniff.py``) is refused with 415 ``not_media``, and an empty one with 400
``empty_file``, so neither ever becomes a job. Anything else goes on: a file the head cannot
judge is the conversion worker's to refuse, as before.
"""

from __future__ import annotations

from shared.errors import RequestRejected
from shared.sniff import not_media_kind


def refuse_if_not_media(head: bytes) -> None:
    """Refuse a file whose first bytes (``head``) show it is not media.

    Raises:
        RequestRejected: 415 ``not_media``, naming what the file looks like.
    """
    kind = not_media_kind(head)
    if kind is not None:
        raise RequestRejected(
            f"The file is not a video or audio file. It looks like {kind}.", code="not_media", status=415
        )


def refuse_unless_media(head: bytes) -> None:
    """The verdict on a whole received file, of which ``head`` is the start (all of it when short).

    Raises:
        RequestRejected: the file is empty (400 ``empty_file``) or not media (415 ``not_media``).
    """
    if not head:
        raise RequestRejected("The uploaded file is empty.", code="empty_file", status=400)
    refuse_if_not_media(head)
