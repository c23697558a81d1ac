"""Keeping glibc from mapping and unmapping every large buffer, so a streamed upload's copies reuse
memory instead of faulting fresh pages in.

A 12.8 MB upload passes through the gateway and the upload service in reads of up to 1 MiB, and
each read is copied a few times (gunicorn's body reader, werkzeug's multipart parser). glibc serves
every block above its mmap threshold (128 KiB at start, adjusted upward only as blocks are freed)
with a fresh ``mmap`` and returns it with ``munmap``, and trims the heap top back to the kernel past
its trim threshold, so each copy page-faults its destination in: ``perf record`` of both services
during uploads (issue #16) put ~20-25 % of their CPU in ``memmove`` and ``exc_page_fault``.
Fixing both thresholds (``mallopt(3)``: ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``) keeps freed
blocks in the process for the next read.

An operator's own ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (glibc's environment
tunables, mallopt(3)) win: neither is touched when set. On a C library other than glibc (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""mallopt(3)'s parameter numbers (glibc's malloc.h)."""

MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
"""Blocks up to this size come from the heap, not a mapping of their own, bytes (the largest read
and its copies are about 1-2 MiB; glibc caps this at 32 MiB on 64-bit)."""

TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
"""Free memory at a heap's top kept for reuse before it is given back to the kernel, bytes."""


def keep_large_buffers() -> bool:
    """Set glibc's mmap and trim thresholds to :data:`MMAP_THRESHOLD_BYTES` and
    :data:`TRIM_THRESHOLD_BYTES`, each unless its environment tunable is set; return whether
    glibc took them (False on another C library). Call it in each process that should have
    them, before it makes threads: gunicorn's ``post_fork`` hook, in every worker."""
    libc = ctypes.CDLL(None)  # the symbols already loaded: no ldconfig run, as find_library would
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    taken = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        taken &= libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        taken &= libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return bool(taken)
