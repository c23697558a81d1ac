"""The conversion sandbox (services/conversion/sandbox.py) really confines what parses uploads.

A helper is run through the launcher ffmpeg and ffprobe use (``Jail.command``: prlimit, then
bwrap), and functions run in a forked child through ``ForkedCall(confine=Jail.enter)``
as the probe and the picture are. Each tries to reach a loopback listener, read a file under the
storage dir and another job's temp dir, and write outside its own dir; confined, all of that fails,
and the same helper with ``SANDBOX=off`` succeeds (so these tests can fail).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.conversion.encode import FfmpegProcess
from services.conversion.forked import ForkedCall
from services.conversion.picture import make_picture
from services.conversion.plan import Cover
from services.conversion.probe import _parse, libav_probe
from services.conversion.sandbox import Sandbox
from shared.config import load_settings
from shared.errors import MediaError, SandboxFailed

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="bwrap, seccomp and Landlock are Linux's")

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"
"""The helper's interpreter: one under /usr, which the sandbox shows (a pyenv or venv one is not)."""

HELPER = """
import json, socket, sys
port, secret, other_job, outside, own, source = sys.argv[1:]
def attempt(action):
    try:
        action()
        return "ok"
    except OSError as exc:
        return type(exc).__name__
def connect():
    socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
print(json.dumps({
    "connect": attempt(connect),
    "read_storage": attempt(lambda: open(secret).read()),
    "read_other_job": attempt(lambda: open(other_job).read()),
    "write_outside": attempt(lambda: open(outside, "w").write("x")),
    "write_own": attempt(lambda: open(own, "w").write("x")),
    "read_input": attempt(lambda: open(source).read()),
}))
"""


@pytest.fixture
def listener():
    """A TCP listener on loopback, in the test's (the worker's) network namespace."""
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def layout(tmp_path):
    """A storage dir holding the job's input and a secret, the job's temp dir, another job's."""
    storage = tmp_path / "storage"
    (storage / "uploads" / "job-1").mkdir(parents=True)
    source = storage / "uploads" / "job-1" / "input"
    source.write_text("the upload")
    secret = storage / "uploads" / "someone-else"
    secret.write_text("another user's upload")
    own, other = tmp_path / "work" / "job-1-abc", tmp_path / "work" / "job-2-def"
    own.mkdir(parents=True)
    other.mkdir()
    (other / "input").write_text("another job's input")
    return {
        "secret": secret,
        "other_job": other / "input",
        "outside": tmp_path / "outside.txt",
        "own": own / "written.txt",
        "source": source,
        "work_dir": own,
    }


def sandbox(mechanism: str = "bwrap", **overrides) -> Sandbox:
    return Sandbox.from_settings(load_settings(sandbox=mechanism, **overrides))


def run_helper(mechanism: str, port: int, paths: dict) -> dict:
    """The helper run as the worker runs ffmpeg: ``Jail.command``, no ``preexec_fn``."""
    jail = sandbox(mechanism).jail(paths["work_dir"], paths["source"])
    argv = [SYSTEM_PYTHON, "-I", "-c", HELPER, str(port)]
    argv += [str(paths[name]) for name in ("secret", "other_job", "outside", "own", "source")]
    done = subprocess.run(jail.command(argv), capture_output=True, timeout=30, check=True)
    return json.loads(done.stdout)


def test_a_helper_launched_like_ffmpeg_reaches_no_network_no_storage_and_writes_only_its_dir(listener, layout):
    seen = run_helper("bwrap", listener, layout)
    assert seen["connect"] != "ok"
    assert seen["read_storage"] == "FileNotFoundError"  # not in its mount namespace at all
    assert seen["read_other_job"] == "FileNotFoundError"
    assert seen["write_outside"] == "OSError" and not layout["outside"].exists()  # EROFS
    assert (seen["write_own"], seen["read_input"]) == ("ok", "ok")


def test_the_same_helper_unconfined_reaches_all_of_it(listener, layout):
    seen = run_helper("off", listener, layout)
    assert set(seen.values()) == {"ok"}


LIMITS_HELPER = """
import json, resource
names = ("RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_NPROC")
print(json.dumps({name: resource.getrlimit(getattr(resource, name)) for name in names}))
"""


