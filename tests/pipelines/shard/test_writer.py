"""The shard writer: byte-determinism, tar header settings, atomicity, stats as the commit marker."""

from __future__ import annotations

import hashlib
import json
import random
import tarfile
from pathlib import Path

import pytest
from shard_samples import ALL_CHARS_KEY, make_sample

from pipelines.shard import contract
from pipelines.shard.contract import ContractError
from pipelines.shard.writer import is_complete, read_stats, remove_stale_temps, stats_path, write_shard, write_stats

KEYS = ["a", "a-b", "-a", "A", "_", "a_b", "yt_x_0", ALL_CHARS_KEY]


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, dict[str, bytes]]]:
    return [make_sample(key, seed, frames=seed % 3) for seed, key in enumerate(KEYS)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_samples_give_the_same_bytes_in_any_order(tmp_path, samples):
    first = write_shard(tmp_path / "one" / "shard-000000.tar", samples)
    again = write_shard(tmp_path / "two" / "shard-000007.tar", samples)
    shuffled = write_shard(tmp_path / "three" / "shard-000000.tar", random.Random(4).sample(samples, len(samples)))
    assert first.sha256 == again.sha256 == shuffled.sha256 == sha256(first.path)
    assert first.bytes == first.path.stat().st_size and first.bytes % 10240 == 0  # whole tar records
    changed = write_shard(tmp_path / "four" / "shard-000000.tar", [*samples[:-1], make_sample(KEYS[-1], 99)])
    assert changed.sha256 != first.sha256


def test_members_are_sorted_by_key_then_member_with_fixed_headers(tmp_path, samples):
    info = write_shard(tmp_path / "shard-000000.tar", samples)
    with tarfile.open(info.path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == list(info.members)
    pairs = [contract.split_name(name) for name in names]
    assert pairs == sorted(pairs)
    keys = [key for key, _ in pairs]
    assert list(dict.fromkeys(keys)) == sorted(KEYS)  # each key contiguous ("a" then "a-b", not interleaved)
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.type) == (
            contract.MTIME,
            0,
            0,
            "",
            "",
            0o644,
            tarfile.REGTYPE,
        )
    raw = info.path.read_bytes()
    assert raw[257:265] == b"ustar\x0000"  # POSIX ustar
    assert all(raw[i * 512 + 156 : i * 512 + 157] == b"0" for i in _header_blocks(members))  # no PAX/GNU records


def _header_blocks(members: list[tarfile.TarInfo]) -> list[int]:
    return [m.offset // 512 for m in members]


def test_info_counts_what_was_written(tmp_path, samples):
    info = write_shard(tmp_path / "shard-000000.tar", samples)
    assert info.samples == len(KEYS) and info.splits == {"train": len(KEYS)} and info.sources == {"audioset": len(KEYS)}
    assert info.labels == {"Dog": len(KEYS), "bark": len(KEYS)} and info.events == {"1": len(KEYS)}
    assert info.duration == round(9.5 * len(KEYS), 3)


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda s: [*s, s[0]], "duplicate sample key"),
        (lambda s: [*s, ("bad.key", s[0][1])], "bad sample key"),
        (lambda s: [*s, ("z", {**make_sample("z")[1], "pkl": b"x"})], "unknown member"),
        (lambda s: [*s, ("z", s[0][1])], "differs from the tar key"),
        (lambda s: [*s, make_sample("z", split="test")], "splits never share a shard"),
    ],
)
def test_contract_violations_leave_no_file(tmp_path, samples, bad, message):
    path = tmp_path / "shard-000000.tar"
    with pytest.raises(ContractError, match=message):
        write_shard(path, bad(samples))
    assert list(tmp_path.iterdir()) == []


