"""moto's S3 server on loopback, reached the way production reaches S3: AWS_* variables in the
environment (boto3, s3fs and the workers all read them), no credentials in any config."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from moto.server import ThreadedMotoServer


def _forget_filesystems() -> None:
    """fsspec caches one S3FileSystem per argument set, and with it the endpoint: a server started
    by another test module must not be reached through a stale instance."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def s3_server(*buckets: str) -> Iterator[str]:
    """Start the server, point AWS_* at it, create `buckets`; yields the endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    # moto keeps its buckets in process-wide state, shared by every server this process starts: start
    # empty, so a test never sees (and counts as `cached`) what an earlier test wrote.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30).close()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in {
                "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint,
            }.items():
                patch.setenv(key, value)
            _forget_filesystems()
            # moto keeps its buckets in process-wide state that every server shares: start empty.
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=30)
            client = boto3.client("s3")
            for bucket in buckets:
                client.create_bucket(Bucket=bucket)
            yield endpoint
    finally:
        _forget_filesystems()
        server.stop()
