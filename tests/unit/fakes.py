"""In-memory fakes of siphon's adapters that record what was asked of them (cosmicpython's ``FakeX`` style).

Each fake keeps a ``calls`` list of ``(operation, argument)`` pairs and can be told to fail with
``fail(operation, error, times=None)``: raise ``error`` on the next ``times`` calls (None: always).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from services.conversion.converter import Probed
from services.conversion.encode import EncodeResult
from services.conversion.probe import AudioStream, ProbeResult
from services.gateway.upstream import UploadAnswer
from shared.broker import Publishes, Topology
from shared.errors import CallbackRefused, JobNotFound, ObjectNotFound
from shared.jobs import Job, JobStatus
from shared.storage import CHUNK_BYTES


class _Recorder:
    """Records calls and raises planned failures."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self._failures: dict[str, list] = {}

    def fail(self, operation: str, error: Exception, times: int | None = None) -> None:
        """Make ``operation`` raise ``error`` on its next ``times`` calls (None: on every call)."""
        self._failures[operation] = [error, times]

    def _record(self, operation: str, argument: object) -> None:
        self.calls.append((operation, argument))
        planned = self._failures.get(operation)
        if planned is None:
            return
        error, times = planned
        if times is not None:
            if times == 0:
                return
            planned[1] = times - 1
        raise error

    def called(self, operation: str) -> list[object]:
        """The arguments of every call of ``operation``, in order."""
        return [argument for name, argument in self.calls if name == operation]


class FakeStorage(_Recorder):
    """The :class:`~shared.storage.Storage` protocol over a dict of ``key -> bytes``."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.objects: dict[str, bytes] = dict(objects or {})

    def _get(self, key: str) -> bytes:
        if key not in self.objects:
            raise ObjectNotFound(f"no object {key!r}")
        return self.objects[key]

    def local_path(self, key: str) -> None:
        return None  # like S3: no local files

    def staging_file(self) -> None:
        return None

    def put_stream(self, key: str, stream: BinaryIO) -> int:
        self._record("put_stream", key)
        self.objects[key] = stream.read()
        return len(self.objects[key])

    def put_file(self, key: str, path: Path) -> int:
        self._record("put_file", key)
        self.objects[key] = Path(path).read_bytes()
        return len(self.objects[key])

    def put_bytes(self, key: str, data: bytes) -> None:
        self._record("put_bytes", key)
        self.objects[key] = bytes(data)

    def get_bytes(self, key: str) -> bytes:
        self._record("get_bytes", key)
        return self._get(key)

    def download(self, key: str, path: Path) -> int:
        self._record("download", key)
        data = self._get(key)
        Path(path).write_bytes(data)
        return len(data)

    def stream(self, key: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        self._record("stream", (key, start, stop))
        data = self._get(key)[start:stop]  # looked up now, like the real backends: errors come before the body
        return iter([data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)])

    def size(self, key: str) -> int:
        self._record("size", key)
        return len(self._get(key))

    def delete_prefix(self, prefix: str) -> None:
        self._record("delete_prefix", prefix)
        doomed = [k for k in self.objects if (k.startswith(prefix) if prefix.endswith("/") else k == prefix)]
        for key in doomed:
            del self.objects[key]

    def check(self) -> None:
        self._record("check", None)

    def presign_put(self, key: str, size_bytes: int, expires_seconds: int) -> str:
        self._record("presign_put", (key, size_bytes, expires_seconds))
        return f"https://s3.test/bucket/{key}?size={size_bytes}&expires={expires_seconds}"

    def keys(self, prefix: str) -> Iterator[str]:
        self._record("keys", prefix)
        return iter(self.keys_under(prefix))

    def keys_under(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))


class FakeMetadata(_Recorder):
    """The :class:`~shared.metadata_client.MetadataClient` over a dict of jobs."""

    def __init__(self, *jobs: Job) -> None:
        super().__init__()
        self.jobs: dict[str, Job] = {job.job_id: job for job in jobs}

    def create_job(self, job: Job) -> None:
        self._record("create_job", job)
        self.jobs[job.job_id] = job

    def get_job(self, job_id: str) -> Job:
        self._record("get_job", job_id)
        if job_id not in self.jobs:
            raise JobNotFound("Job not found.")
        return self.jobs[job_id]

    def delete_job(self, job_id: str) -> None:
        self._record("delete_job", job_id)
        self.jobs.pop(job_id, None)

    def list_jobs(
        self, status: str | None = None, limit: int | None = None, cursor: str | None = None, owner: str | None = None
    ) -> dict:
        """Every job (of ``status``, of ``owner``), newest first, in one page."""
        self._record("list_jobs", (status, limit, cursor))
        jobs = sorted(self.jobs.values(), key=lambda job: job.created_at, reverse=True)
        listed = [job for job in jobs if status in (None, job.status.value) and owner in (None, job.owner)]
        return {
            "jobs": [job.model_dump(mode="json") for job in listed],
            "next_cursor": None,
        }

    def count_unfinished(self, subject: str, limit: int | None = None) -> int:
        """The subject's queued and processing jobs among ``jobs`` (exact, whatever the ``limit``);
        records ``(subject, limit)``."""
        self._record("count_unfinished", (subject, limit))
        return sum(job.quota_subject == subject and not job.status.is_terminal for job in self.jobs.values())

    def cancel_job(self, job_id: str) -> Job:
        self._record("cancel_job", job_id)
        job = self.get_job(job_id)
        if not job.status.is_terminal:
            job = self.jobs[job_id] = job.model_copy(update={"status": JobStatus.CANCELLED})
        return job


class FakeJobRecords(_Recorder):
    """:class:`~shared.job_records.JobRecords` over a dict of jobs (empty:
    every read misses, and goes to the metadata service)."""

    def __init__(self, *jobs: Job) -> None:
        super().__init__()
        self.jobs: dict[str, Job] = {job.job_id: job for job in jobs}

    def get(self, job_id: str) -> Job | None:
        self._record("get", job_id)
        return self.jobs.get(job_id)


class FakePublisher(_Recorder, Publishes):
    """The :class:`~shared.broker.ConfirmingPublisher`: its named publishers record
    ``(exchange, routing_key, body)`` in ``published``, with the exchange names of ``topology``
    (``unit.tasks``, ``unit.events``, ...)."""

    def __init__(self, topology: Topology | None = None) -> None:
        super().__init__()
        self.topology = topology or Topology(prefix="unit")
        self.published: list[tuple[str, str, bytes]] = []

    def publish(
        self, exchange: str, routing_key: str, body: bytes, headers: dict | None = None, mandatory: bool = True
    ) -> None:
        self._record("publish", routing_key)
        self.published.append((exchange, routing_key, body))


class FakeUpload(_Recorder):
    """The gateway's :class:`~services.gateway.upstream.UploadService`; answers with ``response``."""

    def __init__(
        self, status: int = 202, body: bytes = b'{"job_id": "x"}', content_type: str = "application/json"
    ) -> None:
        super().__init__()
        self.response = UploadAnswer(status, {"Content-Type": content_type}, body)
        self.forwarded: list[tuple[bytes, str]] = []
        self.headers: list[dict[str, str]] = []
        """The extra headers (the caller's ``Authorization``) of each call, in order."""

    def forward(
        self, body: Iterator[bytes], content_type: str, extra_headers: dict[str, str] | None = None
    ) -> UploadAnswer:
        self._record("forward", content_type)
        self.forwarded.append((b"".join(body), content_type))
        self.headers.append(extra_headers or {})
        return self.response

    def post_json(self, path: str, body: bytes, extra_headers: dict[str, str] | None = None) -> UploadAnswer:
        self._record("post_json", path)
        self.forwarded.append((body, "application/json"))
        self.headers.append(extra_headers or {})
        return self.response


