"""s3:// media through fsspec against moto's S3 server on loopback: signed URLs, range reads."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from moto.server import ThreadedMotoServer

from pipelines.core.config import MediaConfig
from pipelines.core.records import Clip, url_clip_id
from pipelines.ingest.fetch.configs import HttpFetch
from pipelines.ingest.worker import ClipWorker


@pytest.fixture(scope="module")
def bucket(media):
    """One S3 server per module: fsspec caches filesystems, and with them the endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }.items():
            patch.setenv(key, value)
        client = boto3.client("s3")
        client.create_bucket(Bucket="media")
        client.upload_file(str(media.video), "media", "clips/v.mp4")
        yield "s3://media/clips"
    server.stop()


def ingest(tmp_path, url: str):
    worker = ClipWorker(
        {"s3": SimpleNamespace(fetch=HttpFetch(backend="http"))}, MediaConfig(frames=1), tmp_path / "out"
    )
    return worker, worker.ingest(Clip(url_clip_id(url, 10, 14), "s3", "table", url, url, 10.0, 14.0))


def test_s3_segment_is_read_through_a_signed_url(tmp_path, bucket):
    worker, row = ingest(tmp_path, f"{bucket}/v.mp4")
    assert row.status == "ok", row.reason
    entry = worker.cache.read_entry(row.clip_id).to_json_dict()
    assert entry["duration"] == 4.0 and entry["media_url"] == f"{bucket}/v.mp4"
    assert "Signature" not in json.dumps(entry)  # the signed URL is a credential: not recorded


def test_missing_s3_object_is_permanent(tmp_path, bucket):
    _, row = ingest(tmp_path, f"{bucket}/missing.mp4")
    assert (row.status, row.reason) == ("failed_permanent", "HTTP 404 NOT FOUND")
