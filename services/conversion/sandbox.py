"""Confining every process that parses an uploaded file: ffmpeg and ffprobe under bubblewrap, the
forked libav child under seccomp and Landlock, and rlimits on all of them (issue #14, item 7).

What a confined process may do (``SANDBOX=bwrap``, the default):

* **no network**: ffmpeg and ffprobe run in a network namespace of their own with no interface up
  (bwrap ``--unshare-all``: user, IPC, PID, network, UTS and cgroup namespaces); the forked child
  cannot make a socket of any family but ``AF_UNIX`` (a seccomp filter: ``socket(2)`` fails with
  ``EAFNOSUPPORT``; ``io_uring``, which can open sockets too, and ``ptrace`` fail with ``EPERM``)
  and keeps none of the worker's connections (its inherited descriptors are closed);
* **files**: it reads the system's directories (``/usr``, ``/lib*``, ``/bin``, ``/sbin``, ``/etc``;
  the forked child also Python's prefix and siphon's own code, for imports) and the job's input,
  and reads and writes only the job's temp dir. It cannot read ``STORAGE_DIR`` (the local backend's
  input file is bound alone, read-only) nor another job's temp dir: under bwrap they are not in its
  mount namespace at all (its ``/`` is an empty, read-only tmpfs); in the forked child Landlock
  (kernel 5.13+) refuses every path outside those rules;
* **rlimits** (``setrlimit(2)``; for ffmpeg and ffprobe by util-linux's ``prlimit`` before bwrap):
  CPU seconds (``SANDBOX_CPU_SECONDS``), memory (``SANDBOX_MEMORY_BYTES`` as ``RLIMIT_DATA`` for
  ffmpeg and ffprobe; the forked child keeps its ``RLIMIT_AS``, ``services.conversion.forked``),
  file size (``MAX_OUTPUT_BYTES`` plus :data:`FILE_SIZE_SLACK_BYTES`) and processes
  (``SANDBOX_MAX_PROCESSES``; the kernel does not count this one for root in the initial user
  namespace).

``SANDBOX=off`` runs them as before, unconfined; the worker says so in a warning at start. A
configured sandbox that cannot be applied stops the worker at start (:meth:`Sandbox.check`), and
one that fails later fails the job with ``sandbox_failed`` (:class:`~shared.errors.SandboxFailed`).
"""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import landlock

try:  # imported once in the worker: it looks libseccomp up with ldconfig, too slow for each child
    import pyseccomp
except RuntimeError:  # no libseccomp2: SANDBOX=bwrap refuses to start (Sandbox.check); off needs none
    pyseccomp = None

import services
import shared
from services.conversion.forked import ForkedCall
from shared.config import Settings
from shared.errors import ConfigError, SandboxFailed

Mechanism = Literal["bwrap", "off"]

SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
"""Read-only in every sandbox: the tools, their shared libraries and their configuration."""

CPU_GRACE_SECONDS = 10
"""Hard RLIMIT_CPU above the soft one, seconds: at the soft limit the kernel sends SIGXCPU, which
ffmpeg catches to stop and exit 255; at the hard one it sends SIGKILL."""

FILE_SIZE_SLACK_BYTES = 16 * 1024 * 1024
"""RLIMIT_FSIZE above ``MAX_OUTPUT_BYTES``, bytes: ffmpeg's own ``-fs`` stops it first, with a
clean file; the kernel's limit (SIGXFSZ) is the backstop."""

PRLIMIT = "prlimit"
"""util-linux's prlimit(1) (Essential in Debian): sets a confined run's rlimits, then execs bwrap in
the same process. Setting them in a ``preexec_fn`` instead made CPython fork() the whole worker for
every spawn (a ``preexec_fn`` rules out its vfork()): ~7 ms of CPU per spawn from a 60 MB worker,
against ~2 ms with prlimit's exec (issue #16)."""

BWRAP_FAILED_PREFIX = "bwrap: "
"""How bwrap's own messages start (it exits 1 when it cannot build the sandbox)."""