def test_a_helper_launched_like_ffmpeg_runs_under_the_configured_rlimits(layout):
    confined = sandbox(sandbox_cpu_seconds=77, sandbox_memory_bytes=300 * 2**20, sandbox_max_processes=33)
    command = confined.jail(layout["work_dir"]).command([SYSTEM_PYTHON, "-I", "-c", LIMITS_HELPER])
    seen = json.loads(subprocess.run(command, capture_output=True, timeout=30, check=True).stdout)
    file_bytes = confined.limits.file_bytes
    assert seen == {
        "RLIMIT_CPU": [77, 87],
        "RLIMIT_DATA": [300 * 2**20, 300 * 2**20],
        "RLIMIT_FSIZE": [file_bytes, file_bytes],
        "RLIMIT_NPROC": [33, 33],
    }


SPAWNER = """
import sys, threading, time
from pathlib import Path
from services.conversion.encode import FfmpegProcess
from services.conversion.sandbox import Sandbox
from shared.config import load_settings
work = Path(sys.argv[1])
jail = Sandbox.from_settings(load_settings(sandbox="bwrap")).jail(work)
process = FfmpegProcess(["sleep", "300"], work / "log", jail)
threading.Thread(target=process.run, args=(600, lambda seconds: None), daemon=True).start()
time.sleep(600)
"""


