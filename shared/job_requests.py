"""What the upload service sends when it creates a job (``POST /jobs`` at the metadata service).

:class:`NewJob` is a :class:`~shared.jobs.Job` plus the facts only the metadata service acts on:
who to tell when the job ends (``shared/notifications.py``), the upload's content hash and the
output cache key made from it (``services/metadata/outputs.py``), and the caller whose unfinished
jobs it counts in (``shared/quotas.py``). Upload writes them once; metadata stores them in its own
record (``services/metadata/records.py``); the gateway and the conversion workers never read them,
and read such a record as a plain :class:`~shared.jobs.Job`, which ignores them.
"""

from __future__ import annotations

from shared.jobs import Job


class NewJob(Job):
    """A job as its creator hands it to the metadata service (``MetadataClient.create_job``).

    ``email`` and ``callback_url`` were checked by ``shared/notifications.py`` (None: nobody to
    tell); ``content_sha256`` is the upload's SHA-256 (64 hex digits) when it was hashed, and
    ``cache_key`` the output cache key it and the options make (``<sha256>-<16 hex digits>``), else
    both None; ``quota_subject`` is ``key:<name>`` or ``addr:<ip>`` as the gateway named the caller,
    None for queue and S3-event jobs (they count against no caller's ``QUOTA_UNFINISHED_JOBS``).
    """

    email: str | None = None
    callback_url: str | None = None
    content_sha256: str | None = None
    cache_key: str | None = None
    quota_subject: str | None = None
