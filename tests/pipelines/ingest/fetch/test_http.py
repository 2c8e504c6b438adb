"""The http backend through the clip worker, against a loopback server with injected faults."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from demo.server import Fault, Request, Response
from pipelines.core.config import MediaConfig, RetryPolicy
from pipelines.core.records import Clip, url_clip_id
from pipelines.ingest.fetch.configs import HttpFetch
from pipelines.ingest.worker import ClipWorker

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05)


def worker(tmp_path: Path, timeout: float = 5.0, retry: RetryPolicy = FAST, **fetch) -> ClipWorker:
    config = HttpFetch(backend="http", timeout=timeout, retry=retry, **fetch)
    return ClipWorker({"web": SimpleNamespace(fetch=config)}, MediaConfig(timeout=30), tmp_path / "out")


def clip(url: str, start: float | None = 2.0, end: float | None = 7.0) -> Clip:
    return Clip(url_clip_id(url, start, end), "web", "table", url, url, start, end, manifest="t.csv", line=2)


@pytest.fixture()
def video_url(media, server) -> str:
    shutil.copy(media.video, server.root / "v.mp4")
    return f"{server.url}/v.mp4"


def test_ok_writes_a_complete_entry(tmp_path, video_url):
    w = worker(tmp_path)
    row = w.ingest(clip(video_url))
    assert (row.status, row.attempts, row.reason) == ("ok", 1, "")
    entry = w.cache.read_entry(row.clip_id).to_json_dict()
    assert entry["media_url"] == video_url and entry["duration"] == 5.0 and len(entry["frames"]) == 4
    assert set(entry["files"]) == {"audio.flac", "frame_00.jpg", "frame_01.jpg", "frame_02.jpg", "frame_03.jpg"}
    assert row.bytes == sum(f["bytes"] for f in entry["files"].values()) > 0


def test_404_is_permanent_without_retries(tmp_path, server):
    row = worker(tmp_path).ingest(clip(f"{server.url}/missing.mp4"))
    assert (row.status, row.attempts) == ("failed_permanent", 1)
    assert "HTTP 404" in row.reason


def test_429_then_success_backs_off_and_succeeds(tmp_path, server, video_url):
    # Each failed try makes two requests: ffmpeg's, then the small GET that explains the failure.
    server.add_fault("/v.mp4", Fault(status=429, times=4, headers={"Retry-After": "0"}))
    row = worker(tmp_path).ingest(clip(video_url))
    assert (row.status, row.attempts) == ("ok", 3)
    assert [r.status for r in server.requests_for("/v.mp4")][:4] == [429, 429, 429, 429]


def test_503_exhausts_retries_and_is_retryable(tmp_path, server, video_url):
    server.add_fault("/v.mp4", Fault(status=503))
    w = worker(tmp_path)
    row = w.ingest(clip(video_url))
    assert (row.status, row.attempts) == ("failed_retryable", 3)
    assert "503" in row.reason
    (recorded,) = w.take_failures()
    assert recorded["clip_id"] == row.clip_id and recorded["retryable"] is True


def test_slow_response_times_out_as_retryable(tmp_path, server, video_url):
    server.add_fault("/v.mp4", Fault(delay=2.0))
    row = worker(tmp_path, timeout=0.5, retry=RetryPolicy(attempts=1)).ingest(clip(video_url))
    assert row.status == "failed_retryable", row.reason
    assert "timed out" in row.reason.lower() or "timeout" in row.reason.lower()


def test_truncated_body_is_resumed_with_a_range_request(tmp_path, server, video_url):
    server.add_fault("/v.mp4", Fault(truncate=0.3, times=1))
    row = worker(tmp_path).ingest(clip(video_url, 12.0, 18.0))
    assert row.status == "ok"
    assert len(server.requests_for("/v.mp4")) >= 2


def test_html_page_instead_of_media_is_permanent(tmp_path, server):
    (server.root / "page.mp4").write_text("<!DOCTYPE html><html><body>consent</body></html>")
    server.add_fault("/page.mp4", Fault(content_type="text/html"))
    row = worker(tmp_path).ingest(clip(f"{server.url}/page.mp4"))
    assert row.status == "failed_permanent"
    assert row.reason == "not media: the server answered text/html"


def test_media_with_a_wrong_content_type_is_still_media(tmp_path, server, video_url):
    server.add_fault("/v.mp4", Fault(content_type="text/plain"))
    assert worker(tmp_path).ingest(clip(video_url)).status == "ok"


def test_url_template_builds_urls_from_ids(tmp_path, media, server):
    (server.root / "mirror").mkdir()
    shutil.copy(media.wav, server.root / "mirror" / "a b.wav")
    w = worker(tmp_path, url_template=f"{server.url}/mirror/{{id}}")
    row = w.ingest(Clip("x_1", "web", "table", "a b.wav", None, 0.0, 4.0))
    assert row.status == "ok"
    assert w.cache.read_entry("x_1").to_json_dict()["media_url"].endswith("/mirror/a%20b.wav")


def test_auth_download_sends_the_token_and_keeps_it_out_of_outputs(tmp_path, media, server, monkeypatch):
    payload, seen = media.wav.read_bytes(), []

    def secure(request: Request) -> Response:
        seen.append(request.headers.get("Authorization"))
        if seen[-1] != "Bearer s3cr3t-token":
            return Response(401, b'{"detail": "Authentication credentials were not provided."}')
        return Response(200, payload, "audio/wav")

    server.routes["/secure/"] = secure
    monkeypatch.setenv("T2A_TEST_TOKEN", "s3cr3t-token")
    w = worker(tmp_path, auth_env="T2A_TEST_TOKEN")
    row = w.ingest(clip(f"{server.url}/secure/orig.wav", None, None))
    assert row.status == "ok" and seen == ["Bearer s3cr3t-token"]
    assert "s3cr3t-token" not in json.dumps(w.cache.read_entry(row.clip_id).to_json_dict()) + repr(row)
    monkeypatch.setenv("T2A_TEST_TOKEN", "wrong")
    denied = w.ingest(clip(f"{server.url}/secure/other.wav", None, None))
    assert (denied.status, denied.reason) == ("failed_permanent", "HTTP 401 Unauthorized")


def test_missing_token_variable_is_a_clear_permanent_failure(tmp_path, video_url, monkeypatch):
    monkeypatch.delenv("T2A_NOT_SET", raising=False)
    row = worker(tmp_path, auth_env="T2A_NOT_SET").ingest(clip(video_url))
    assert row.status == "failed_permanent"
    assert "T2A_NOT_SET" in row.reason


def test_unsupported_scheme_is_permanent(tmp_path):
    row = worker(tmp_path).ingest(clip("ftp://example.org/a.mp4"))
    assert row.status == "failed_permanent" and "unsupported URL scheme" in row.reason


def test_freesound_original_through_the_api_with_an_oauth_token(tmp_path, media, server, monkeypatch):
    from demo.freesound_api import DEMO_OAUTH_TOKEN, db_record, freesound_route

    (server.root / "freesound" / "originals").mkdir(parents=True)
    shutil.copy(media.wav, server.root / "freesound" / "originals" / "101.wav")
    cc0 = "http://creativecommons.org/publicdomain/zero/1.0/"
    server.routes["/apiv2/"] = freesound_route([db_record(101, "Tone", ["tone"], cc0, 12.0)])
    monkeypatch.setenv("FREESOUND_OAUTH_TOKEN", DEMO_OAUTH_TOKEN)
    w = worker(tmp_path, auth_env="FREESOUND_OAUTH_TOKEN")
    row = w.ingest(clip(f"{server.url}/apiv2/sounds/101/download/", None, None))
    assert row.status == "ok", row.reason
    assert w.cache.read_entry(row.clip_id).to_json_dict()["duration"] == pytest.approx(12.0)
    assert [r.status for r in server.log] == [302, 200]  # the API redirects to the file, as Freesound does
