"""Run inside a mount namespace whose /etc/hosts the test wrote: checks a callback URL as the upload
service does at submit, then makes one webhook try as the notifier does, with the system resolver.

    python -m tests.support.hosts_probe URL ALLOWED_HOSTS

Prints one JSON line: ``{"submit": "accepted" | <refusal>, "record": <the NotificationRecord>}``.
"""

from __future__ import annotations

import json
import sys

from services.metadata.notifications import Notifier, WebhookSender
from services.metadata.records import JobRecord
from shared.callbacks import CallbackGuard
from shared.jobs import JobStatus
from shared.notifications import InvalidField, check_callback_url


class RecordingStore:
    def __init__(self):
        self.records = []

    def record_notification(self, job_id, record):
        self.records.append(record)


def main(url: str, allowed_hosts: str) -> None:
    guard = CallbackGuard(allowed_hosts)
    try:
        submit = check_callback_url(url, guard) and "accepted"
    except InvalidField as exc:
        submit = exc.message
    job = JobRecord.new("0" * 32, "clip.mp4", 1).model_copy(update={"status": JobStatus.COMPLETED, "callback_url": url})
    store = RecordingStore()
    notifier = Notifier(store, None, WebhookSender(None, 5, guard), "s@example.org", "http://siphon.test", 60, 3)
    record = notifier.deliver("webhook", job, 1, "probe")
    print(json.dumps({"submit": submit, "record": record.model_dump()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
