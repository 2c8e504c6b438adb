"""The shard job on a real ingested clip cache: readable shards, byte-identical regeneration across
runners, re-runs that skip, recorded failures, leftovers of a killed run, empty corpora."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import wids

from pipelines.datasets import load_corpus
from pipelines.ingest import job as ingest
from pipelines.ingest.cache import ClipCache
from pipelines.shard import contract
from pipelines.shard import job as shard
from pipelines.shard.reader import inspect_shard, iter_shard, open_wids, webdataset_pipeline
from pipelines.shard.writer import read_stats

MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


@pytest.fixture()
def cache(mini):
    """The mini corpus ingested (7 clips: 5 train, 2 valid); its shards/ folder."""
    ingest.run(load_corpus(mini.config, "mini"))
    return mini.root / "out"


def run_shard(mini, *beam_args: str, audio_only: bool = False) -> dict:
    return shard.run(load_corpus(mini.config, "mini"), audio_only=audio_only, beam_args=beam_args)


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.tar"))}


def test_shards_hold_every_clip_once_split_apart_and_readable(mini, cache):
    index = run_shard(mini)
    root = cache / "shards"
    assert {s: e["nsamples"] for s, e in index["splits"].items()} == {"train": 5, "valid": 2}
    assert [e["shards"] for e in index["splits"].values()] == [2, 1]  # max_samples: 3
    keys = {
        split: [s.key for tar in sorted((root / split).glob("*.tar")) for s in iter_shard(tar)]
        for split in ("train", "valid")
    }
    assert sorted(keys["train"] + keys["valid"]) == sorted(ClipCache(cache).entries())
    assert not set(keys["train"]) & set(keys["valid"])
    for tar in root.glob("*/*.tar"):
        report = inspect_shard(tar)
        assert report["problems"] == [] and report["complete"]
    samples = {s.key: s for tar in sorted((root / "train").glob("*.tar")) for s in iter_shard(tar)}
    speech_and_siren = samples["yt_AAAAAAAAAAA_5000"]
    assert (
        speech_and_siren.mels["audioldm"].shape == (64, 1024) and speech_and_siren.mels["audioldm"].dtype == np.float16
    )
    assert speech_and_siren.meta.event_count == 2 and samples["fs_101"].meta.event_count == 0  # no labels
    assert speech_and_siren.audio[:4] == b"fLaC" and len(speech_and_siren.frames) == 2
    assert speech_and_siren.meta.captions[0].text == "A man speaks while a siren wails"


def test_webdataset_and_wids_read_what_the_job_wrote(mini, cache):
    run_shard(mini)
    root = cache / "shards"
    streamed = list(webdataset_pipeline([str(p) for p in sorted((root / "train").glob("*.tar"))]))
    assert len(streamed) == 5
    dataset = open_wids(root / "train" / contract.INDEX_NAME)
    assert len(dataset) == 5 and {s.key for s in streamed} == {dataset[i].key for i in range(5)}


def test_regeneration_is_byte_identical_across_runners(mini, cache):
    run_shard(mini)
    root = cache / "shards"
    first = digests(root)
    stats = {p.name: p.read_bytes() for p in root.rglob("*.stats.json")}
    shutil.rmtree(root)
    run_shard(mini, *MULTI_PROCESSING)
    assert digests(root) == first
    assert {p.name: p.read_bytes() for p in root.rglob("*.stats.json")} == stats


def test_rerun_skips_complete_shards_and_rewrites_a_missing_one(mini, cache):
    run_shard(mini)
    root = cache / "shards"
    kept = root / "train" / "shard-000000.tar"
    stamp = kept.stat().st_mtime_ns
    lost = root / "train" / "shard-000001.tar"
    lost.unlink()  # as a killed run leaves it: no final file, a half-written temp beside it
    (root / "train" / ".shard-000001.tar.tmp-0123abcd").write_bytes(b"half a shard")
    index = run_shard(mini)
    assert kept.stat().st_mtime_ns == stamp and lost.is_file()
    assert not list(root.rglob(".*.tmp-*"))
    assert index["totals"]["nsamples"] == 7


def test_corrupt_and_missing_entries_are_recorded_and_left_out(mini, cache):
    store = ClipCache(cache)
    corrupt, missing = sorted(store.entries())[:2]
    audio = store.entry_dir(corrupt) / "audio.flac"
    audio.write_bytes(audio.read_bytes()[:-100] + bytes(100))
    (store.entry_dir(missing) / "audio.flac").unlink()
    index = run_shard(mini)
    assert index["totals"]["nsamples"] == 5 and index["totals"]["failures"] == 2
    failures = {
        f["clip_id"]: f["reason"]
        for p in (cache / "shards").rglob("*.stats.json")
        for f in json.loads(p.read_text())["failures"]
    }
    assert "does not match the sha256" in failures[corrupt]
    assert "FileNotFoundError" in failures[missing]


def test_changing_the_plan_rewrites_and_drops_stale_shards(mini, cache):
    run_shard(mini)
    text = mini.config.read_text().replace("max_samples: 3", "max_samples: 10")
    mini.config.write_text(text)
    index = run_shard(mini)
    assert sorted(p.name for p in (cache / "shards" / "train").glob("*.tar")) == ["shard-000000.tar"]
    assert (
        index["splits"]["train"]["shards"] == 1
        and read_stats(cache / "shards" / "train" / "shard-000000.tar")["samples"] == 5
    )


def test_an_empty_corpus_gives_an_empty_index(mini):
    os.makedirs(mini.root / "out" / "clips", exist_ok=True)
    index = run_shard(mini)
    assert index["splits"] == {} and index["totals"]["nsamples"] == 0


def test_the_corpus_index_lists_every_shard_but_is_not_a_wids_dataset(mini, cache):
    index = run_shard(mini)
    listed = {(s["split"], s["url"]): (s["nsamples"], s["filesize"], s["sha256"]) for s in index["shards"]}
    on_disk = {(p.parent.name, f"{p.parent.name}/{p.name}"): read_stats(p) for p in (cache / "shards").glob("*/*.tar")}
    assert set(listed) == set(on_disk)
    assert all(listed[k] == (v["samples"], v["bytes"], v["sha256"]) for k, v in on_disk.items())
    assert "wids_version" not in index  # one wids dataset per split: no train/test mix by accident
    with pytest.raises(contract.ContractError, match="not a wids index; open one split's index"):
        open_wids(cache / "shards" / contract.INDEX_NAME)
    with pytest.raises(Exception, match="wids_version"):  # and wids itself refuses it
        wids.ShardListDataset(str(cache / "shards" / contract.INDEX_NAME))


def test_a_full_disk_stops_the_shard_job_with_one_line_and_a_rerun_completes(mini, cache, monkeypatch):
    """Issue 14, item 12: the writer's spool lands on /dev/full (a real ENOSPC from the kernel):
    `t2a shard` says so in one line, exit 1, and writes everything once there is space."""
    from types import SimpleNamespace

    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.core.io import StorageFull
    from pipelines.shard import writer

    full = SimpleNamespace(TemporaryFile=lambda **_: open("/dev/full", "w+b"))  # noqa: SIM115
    monkeypatch.setattr(writer, "tempfile", full)
    with pytest.raises(StorageFull, match="No space left on device"):
        run_shard(mini)
    done = CliRunner().invoke(app, ["shard", "--config", str(mini.config), "--corpus", "mini"])
    assert done.exit_code == 1 and "No space left on device" in done.output and "Traceback" not in done.output
    monkeypatch.undo()
    index = run_shard(mini)
    assert index["totals"]["nsamples"] == 7 and not list((cache / "shards").rglob(".*.tmp-*"))
