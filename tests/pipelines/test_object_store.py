"""Every output on object storage: moto's S3 server on loopback, reached through fsspec (s3fs) the
way a cluster reaches S3. Ingest (with a kill -9 in the middle, then a re-run) → annotate → qc → shard →
the training loader, with manifests and exclusion lists on S3 too; the bytes equal a local run's."""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import torch
from moto_s3 import s3_server

from demo.server import Fault
from pipelines.annotate import job as annotate
from pipelines.annotate.store import read_table
from pipelines.core.config import ConfigError
from pipelines.core.io import prepare_output
from pipelines.core.storage import ObjectPath, location
from pipelines.core.tools import run_ffmpeg
from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import CLIP_JSON, ClipCache
from pipelines.qc import job as qc
from pipelines.qc.store import read_quality
from pipelines.shard import job as shard
from training.data.loader import iter_batches, mel_example

CLIPS = 8
REPO = Path(__file__).parents[2]


@pytest.fixture()
def s3():
    with s3_server("corpus", "inputs"):
        yield boto3.client("s3")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    from demo.models import build_clap

    return {"clap": build_clap(tmp_path_factory.mktemp("models") / "clap")}


def corpus_config(tmp_path: Path, server, media, s3, models) -> Path:
    """CLIPS slow clips served over HTTP; the manifest and the exclusion list on S3."""
    (server.root / "slow").mkdir()
    for i in range(CLIPS):
        run_ffmpeg(
            "-i", str(media.wav), "-t", "2", "-af", f"volume={0.2 + i / 20:.2f}", str(server.root / "slow" / f"{i}.wav")
        )
    server.add_fault("/slow/*", Fault(delay=0.3))
    rows = "".join(f"{i},Siren,a tone number {i % 3}\n" for i in range(CLIPS + 1))  # the last one is excluded
    s3.put_object(Bucket="inputs", Key="manifests/ids.csv", Body=f"id,labels,caption\n{rows}".encode())
    s3.put_object(Bucket="inputs", Key="manifests/held-out.txt", Body=f"tb_{CLIPS}  # evaluation clip\n".encode())

    def corpus(output: str) -> dict:
        return {
            "output": output,
            "media": {"frames": 0},
            "shards": {"profiles": ["audioldm"], "max_samples": 3, "default_split": "train"},
            "sources": [
                {
                    "name": "tb",
                    "format": "table",
                    "manifest": "s3://inputs/manifests/ids.csv",
                    "fetch": {"backend": "http", "url_template": f"{server.url}/slow/{{id}}.wav", "concurrency": 2},
                }
            ],
            "exclude": [{"ids": "s3://inputs/manifests/held-out.txt"}],
            "annotate": {
                "clap": {"model": str(models["clap"]), "batch": {"min": 1, "max": 4}},
                "retrieval": {"top_k": 2},
                "selection": {"threshold": -1.0},
            },
            "quality": {"max_clipping": 0.9, "speech": False},  # a policy: shard then needs qc's table
        }

    config = tmp_path / "datasets.yaml"
    config.write_text(json.dumps({"corpora": {"remote": corpus("s3://corpus/remote"), "local": corpus("out")}}))
    return config


def listed(bucket: str, prefix: str) -> dict[str, bytes]:
    client = boto3.client("s3")
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"].removeprefix(prefix)] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def clip_files(cache: ClipCache) -> dict[str, dict]:
    """Each entry's files' bytes and its clip.json minus what describes the run (time, bytes read)."""
    found = {}
    for clip_id in cache.entries():
        record = cache.read_entry(clip_id)
        found[clip_id] = {name: cache.read_file(record, name) for name in record.files}
        found[clip_id]["record"] = {
            k: v for k, v in record.to_json_dict().items() if k not in ("created", "read_bytes", "tools")
        }
    return found


