"""glibc's thresholds (``shared/malloc.py``): with them set, a 1 MiB buffer copied and freed over and
over reuses memory instead of faulting fresh pages in each time. Each case runs in a fresh
interpreter, since the thresholds are process-wide."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt(3) only")

COPY_LOOP = """
import io, resource, sys, threading
from shared.malloc import keep_large_buffers
taken = keep_large_buffers() if sys.argv[1] == "set" else None
chunk = b"x" * (1024 * 1024)

def read_body():  # what gunicorn's body reader and werkzeug's parser do with each 1 MiB read
    for _ in range(100):
        held = io.BytesIO()
        held.write(chunk)
        held.write(chunk[:300_000])
        data = held.getvalue()
        read, rest = data[:1024 * 1024], data[1024 * 1024:]
        part = bytes(bytearray(read[:262_144]))
        del held, data, read, rest, part

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
threads = [threading.Thread(target=read_body) for _ in range(4)]  # gthread's threads
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(taken, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str, **env: str) -> tuple[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", COPY_LOOP, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        cwd=os.getcwd(),
    )
    taken, faults = done.stdout.split()
    return taken, int(faults)


@pytest.fixture(scope="module")
def faults_by_default() -> int:
    """Page faults of the copies under glibc's own thresholds: ~330 000 where this was written."""
    _, without = page_faults("leave")
    if without < 50_000:
        pytest.skip(f"this glibc reuses the buffers by itself ({without} page faults)")
    return without


def test_freed_large_buffers_are_reused_instead_of_faulted_in_again(faults_by_default):
    taken, kept = page_faults("set")
    assert taken == "True"
    assert kept < faults_by_default / 10


def test_an_operators_own_tunable_is_left_alone(faults_by_default):
    taken, kept = page_faults("set", MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    assert taken == "True"
    assert kept > faults_by_default / 2, "the operator's small thresholds still map every large block"
