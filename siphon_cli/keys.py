"""New API keys, made here and never sent anywhere: ``siphon keys new NAME [--admin]``.

A key is ``secrets.token_urlsafe(32)``: 32 random bytes (256 bits) as 43 URL-safe base64
characters. The server's keys file (``API_KEYS_FILE``) holds one line per key,
``<name> <SHA-256 of the key's UTF-8 text, lower-case hex> [admin]``, never the key itself. This
module restates that format rather than importing the server's parser: the CLI ships on its own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

KEY_BYTES = 32
"""Random bytes in a key (256 bits); its text is 43 characters."""

KEY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
"""A key's name, as the server's keys file allows it: it becomes the owner of the key's jobs."""


@dataclass(frozen=True)
class NewKey:
    """A freshly made ``key`` and the ``line`` that lets it in (for the keys file)."""

    name: str
    key: str
    admin: bool

    @property
    def line(self) -> str:
        digest = hashlib.sha256(self.key.encode()).hexdigest()
        return f"{self.name} {digest}{' admin' if self.admin else ''}"


def check_key_name(name: str) -> str:
    """``name``, if the keys file can hold it.

    Raises:
        ValueError: ``name`` is not 1-64 characters of ``A-Z a-z 0-9 _ . -``.
    """
    if not KEY_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a key name: 1-64 characters of A-Z a-z 0-9 _ . -")
    return name


def new_key(name: str, admin: bool = False) -> NewKey:
    """A new random key named ``name`` (ValueError as :func:`check_key_name`)."""
    return NewKey(check_key_name(name), secrets.token_urlsafe(KEY_BYTES), admin)