def test_ingest_killed_midway_annotate_qc_shard_and_load_on_s3_equal_the_local_run(tmp_path, server, media, s3, models):
    config = corpus_config(tmp_path, server, media, s3, models)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    job = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--config", str(config), "--corpus", "remote"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    remote = ClipCache("s3://corpus/remote")
    deadline = time.monotonic() + 120
    while len(list(remote.entries())) < 2 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    done = set(remote.entries())
    assert 2 <= len(done) < CLIPS, "the job was not killed mid-run"
    for clip_id in done:  # what a reader sees is whole: every file checks against clip.json
        record = remote.read_entry(clip_id)
        assert all(remote.read_file(record, name) for name in record.files)
    server.log.clear()
    summary = ingest.run(load_corpus(config, "remote"))
    totals = {k: v for k, v in summary["totals"].items() if v}
    assert totals == {"cached": len(done), "ok": CLIPS - len(done), "excluded": 1}
    refetched = {r.path for r in server.requests_for("/slow/*")}
    assert refetched.isdisjoint({f"/slow/{clip_id.removeprefix('tb_')}.wav" for clip_id in done})
    objects = listed("corpus", "remote/")
    assert f"status/{summary['run_id']}.parquet" in objects and "ingest.config.json" in objects
    assert not any(key.startswith(("s3:", "clips/.staging")) for key in objects)

    local = ingest.run(load_corpus(config, "local"))
    assert {k: v for k, v in local["totals"].items() if v} == {"ok": CLIPS, "excluded": 1}
    assert clip_files(remote) == clip_files(ClipCache(tmp_path / "out"))
    assert not Path(REPO / "s3:").exists() and not (tmp_path / "s3:").exists()

    # annotate: rows (embeddings, the retrieval bank) on S3, the same as on disk
    remote_summary = annotate.run(load_corpus(config, "remote"))
    assert remote_summary == annotate.run(load_corpus(config, "local")) and remote_summary["clips"] == CLIPS
    digests = {"clip_digest"}  # of clip.json's bytes, which hold when each entry was made
    assert _without(read_table("s3://corpus/remote").to_pylist(), digests) == _without(
        read_table(tmp_path / "out").to_pylist(), digests
    )
    assert any(key.startswith("annotations/banks/") for key in listed("corpus", "remote/"))

    # qc: per-clip measures and the table on S3; the shard policy reads them from there
    measured = qc.run(load_corpus(config, "remote"))
    assert measured == qc.run(load_corpus(config, "local")) and measured["clips"] == CLIPS
    assert _without(read_quality("s3://corpus/remote"), digests) == _without(read_quality(tmp_path / "out"), digests)

    # shard: byte-identical tars; stats and indexes differ only by the corpus config's hash
    remote_index = shard.run(load_corpus(config, "remote"))
    local_index = shard.run(load_corpus(config, "local"))
    objects = listed("corpus", "remote/shards/")
    local_root = tmp_path / "out" / "shards"
    on_disk = {p.relative_to(local_root).as_posix(): p.read_bytes() for p in local_root.rglob("*") if p.is_file()}
    assert sorted(objects) == sorted(on_disk) and any(name.endswith(".tar") for name in objects)
    assert {k: v for k, v in objects.items() if k.endswith(".tar")} == {
        k: v for k, v in on_disk.items() if k.endswith(".tar")
    }
    hashes = {"config_hash", "corpus_config_hash", "index_sha256"}
    assert (
        _without(remote_index, hashes) == _without(local_index, hashes) and remote_index["totals"]["nsamples"] == CLIPS
    )
    assert shard.run(load_corpus(config, "remote"))["totals"] == remote_index["totals"]  # complete shards are kept
    assert listed("corpus", "remote/shards/") == objects

    # the training loader streams the S3 shards (credentials from the environment) as it reads the local ones
    example = mel_example("audioldm", 8)
    streamed = list(iter_batches("s3://corpus/remote/shards", "train", example, batch_size=3))
    from_disk = list(iter_batches(str(local_root), "train", example, batch_size=3))
    assert len(streamed) == len(from_disk) == 3  # 8 samples in batches of 3
    for left, right in zip(streamed, from_disk):
        assert left.keys() == right.keys()
        for key, value in left.items():
            assert torch.equal(value, right[key]) if isinstance(value, torch.Tensor) else value == right[key], key


