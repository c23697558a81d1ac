"""API keys: who is calling, read from the keys file that ``API_KEYS_FILE`` names.

The file holds one key per line, never the key itself::

    # name   SHA-256 of the key (64 hex digits)   flag
    alice    3b1f0c...
    ops      9e2d77...                            admin

Blank lines and lines starting with ``#`` are skipped. A name is 1-64 characters of
``[A-Za-z0-9_.-]``; it is what a job records as its owner (never the key). ``siphon keys new NAME``
prints a new key and its line. A request presents the key as ``Authorization: Bearer <key>``
(RFC 6750 §2.1); the SHA-256 of what it presents is compared with every line's in constant time
(``hmac.compare_digest``), so neither the answer's timing nor the file tells a key.

With the file unset siphon runs in open mode: every caller is :data:`OPEN`, who may see every job
(as before keys existed). Services notice a changed file within :data:`RELOAD_CHECK_SECONDS`, or
at once on SIGHUP (gunicorn's master restarts its workers on SIGHUP, and they read the file anew).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from shared.errors import ConfigError, Unauthorized

log = logging.getLogger(__name__)

KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""A key's name: it becomes a job's owner and part of Redis keys, so it is kept plain."""

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")

RELOAD_CHECK_SECONDS = 5.0
"""How often a service looks whether the keys file changed, seconds (changes apply within 10 s)."""

BEARER = re.compile(r"^Bearer +([A-Za-z0-9._~+/=-]{1,512}) *$", re.IGNORECASE)
"""An ``Authorization`` header carrying a bearer token (RFC 6750 §2.1 ``b64token``)."""


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: ``name`` is the key's name (None in open mode); an ``admin``
    sees every job."""

    name: str | None
    admin: bool = False

    def may_see(self, owner: str | None) -> bool:
        """Whether this caller may see (and act on) a job owned by ``owner``."""
        return self.admin or (self.name is not None and owner == self.name)


OPEN = Principal(name=None, admin=True)
"""The caller in open mode (no keys file): sees every job, owns none."""


@dataclass(frozen=True)
class KeyLine:
    """One line of the keys file: the key's ``name``, the SHA-256 of the key (32 bytes), ``admin``."""

    name: str
    digest: bytes
    admin: bool = False


def key_digest(key: str) -> bytes:
    """The SHA-256 of a key's UTF-8 text, 32 bytes (the file holds its hex form)."""
    return hashlib.sha256(key.encode()).digest()