CHECK_TIMEOUT_SECONDS = 20
"""How long the start-up check waits for its sandboxed ``true``, seconds."""

_READ = landlock.FSAccess.READ_FILE | landlock.FSAccess.READ_DIR | landlock.FSAccess.EXECUTE


@dataclass(frozen=True)
class Limits:
    """rlimits of a confined process: CPU seconds, memory bytes, file size bytes, processes."""

    cpu_seconds: int
    memory_bytes: int
    file_bytes: int
    processes: int

    def apply(self) -> None:
        """Lower this process's limits but memory (a forked child, before its function; it keeps
        the ``RLIMIT_AS`` ``services.conversion.forked`` sets)."""
        for which, (soft, hard) in self._wanted(memory=False).items():
            resource.setrlimit(which, (soft, hard))

    def prlimit_options(self) -> list[str]:
        """The limits as options of :data:`PRLIMIT` (``--cpu=<soft>:<hard>`` ...), memory as
        ``RLIMIT_DATA``, for a process this one starts."""
        wanted = self._wanted(memory=True)
        return [f"--{PRLIMIT_NAMES[which]}={soft}:{hard}" for which, (soft, hard) in wanted.items()]

    def _wanted(self, memory: bool) -> dict[int, tuple[int, int]]:
        """``{rlimit: (soft, hard)}``, each within this process's hard limit (a child inherits it)."""
        cpu = (self.cpu_seconds, self.cpu_seconds + CPU_GRACE_SECONDS)
        wanted = {
            resource.RLIMIT_CPU: _within(resource.RLIMIT_CPU, *cpu),
            resource.RLIMIT_FSIZE: _within(resource.RLIMIT_FSIZE, self.file_bytes),
            resource.RLIMIT_NPROC: _within(resource.RLIMIT_NPROC, self.processes),
        }
        if memory:
            wanted[resource.RLIMIT_DATA] = _within(resource.RLIMIT_DATA, self.memory_bytes)
        return wanted


PRLIMIT_NAMES = {
    resource.RLIMIT_CPU: "cpu",
    resource.RLIMIT_FSIZE: "fsize",
    resource.RLIMIT_NPROC: "nproc",
    resource.RLIMIT_DATA: "data",
}
"""prlimit(1)'s option for each rlimit siphon sets."""


def _within(which: int, value: int, hard_value: int | None = None) -> tuple[int, int]:
    """``(soft, hard)``: ``value`` and ``hard_value`` (default: the same), never above the hard
    limit this process has (only root may raise one)."""
    _, hard = resource.getrlimit(which)
    new_hard = value if hard_value is None else hard_value
    if hard != resource.RLIM_INFINITY:
        value, new_hard = min(value, hard), min(new_hard, hard)
    return value, new_hard


