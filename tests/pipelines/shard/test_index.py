"""index.json: one wids index per split, a corpus index that wids refuses, totals and checks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from shard_samples import make_sample
from wids.wids_specs import load_dsdesc_and_resolve

from pipelines.shard import contract
from pipelines.shard.contract import ContractError
from pipelines.shard.index import CORPUS_KIND, WIDS_KIND, build_index, build_split_index, read_index, write_indexes
from pipelines.shard.writer import write_shard, write_stats

PROFILES = ["audioldm", "make-an-audio"]


def write(root: Path, split: str, name: str, keys: list[str], source: str = "audioset") -> dict:
    path = root / split / f"{name}.tar"
    samples = [make_sample(k, i, audio=False, frames=0, split=split, source=source) for i, k in enumerate(keys)]
    return write_stats(
        path, write_shard(path, samples), {"split": split, "failures": [{"clip_id": f"{name}_x", "reason": "r"}]}
    )


@pytest.fixture()
def corpus(tmp_path) -> tuple[Path, list[dict]]:
    root = tmp_path / "shards"
    stats = [
        write(root, "valid", "shard-000000", ["v1"], source="clotho"),
        write(root, "train", "shard-000001", ["t3"], source="clotho"),
        write(root, "train", "shard-000000", ["t1", "t2"]),
        write(root, "train", "shard-000002", []),
    ]
    return root, stats


def test_split_index_is_what_wids_reads(corpus):
    root, stats = corpus
    corpus_index = write_indexes(root, stats, "cfg123", PROFILES)
    index = read_index(root / "train" / contract.INDEX_NAME)
    assert index["__kind__"] == WIDS_KIND and index["wids_version"] == 1 and index["split"] == "train"
    assert [(s["url"], s["nsamples"]) for s in index["shardlist"]] == [("shard-000000.tar", 2), ("shard-000001.tar", 1)]
    assert index["empty_shards"] == ["shard-000002.tar"]  # on disk and counted, but not offered to readers
    first = index["shardlist"][0]
    path = root / "train" / "shard-000000.tar"
    assert first["filesize"] == path.stat().st_size and first["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert index["schema"] == contract.SCHEMA and index["config_hash"] == "cfg123" and index["profiles"] == PROFILES
    resolved = load_dsdesc_and_resolve(str(root / "train" / contract.INDEX_NAME), base=str(root / "train"))
    assert [s["url"] for s in resolved["shardlist"]] == [str(root / "train" / f"shard-00000{i}.tar") for i in (0, 1)]
    assert corpus_index == read_index(root / contract.INDEX_NAME)


def test_corpus_index_lists_splits_and_totals_but_is_not_a_wids_dataset(corpus):
    root, stats = corpus
    index = write_indexes(root, stats, "cfg123", PROFILES)
    assert index["__kind__"] == CORPUS_KIND and "wids_version" not in index and "shardlist" not in index
    assert list(index["splits"]) == ["train", "valid"]
    train = index["splits"]["train"]
    assert train["index"] == "train/index.json" and (train["nsamples"], train["shards"]) == (3, 3)
    written = (root / "train" / contract.INDEX_NAME).read_bytes()
    assert train["index_sha256"] == hashlib.sha256(written).hexdigest()
    totals = index["totals"]
    assert totals["nsamples"] == 4 and totals["splits"] == {"train": 3, "valid": 1}
    assert totals["sources"] == {"audioset": 2, "clotho": 2} and totals["labels"] == {"Dog": 4, "bark": 4}
    assert totals["failures"] == 4 and totals["filesize"] == sum(s["bytes"] for s in stats)
    with pytest.raises(AssertionError, match="wids_version"):  # wids refuses to mix the splits
        load_dsdesc_and_resolve(str(root / contract.INDEX_NAME))


def test_indexes_are_deterministic_whatever_the_stats_order(corpus):
    root, stats = corpus
    write_indexes(root, stats, "cfg", PROFILES)
    first = {p: p.read_bytes() for p in root.rglob(contract.INDEX_NAME)}
    write_indexes(root, list(reversed(stats)), "cfg", PROFILES)
    assert {p: p.read_bytes() for p in root.rglob(contract.INDEX_NAME)} == first and len(first) == 3


def test_index_refuses_stats_that_do_not_match_the_disk(corpus):
    root, stats = corpus
    with pytest.raises(ContractError, match="listed twice"):
        build_index([*stats, stats[0]], root, "cfg", PROFILES)
    with pytest.raises(ContractError, match="split"):
        build_index([{**stats[0], "split": None}], root, "cfg", PROFILES)
    with pytest.raises(ContractError, match="missing or not"):
        build_index([{**stats[0], "bytes": 1}], root, "cfg", PROFILES)
    (root / "valid" / "shard-000000.tar").unlink()
    with pytest.raises(ContractError, match="missing or not"):
        build_index(stats, root, "cfg", PROFILES)


def test_split_index_alone(corpus):
    _, stats = corpus
    index = build_split_index("valid", [stats[0]], "cfg", PROFILES)
    assert index["totals"]["nsamples"] == 1 and index["totals"]["sources"] == {"clotho": 1}
