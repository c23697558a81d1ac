"""The keys file and the check of a presented key (shared/auth.py)."""

from __future__ import annotations

import hashlib

import pytest

from shared.auth import OPEN, Authenticator, KeyRing, Principal, bearer_key, parse_keys
from shared.errors import ConfigError, Unauthorized

ALICE_KEY = "alice-key-0123456789"
OPS_KEY = "ops-key-0123456789"


def line(name: str, key: str, flag: str = "") -> str:
    return f"{name} {hashlib.sha256(key.encode()).hexdigest()} {flag}".rstrip()


@pytest.fixture
def keys_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# comment\n\n{line('alice', ALICE_KEY)}\n{line('ops', OPS_KEY, 'admin')}\n")
    return path


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_known_key_is_its_lines_principal(keys_file):
    ring = KeyRing(keys_file)
    assert ring.authenticate(f"Bearer {ALICE_KEY}") == Principal("alice", admin=False)
    assert ring.authenticate(f"bearer {OPS_KEY}") == Principal("ops", admin=True)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer wrong", f"Basic {ALICE_KEY}", f"Bearer {ALICE_KEY}x"])
def test_anything_else_is_unauthorized(keys_file, header):
    with pytest.raises(Unauthorized) as caught:
        KeyRing(keys_file).authenticate(header)
    assert caught.value.status == 401 and caught.value.headers()["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("alice", "expected"),
        ("alice abc", "SHA-256"),
        (f"{line('alice', 'k')} root", "expected"),
        (f"al/ice {'0' * 64}", "name"),
        (f"{line('alice', 'k')}\n{line('alice', 'j')}", "same name"),
        (f"{line('alice', 'k')}\n{line('bob', 'k')}", "same digest"),
    ],
)
def test_a_malformed_file_names_the_line_and_the_problem(text, problem):
    with pytest.raises(ConfigError, match=problem):
        parse_keys(text)


def test_a_missing_file_stops_the_service_at_start(tmp_path):
    with pytest.raises(ConfigError, match="API_KEYS_FILE"):
        Authenticator.from_path(tmp_path / "absent")


def test_a_changed_file_is_read_again_after_the_check_interval(keys_file):
    clock = Clock()
    ring = KeyRing(keys_file, clock=clock)
    keys_file.write_text(line("ops", OPS_KEY, "admin") + "\n")
    clock.now = 1.0
    assert ring.authenticate(f"Bearer {ALICE_KEY}").name == "alice"  # not looked at yet
    clock.now = 6.0
    with pytest.raises(Unauthorized):
        ring.authenticate(f"Bearer {ALICE_KEY}")


def test_a_broken_file_keeps_the_keys_read_before(keys_file):
    clock = Clock()
    ring = KeyRing(keys_file, clock=clock)
    keys_file.write_text("this is not a keys file\n")
    clock.now = 6.0
    assert ring.authenticate(f"Bearer {ALICE_KEY}").name == "alice"


def test_reload_reads_the_file_at_once(keys_file):
    ring = KeyRing(keys_file)
    keys_file.write_text(line("bob", "bob-key") + "\n")
    ring.reload()
    assert ring.authenticate("Bearer bob-key").name == "bob"


def test_open_mode_lets_everyone_see_everything():
    auth = Authenticator.from_path(None)
    assert auth.mode == "off" and auth.principal(None) is OPEN
    assert OPEN.may_see("alice") and OPEN.may_see(None)


def test_a_key_sees_its_own_jobs_and_an_admin_every_job():
    assert Principal("alice").may_see("alice") and not Principal("alice").may_see("bob")
    assert not Principal("alice").may_see(None)
    assert Principal("ops", admin=True).may_see("bob")


def test_bearer_key_reads_rfc_6750_tokens():
    assert bearer_key("Bearer abc-_.~+/=") == "abc-_.~+/="
    assert bearer_key("Bearer a b") is None
