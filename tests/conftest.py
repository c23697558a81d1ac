"""Fixtures shared by every test layer: the media corpus, moto's S3 server, whole stacks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.moto import moto_server
from tests.support.stack import ROOT, Stack

MEDIA_CANDIDATES = [
    Path(os.environ["SIPHON_MEDIA_DIR"]) if os.environ.get("SIPHON_MEDIA_DIR") else None,
    ROOT.parent / "shared" / "media",  # a checkout beside the shared corpus, as in the workspace
    Path("/work/shared/media"),  # where the corpus lives on the team's machines, for clones elsewhere
]
MEDIA_DIR = next((p for p in MEDIA_CANDIDATES if p and (p / "MANIFEST.tsv").exists()), ROOT.parent / "shared" / "media")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    """``../shared/media``: the corpus of real files described by its MANIFEST.tsv."""
    if not (MEDIA_DIR / "MANIFEST.tsv").exists():
        pytest.fail(f"media corpus not found at {MEDIA_DIR} (set SIPHON_MEDIA_DIR)")
    return MEDIA_DIR


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> str:
    """URL of a moto S3 server on loopback, shared by the session."""
    with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
        yield endpoint


@pytest.fixture
def make_stack(tmp_path_factory, moto_endpoint):
    """Factory: ``make_stack(backend="local", workers=2, **env)`` starts a stack, stopped after the test."""
    stacks: list[Stack] = []

    def make(backend: str = "local", workers: int = 2, **env: str) -> Stack:
        stack = Stack(
            tmp_path_factory.mktemp(f"stack-{backend}"),
            backend=backend,
            workers=workers,
            s3_endpoint=moto_endpoint if backend == "s3" else None,
            env_overrides=env,
        )
        stacks.append(stack)
        return stack.start()

    yield make
    for stack in stacks:
        stack.stop()
