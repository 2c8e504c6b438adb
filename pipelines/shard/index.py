"""The dataset indexes: one wids-readable `index.json` per split, and a corpus `index.json` over them.

    <shards>/index.json                corpus: splits, totals, config hash, profiles, schema
    <shards>/<split>/index.json        wids shard index of one split (relative shard urls)
    <shards>/<split>/shard-NNNNNN.tar  + shard-NNNNNN.stats.json

A wids dataset is one flat sequence of samples. A corpus index that wids could open would therefore
concatenate train, valid and test into one dataset, and a trainer pointed at it would train on the
test set without a warning. So only the per-split indexes carry `wids_version`; the corpus index
deliberately has none (wids refuses it: "No wids_version in dataset description") and lists the
split indexes instead. Both are built from the shards' stats only, so they are as deterministic as
the shards.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipelines.core.io import dumps, write_json_atomic
from pipelines.core.storage import ObjectPath, location
from pipelines.shard import contract
from pipelines.shard.contract import ContractError

WIDS_KIND = "wids-shard-index-v1"
CORPUS_KIND = "t2a-corpus-index-v1"
_COUNTS = ("sources", "labels", "events")


def build_split_index(
    split: str, stats: Iterable[Mapping[str, Any]], config_hash: str, profiles: list[str]
) -> dict[str, Any]:
    """The wids index of one split; shard urls are relative to the index's own folder."""
    ordered = sorted(stats, key=lambda s: s["shard"])
    listed = [s for s in ordered if s["samples"] > 0]  # wids and HF datasets stumble on empty tars
    return {
        "__kind__": WIDS_KIND,
        "wids_version": 1,
        "name": split,
        "split": split,
        "schema": contract.SCHEMA,
        "config_hash": config_hash,
        "profiles": list(profiles),
        "shardlist": [_shard_entry(s) for s in listed],
        "empty_shards": [s["shard"] for s in ordered if s["samples"] == 0],
        "totals": _totals(ordered),
    }


def build_index(stats: list[Mapping[str, Any]], root: Path, config_hash: str, profiles: list[str]) -> dict[str, Any]:
    """The corpus index over `root/<split>/index.json`; every shard is checked to be on disk, whole."""
    by_split = _by_split(stats, location(root))
    splits = {}
    for split, items in by_split.items():
        index = build_split_index(split, items, config_hash, profiles)
        splits[split] = {
            "index": f"{split}/{contract.INDEX_NAME}",
            "index_sha256": hashlib.sha256(dumps(index).encode("utf-8")).hexdigest(),  # the file's bytes
            **{k: index["totals"][k] for k in ("shards", "nsamples", "filesize")},
        }
    every = [
        {**_shard_entry(s), "url": f"{split}/{s['shard']}", "split": split}
        for split, items in by_split.items()
        for s in sorted(items, key=lambda s: s["shard"])
    ]
    return {
        "__kind__": CORPUS_KIND,
        "schema": contract.SCHEMA,
        "config_hash": config_hash,
        "profiles": list(profiles),
        "splits": splits,
        "shards": every,  # every shard, its split named: a listing, deliberately not a wids dataset
        "totals": _totals([s for items in by_split.values() for s in items]),
    }


def write_indexes(root: Path, stats: list[Mapping[str, Any]], config_hash: str, profiles: list[str]) -> dict[str, Any]:
    """Write every split's index, then the corpus index (last); returns the corpus index."""
    root = location(root)
    corpus = build_index(stats, root, config_hash, profiles)
    for split, items in _by_split(stats, root).items():
        write_json_atomic(root / split / contract.INDEX_NAME, build_split_index(split, items, config_hash, profiles))
    write_json_atomic(root / contract.INDEX_NAME, corpus)
    return corpus


def read_index(path: Path | ObjectPath) -> dict[str, Any]:
    return contract.decode_json(location(path).read_bytes())


def _shard_entry(stats: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "url": stats["shard"],
        "nsamples": stats["samples"],
        "filesize": stats["bytes"],
        "sha256": stats["sha256"],
        "members_sha256": stats["members_sha256"],
    }


def _by_split(stats: Iterable[Mapping[str, Any]], root: Path) -> dict[str, list[Mapping[str, Any]]]:
    by_split: dict[str, list[Mapping[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for item in stats:
        split, name = item.get("split"), item.get("shard")
        if item.get("schema") != contract.STATS_SCHEMA or split not in contract.SPLITS:
            raise ContractError(f"stats of {name!r} are not {contract.STATS_SCHEMA} with a split in {contract.SPLITS}")
        if (split, name) in seen:
            raise ContractError(f"shard {split}/{name} is listed twice")
        seen.add((split, name))
        path = root / split / name
        if not path.is_file() or path.stat().st_size != item["bytes"]:
            raise ContractError(f"{path} is missing or not the {item['bytes']} bytes its stats record")
        by_split.setdefault(split, []).append(item)
    return dict(sorted(by_split.items(), key=lambda kv: contract.SPLITS.index(kv[0])))


def _totals(stats: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    stats = list(stats)
    counts: dict[str, Counter[str]] = {name: Counter() for name in (*_COUNTS, "splits")}
    for item in stats:
        for name in _COUNTS:
            counts[name].update(item.get(name, {}))
        counts["splits"][item["split"]] += item["samples"]
    return {
        "nsamples": sum(s["samples"] for s in stats),
        "filesize": sum(s["bytes"] for s in stats),
        "shards": len(stats),
        "failures": sum(len(s.get("failures", [])) for s in stats),
        "duration": round(sum(s.get("duration", 0.0) for s in stats), 3),
        **{name: dict(sorted(c.items())) for name, c in counts.items()},
    }