def _without(payload, keys: set[str]):
    if isinstance(payload, dict):
        return {k: _without(v, keys) for k, v in payload.items() if k not in keys}
    if isinstance(payload, list):
        return [_without(v, keys) for v in payload]
    return payload


def test_a_url_output_is_an_object_path_and_a_bad_scheme_one_config_error(tmp_path, s3):
    config = tmp_path / "datasets.yaml"
    source = {"name": "tb", "format": "table", "manifest": "s3://inputs/ids.csv", "fetch": {"backend": "http"}}

    def load(output: str):
        config.write_text(json.dumps({"corpora": {"c": {"output": output, "sources": [source]}}}))
        return load_corpus(config, "c")

    assert load("s3://corpus/x").output == ObjectPath("s3", "corpus/x")
    assert load("s3://corpus/x").config.sources[0].manifest == location("s3://inputs/ids.csv")
    with pytest.raises(ConfigError, match=r"corpora\.c\.output: unknown storage scheme 'nope://'"):
        load("nope://corpus/x")
    with pytest.raises(ConfigError, match=r"az:// storage needs a driver that is not installed"):
        load("az://corpus/x")
    with pytest.raises(ConfigError, match="cannot write to output s3://no-such-bucket/x: .*bucket does not exist"):
        prepare_output(location("s3://no-such-bucket/x"))


def test_a_missing_driver_names_the_extra(tmp_path, monkeypatch):
    registry = importlib.import_module("fsspec.registry")  # the module (`fsspec.registry` is its mapping)
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if the gs extra were not installed
    monkeypatch.delitem(registry._registry, "gs", raising=False)  # nor imported earlier
    config = tmp_path / "datasets.yaml"
    source = {"name": "tb", "format": "table", "manifest": str(tmp_path / "x.csv"), "fetch": {"backend": "http"}}
    (tmp_path / "x.csv").write_text("url\n")
    config.write_text(json.dumps({"corpora": {"c": {"output": "gs://bucket/corpus", "sources": [source]}}}))
    with pytest.raises(
        ConfigError, match=r"gs:// storage needs a driver that is not installed: pip install 't2a\[gs\]'"
    ):
        load_corpus(config, "c")
    assert CLIP_JSON == "clip.json"


def test_worker_processes_write_to_s3_without_a_shared_folder(tmp_path, server, media, s3, models):
    """Beam's multi_processing workers are separate processes: they reach S3 through their own
    environment, and what the launcher reads back (status, summary) is theirs."""
    config = corpus_config(tmp_path, server, media, s3, models)
    server.faults.clear()  # no need to be slow here
    processes = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    summary = ingest.run(load_corpus(config, "remote"), beam_args=processes)
    assert {k: v for k, v in summary["totals"].items() if v} == {"ok": CLIPS, "excluded": 1}
    ingest.run(load_corpus(config, "local"))
    assert clip_files(ClipCache("s3://corpus/remote")) == clip_files(ClipCache(tmp_path / "out"))


def test_an_object_another_worker_wrote_after_a_listing_is_read(s3):
    """s3fs answers `info` (asked by cat_file) from a cached listing of the parent: an object a
    worker wrote after the launcher listed the folder must still be found."""
    folder = location("s3://corpus/status")
    (folder / "old.summary.json").write_bytes(b"1")
    assert [p.name for p in folder.glob("*.summary.json")] == ["old.summary.json"]  # the listing is cached now
    s3.put_object(Bucket="corpus", Key="status/new.summary.json", Body=b"2")  # another process
    assert (folder / "new.summary.json").read_bytes() == b"2" and (folder / "new.summary.json").is_file()
    assert [p.name for p in folder.iterdir()] == ["new.summary.json", "old.summary.json"]
