"""Running libav (through PyAV) on uploaded bytes in a forked child, not in the worker.

Making a cover picture parses whatever a client uploaded. In a child forked from the worker, with
libav already mapped, that costs a fork (~1 ms) instead of starting Debian's ffmpeg (~50 ms of CPU,
most of it the dynamic linker resolving 215 shared libraries; docs/performance.md), and a crash, a
hang or a runaway allocation there ends the child, not the worker: the parent sees no answer.

The child resets the worker's signal handlers, sends its stderr to /dev/null (libav's messages
would land in the worker's JSON logs), limits its address space to what it inherited plus
:data:`MEMORY_HEADROOM_BYTES`, confines itself when given a ``confine`` (the job's sandbox,
``services.conversion.sandbox``: seccomp, Landlock, rlimits), runs one function, writes its
JSON answer to a pipe and leaves with ``os._exit`` (no atexit handlers, no flushing of the
worker's buffers, nothing of the worker's connections touched).

The worker is threaded (pika's I/O loop, the work thread), and a forked child holds only the thread
that forked it. So the child takes no lock another thread may hold: it logs nothing and touches
no connection; the GIL, the allocator and the ``logging`` module re-initialise their own locks
at fork. Python 3.12 warns about any fork in a threaded process; siphon runs on 3.11
(services/conversion/Dockerfile).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import json
import os
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import av  # loaded in the worker once, so each child finds libav mapped already
import av.logging

from shared.errors import SandboxFailed

PR_SET_PDEATHSIG = 1
"""prctl(2) option (<linux/prctl.h>): the signal a process gets when the thread that forked it exits."""

_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

MEMORY_HEADROOM_BYTES = 2 << 30
"""Address space a child may map beyond what it inherits from the worker (RLIMIT_AS), bytes: a
hostile frame size cannot take the host."""


@dataclass(frozen=True)
class Outcome:
    """How a forked call ended: ``value`` (what the function returned) when ``ok``; else ``error``
    (the exception it raised, as text, with libav's messages in ``log``), or ``timed_out``, or
    neither (the child died: a crash or a kill)."""

    ok: bool
    value: Any = None
    error: str | None = None
    log: str = ""
    timed_out: bool = False


Confine = Callable[[Sequence[int]], None]
"""Confines the child before it runs the function; gets the descriptors it must keep open, and
raises :class:`~shared.errors.SandboxFailed` when it cannot (``sandbox.Jail.enter``)."""


class ForkedCall:
    """``function(*args)`` running in a forked child from construction; :meth:`result` waits for it.

    ``function`` must return something :func:`json.dumps` takes. Start it, do other work, then call
    :meth:`result` (or :meth:`cancel`). Constructing it raises only ``OSError`` (no fork possible).
    With ``confine``, the child confines itself first.
    """

    def __init__(
        self, function: Callable[..., Any], *args: Any, timeout_seconds: float, confine: Confine | None = None
    ):
        self._deadline = time.monotonic() + timeout_seconds
        reader, writer = os.pipe()
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: no return from this branch
            os.close(reader)
            _child(function, args, writer, parent_pid, confine)
        os.close(writer)
        self._pid: int | None = pid
        self._reader: int | None = reader

    def result(self) -> Outcome:
        """Wait for the answer until the deadline; the child is killed either way, and reaped:
        at once when it gave no answer, else by a thread of its own (see :meth:`_end`).

        Raises:
            SandboxFailed: the child could not confine itself (it ran nothing).
        """
        data, complete = b"", False
        try:
            data, complete = self._read()
        finally:
            self._end(pipe_closed=complete)
        if not complete:
            return Outcome(ok=False, timed_out=True)
        if not data:
            return Outcome(ok=False)  # died without answering
        answer = json.loads(data)
        if "sandbox_error" in answer:
            raise SandboxFailed(answer["sandbox_error"])
        if "error" in answer:
            return Outcome(ok=False, error=answer["error"], log=answer.get("log", ""))
        return Outcome(ok=True, value=answer["value"])

    def _read(self) -> tuple[bytes, bool]:
        data = b""
        while (left := self._deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self._reader], [], [], left)
            if not ready:
                break
            chunk = os.read(self._reader, 65536)
            if not chunk:
                return data, True
            data += chunk
        return data, False

    def cancel(self) -> None:
        """Kill the child if it still runs and reap it; safe to call more than once."""
        self._end(pipe_closed=False)

    def _end(self, pipe_closed: bool) -> None:
        """Kill the child, reap it and close the pipe. Once the child closed its end of the pipe
        (it answered, or died), it is reaped on a daemon thread instead: the kernel frees the
        child's copy of the worker's memory before the child counts as exited, 2-5 ms of wall
        time per call (issue #16) that the task need not wait for. Killed first either way, so no
        child outlives its call, whatever ran in it."""
        if self._pid is not None:
            pid, self._pid = self._pid, None
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            if pipe_closed:
                threading.Thread(target=_reap, args=(pid,), name=f"reap-{pid}", daemon=True).start()
            else:
                os.waitpid(pid, 0)
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None


def _child(function: Callable[..., Any], args: tuple, writer: int, parent_pid: int, confine: Confine | None) -> None:
    code = 1
    try:
        die_with(parent_pid)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)  # the worker's graceful-shutdown handlers are not ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        faulthandler.disable()  # a crash here is reported by the parent, not dumped into its log
        limit = _mapped_bytes() + MEMORY_HEADROOM_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        av.logging.set_level(av.logging.ERROR)
        if confine is not None:
            try:
                confine((writer,))
            except SandboxFailed as exc:
                _write_all(writer, json.dumps({"sandbox_error": exc.message}).encode())
                return
        with av.logging.Capture() as logs:
            try:
                answer = {"value": function(*args)}
            except Exception as exc:  # noqa: BLE001 - reported to the parent, which judges it
                answer = {"error": f"{type(exc).__name__}: {exc}"[:1000]}
        if "error" in answer:
            answer["log"] = "\n".join(message for _, _, message in logs)[-4000:]
        _write_all(writer, json.dumps(answer).encode())
        os.close(writer)  # the answer is whole: the parent reads its end now, not after this exit
        code = 0
    finally:
        os._exit(code)


def _reap(pid: int) -> None:
    """Wait for the child ``pid`` to end and collect it (on a reaper thread)."""
    with contextlib.suppress(ChildProcessError):  # collected already (a caller that waited for it)
        os.waitpid(pid, 0)


def die_with(parent_pid: int) -> None:
    """Have the kernel SIGKILL this process when the thread that forked it exits (prctl(2)
    ``PR_SET_PDEATHSIG``); run in the child. The forked children and an unconfined ffmpeg (its
    ``preexec_fn``; a confined one has bwrap's ``--die-with-parent``) use it, so a worker killed
    with SIGKILL leaves nothing running: ffmpeg runs in a session of its own and ignores its broken
    progress pipe, and a child stuck in libav has no deadline left."""
    if _prctl is None:
        return
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the worker died before prctl took effect
        os._exit(1)


def _mapped_bytes() -> int:
    """This process's virtual size (``/proc/self/statm``, its first field, in pages), bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
