"""Telling the conversion workers to stop working on a job: a :class:`~shared.messages.WorkerCommand`
on the ``<p>.control`` fanout exchange, which every worker hears on a queue of its own."""

from __future__ import annotations

import logging

from shared.broker import Publishes
from shared.errors import BrokerUnavailable
from shared.messages import WorkerCommand

log = logging.getLogger(__name__)


class WorkerControl:
    """Broadcasts commands to every conversion worker (connects on first use)."""

    def __init__(self, publisher: Publishes):
        self.publisher = publisher

    def cancel(self, job_id: str) -> bool:
        """Tell the worker converting ``job_id``, if any, to kill its ffmpeg; return whether the
        broker took the command. Best effort: the job is already ``cancelled`` and its media
        deleted, and a worker that never hears this only finishes a conversion whose output the
        metadata consumer then deletes."""
        command = WorkerCommand(action="cancel", job_id=job_id)
        try:
            self.publisher.publish_worker_command(command)  # with no worker running nobody hears it: no error
        except BrokerUnavailable as exc:
            log.warning("could not broadcast the cancel to the workers: %s", exc, extra={"job_id": job_id})
            return False
        return True