def session_members(session: int) -> list[int]:
    """The live processes of session ``session`` (``/proc/<pid>/stat``'s sixth field)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def launched_bwrap(parent: int) -> int | None:
    """The bwrap ``parent`` started (prlimit exec'd into it), if there is one yet: not another
    child (importing pyseccomp runs ldconfig)."""
    for listing in Path(f"/proc/{parent}/task").glob("*/children"):
        for pid in listing.read_text().split():
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap":
                    return int(pid)
            except OSError:
                continue
    return None


def test_a_confined_run_dies_with_the_worker_that_started_it(layout):
    """No ``preexec_fn`` sets ``PR_SET_PDEATHSIG`` any more: bwrap's ``--die-with-parent`` must."""
    spawner = subprocess.Popen([sys.executable, "-c", SPAWNER, str(layout["work_dir"])], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while (launched := launched_bwrap(spawner.pid)) is None:
            assert time.monotonic() < deadline, "the confined run did not start"
            time.sleep(0.05)
        while len(session_members(launched)) < 3:  # bwrap, its child in the namespaces, sleep
            log = layout["work_dir"] / "log"
            assert time.monotonic() < deadline, f"sleep did not start: {log.read_text() if log.exists() else ''}"
            time.sleep(0.05)
    finally:
        spawner.kill()
        spawner.wait(10)
    deadline = time.monotonic() + 10
    try:
        while session_members(launched):
            assert time.monotonic() < deadline, f"left running: {session_members(launched)}"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launched, signal.SIGKILL)  # what a failure left behind


def _connect(port: int) -> str:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    return "connected"


def _read(path: str) -> str:
    return Path(path).read_text()


def _write(path: str) -> str:
    Path(path).write_text("x")
    return "written"


@pytest.mark.parametrize(
    ("function", "argument"),
    [(_connect, "port"), (_read, "secret"), (_read, "other_job"), (_write, "outside")],
    ids=["connect", "read_storage", "read_other_job", "write_outside"],
)
def test_a_function_in_the_confined_forked_child_is_refused(listener, layout, function, argument):
    value = listener if argument == "port" else str(layout[argument])
    jail = sandbox().jail(layout["work_dir"], layout["source"])
    confined = ForkedCall(function, value, timeout_seconds=30, confine=jail.enter).result()
    assert not confined.ok and ("Error" in confined.error), confined
    unconfined = ForkedCall(function, value, timeout_seconds=30, confine=sandbox("off").jail(None).enter).result()
    assert unconfined.ok, unconfined


def test_the_confined_forked_child_reads_its_input_and_writes_its_dir(layout):
    jail = sandbox().jail(layout["work_dir"], layout["source"])
    assert (
        ForkedCall(_read, str(layout["source"]), timeout_seconds=30, confine=jail.enter).result().value == "the upload"
    )
    assert ForkedCall(_write, str(layout["own"]), timeout_seconds=30, confine=jail.enter).result().ok


def test_the_confined_forked_child_keeps_none_of_the_workers_connections(listener, layout):
    connection = socket.create_connection(("127.0.0.1", listener))
    try:
        jail = sandbox().jail(layout["work_dir"])
        outcome = ForkedCall(os.fstat, connection.fileno(), timeout_seconds=30, confine=jail.enter).result()
        assert not outcome.ok and "Bad file descriptor" in outcome.error
    finally:
        connection.close()


def test_a_child_that_cannot_confine_itself_raises_sandbox_failed_and_runs_nothing(layout):
    def refuse(keep_fds):
        raise SandboxFailed("Landlock is not supported")

    with pytest.raises(SandboxFailed, match="Landlock"):
        ForkedCall(_write, str(layout["own"]), timeout_seconds=30, confine=refuse).result()
    assert not layout["own"].exists()


def test_the_confined_child_probes_and_pictures_the_corpus_as_the_unconfined_one(media_dir, tmp_path):
    # The probe falls back to ffprobe when its child fails, so a child the sandbox broke would not
    # fail the corpus test: compare the child's own answers, confined and not, file by file.
    confined, unconfined, pictures = sandbox(), sandbox("off"), 0
    for path in sorted(p for p in media_dir.iterdir() if p.name != "MANIFEST.tsv" and p.stat().st_size):
        answers = [
            ForkedCall(libav_probe, str(path), timeout_seconds=60, confine=box.jail(tmp_path, path).enter).result()
            for box in (confined, unconfined)
        ]
        assert answers[0] == answers[1], path.name
        if not answers[0].ok:
            continue
        video = _parse(answers[0].value).moving_picture()
        if video is not None:
            made = [
                ForkedCall(
                    make_picture,
                    path,
                    Cover(video.index, 1.0),
                    tmp_path / f"{i}.jpg",
                    timeout_seconds=60,
                    confine=box.jail(tmp_path, path).enter,
                ).result()
                for i, box in enumerate((confined, unconfined))
            ]
            assert (made[0].ok, made[0].value) == (made[1].ok, made[1].value), path.name
            pictures += made[0].ok
    assert pictures > 0


def fake_bwrap(tmp_path: Path) -> Path:
    """A bwrap that fails as a real one does on a host without user namespaces."""
    path = tmp_path / "bwrap"
    path.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    path.chmod(0o755)
    return path


def test_ffmpeg_whose_jail_cannot_be_built_fails_with_sandbox_failed_not_a_media_code(tmp_path, layout):
    jail = sandbox(bwrap_path=str(fake_bwrap(tmp_path))).jail(layout["work_dir"], layout["source"])
    process = FfmpegProcess(["ffmpeg", "-version"], layout["work_dir"] / "ffmpeg.log", jail)
    with pytest.raises(SandboxFailed, match="No permissions"):
        process.run(30, lambda seconds: None)


def test_ffmpeg_past_the_cpu_limit_fails_with_timeout(layout):
    jail = sandbox(sandbox_cpu_seconds=1).jail(layout["work_dir"])
    burn = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=d=100000", "-f", "null", "-"]
    process = FfmpegProcess(burn, layout["work_dir"] / "ffmpeg.log", jail)
    with pytest.raises(MediaError) as raised:
        process.run(60, lambda seconds: None)
    assert raised.value.code == "timeout"


def worker(env: dict, timeout: float = 30) -> subprocess.Popen:
    environment = {**os.environ, **env, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/", "METRICS_PORT": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "services.conversion"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_worker_without_bwrap_refuses_to_start_with_one_line_naming_it(tmp_path):
    process = worker({"SANDBOX": "bwrap", "BWRAP_PATH": str(tmp_path / "no-such-bwrap")})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert stderr.strip().splitlines()[-1] == (
        f"SANDBOX=bwrap: {tmp_path / 'no-such-bwrap'} not found (apt-get install bubblewrap), or set SANDBOX=off"
    )


def test_a_worker_whose_bwrap_cannot_build_a_sandbox_refuses_to_start(tmp_path):
    process = worker({"SANDBOX": "bwrap", "BWRAP_PATH": str(fake_bwrap(tmp_path))})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode != 0
    assert "No permissions to create new namespace" in stderr.strip().splitlines()[-1]


def test_a_worker_with_sandbox_off_says_so_in_a_warning():
    process = worker({"SANDBOX": "off"})
    try:
        deadline, lines = time.monotonic() + 30, []
        while time.monotonic() < deadline and not any("SANDBOX=off" in line for line in lines):
            lines.append(process.stderr.readline())
        warning = next(line for line in lines if "SANDBOX=off" in line)
        assert json.loads(warning)["level"].lower() == "warning"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
