"""`make demo`, reduced: the shipped datasets.yaml and training config on a scaled-down demo corpus,
served as `t2a serve` serves it, through every dvc.yaml stage in order — ingest, audio-only shards,
CLAP training, annotate with that CLAP, shard, report, VAE, latents, LDM, held-out prompts, samples
and the evaluation verdict (training steps cut to a few); and the `serve -- command` wrapper itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from demo.corpus import build_demo_corpus
from demo.freesound_api import DEMO_API_KEY, reloading_route
from demo.server import LoopbackServer
from pipelines.annotate import job as annotate
from pipelines.annotate.store import read_table
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import ClipCache
from pipelines.ingest.status import status_path
from pipelines.shard import job as shard
from pipelines.shard.reader import hf_features, inspect_shard

ROOT = Path(__file__).resolve().parents[2]
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
    from demo.captioner import build_captioner
    from demo.models import build_demo_models

    build_demo_models(folder)
    build_captioner(folder / "captioner")


def test_shipped_config_names_every_format_and_backend(demo):
    corpus = load_corpus(demo / "datasets.yaml")
    assert corpus.name == "demo" and corpus.output == demo / "data" / "demo"
    assert {s.format for s in corpus.config.sources} == {
        "audioset",
        "vggsound",
        "fsd50k",
        "audiocaps",
        "clotho",
        "table",
        "freesound",
    }
    assert {s.fetch.backend for s in corpus.config.sources} == {"youtube", "http", "local"}


@pytest.fixture(scope="module")
def ingested(demo):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FREESOUND_API_KEY", DEMO_API_KEY)
        return ingest.run(load_corpus(demo / "datasets.yaml"))


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
def training_config(demo):
    """The shipped training/configs/demo.yaml at the same place relative to the copy of the data, with
    every schedule cut to a few steps (the dvc stages read it the same way)."""
    config = yaml.safe_load((ROOT / "training" / "configs" / "demo.yaml").read_text())
    for block in ("clap", "vae", "ldm"):
        config[block]["train"].update(steps=2, checkpoint_every=2, log_every=1, validate_every=0)
    config["data"]["batch_size"] = config["clap"]["batch_size"] = config["ldm"]["batch_size"] = 4
    config["sample"].update(steps=2, per_prompt=1)
    path = demo / "training" / "configs" / "demo.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def clap_trained(demo, ingested, training_config):
    """dvc stages shard_audio and train_clap: the CLAP that datasets.yaml's annotate block names."""
    from training.config import load_config
    from training.tasks import clap as train_clap

    index = shard.run(load_corpus(demo / "datasets.yaml"), audio_only=True)
    config = load_config(training_config)
    assert config.clap.shards == str(demo / "data" / "demo" / "shards-audio")
    return index, train_clap.train(config)


def test_audio_only_shards_give_every_clip_a_caption_before_annotation(demo, clap_trained):
    from training.data.examples import caption_of

    index, model = clap_trained
    from pipelines.shard.policy import read_left_out

    clips = len(list(ClipCache(demo / "data" / "demo").entries()))
    left = read_left_out(demo / "data" / "demo" / "shards-audio")  # the licence policy applies here too
    assert set(left["by_stage"]) <= {"licence"}
    clips -= len(left["clips"])
    assert index["totals"]["nsamples"] == clips and not (demo / "data" / "demo" / "shards").exists()
    metas = [
        s["json"] for tar in sorted((demo / "data" / "demo" / "shards-audio").glob("*/*.tar")) for s in _samples(tar)
    ]
    assert len(metas) == clips and all(caption_of(meta) for meta in metas)
    assert not any(meta["licence_id"].startswith("CC-BY-NC") for meta in metas)
    assert not any(meta.get("selected_caption") or meta.get("embeddings") for meta in metas)
    assert Path(load_corpus(demo / "datasets.yaml").config.annotate.clap.model).resolve() == Path(model).resolve()


def _samples(tar: Path) -> list[dict]:
    import webdataset as wds

    from pipelines.shard import contract

    return [{"json": contract.decode_json(s["json"])} for s in wds.WebDataset(str(tar), shardshuffle=False)]


@pytest.fixture(scope="module")
def annotated(demo, ingested, clap_trained):
    return annotate.run(load_corpus(demo / "datasets.yaml"))


def test_demo_annotate_gives_every_clip_a_selected_caption_or_a_reason(demo, annotated):
    """With a CLAP trained for two steps a few clips may score below the threshold; a clip without
    labels then has no label-text fallback and is dropped with its reason (the full demo drops none)."""
    clips = len(list(ClipCache(demo / "data" / "demo").entries()))
    statuses = annotated["statuses"]
    assert annotated["clips"] == clips and statuses["failed"] == 0 and statuses["ok"] + statuses["dropped"] == clips
    assert statuses["ok"] >= 0.8 * clips
    rows = read_table(demo / "data" / "demo").to_pylist()
    experts = {c["expert"] for row in rows for c in row["candidates"]}
    assert experts == {"human", "captioning", "retrieval", "source_text", "label_text"}
    assert all(row["selected_caption"] for row in rows if row["status"] == "ok")
    assert all("threshold" in row["reason"] for row in rows if row["status"] == "dropped")


