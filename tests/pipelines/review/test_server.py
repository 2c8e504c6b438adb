"""The review server without a browser: bad requests are clear 4xx answers and lose nothing; only
sampled clips and report files are served; judgments land in the SQLite file."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request

import pytest
from audit_corpus import build_audit_corpus

from pipelines.datasets import load_corpus
from pipelines.review.db import database_path
from pipelines.review.server import ReviewServer
from pipelines.review.session import Review


@pytest.fixture()
def served(tmp_path):
    config = build_audit_corpus(tmp_path)
    corpus = load_corpus(config, "audit")
    (tmp_path / "out" / "report").mkdir()
    (tmp_path / "out" / "report" / "index.html").write_text("<p>report</p>")
    (tmp_path / "secret.txt").write_text("not for the browser")
    review = Review(tmp_path / "out", "audit", corpus.config_hash, margin=0.2)
    with ReviewServer(review, tmp_path / "out" / "report") as server:
        yield server, review, tmp_path


def call(url: str, body: dict | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_judgments_go_into_the_database_and_bad_ones_are_refused(served):
    server, review, tmp_path = served
    clip = review.sample()[0]
    good = {
        "clip_id": clip["clip_id"],
        "caption_sha256": clip["caption_sha256"],
        "judgment": "wrong",
        "reviewer": "ann",
    }
    status, body = call(server.url + "/api/judgments", good)
    assert status == 200 and json.loads(body)["saved"]["judgment"] == "wrong"
    for bad, message in [
        ({**good, "caption_sha256": "0" * 64}, "caption changed"),
        ({**good, "judgment": "meh"}, "judgment must be one of"),
        ({**good, "reviewer": " "}, "reviewer's name"),
        ({**good, "clip_id": "aud_99"}, "not in the review sample"),
    ]:
        status, body = call(server.url + "/api/judgments", bad)
        assert status == 400 and message in json.loads(body)["error"]
    with sqlite3.connect(database_path(tmp_path / "out")) as db:
        rows = db.execute("SELECT clip_id, judgment, reviewer FROM judgments").fetchall()
    assert rows == [(clip["clip_id"], "wrong", "ann")]


def test_only_sampled_media_and_report_files_are_served(served):
    server, review, tmp_path = served
    sampled = {c["clip_id"] for c in review.design}
    outside = next(f"aud_{i:02d}" for i in range(16) if f"aud_{i:02d}" not in sampled)
    inside = sorted(sampled)[0]
    status, body = call(f"{server.url}/media/{inside}/audio.flac")
    assert status == 200 and body[:4] == b"fLaC"
    status, body = call(f"{server.url}/media/{inside}/spec.png")
    assert status == 200 and body[:4] == b"\x89PNG"
    assert call(f"{server.url}/media/{outside}/audio.flac")[0] == 404
    assert call(f"{server.url}/report/index.html") == (200, b"<p>report</p>")
    assert call(f"{server.url}/report/../../secret.txt")[0] == 404
    assert call(f"{server.url}/report/%2e%2e/%2e%2e/secret.txt")[0] == 404
    status, body = call(server.url + "/api/estimate")
    assert status == 200 and json.loads(body)["overall"]["judged"] == 0
