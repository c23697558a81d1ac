"""Settings: defaults, environment parsing and one-line errors naming the variable (``shared.config``)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from shared.config import MiB, env_var_names, load_settings
from shared.errors import ConfigError


def test_defaults_without_environment():
    s = load_settings()
    assert s.storage_backend == "local" and s.storage_dir == Path("var/storage")
    assert s.max_upload_bytes == 2048 * MiB and s.max_attempts == 3
    assert s.amqp_prefix == "siphon" and s.redis_prefix == "siphon:"


def test_environment_values_are_parsed(monkeypatch, tmp_path):
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "1048576")
    monkeypatch.setenv("WORK_DIR", str(tmp_path))
    monkeypatch.setenv("STORAGE_BACKEND", "s3")
    monkeypatch.setenv("conversion_timeout_seconds", "2.5")
    s = load_settings()
    assert s.max_upload_bytes == 1048576 and s.work_dir == tmp_path
    assert s.storage_backend == "s3" and s.conversion_timeout_seconds == 2.5


def test_overrides_win_over_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WORK_DIR", "/elsewhere")
    assert load_settings(work_dir=tmp_path).work_dir == tmp_path


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_UPLOAD_BYTES", "-1"),
        ("MAX_UPLOAD_BYTES", "abc"),
        ("MAX_UPLOAD_BYTES", "0"),
        ("MAX_UPLOAD_BYTES", ""),
        ("STORAGE_BACKEND", "ftp"),
        ("AMQP_PREFIX", "has space"),
        ("AMQP_PREFIX", "a/b"),
        ("MP3_VBR_QUALITY", "10"),
        ("MAX_ATTEMPTS", "0"),
        ("S3_TIMEOUT_SECONDS", "0"),
        ("CONVERSION_TIMEOUT_SECONDS", "-5"),
        ("LOG_LEVEL", "TRACE"),
        ("AMQP_HEARTBEAT_SECONDS", "1.5"),
    ],
)
def test_a_bad_value_raises_one_line_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert "\n" not in message and len(message) < 200
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_the_message_says_what_is_wrong(monkeypatch):
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "-1")
    with pytest.raises(ConfigError, match=r"^MAX_UPLOAD_BYTES: Input should be greater than 0$"):
        load_settings()


def test_a_bad_override_is_reported_like_a_bad_variable():
    with pytest.raises(ConfigError, match=r"^MAX_ATTEMPTS: "):
        load_settings(max_attempts=0)


def test_settings_are_frozen():
    s = load_settings()
    with pytest.raises(ValueError):
        s.max_attempts = 7


def test_env_var_names_are_the_upper_cased_fields():
    names = env_var_names()
    assert {"MAX_UPLOAD_BYTES", "AMQP_URL", "REDIS_PREFIX", "CONVERSION_TIMEOUT_SECONDS"} <= names
    assert all(name == name.upper() for name in names)


def test_a_secret_file_sets_its_setting_and_the_environment_wins(monkeypatch, tmp_path):
    # compose mounts secrets as files in /run/secrets: download_link_secret reaches the gateway and metadata so
    monkeypatch.setattr("shared.config.SECRETS_DIR", tmp_path)
    (tmp_path / "download_link_secret").write_text("a-secret-from-a-file-0123456789\n")
    monkeypatch.setenv("API_KEYS_FILE", "/run/secrets/api_keys")
    s = load_settings()
    assert s.download_link_secret.get_secret_value() == "a-secret-from-a-file-0123456789"  # without its newline
    monkeypatch.setenv("DOWNLOAD_LINK_SECRET", "a-secret-from-the-environment")
    assert load_settings().download_link_secret.get_secret_value() == "a-secret-from-the-environment"


def test_secrets_are_read_from_docker_s_mount_point_only_when_it_exists(monkeypatch, tmp_path):
    from shared import config

    assert config.SECRETS_DIR == Path("/run/secrets")
    monkeypatch.setattr("shared.config.SECRETS_DIR", tmp_path / "absent")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydantic-settings warns of a missing directory it is given
        assert load_settings().download_link_secret is None


def test_an_smtp_ca_file_that_is_not_there_stops_the_service_naming_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="^SMTP_CA_FILE: "):
        load_settings(smtp_ca_file=tmp_path / "missing.pem")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings(smtp_ca_file=tmp_path / "ca.pem").smtp_ca_file == tmp_path / "ca.pem"


@pytest.mark.parametrize("value", ["", " , ", "amqp://a:5672/,redis://b:6379/0", "http://rabbit:5672/"])
def test_amqp_url_must_name_amqp_urls_only(value):
    with pytest.raises(ConfigError, match=r"^AMQP_URL: "):
        load_settings(amqp_url=value)


def test_amqp_url_takes_one_url_or_a_cluster_list():
    assert load_settings(amqp_url="amqps://h/%2F").amqp_urls == ("amqps://h/%2F",)
    assert load_settings(amqp_url="amqp://a,amqp://b").amqp_urls == ("amqp://a", "amqp://b")
