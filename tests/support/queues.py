"""A stack's RabbitMQ and storage as a producer or follower outside siphon sees them: plain pika,
plain boto3 or files, JSON in and out."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pika

from tests.support.moto import s3_client
from tests.support.stack import AMQP_URL, Stack

FINAL = ("completed", "failed", "cancelled", "rejected")


@contextmanager
def channel() -> Iterator:
    params = pika.URLParameters(AMQP_URL)
    params.connection_attempts, params.retry_delay = 30, 1  # the broker may be restarting (a fault test)
    connection = pika.BlockingConnection(params)
    try:
        yield connection.channel()
    finally:
        if connection.is_open:
            connection.close()


def publish(exchange: str, routing_key: str, body: bytes | dict) -> None:
    """Publish ``body`` (a dict goes as JSON) persistently, confirmed and routable."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    with channel() as ch:
        ch.confirm_delivery()
        ch.basic_publish(
            exchange,
            routing_key,
            data,
            pika.BasicProperties(content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent),
            mandatory=True,
        )


def publish_job(stack: Stack, body: bytes | dict) -> None:
    """What a producer does: publish to the job queue through the default exchange."""
    publish("", stack.topology.jobs_queue, body)


def put_object(stack: Stack, key: str, data: bytes, content_type: str | None = None) -> None:
    """Store ``data`` under ``key`` in the stack's bucket (or storage directory), as a producer would."""
    if stack.backend == "s3":
        extra = {"ContentType": content_type} if content_type else {}
        s3_client(stack.s3_endpoint).put_object(Bucket=stack.bucket, Key=key, Body=data, **extra)
    else:
        path = stack.storage_dir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def get_object(stack: Stack, key: str) -> bytes:
    if stack.backend == "s3":
        return s3_client(stack.s3_endpoint).get_object(Bucket=stack.bucket, Key=key)["Body"].read()
    return (stack.storage_dir / key).read_bytes()


class Progress:
    """The progress queue of a stack, read like a follower with plain pika; keeps what it read."""

    def __init__(self, stack: Stack):
        self.queue = stack.topology.progress_queue
        self.seen: list[dict] = []

    def drain(self) -> None:
        with channel() as ch:
            while True:
                method, _, body = ch.basic_get(self.queue, auto_ack=True)
                if method is None:
                    return
                self.seen.append(json.loads(body))

    def of(self, job_id: str | None) -> list[dict]:
        return [message for message in self.seen if message.get("job_id") == job_id]

    def until_final(self, job_id: str | None, timeout: float = 60, after: int = 0) -> list[dict]:
        """The messages of ``job_id`` up to and with a final one (completed, failed, rejected), leaving
        out the first ``after`` (those of an earlier message about the same id)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            messages = self.of(job_id)[after:]
            if messages and messages[-1]["status"] in FINAL:
                return messages
            time.sleep(0.1)
        raise AssertionError(f"no final progress message for {job_id} in {timeout} s; saw {self.of(job_id)}")


class DeadLetters:
    """The stack's dead-letter queue, read (and emptied) into ``seen`` as ``(headers, body)``."""

    def __init__(self, stack: Stack):
        self.queue = stack.topology.dead_letter_queue
        self.seen: list[tuple[dict, bytes]] = []

    def with_code(self, code: str, timeout: float = 10) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + timeout
        while True:
            with channel() as ch:
                while (got := ch.basic_get(self.queue, auto_ack=True))[0] is not None:
                    self.seen.append((got[1].headers or {}, got[2]))
            found = [(h, b) for h, b in self.seen if h.get("x-siphon-code") == code]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
