"""Every setting siphon reads, in one place: environment variables with documented defaults and
units, validated when a service starts. A wrong value stops the service with one line that names
the variable (``load_settings`` raises :class:`~shared.errors.ConfigError`).

The README's configuration table is this class, row by row.

A file in :data:`SECRETS_DIR` named like a setting in lower case (``download_link_secret``) sets it
too, as compose's ``secrets:`` mount them; a variable of the environment wins over the file.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.callbacks import invalid_allowed_hosts
from shared.errors import ConfigError
from shared.jobs import JOBS_KEY_PREFIX

MiB = 1024 * 1024
QUEUE_NAME = r"^[A-Za-z0-9_.:-]{1,200}$"
"""A RabbitMQ queue name siphon accepts (the broker allows 255 bytes; ``amq.`` is the broker's)."""
SECRETS_DIR = Path("/run/secrets")
"""Where Docker and compose mount a service's secrets, one file each (read only when it exists)."""
KEY_PREFIX = r"^[^/].*/$"
"""A storage key prefix: not absolute, ending in ``/`` (a folder)."""


def split_urls(value: str) -> tuple[str, ...]:
    """The comma-separated URLs in ``value``, stripped, empty parts dropped."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


class Settings(BaseSettings):
    """Siphon's configuration; field name upper-cased is the environment variable."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- storage -------------------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = Field(
        "local", description="`local` directory or `s3` (any S3-compatible endpoint)."
    )
    storage_dir: Path = Field(Path("var/storage"), description="Root directory of the local backend.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO, Ceph, moto); unset means AWS.")
    s3_bucket: str = Field("siphon", description="Bucket that holds inputs, outputs and job manifests.")
    s3_region: str = Field("us-east-1", description="S3 region name.")
    aws_access_key_id: str | None = Field(None, description="S3 access key; unset means boto3's default chain.")
    aws_secret_access_key: str | None = Field(None, description="S3 secret key.")
    s3_timeout_seconds: float = Field(10.0, gt=0, description="Connect and read timeout of one S3 request, seconds.")

    # --- broker and job store ------------------------------------------------------------
    amqp_url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/%2F",
        description="RabbitMQ URL, or the URLs of a cluster's nodes comma-separated: each connection tries them "
        "in a random order and takes the first that answers (pika's multiple-host connection parameters), and a "
        "lost connection is reopened the same way, so siphon follows whichever node is serving.",
    )
    amqp_prefix: str = Field(
        "siphon", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of every exchange and queue name."
    )
    amqp_heartbeat_seconds: int = Field(30, ge=0, description="AMQP heartbeat interval, seconds (0 disables).")
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        description="Redis URL (job-state cache); with REDIS_SENTINELS, only its database number and password are used.",
    )
    redis_sentinels: str = Field(
        "",
        description="Redis Sentinels, `host:port` comma-separated (empty: REDIS_URL is the one Redis). When set, "
        "siphon asks them which node is the primary of REDIS_SENTINEL_MASTER and follows a failover; "
        "REDIS_URL then gives only the database number and password.",
    )
    redis_sentinel_master: str = Field(
        "siphon", pattern=r"^[A-Za-z0-9_.-]+$", description="The name the Sentinels monitor siphon's Redis primary by."
    )
    redis_prefix: str = Field(
        "siphon:",
        description="Prefix of every Redis key. Deployments that share one Redis need distinct prefixes: "
        "each one's job records and output cache name objects in its own storage.",
    )

    # --- service addresses ---------------------------------------------------------------
    upload_url: str = Field("http://127.0.0.1:5001", description="Upload service base URL, as the gateway reaches it.")
    metadata_url: str = Field("http://127.0.0.1:5002", description="Metadata service base URL.")
    http_timeout_seconds: float = Field(
        10.0, gt=0, description="Timeout of internal HTTP calls (not uploads), seconds."
    )

    # --- who may see what (shared/auth.py, shared/links.py) ---------------------------------
    api_keys_file: Path | None = Field(
        None,
        description="File of API keys, one `<name> <sha256 of the key> [admin]` per line (`siphon keys new`); re-read within 10 s of a change or on SIGHUP. Unset: open mode, anyone sees every job.",
    )
    download_link_secret: SecretStr | None = Field(
        None,
        description="HMAC secret of signed download links (required with API_KEYS_FILE; changing it voids every link given out).",
    )
    intake_owner: str = Field(
        "intake",
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="Owner (key name) of the jobs that come from the transcoding_jobs queue and from S3 events.",
    )

    # --- limits --------------------------------------------------------------------------
    max_upload_bytes: int = Field(2 * 1024 * MiB, gt=0, description="Largest accepted upload, bytes.")
    max_duration_seconds: float = Field(
        4 * 3600, gt=0, description="Longest audio produced; longer input is cut (ffmpeg -t), seconds."
    )
    max_output_bytes: int = Field(512 * MiB, gt=0, description="Largest MP3 written (ffmpeg -fs), bytes.")
    conversion_timeout_seconds: float = Field(1800, gt=0, description="Wall-clock limit of one ffmpeg run, seconds.")
    max_attempts: int = Field(3, ge=1, le=10, description="Deliveries of a task before it is dead-lettered.")
    storage_retries: int = Field(
        3, ge=1, description="Tries of one storage operation in the worker before the job fails."
    )

    # --- per-caller limits (shared/quotas.py): per API key, or per client address in open mode ---
    quota_submissions_per_minute: int = Field(
        60,
        ge=0,
        description="`POST /convert` and `POST /uploads` requests one caller may make per minute (0: no limit).",
    )
    quota_unfinished_jobs: int = Field(
        20, ge=0, description="Jobs one caller may have queued or processing at once (0: no limit)."
    )
    quota_upload_bytes_per_day: int = Field(
        50 * 1024 * MiB,
        ge=0,
        description="Bytes one caller may upload per day: each multipart `POST /convert`'s Content-Length, each `POST /uploads`' `size` (0: no limit). While it is on, an upload without Content-Length (chunked) is answered 411.",
    )
    quota_emails_per_hour: int = Field(
        30, ge=0, description="Submissions carrying an `email` one caller may make per hour (0: no limit)."
    )
    trusted_proxies: str = Field(
        "",
        description="Addresses or CIDR ranges of the reverse proxies whose X-Forwarded-For names the client, comma-separated (empty: the peer address is the client).",
    )

    # --- conversion ----------------------------------------------------------------------
    work_dir: Path = Field(Path("/tmp/siphon"), description="Worker's scratch directory (one temp dir per task).")
    ffmpeg_path: str = Field("ffmpeg", description="ffmpeg executable.")
    ffprobe_path: str = Field(
        "ffprobe",
        description="ffprobe executable: probes what the forked libav probe cannot read, and non-MP3 outputs.",
    )
    shutdown_grace_seconds: float = Field(
        20,
        ge=0,
        description="On SIGTERM, how long a worker lets its current conversion finish before requeueing it, seconds.",
    )
    mp3_vbr_quality: int = Field(2, ge=0, le=9, description="Default LAME VBR quality (-V scale, 0 best).")
    video_codecs: str = Field(
        "auto",
        pattern=r"^(auto|(h264|hevc|vp9|av1)(,(h264|hevc|vp9|av1))*)?$",
        description="Video codecs offered (`format` mp4, webm, mkv): `auto` asks `FFMPEG_PATH -encoders` once at start and offers those it can encode (none without ffmpeg), or a comma-separated list of h264, hevc, vp9, av1 (for a process without ffmpeg, like the gateway's container: what its workers' ffmpeg has; empty: no video).",
    )
    max_video_pixels: int = Field(
        8192 * 4320,
        gt=0,
        description="Largest video frame a video job may decode, width × height in pixels (8K by default); a larger one fails `too_large` before ffmpeg runs.",
    )
    sandbox: Literal["bwrap", "off"] = Field(
        "bwrap",
        description="How a worker confines ffmpeg, ffprobe and its forked libav children: `bwrap` (bubblewrap, plus seccomp and Landlock in the children; the worker refuses to start if it cannot apply them) or `off` (unconfined, logged as a warning). docs/security.md#decoders-in-a-kernel-sandbox.",
    )
    bwrap_path: str = Field("bwrap", description="bubblewrap executable (with `SANDBOX=bwrap`).")
    sandbox_cpu_seconds: int = Field(
        3600, gt=0, description="CPU time one confined ffmpeg, ffprobe or forked child may use (RLIMIT_CPU), seconds."
    )
    sandbox_memory_bytes: int = Field(
        2048 * MiB, gt=0, description="Memory one confined ffmpeg or ffprobe may allocate (RLIMIT_DATA), bytes."
    )
    sandbox_max_processes: int = Field(
        256,
        gt=0,
        description="Processes and threads the worker's user may have while a confined process runs (RLIMIT_NPROC; not counted for root).",
    )

    # --- other ways in: the job queue, S3 events, direct uploads ---------------------------
    transcoding_jobs_queue: str = Field(
        "transcoding_jobs",
        pattern=QUEUE_NAME,
        description="Queue producers publish jobs to (`{job_id, input_key, output_key, transcode_options}`); not prefixed, the name is a contract with them.",
    )
    transcoding_progress_queue: str = Field(
        "transcoding_progress",
        pattern=QUEUE_NAME,
        description="Queue that receives every job's progress and final status as JSON; not prefixed.",
    )
    s3_incoming_prefix: str = Field(
        "incoming/",
        pattern=KEY_PREFIX,
        description="An object created under this key prefix (an S3 event notification) becomes a job by itself.",
    )
    s3_output_prefix: str = Field(
        "outputs/",
        pattern=KEY_PREFIX,
        description="Where the audio of an S3-event job goes: `incoming/a/b.mov` becomes `outputs/a/b.mp3`.",
    )
    s3_public_endpoint_url: str | None = Field(
        None, description="S3 endpoint as clients reach it, for presigned upload URLs; unset means S3_ENDPOINT_URL."
    )
    presigned_url_expiry_seconds: int = Field(
        3600,
        ge=1,
        le=7 * 24 * 3600,
        description="How long a presigned upload URL (`POST /uploads`) stays valid, seconds.",
    )

    # --- notifications: email and signed webhooks (services/metadata/notifier.py) -----------
    public_url: str = Field(
        "http://localhost:5000",
        pattern=r"^https?://[^/?#]+",
        description="The gateway as clients reach it: the base of the download links in emails and webhooks.",
    )
    smtp_host: str = Field("127.0.0.1", description="SMTP server that sends the job emails.")
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP server port (587 is the usual one with STARTTLS).")
    smtp_from: str = Field("siphon@localhost", description="Sender address of the job emails.")
    smtp_starttls: bool = Field(
        False, description="Upgrade the SMTP connection with STARTTLS before logging in and sending."
    )
    smtp_username: str | None = Field(None, description="SMTP login; unset: no AUTH.")
    smtp_password: str | None = Field(None, description="SMTP password, with SMTP_USERNAME.")
    smtp_ca_file: Path | None = Field(
        None,
        description="PEM file of the CAs that may sign the SMTP server's certificate (STARTTLS); unset: the system's CAs.",
    )
    webhook_secret: str | None = Field(
        None,
        description="Key of the webhooks' HMAC-SHA256 signature (`X-Siphon-Signature`); unset: webhooks go unsigned.",
    )
    callback_allowed_hosts: str = Field(
        "",
        description="Private hosts webhooks may reach, comma-separated names or addresses, `*.domain` for subdomains (`*` is refused). Any other callback host must resolve only to globally routable addresses; a refused one is 400 at submit, `rejected` at send.",
    )
    notify_timeout_seconds: float = Field(
        10, gt=0, description="Timeout of one webhook POST or one SMTP conversation, seconds."
    )
    notify_max_attempts: int = Field(5, ge=1, le=20, description="Tries of one email or webhook before it is given up.")
    notify_backoff_seconds: int = Field(
        2, ge=1, description="Wait before the first retry of a notification, doubled before each next one, seconds."
    )

    # --- live updates, lifecycle and the output cache -------------------------------------
    output_ttl: int = Field(
        86400,
        ge=1,
        description="How long an output stays downloadable after its job completed, seconds; then the job is `expired`.",
    )
    output_cache: bool = Field(
        True,
        description="Reuse the output of an earlier upload with the same content and options (the repeat completes at once, `cached: true`).",
    )
    events_heartbeat_seconds: float = Field(
        15, gt=0, description="Interval of the keep-alive comments on an idle Server-Sent Events stream, seconds."
    )
    events_max_stream_seconds: float = Field(
        900,
        gt=0,
        description="Longest life of one Server-Sent Events response (the client reconnects with Last-Event-ID), seconds.",
    )
    events_max_clients: int = Field(
        16, ge=1, description="Server-Sent Events streams one gateway process serves at once; more are answered 503."
    )
    events_history: int = Field(
        10000,
        ge=10,
        description="Job changes kept for clients that reconnect with Last-Event-ID (the change stream's MAXLEN).",
    )

    # --- logging and metrics ---------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    metrics_host: str = Field(
        "0.0.0.0",
        description="Address the `/metrics` endpoint of METRICS_PORT listens on (`0.0.0.0`: every interface, as a "
        "scraper in another container needs; `127.0.0.1`: this machine only).",
    )
    metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the Prometheus `/metrics` endpoint of a conversion worker or the metadata event consumer, on every interface (0: none). The HTTP services serve `/metrics` on their own port.",
    )

    @field_validator("amqp_url")
    @classmethod
    def _amqp_urls(cls, value: str) -> str:
        urls = split_urls(value)
        if not urls:
            raise ValueError("must name at least one amqp:// or amqps:// URL")
        for url in urls:
            if not url.startswith(("amqp://", "amqps://")):
                raise ValueError(f"{url!r} is not an amqp:// or amqps:// URL")
        return value

    @property
    def amqp_urls(self) -> tuple[str, ...]:
        """``AMQP_URL`` split into one URL per RabbitMQ node, in the order given."""
        return split_urls(self.amqp_url)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or CIDR range") from None
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, value: str) -> str:
        sentinel_addresses(value)
        return value

    @field_validator("download_link_secret")
    @classmethod
    def _long_enough(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return secret

    @model_validator(mode="after")
    def _links_signed_with_keys(self) -> Settings:
        if self.api_keys_file is not None and self.download_link_secret is None:
            raise ValueError(
                "DOWNLOAD_LINK_SECRET must be set when API_KEYS_FILE is (download links are signed with it)"
            )
        return self

    @field_validator("smtp_ca_file")
    @classmethod
    def _readable_ca_file(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    @field_validator("callback_allowed_hosts")
    @classmethod
    def _no_wildcard_for_every_host(cls, spec: str) -> str:
        problem = invalid_allowed_hosts(spec)
        if problem:
            raise ValueError(problem)
        return spec

    @field_validator("s3_incoming_prefix", "s3_output_prefix")
    @classmethod
    def _outside_jobs(cls, prefix: str) -> str:
        if _overlap(prefix, JOBS_KEY_PREFIX):  # siphon's own jobs' files
            raise ValueError(f"must not overlap {JOBS_KEY_PREFIX!r}, where siphon keeps its jobs' files")
        return prefix

    @field_validator("s3_output_prefix")
    @classmethod
    def _apart_from_incoming(cls, prefix: str, info: ValidationInfo) -> str:
        # An output under the incoming prefix would be an incoming object: a job converting its own output, forever.
        incoming = info.data.get("s3_incoming_prefix")
        if incoming is not None and _overlap(prefix, incoming):
            raise ValueError(f"must not overlap S3_INCOMING_PREFIX ({incoming!r})")
        return prefix


def _overlap(a: str, b: str) -> bool:
    """Whether one key prefix contains the other."""
    return a.startswith(b) or b.startswith(a)


def sentinel_addresses(spec: str) -> list[tuple[str, int]]:
    """``REDIS_SENTINELS`` (``host:port,host:port``) as ``[(host, port), ...]``; ``[]`` when empty.

    Raises:
        ValueError: an entry is not ``host:port`` with a port from 1 to 65535.
    """
    found = []
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        host, _, port = entry.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"{entry!r} is not host:port")
        found.append((host.strip("[]"), int(port)))
    return found


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment (plus ``overrides``, used by tests).

    Raises:
        ConfigError: one line naming the first bad variable, e.g.
            ``MAX_UPLOAD_BYTES: Input should be greater than 0``.
    """
    secrets_dir = SECRETS_DIR if SECRETS_DIR.is_dir() else None
    try:
        return Settings(_secrets_dir=secrets_dir, **overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:  # a rule across settings names its variables itself
            raise ConfigError(message) from None
        raise ConfigError(f"{str(first['loc'][0]).upper()}: {message}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return load_settings()


def env_var_names() -> set[str]:
    """Every environment variable siphon reads (upper-case)."""
    return {name.upper() for name in Settings.model_fields}
