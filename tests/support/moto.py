"""moto's standalone S3 server as a real HTTP endpoint on loopback (``moto_server``)."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import boto3
import requests

from tests.support.net import free_port, wait_until

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


@contextmanager
def moto_server(log_dir: Path):
    """Run ``moto_server`` on a free port; yield its endpoint URL."""
    port = free_port()
    log = open(log_dir / "moto.log", "wb")
    moto_bin = Path(sys.executable).with_name("moto_server")
    process = subprocess.Popen(
        [str(moto_bin), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=log,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    endpoint = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(endpoint + "/moto-api/", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        wait_until(up, 30, 0.1, "moto_server")
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def s3_client(endpoint: str):
    """A boto3 S3 client for the moto endpoint."""
    return boto3.client("s3", endpoint_url=endpoint, **CREDENTIALS)


def create_bucket(endpoint: str, bucket: str) -> None:
    s3_client(endpoint).create_bucket(Bucket=bucket)


def list_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    listing = s3_client(endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for obj in listing.get("Contents", [])]