def parse_keys(text: str, source: str = "API_KEYS_FILE") -> tuple[KeyLine, ...]:
    """The lines of a keys file.

    Raises:
        ConfigError: a line is malformed, or a name or digest appears twice; the message names
            ``source`` and the line number.
    """
    lines: list[KeyLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        lines.append(_parse_line(fields, f"{source} line {number}"))
    _refuse_repeats(lines, source)
    return tuple(lines)


def _parse_line(fields: list[str], where: str) -> KeyLine:
    if len(fields) not in (2, 3) or (len(fields) == 3 and fields[2] != "admin"):
        raise ConfigError(f"{where}: expected '<name> <sha256 hex> [admin]'")
    name, digest = fields[0], fields[1].lower()
    if not KEY_NAME.fullmatch(name):
        raise ConfigError(f"{where}: the name must be 1-64 characters of A-Z a-z 0-9 _ . -")
    if not SHA256_HEX.fullmatch(digest):
        raise ConfigError(f"{where}: the second field must be the key's SHA-256, 64 hex digits")
    return KeyLine(name, bytes.fromhex(digest), admin=len(fields) == 3)


def _refuse_repeats(lines: list[KeyLine], source: str) -> None:
    for attribute in ("name", "digest"):
        values = [getattr(line, attribute) for line in lines]
        if len(set(values)) != len(values):
            raise ConfigError(f"{source}: two lines have the same {attribute}")


def bearer_key(authorization: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None (absent or another scheme)."""
    match = BEARER.fullmatch(authorization or "")
    return match[1] if match else None


class KeyRing:
    """The keys of one keys file, re-read when it changes.

    A change is noticed at the first :meth:`authenticate` at least :data:`RELOAD_CHECK_SECONDS`
    after the last look (its size, mtime and inode), or by :meth:`reload`. A file that became
    unreadable or malformed keeps the keys read before, and the problem is logged: a typo in the
    file must not let everyone in, nor lock everyone out.
    """

    def __init__(self, path: Path, clock=time.monotonic):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._lines: tuple[KeyLine, ...] = ()
        self._stamp: tuple[int, int, int] | None = None
        self._checked_at = clock()
        self._load(strict=True)

    def authenticate(self, authorization: str | None) -> Principal:
        """The principal an ``Authorization`` header speaks for.

        Raises:
            Unauthorized: no bearer key, or one no line of the file holds (401).
        """
        self._reload_if_due()
        key = bearer_key(authorization)
        if key is None:
            raise Unauthorized("Send an API key: 'Authorization: Bearer <key>'.")
        line = self._match(key_digest(key))
        if line is None:
            raise Unauthorized("The API key is not valid.")
        return Principal(line.name, line.admin)

    def _match(self, digest: bytes) -> KeyLine | None:
        found = None
        for line in self._lines:  # every line, found or not: the time taken tells nothing
            if hmac.compare_digest(line.digest, digest):
                found = line
        return found

    def names(self) -> tuple[str, ...]:
        """Every key's name, as the file last read holds them."""
        self._reload_if_due()
        return tuple(line.name for line in self._lines)

    def reload(self) -> None:
        """Read the file again now (SIGHUP)."""
        with self._lock:
            self._load(strict=False)

    def _reload_if_due(self) -> None:
        now = self._clock()
        if now - self._checked_at < RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            self._checked_at = now
            if self._file_stamp() != self._stamp:
                self._load(strict=False)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self.path)
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _load(self, strict: bool) -> None:
        stamp = self._file_stamp()
        try:
            lines = parse_keys(self.path.read_text(), f"API_KEYS_FILE ({self.path})")
        except (OSError, UnicodeDecodeError, ConfigError) as exc:
            if strict:
                raise ConfigError(f"API_KEYS_FILE: cannot read {self.path}: {exc}") from None
            log.error("keys file not reloaded, the keys read before stay in force: %s", exc)
            self._stamp = stamp
            return
        if self._stamp is not None:
            log.info("keys file reloaded: %d keys", len(lines))
        self._lines, self._stamp = lines, stamp


class Authenticator:
    """What a service asks of every request: :meth:`principal` of its ``Authorization`` header.

    Open mode (no keys file) answers :data:`OPEN` for any request; with keys, the header must
    carry one of them.
    """

    def __init__(self, keys: KeyRing | None):
        self.keys = keys

    @classmethod
    def from_path(cls, path: Path | None) -> Authenticator:
        """Keys from ``path``, or open mode when it is None.

        Raises:
            ConfigError: the file cannot be read or is malformed.
        """
        return cls(KeyRing(path) if path is not None else None)

    @property
    def mode(self) -> str:
        """``keys`` or ``off``, as ``/healthz`` reports it."""
        return "keys" if self.keys is not None else "off"

    def principal(self, authorization: str | None) -> Principal:
        """The caller; see :meth:`KeyRing.authenticate` for the errors."""
        return OPEN if self.keys is None else self.keys.authenticate(authorization)

    def key_names(self) -> tuple[str, ...]:
        """Every key's name (none in open mode)."""
        return self.keys.names() if self.keys is not None else ()

    def reload(self) -> None:
        """Re-read the keys file now (does nothing in open mode)."""
        if self.keys is not None:
            self.keys.reload()


def warn_if_open(keys_file: Path | None, service: str) -> None:
    """Log the one start-up warning of open mode (``API_KEYS_FILE`` unset)."""
    if keys_file is None:
        log.warning("%s runs in open mode: API_KEYS_FILE is unset, so anyone who reaches it sees every job", service)
