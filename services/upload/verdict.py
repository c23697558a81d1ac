"""How the queue intake settles a message it handled."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Settle(Enum):
    ACK = "ack"  # done: a job was queued or recorded, or there was nothing to do
    DEAD_LETTER = "dead_letter"  # refused for good: park it in <p>.dead-letter with the reason, then ack
    REQUEUE = "requeue"  # a dependency is down: give it back to the queue, after a pause


@dataclass(frozen=True)
class Verdict:
    """A settlement and, for a dead letter, its error code and reason (sent as message headers)."""

    settle: Settle
    code: str = ""
    reason: str = ""


ACK = Verdict(Settle.ACK)
REQUEUE = Verdict(Settle.REQUEUE)


def dead_letter(code: str, reason: str) -> Verdict:
    return Verdict(Settle.DEAD_LETTER, code, reason)