STEREO_AAC = AudioStream(index=1, codec="aac", sample_rate_hz=48000, channels=2, is_default=True)
MP4_PROBE = ProbeResult(format_name="mov,mp4,m4a,3gp,3g2,mj2", duration_seconds=8.0, audio_streams=(STEREO_AAC,))


class FakeConverter(_Recorder):
    """The :class:`~services.conversion.converter.Converter`: ``probe`` and ``convert`` (failures via
    ``fail``); ``options`` holds what each conversion was asked for, ``progress`` fractions are
    reported as given, and ``during`` runs in the middle of the conversion (e.g. a cancel)."""

    def __init__(self, probe: ProbeResult = MP4_PROBE, audio: bytes = b"ID3 fake mp3", seconds: float = 8.0123) -> None:
        super().__init__()
        self.probe_result = probe
        self.audio = audio
        self.seconds = seconds
        self.sources: list[bytes] = []
        self.options: list = []
        self.progress: list[float] = []
        self.during = lambda: None
        self.aborted_current = 0

    def probe(self, source: Path) -> ProbeResult:
        self.sources.append(source.read_bytes())
        self._record("probe", source)
        return self.probe_result

    def probe_for(self, source: Path, options, picture_to: Path) -> Probed:
        return Probed(self.probe(source))

    def convert(
        self,
        probe: ProbeResult,
        source: Path,
        target: Path,
        options,
        on_progress=lambda fraction: None,
        cancelled=None,
        early_picture=None,
    ) -> EncodeResult:
        self.options.append(options)
        self._record("convert", target)
        for fraction in self.progress:
            on_progress(fraction)
        self.during()
        target.write_bytes(self.audio)
        return EncodeResult(duration_seconds=self.seconds, size_bytes=len(self.audio), speed=12.5)

    def abort_current(self) -> None:
        self.aborted_current += 1


class FakeResolver:
    """A DNS that answers from ``table`` (name to addresses); ``answers`` gives later lookups of a
    name other answers in turn (a rebinding DNS). ``lookups`` records every name asked."""

    def __init__(self, table: dict[str, list[str]], answers: dict[str, list[list[str]]] | None = None):
        self.table = table
        self.answers = {name: list(turns) for name, turns in (answers or {}).items()}
        self.lookups: list[str] = []

    def __call__(self, host: str, port: int) -> list:
        self.lookups.append(host)
        if self.answers.get(host):
            return [ipaddress.ip_address(a) for a in self.answers[host].pop(0)]
        if host not in self.table:
            raise CallbackRefused(f"its host {host!r} does not resolve (gaierror)")
        return [ipaddress.ip_address(a) for a in self.table[host]]


@dataclass
class FakeResponse:
    status: int


class FakePools:
    """Stands in for ``webhook_transport.open_pool``: records each pool asked for and each POST,
    and answers the next planned status, or raises the planned exception."""

    def __init__(self, *plan):
        self.plan = list(plan)
        self.opened: list[dict] = []
        self.posts: list[dict] = []

    def __call__(self, scheme, address, port, hostname, timeout):
        self.opened.append({"scheme": scheme, "address": str(address), "port": port, "hostname": hostname})
        return _FakePool(self, str(address))


class _FakePool:
    def __init__(self, pools: FakePools, address: str):
        self.pools, self.address = pools, address

    def urlopen(self, method, url, body, headers, **options):
        self.pools.posts.append({"address": self.address, "url": url, "body": body, "headers": headers, **options})
        answer = self.pools.plan.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(answer)

    def close(self):
        pass