@dataclass(frozen=True)
class Sandbox:
    """The configured mechanism, limits and tools; :meth:`jail` gives what one run may touch."""

    mechanism: Mechanism
    limits: Limits
    bwrap: str = "bwrap"
    tools: tuple[str, ...] = ("ffmpeg", "ffprobe")

    @classmethod
    def from_settings(cls, s: Settings) -> Sandbox:
        limits = Limits(
            cpu_seconds=s.sandbox_cpu_seconds,
            memory_bytes=s.sandbox_memory_bytes,
            file_bytes=s.max_output_bytes + FILE_SIZE_SLACK_BYTES,
            processes=s.sandbox_max_processes,
        )
        return cls(s.sandbox, limits, s.bwrap_path, (s.ffmpeg_path, s.ffprobe_path))

    @property
    def enabled(self) -> bool:
        return self.mechanism != "off"

    def with_cpu_seconds(self, at_least: float) -> Sandbox:
        """This sandbox with at least ``at_least`` CPU seconds (RLIMIT_CPU) for one run: a video
        encode uses every core for longer than an audio job may."""
        seconds = max(self.limits.cpu_seconds, math.ceil(at_least))
        return dataclasses.replace(self, limits=dataclasses.replace(self.limits, cpu_seconds=seconds))

    def jail(self, work_dir: Path | None, *inputs: Path) -> Jail:
        """A run that may read ``inputs`` (files) and read and write ``work_dir`` (None: nothing)."""
        return Jail(self, work_dir, tuple(inputs))

    def check(self) -> None:
        """Apply the sandbox once, as a job would, to know it works here (the worker's start-up).

        Raises:
            ConfigError: one line naming what is missing, e.g. ``SANDBOX=bwrap: bwrap not found
                (apt-get install bubblewrap), or set SANDBOX=off``.
        """
        if not self.enabled:
            return
        if shutil.which(self.bwrap) is None:
            raise self.refusal(f"{self.bwrap} not found (apt-get install bubblewrap)")
        if shutil.which(PRLIMIT) is None:
            raise self.refusal(f"{PRLIMIT} not found (apt-get install util-linux)")
        _check_landlock_and_seccomp(self)
        # The sandbox a job gets (with ffmpeg's and ffprobe's folders bound), around a command that
        # cannot fail by itself: a broken ffmpeg is the jobs' to report, not a reason to stop here.
        tool = shutil.which("true") or "/bin/true"
        try:
            done = subprocess.run(
                self.jail(None).command([tool]),
                capture_output=True,
                timeout=CHECK_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise self.refusal(f"{self.bwrap} could not run {tool}: {exc}") from None
        if done.returncode != 0:
            said = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
            raise self.refusal(f"{self.bwrap} could not run {tool}: {said}")

    def refusal(self, what: str) -> ConfigError:
        """The one-line start-up error saying ``what`` is missing."""
        return ConfigError(f"SANDBOX={self.mechanism}: {what}, or set SANDBOX=off")


def _check_landlock_and_seccomp(sandbox: Sandbox) -> None:
    """Confine a forked child as a job's would be and see that it works."""
    jail = sandbox.jail(None)
    try:
        outcome = ForkedCall(_socket_refused, timeout_seconds=CHECK_TIMEOUT_SECONDS, confine=jail.enter).result()
    except SandboxFailed as exc:
        raise sandbox.refusal(exc.message) from None
    if not (outcome.ok and outcome.value):
        raise sandbox.refusal("the forked child's seccomp filter did not refuse a TCP socket")


def _socket_refused() -> bool:
    """Whether this process is refused a TCP socket (the forked child's self-test)."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    except OSError:
        return True
    return False


@dataclass(frozen=True)
class Jail:
    """What one confined run may touch: read ``inputs`` and read and write ``work_dir``.

    Two ways in: :meth:`command` wraps an argv in prlimit (the rlimits) and bwrap, :meth:`enter`
    confines a forked child in place. With ``SANDBOX=off`` both leave the process as it is.
    """

    sandbox: Sandbox
    work_dir: Path | None
    inputs: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def confines(self) -> bool:
        """Whether :meth:`command` confines (else the argv runs as it is: ``SANDBOX=off``)."""
        return self.sandbox.enabled

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` under the rlimits (:data:`PRLIMIT`) and bwrap: its own namespaces, an empty
        read-only root with the system's directories read-only, the inputs read-only and the work
        dir read-write at their own paths, and the worker's current directory (empty) as its own,
        so relative paths mean the same inside. bwrap's ``--die-with-parent`` kills it all
        (``PR_SET_PDEATHSIG``) when the thread that started it exits, as when the worker dies.

        Start it without a ``preexec_fn``: none is needed, and one costs a fork() of the worker."""
        if not self.sandbox.enabled:
            return list(argv)
        here = os.getcwd()
        args = [PRLIMIT, *self.sandbox.limits.prlimit_options(), "--"]
        args += [self.sandbox.bwrap, "--unshare-all", "--unshare-user", "--die-with-parent", "--cap-drop", "ALL"]
        for directory in SYSTEM_DIRS:
            args += ["--ro-bind-try", directory, directory]
        for directory in _tool_dirs(self.sandbox.tools):
            args += ["--ro-bind", directory, directory]
        args += ["--dev", "/dev", "--dir", here]
        for path in self.inputs:
            absolute = os.path.abspath(path)
            args += ["--ro-bind", absolute, absolute]
        if self.work_dir is not None:
            absolute = os.path.abspath(self.work_dir)
            args += ["--bind", absolute, absolute]
        return [*args, "--remount-ro", "/", "--chdir", here, "--", *argv]

    def enter(self, keep_fds: Sequence[int] = ()) -> None:
        """Confine this (forked, single-threaded) process for good: close every descriptor but
        0-2 and ``keep_fds``, rlimits but memory, Landlock, then the seccomp filter.

        Raises:
            SandboxFailed: the kernel refused Landlock or seccomp.
        """
        if not self.sandbox.enabled:
            return
        _close_fds_except(keep_fds)
        self.sandbox.limits.apply()
        try:
            self._landlock()
            _refuse_sockets()
        except (OSError, landlock.LandlockError) as exc:
            said = " ".join(str(exc).split())  # landlock's errors add a "Note:" line; keep it one line
            raise SandboxFailed(f"could not confine the forked child: {said}") from exc

    def _landlock(self) -> None:
        rules = landlock.Ruleset()
        readable = {*SYSTEM_DIRS, sys.prefix, sys.base_prefix, sys.exec_prefix, *_code_dirs()}
        rules.allow(*(d for d in sorted(readable) if os.path.isdir(d)), rules=_READ)
        for path in self.inputs:
            rules.allow(path, rules=landlock.FSAccess.READ_FILE)
        if self.work_dir is not None:
            rules.allow(self.work_dir)
        rules.apply()


def _code_dirs() -> list[str]:
    """siphon's own packages (their modules may still be imported in the child), not the
    directory above them, which may hold ``var/storage``."""
    return [path for package in (services, shared) for path in package.__path__]


def _tool_dirs(tools: Sequence[str]) -> list[str]:
    """The directories of ``tools`` that the system's directories do not cover (an ffmpeg in /opt)."""
    found = {os.path.dirname(os.path.realpath(path)) for tool in tools if (path := shutil.which(tool))}
    return sorted(d for d in found if not any(d == s or d.startswith(s + "/") for s in SYSTEM_DIRS))


def _close_fds_except(keep_fds: Sequence[int]) -> None:
    """Close every descriptor above 2 but ``keep_fds``: the worker's AMQP and Redis sockets must
    not be usable from a child that parses uploads."""
    low = 3
    for fd in sorted(keep_fds):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _refuse_sockets() -> None:
    """Load the seccomp filter: every ``socket(2)`` family but AF_UNIX refused (EAFNOSUPPORT), and
    ``io_uring_setup`` (its IORING_OP_SOCKET opens sockets without socket(2)), ``ptrace`` and
    ``process_vm_writev`` refused (EPERM); all else allowed. Syscalls of another architecture
    (the i386 ABI) kill the process (libseccomp's default for a foreign architecture).

    Raises:
        OSError: libseccomp2 is not installed, or the kernel refused the filter.
    """
    if pyseccomp is None:
        raise OSError(errno.ENOENT, "libseccomp2 not found (apt-get install libseccomp2)")
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    rules.add_rule(pyseccomp.ERRNO(errno.EAFNOSUPPORT), "socket", pyseccomp.Arg(0, pyseccomp.NE, socket.AF_UNIX))
    for name in ("io_uring_setup", "ptrace", "process_vm_writev"):
        rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
    rules.load()


def bwrap_failure(stderr_tail: str) -> str | None:
    """bwrap's own complaint in a confined run's stderr (it could not build the sandbox), else None."""
    return next((line for line in stderr_tail.splitlines() if line.startswith(BWRAP_FAILED_PREFIX)), None)