def test_demo_shards_validate_and_load_in_hugging_face_datasets(demo, annotated, hf_offline, tmp_path):
    from pipelines.qc import job as qc
    from pipelines.shard.policy import read_left_out

    qc.run(load_corpus(demo / "datasets.yaml"))  # the dvc stage qc: the demo's quality policy needs it
    index = shard.run(load_corpus(demo / "datasets.yaml"))
    root = demo / "data" / "demo" / "shards"
    left = read_left_out(root)
    assert set(left["by_stage"]) <= {"annotation", "licence", "quality"}
    policy = [c for c in left["clips"] if c["stage"] in ("licence", "quality")]
    assert index["totals"]["nsamples"] == annotated["statuses"]["ok"] - len(policy)
    assert (root / "ATTRIBUTION.md").is_file() and (root / "attribution.parquet").is_file()
    assert set(index["splits"]) == {"train", "valid", "test"} and index["totals"]["failures"] == 0
    for tar in sorted(root.glob("*/*.tar")):
        assert inspect_shard(tar)["problems"] == [], tar
    profiles = load_corpus(demo / "datasets.yaml").config.shards.profiles
    features = hf_features(profiles, audio=True, frames=4, embeddings=["clap_audio", "clip_image", "clip_image_mean"])
    files = {"train": [str(p) for p in sorted((root / "train").glob("*.tar"))]}
    rows = hf_offline.load_dataset(
        "webdataset", data_files=files, split="train", cache_dir=str(tmp_path / "hf"), features=features
    )
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

    from pipelines.report.job import build_report
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


def test_demo_trains_on_its_shards_and_ends_with_a_verdict(demo, annotated, training_config, tmp_path):
    """dvc stages train_vae → encode_latents → train_ldm → prompts → sample → evaluate, as their commands."""
    from typer.testing import CliRunner

    from pipelines.cli import app

    shard.run(load_corpus(demo / "datasets.yaml"))
    runner, run = CliRunner(), demo / "runs" / "demo"
    for args in (["train", "vae"], ["encode-latents"], ["train", "ldm"]):
        done = runner.invoke(app, [*args, "--config", str(training_config)])
        assert done.exit_code == 0, done.output
    prompts = run / "prompts.txt"
    done = runner.invoke(
        app, ["prompts", str(demo / "data" / "demo" / "shards"), "--split", "test", "--out", str(prompts)]
    )
    assert done.exit_code == 0, done.output
    texts = [line for line in prompts.read_text().splitlines() if not line.startswith("#")]
    assert len(texts) >= 2 and len(set(texts)) == len(texts)
    for extra in ([], ["--guidance", "0", "--out", str(run / "samples_unconditional")]):
        done = runner.invoke(
            app, ["sample", "--config", str(training_config), "--prompts-file", str(prompts), "--device", "cpu", *extra]
        )
        assert done.exit_code == 0, done.output
    out = run / "evaluation.json"
    done = runner.invoke(
        app,
        [
            "evaluate",
            "--generated",
            str(run / "samples"),
            "--reference",
            str(demo / "data" / "demo" / "shards"),
            "--prompts",
            str(prompts),
            "--clap",
            str(run / "clap" / "model"),
            "--baseline",
            str(run / "samples_unconditional"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert done.exit_code == 0, done.output
    result = json.loads(out.read_text())
    metrics = result["metrics"]
    assert metrics["prompt_top1_chance"] == pytest.approx(1 / len(texts)) and metrics[
        "prompt_rank_chance"
    ] == pytest.approx((len(texts) + 1) / 2)
    assert (
        1 <= metrics["prompt_rank"] <= len(texts)
        and metrics["fd_clap"] is not None
        and metrics["fd_clap_baseline"] is not None
    )
    assert {row["prompt"] for row in result["prompts"]} == set(texts)
    assert metrics["prompt_top1_reference"] is not None  # the test clips the prompts came from
    assert "Prompt following:" in done.output and "FD with guidance" in done.output and "per prompt" in done.output
    # AudioLDM Table 1's rows as audioldm_eval computes them, on random-weight Cnn14 / VGGish (and said so).
    assert metrics["audioldm_fd"] is not None and metrics["audioldm_fad"] is not None
    # IS splits the samples 10 ways (audioldm_eval): computed from 10 samples on, else reported as absent.
    assert (metrics["audioldm_is"] is not None) == (result["counts"]["generated"] >= 10), result["counts"]
    assert "FD (Cnn14 2048-d, audioldm_eval)" in done.output and "random-weight" in done.output


def test_every_code_path_dvc_yaml_depends_on_exists():
    """A stage whose dependency path is gone fails `dvc repro` (and so `make demo`) before it runs."""
    pipelines = [ROOT / "dvc.yaml", ROOT / "tokens" / "dvc.yaml", ROOT / "clipsonic" / "dvc.yaml"]
    stages = [stage for path in pipelines for stage in yaml.safe_load(path.read_text())["stages"].values()]
    assert all(
        stage.get("wdir") == ".."
        for path in pipelines[1:]
        for stage in yaml.safe_load(path.read_text())["stages"].values()
    )
    deps = {dep for stage in stages for dep in stage.get("deps", [])}
    code = sorted(dep for dep in deps if not dep.startswith(("data/", "runs/")))
    assert code and [dep for dep in code if not (ROOT / dep).exists()] == []
