"""Shards that grow (issue 16 §4): adding clips rewrites only the shards they land in, untouched
shards are neither rewritten nor re-hashed, and a grown corpus has the same bytes on every runner."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from synthetic_cache import add_clips, write_config

from pipelines.datasets import load_corpus
from pipelines.shard import contract, writer
from pipelines.shard import job as shard
from pipelines.shard.reader import open_wids

THREADS = ["--direct_running_mode=multi_threading", "--direct_num_workers=3"]
FIRST = [f"synth_{i:03d}" for i in range(7)]  # max_samples 3: shards of 3, 3 and 1
MORE = [f"synth_{i:03d}" for i in range(7, 11)]


def build(root: Path, clip_ids: list[str], *beam_args: str) -> dict:
    add_clips(root / "out", clip_ids)
    config = write_config(root, root / "out", max_samples=3)
    return shard.run(load_corpus(config, "synth"), beam_args=beam_args)


def files(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every shard, stats and index file: (inode, ctime_ns, bytes) — a rewrite changes the inode."""
    return {
        str(p.relative_to(root / "out" / "shards")): (p.stat().st_ino, p.stat().st_ctime_ns, p.read_bytes())
        for p in sorted((root / "out" / "shards").rglob("*"))
        if p.is_file()
    }


def stats(root: Path) -> list[Path]:
    return sorted((root / "out" / "shards" / "train").glob("*.stats.json"))


@pytest.fixture()
def hashed(monkeypatch) -> list[str]:
    """The shards whose sha256 the job computes (in-process runner)."""
    seen: list[str] = []
    real = writer.sha256_file

    def counting(path):
        seen.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(writer, "sha256_file", counting)
    return seen


def test_adding_clips_rewrites_only_the_shards_they_land_in(tmp_path, hashed):
    build(tmp_path, FIRST)
    before = files(tmp_path)
    hashed.clear()
    index = build(tmp_path, MORE)
    after = files(tmp_path)
    for name in ("train/shard-000000.tar", "train/shard-000001.tar"):
        assert after[name] == before[name]  # same inode, same ctime, same bytes: not rewritten
        assert after[name.replace(".tar", ".stats.json")] == before[name.replace(".tar", ".stats.json")]
    assert hashed == []  # nor re-read: size + an mtime equal to the stats file's are trusted
    assert after["train/shard-000002.tar"][0] != before["train/shard-000002.tar"][0]  # the open last shard
    layout = {
        name: json.loads(data)["clip_ids"] for name, (_, _, data) in after.items() if name.endswith(".stats.json")
    }
    assert sorted(c for ids in layout.values() for c in ids) == FIRST + MORE
    assert len(layout) == 4 and all(len(ids) <= 3 for ids in layout.values())
    assert index["totals"]["nsamples"] == 11
    wids = open_wids(tmp_path / "out" / "shards" / "train" / contract.INDEX_NAME)
    assert sorted(wids[i].key for i in range(len(wids))) == FIRST + MORE


def test_a_grown_corpus_has_the_same_bytes_on_every_runner(tmp_path):
    build(tmp_path, FIRST)
    first = {json.loads(p.read_bytes())["shard"]: json.loads(p.read_bytes())["clip_ids"] for p in stats(tmp_path)}
    assert [len(first[f"shard-00000{i}.tar"]) for i in range(3)] == [3, 3, 1]  # the sha256 cut of a first build
    build(tmp_path, MORE)
    grown = {name: data for name, (_, _, data) in files(tmp_path).items()}
    shutil.rmtree(tmp_path / "out")
    build(tmp_path, FIRST, *THREADS)
    build(tmp_path, MORE, *THREADS)
    assert {name: data for name, (_, _, data) in files(tmp_path).items()} == grown


def test_a_touched_shard_is_hashed_once_and_a_changed_one_rewritten(tmp_path, hashed):
    build(tmp_path, FIRST)
    shards = tmp_path / "out" / "shards" / "train"
    touched, changed = shards / "shard-000000.tar", shards / "shard-000001.tar"
    os.utime(touched)  # e.g. copied without its times: same bytes, new mtime
    data = bytearray(changed.read_bytes())
    data[700] ^= 0xFF  # flipped in place, same size
    changed.write_bytes(bytes(data))
    before = files(tmp_path)
    hashed.clear()
    build(tmp_path, [])
    after = files(tmp_path)
    assert sorted(hashed) == ["shard-000000.tar", "shard-000001.tar"]
    assert after["train/shard-000000.tar"][0] == before["train/shard-000000.tar"][0]  # kept, stamped again
    assert touched.stat().st_mtime_ns == writer.stats_path(touched).stat().st_mtime_ns  # stamped again
    assert after["train/shard-000001.tar"][0] != before["train/shard-000001.tar"][0]  # rewritten
    assert writer.is_complete(changed)
    hashed.clear()
    build(tmp_path, [])
    assert hashed == []


def test_stats_written_before_the_layout_was_recorded_gain_it_without_a_rewrite(tmp_path):
    build(tmp_path, FIRST)
    stats = tmp_path / "out" / "shards" / "train" / "shard-000000.stats.json"
    recorded = stats.read_bytes()
    old = json.loads(recorded)
    del old["clip_ids"]
    stats.write_text(json.dumps(old, sort_keys=True))
    tar = files(tmp_path)["train/shard-000000.tar"]
    build(tmp_path, [])
    inode, _, data = files(tmp_path)["train/shard-000000.tar"]
    assert stats.read_bytes() == recorded and (inode, data) == (tar[0], tar[2])  # same file, only re-stamped
