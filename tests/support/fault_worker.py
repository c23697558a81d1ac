"""A conversion worker that SIGKILLs itself at one point of a task: a test-only entry point.

    FAULT_POINT=after_output_stored   the MP3 is in storage; no completed event, no ack
    FAULT_POINT=before_ack            the completed event is confirmed; no ack

Run: ``FAULT_POINT=... python -m tests.support.fault_worker``. Everything else is the real worker
(``python -m services.conversion``); only the storage adapter or the consumer's settle step is wrapped.
"""

from __future__ import annotations

import os
import signal

import services.conversion.__main__ as entry
from shared.broker import Consumer
from shared.jobs import output_key


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def dying_after_output_stored(make_storage):
    def make(s):
        storage = make_storage(s)
        put_file = storage.put_file

        def put_file_then_die(key, path):
            size = put_file(key, path)
            if key.endswith("/" + output_key("x").rsplit("/", 1)[1]):
                die()
            return size

        storage.put_file = put_file_then_die
        return storage

    return make


def main() -> None:
    point = os.environ["FAULT_POINT"]
    if point == "after_output_stored":
        entry.make_storage = dying_after_output_stored(entry.make_storage)
    elif point == "before_ack":
        Consumer._settle = lambda self, *args: die()
    else:
        raise SystemExit(f"FAULT_POINT: unknown point {point!r}")
    entry.main()


if __name__ == "__main__":
    main()