def test_a_writer_killed_midway_leaves_no_shard_and_no_temp(tmp_path, samples):
    path = tmp_path / "train" / "shard-000000.tar"

    def dying():
        yield from samples[:3]
        raise KeyboardInterrupt  # what a worker sees when it is stopped

    with pytest.raises(KeyboardInterrupt):
        write_shard(path, dying())
    assert list(path.parent.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_complete_shard(tmp_path, samples):
    path = tmp_path / "shard-000000.tar"
    write_stats(path, write_shard(path, samples), {"split": "train"})
    before = path.read_bytes()

    def dying():
        yield samples[0]
        raise RuntimeError("mel extraction failed")

    with pytest.raises(RuntimeError):
        write_shard(path, dying())
    assert path.read_bytes() == before and is_complete(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.stats.json", "shard-000000.tar"]


def test_a_rewrite_drops_the_old_commit_marker(tmp_path, samples):
    path = tmp_path / "shard-000000.tar"
    write_stats(path, write_shard(path, samples), {"split": "train"})
    write_shard(path, samples[:2])
    assert not stats_path(path).exists() and not is_complete(path)


def test_stale_temps_are_removed(tmp_path):
    (tmp_path / ".shard-000003.tar.tmp-0123abcd").write_bytes(b"half")
    (tmp_path / ".shard-000003.stats.json.0123abcd").write_bytes(b"{")
    (tmp_path / "shard-000001.tar").write_bytes(b"")
    assert remove_stale_temps(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["shard-000001.tar"]


def test_stats_record_the_shard_and_mark_it_complete(tmp_path, samples):
    path = tmp_path / "shard-000000.tar"
    info = write_shard(path, samples)
    assert not is_complete(path)  # not before the stats exist
    failures = [{"clip_id": "yt_b_0", "reason": "corrupt"}, {"clip_id": "yt_a_0", "reason": "missing"}]
    stats = write_stats(path, info, {"split": "train", "plan_digest": "d1", "failures": failures})
    assert is_complete(path) and read_stats(path) == stats == json.loads(stats_path(path).read_text())
    assert (
        stats["schema"] == contract.STATS_SCHEMA and stats["shard"] == "shard-000000.tar" and stats["split"] == "train"
    )
    assert (stats["samples"], stats["bytes"], stats["sha256"]) == (len(KEYS), path.stat().st_size, sha256(path))
    assert stats["members"] == len(info.members)
    assert stats["members_sha256"] == hashlib.sha256("".join(f"{n}\n" for n in info.members).encode()).hexdigest()
    assert stats["member_kinds"]["json"] == len(KEYS) and stats["member_kinds"]["mel"] == 2 * len(KEYS)
    assert stats["keys"] == {"first": "-a", "last": "yt_x_0"}
    assert stats["labels"] == {"Dog": len(KEYS), "bark": len(KEYS)} and stats["sources"] == {"audioset": len(KEYS)}
    assert [f["clip_id"] for f in stats["failures"]] == ["yt_a_0", "yt_b_0"] and stats["plan_digest"] == "d1"


def test_stats_are_deterministic(tmp_path, samples):
    texts = []
    for name in ("one", "two"):
        path = tmp_path / name / "shard-000000.tar"
        write_stats(path, write_shard(path, samples), {"split": "train"})
        texts.append(stats_path(path).read_bytes())
    assert texts[0] == texts[1]


def test_is_complete_is_false_for_a_truncated_or_modified_tar(tmp_path, samples):
    path = tmp_path / "shard-000000.tar"
    write_stats(path, write_shard(path, samples), {})
    data = path.read_bytes()
    path.write_bytes(data[:-10240])
    assert not is_complete(path)
    flipped = bytearray(data)
    flipped[2000] ^= 0xFF
    path.write_bytes(bytes(flipped))
    assert not is_complete(path) and is_complete(path, verify=False)  # same size: only the sha256 tells
    path.write_bytes(data)
    assert is_complete(path)
    stats_path(path).write_text("{not json")
    assert not is_complete(path)


def test_stats_refuse_a_wrong_split_or_overwritten_fields(tmp_path, samples):
    path = tmp_path / "shard-000000.tar"
    info = write_shard(path, samples)
    with pytest.raises(ContractError, match="split"):
        write_stats(path, info, {"split": "test"})
    with pytest.raises(ContractError, match="overwrite"):
        write_stats(path, info, {"sha256": "0" * 64})
    assert not stats_path(path).exists()


def test_an_empty_shard_is_a_valid_tar(tmp_path):
    info = write_shard(tmp_path / "shard-000000.tar", [])
    stats = write_stats(info.path, info, {"split": "valid", "failures": [{"clip_id": "x", "reason": "gone"}]})
    assert info.samples == 0 and info.bytes == 10240 and stats["keys"] is None and stats["split"] == "valid"
    with tarfile.open(info.path) as tar:
        assert tar.getmembers() == []
