"""Every setting siphon reads, in one place: environment variables with documented defaults and
units, validated when a service starts. A wrong value stops the service with one line that names
the variable (``load_settings`` raises :class:`~shared.errors.ConfigError`).

The README's configuration table is this class, row by row.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Siphon's configuration; field name upper-cased is the environment variable."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    # --- storage -------------------------------------------------------------------------
    storage_backend: Literal["local", "s3"] = Field("local", description="`local` directory or `s3` (any S3-compatible endpoint).")
    storage_dir: Path = Field(Path("var/storage"), description="Root directory of the local backend.")
    s3_endpoint_url: str | None = Field(None, description="S3 endpoint (MinIO, Ceph, moto); unset means AWS.")
    s3_bucket: str = Field("siphon", description="Bucket that holds inputs, outputs and job manifests.")
    s3_region: str = Field("us-east-1", description="S3 region name.")
    aws_access_key_id: str | None = Field(None, description="S3 access key; unset means boto3's default chain.")
    aws_secret_access_key: str | None = Field(None, description="S3 secret key.")
    s3_timeout_seconds: float = Field(10.0, gt=0, description="Connect and read timeout of one S3 request, seconds.")

    # --- broker and job store ------------------------------------------------------------
    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/%2F", description="RabbitMQ URL.")
    amqp_prefix: str = Field("siphon", pattern=r"^[A-Za-z0-9_.-]+$", description="Prefix of every exchange and queue name.")
    amqp_heartbeat_seconds: int = Field(30, ge=0, description="AMQP heartbeat interval, seconds (0 disables).")
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis URL (job-state cache).")
    redis_prefix: str = Field("siphon:", description="Prefix of every Redis key.")

    # --- service addresses ---------------------------------------------------------------
    upload_url: str = Field("http://127.0.0.1:5001", description="Upload service base URL, as the gateway reaches it.")
    metadata_url: str = Field("http://127.0.0.1:5002", description="Metadata service base URL.")
    http_timeout_seconds: float = Field(10.0, gt=0, description="Timeout of internal HTTP calls (not uploads), seconds.")

    # --- limits --------------------------------------------------------------------------
    max_upload_bytes: int = Field(2 * 1024 * MiB, gt=0, description="Largest accepted upload, bytes.")
    max_duration_seconds: float = Field(4 * 3600, gt=0, description="Longest audio produced; longer input is cut (ffmpeg -t), seconds.")
    max_output_bytes: int = Field(512 * MiB, gt=0, description="Largest MP3 written (ffmpeg -fs), bytes.")
    conversion_timeout_seconds: float = Field(1800, gt=0, description="Wall-clock limit of one ffmpeg run, seconds.")
    max_attempts: int = Field(3, ge=1, le=10, description="Deliveries of a task before it is dead-lettered.")
    storage_retries: int = Field(3, ge=1, description="Tries of one storage operation in the worker before the job fails.")

    # --- conversion ----------------------------------------------------------------------
    work_dir: Path = Field(Path("/tmp/siphon"), description="Worker's scratch directory (one temp dir per task).")
    ffmpeg_path: str = Field("ffmpeg", description="ffmpeg executable.")
    ffprobe_path: str = Field("ffprobe", description="ffprobe executable.")
    shutdown_grace_seconds: float = Field(20, ge=0, description="On SIGTERM, how long a worker lets its current conversion finish before requeueing it, seconds.")
    mp3_vbr_quality: int = Field(2, ge=0, le=9, description="Default LAME VBR quality (-V scale, 0 best).")

    # --- logging -------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment (plus ``overrides``, used by tests).

    Raises:
        ConfigError: one line naming the first bad variable, e.g.
            ``MAX_UPLOAD_BYTES: Input should be greater than 0``.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "?"
        raise ConfigError(f"{name}: {first['msg']}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once on first use."""
    return load_settings()


def env_var_names() -> set[str]:
    """Every environment variable siphon reads (upper-case)."""
    return {name.upper() for name in Settings.model_fields}
