"""API keys for tests: a keys file (``API_KEYS_FILE``) of fresh keys, and the headers that carry them."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class KeyFile:
    """A keys file at ``path``: ``add`` makes a key and rewrites the file; ``remove`` drops one."""

    path: Path
    keys: dict[str, tuple[str, bool]] = field(default_factory=dict)

    def add(self, name: str, admin: bool = False) -> str:
        """A new key named ``name`` (an ``admin`` one if asked), written to the file; returns the key."""
        key = secrets.token_urlsafe(32)
        self.keys[name] = (key, admin)
        self.write()
        return key

    def remove(self, name: str) -> None:
        del self.keys[name]
        self.write()

    def write(self) -> None:
        lines = ["# written by tests/support/keys.py"]
        for name, (key, admin) in self.keys.items():
            lines.append(f"{name} {hashlib.sha256(key.encode()).hexdigest()}{' admin' if admin else ''}")
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text("\n".join(lines) + "\n")
        temporary.replace(self.path)  # whole or not at all, as a secret mount swaps it

    def auth(self, name: str) -> dict[str, str]:
        """The ``Authorization`` header of key ``name``."""
        return {"Authorization": f"Bearer {self.keys[name][0]}"}
