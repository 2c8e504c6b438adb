"""`make demo`, reduced: the shipped datasets.yaml on a scaled-down demo corpus, served as `t2a
serve` serves it, with the demo's tiny models, through ingest, annotate and shard; and the
`serve -- command` wrapper itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.cache import ClipCache
from pipelines.datasets import load_corpus
from pipelines.demo.corpus import build_demo_corpus
from pipelines.demo.freesound_api import DEMO_API_KEY, reloading_route
from pipelines.demo.server import LoopbackServer
from pipelines.annotations import read_table
from pipelines.jobs import annotate, ingest, shard
from pipelines.shards.reader import hf_features, inspect_shard
from pipelines.status import status_path

ROOT = Path(__file__).resolve().parents[1]
DEMO_URL = "http://127.0.0.1:8765"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A copy of the project's datasets.yaml beside a scaled-down demo corpus, served on loopback."""
    work = tmp_path_factory.mktemp("demo")
    corpus = work / "data" / "demo-corpus"
    with LoopbackServer(corpus) as server:
        build_demo_corpus(corpus, seed=0, base_url=server.url, scale=0.2)
        server.routes["/apiv2/"] = reloading_route(corpus / "freesound" / "sounds.json")
        (work / "datasets.yaml").write_text((ROOT / "datasets.yaml").read_text().replace(DEMO_URL, server.url))
        _build_models(work / "data" / "demo-models")
        yield work


def _build_models(folder: Path) -> None:
    """What `t2a demo-models data/demo-models` builds (the dvc stage `demo_models`)."""
    from pipelines.demo.captioner import build_captioner
    from pipelines.demo.models import build_demo_models

    build_demo_models(folder)
    build_captioner(folder / "captioner")


def test_shipped_config_names_every_format_and_backend(demo):
    corpus = load_corpus(demo / "datasets.yaml")
    assert corpus.name == "demo" and corpus.output == demo / "data" / "demo"
    assert {s.format for s in corpus.config.sources} == {"audioset", "vggsound", "fsd50k", "audiocaps", "clotho", "table", "freesound"}
    assert {s.fetch.backend for s in corpus.config.sources} == {"youtube", "http", "local"}


@pytest.fixture(scope="module")
def ingested(demo):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREESOUND_API_KEY", DEMO_API_KEY)
        return ingest.run(["--config", str(demo / "datasets.yaml")])


def test_demo_ingest_runs_every_code_path(demo, ingested):
    summary = ingested
    totals, by_source = summary["totals"], summary["by_source"]
    assert all(counts["ok"] > 0 for name, counts in by_source.items() if name != "demo_audioset_strong"), by_source
    assert totals["rejected_row"] > 0 and totals["failed_permanent"] > 0 and totals["excluded"] > 0
    assert totals["failed_retryable"] == 0, summary["reasons"]  # the demo's broken media are all permanent
    reasons = " ".join(r["reason"] for r in summary["reasons"])
    for expected in ("no audio stream", "Invalid data found", "HTTP N Not Found", "file not found in the mirror"):
        assert expected in reasons
    output = demo / "data" / "demo"
    ok_clips = [r for r in pq.read_table(status_path(output, summary["run_id"])).to_pylist() if r["status"] == "ok"]
    assert sorted(ClipCache(output).entries()) == sorted(r["clip_id"] for r in ok_clips)


@pytest.fixture(scope="module")
def annotated(demo, ingested):
    return annotate.run(["--config", str(demo / "datasets.yaml")])


def test_demo_annotate_gives_every_clip_a_selected_caption(demo, annotated):
    clips = len(list(ClipCache(demo / "data" / "demo").entries()))
    assert annotated["clips"] == clips and annotated["statuses"] == {"ok": clips, "dropped": 0, "failed": 0}
    rows = read_table(demo / "data" / "demo").to_pylist()
    experts = {c["expert"] for row in rows for c in row["candidates"]}
    assert experts == {"human", "captioning", "retrieval", "source_text", "label_text"}
    assert all(row["selected_caption"] for row in rows)


def test_demo_shards_validate_and_load_in_hugging_face_datasets(demo, annotated, hf_offline, tmp_path):
    index = shard.run(["--config", str(demo / "datasets.yaml")])
    root = demo / "data" / "demo" / "shards"
    assert index["totals"]["nsamples"] == annotated["statuses"]["ok"]
    assert set(index["splits"]) == {"train", "valid", "test"} and index["totals"]["failures"] == 0
    for tar in sorted(root.glob("*/*.tar")):
        assert inspect_shard(tar)["problems"] == [], tar
    profiles = load_corpus(demo / "datasets.yaml").config.shards.profiles
    features = hf_features(profiles, audio=True, frames=4, embeddings=["clap_audio", "clip_image", "clip_image_mean"])
    files = {"train": [str(p) for p in sorted((root / "train").glob("*.tar"))]}
    rows = hf_offline.load_dataset("webdataset", data_files=files, split="train", cache_dir=str(tmp_path / "hf"), features=features)
    assert len(rows) == index["splits"]["train"]["nsamples"]
    first = rows[0]
    assert np.asarray(first["mel.make-an-audio.npy"]).shape == (80, 624) and first["json"]["split"] == "train"
    assert first["json"]["selected_caption"] and np.asarray(first["clap_audio.npy"]).ndim == 1


def _serve(folder: Path, *command: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "pipelines.cli", "serve", str(folder), "--port", "8795", "--", *command]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_serve_runs_a_command_while_serving_and_returns_its_status(tmp_path, monkeypatch):
    monkeypatch.delenv("FREESOUND_API_KEY", raising=False)
    (tmp_path / "hello.txt").write_text("hello")
    fetch = "import os, urllib.request; print(os.environ['FREESOUND_API_KEY'], urllib.request.urlopen('http://127.0.0.1:8795/hello.txt').read())"
    done = _serve(tmp_path, sys.executable, "-c", fetch)
    assert done.returncode == 0 and f"{DEMO_API_KEY} b'hello'" in done.stdout
    assert _serve(tmp_path, sys.executable, "-c", "raise SystemExit(3)").returncode == 3


def test_serve_on_a_busy_port_is_one_clear_error(tmp_path):
    with LoopbackServer(tmp_path) as busy:
        args = [sys.executable, "-m", "pipelines.cli", "serve", str(tmp_path), "--port", str(busy.port), "--", "true"]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and f"cannot serve on 127.0.0.1:{busy.port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_demo_report_covers_every_source_and_matches_the_annotations(demo, annotated):
    import json

    from pipelines.report.build import build_report
    from pipelines.report.page import SECTIONS

    index = build_report(load_corpus(demo / "datasets.yaml"))
    report = json.loads((index.parent / "report.json").read_text())
    assert report["totals"]["annotations"]["clips"] == annotated["clips"]
    assert report["totals"]["annotations"]["by_status"] == annotated["statuses"]
    sources = {s.name for s in load_corpus(demo / "datasets.yaml").config.sources}
    assert set(report["sources"]) <= sources and report["listening"]
    assert report["provenance"]["augmentation"]["reprogramming"]["templates"] == 12
    page = index.read_text()
    assert all(f'id="{section}"' in page for section in SECTIONS)
