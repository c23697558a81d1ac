"""ForkedCall: a function run in a forked child, its answer, its failures, no child left behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from services.conversion.forked import ForkedCall


def reaped(call: ForkedCall) -> bool:
    return call._pid is None


def test_the_value_comes_back_and_the_child_is_reaped():
    call = ForkedCall(lambda a, b: {"sum": a + b, "pid": os.getpid()}, 2, 3, timeout_seconds=10)
    outcome = call.result()
    assert outcome.ok and outcome.value["sum"] == 5 and outcome.value["pid"] != os.getpid()
    assert reaped(call)


def test_a_child_that_answered_is_reaped_on_a_thread_and_leaves_no_zombie():
    pid = ForkedCall(os.getpid, timeout_seconds=10).result().value
    proc = Path(f"/proc/{pid}")  # a zombie keeps its /proc entry until reaped
    deadline = time.monotonic() + 10
    while proc.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not proc.exists()


def test_an_exception_comes_back_as_text():
    def refuse():
        raise ValueError("not a picture")

    outcome = ForkedCall(refuse, timeout_seconds=10).result()
    assert not outcome.ok and not outcome.timed_out and outcome.error == "ValueError: not a picture"


def test_a_crash_is_a_child_that_died_without_an_answer():
    outcome = ForkedCall(os.abort, timeout_seconds=10).result()
    assert (outcome.ok, outcome.timed_out, outcome.error) == (False, False, None)


def test_a_hang_is_killed_at_the_deadline():
    started = time.monotonic()
    call = ForkedCall(time.sleep, 60, timeout_seconds=0.5)
    outcome = call.result()
    assert outcome.timed_out and time.monotonic() - started < 5 and reaped(call)


def test_the_child_does_not_run_the_workers_signal_handlers():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        outcome = ForkedCall(lambda: os.kill(os.getpid(), signal.SIGTERM) or "survived", timeout_seconds=10).result()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not outcome.ok and seen == [], "SIGTERM ends the child (default action), not a graceful shutdown"


@pytest.mark.parametrize("size", [10, 200_000])
def test_an_answer_larger_than_a_pipe_buffer_arrives_whole(size):
    outcome = ForkedCall(lambda: "x" * size, timeout_seconds=10).result()
    assert outcome.ok and len(outcome.value) == size


def test_cancel_kills_and_reaps_a_running_child():
    call = ForkedCall(time.sleep, 60, timeout_seconds=60)
    pid = call._pid
    call.cancel()
    call.cancel()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, 0)


def test_a_runaway_allocation_ends_in_the_child_not_the_worker(monkeypatch):
    from services.conversion import forked

    monkeypatch.setattr(forked, "MEMORY_HEADROOM_BYTES", 64 << 20)
    outcome = ForkedCall(lambda: len(bytearray(512 << 20)), timeout_seconds=10).result()
    assert not outcome.ok and outcome.error == "MemoryError: "


def test_a_child_dies_with_the_thread_that_forked_it():
    """A worker killed with SIGKILL must leave no child stuck in libav behind (PR_SET_PDEATHSIG)."""
    import threading

    children = []

    def fork_and_return():
        call = ForkedCall(time.sleep, 60, timeout_seconds=60)
        children.append(call._pid)
        time.sleep(0.5)  # the work thread waits for the answer, then dies without reaping the child
        call._pid = None

    thread = threading.Thread(target=fork_and_return)
    thread.start()
    thread.join()
    [pid] = children
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the child outlived the thread that forked it")
