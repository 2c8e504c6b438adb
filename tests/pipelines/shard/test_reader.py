"""Writer → readers round trips (plain, webdataset, wids, HF datasets) and `inspect_shard`."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from shard_samples import ALL_CHARS_KEY, make_mels, make_sample

from pipelines.shard import contract
from pipelines.shard.contract import ContractError
from pipelines.shard.index import write_indexes
from pipelines.shard.reader import (
    decode_member,
    hf_features,
    inspect_shard,
    iter_members,
    iter_shard,
    open_wids,
    webdataset_pipeline,
)
from pipelines.shard.writer import stats_path, tar_info, write_shard, write_stats

PROFILES = ["audioldm", "make-an-audio"]
TRAIN = [["-first", "yt_AbC_0", ALL_CHARS_KEY], ["fs_1", "fs_2", "z-last", "zz", "zzz", "zzzz"]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, dict[str, bytes]]]:
    """shards/train/shard-00000{0,1}.tar, shards/valid/shard-000000.tar, their stats and indexes."""
    root = tmp_path_factory.mktemp("corpus") / "shards"
    samples: dict[str, dict[str, bytes]] = {}
    stats = []
    for split, groups in [("train", TRAIN), ("valid", [["v_1"]])]:
        for number, keys in enumerate(groups):
            items = [make_sample(k, len(samples) + i, split=split) for i, k in enumerate(keys)]
            samples.update(items)
            path = root / split / f"shard-{number:06d}.tar"
            stats.append(write_stats(path, write_shard(path, items), {"split": split}))
    write_indexes(root, stats, "cfg", PROFILES)
    return root, samples


def assert_same(sample: contract.Sample, members: dict[str, bytes]) -> None:
    original = contract.decode_sample(members)
    assert sample.key == original.key and sample.meta == original.meta
    for profile in PROFILES:
        assert sample.mels[profile].dtype == np.float16 and np.array_equal(sample.mels[profile], original.mels[profile])
    assert sample.audio == original.audio and sample.frames == original.frames


def train_urls(root: Path) -> list[str]:
    return [str(root / "train" / f"shard-00000{i}.tar") for i in range(len(TRAIN))]


def test_iter_shard(corpus):
    root, samples = corpus
    read = list(iter_shard(root / "train" / "shard-000000.tar"))
    assert [s.key for s in read] == sorted(TRAIN[0])
    for sample in read:
        assert_same(sample, samples[sample.key])


def test_webdataset_pipeline_yields_samples(corpus):
    root, samples = corpus
    read = list(webdataset_pipeline(train_urls(root)))
    assert [s.key for s in read] == sorted(TRAIN[0]) + sorted(TRAIN[1])
    for sample in read:
        assert_same(sample, samples[sample.key])


def test_plain_webdataset_with_our_decoder(corpus):
    root, samples = corpus
    dataset = wds.WebDataset(train_urls(root), shardshuffle=False, nodesplitter=wds.split_by_node)
    read = list(dataset.decode(decode_member, pre=[], post=[]))
    assert len(read) == sum(map(len, TRAIN))
    first = read[0]
    assert {k for k in first if not k.startswith("__")} == set(samples[first["__key__"]])
    assert first["json"]["schema"] == contract.SCHEMA and isinstance(first["flac"], bytes)
    mel = first[contract.mel_member("make-an-audio")]
    assert mel.shape == (80, 12) and np.array_equal(
        mel, contract.decode_npy(samples[first["__key__"]]["mel.make-an-audio.npy"])
    )


def test_webdataset_decoder_refuses_members_it_would_have_to_unpickle(tmp_path):
    path = tmp_path / "evil.tar"
    key, members = make_sample("k")
    with tarfile.open(path, "w", format=contract.TAR_FORMAT) as tar:
        for member, data in sorted({**members, "pkl": pickle.dumps({"unpickled": True})}.items()):
            tar.addfile(tar_info(f"{key}.{member}", len(data)), io.BytesIO(data))
    with pytest.raises(Exception) as raised:
        list(webdataset_pipeline(str(path), samples=False))
    assert "unknown member 'pkl'" in repr(raised.value.__cause__ or raised.value)
    with pytest.raises(ContractError, match="unknown member 'pkl'"):
        list(webdataset_pipeline(str(path)))


def test_wids_through_the_split_index(corpus, tmp_path):
    root, samples = corpus
    dataset = open_wids(root / "train" / contract.INDEX_NAME)
    assert len(dataset) == sum(map(len, TRAIN))
    keys = [dataset[i].key for i in range(len(dataset))]
    assert keys == sorted(TRAIN[0]) + sorted(TRAIN[1])
    assert_same(dataset[4], samples[keys[4]])
    cached = open_wids(root / "valid" / contract.INDEX_NAME, cache_dir=tmp_path / "cache")
    assert [cached[0].key] == ["v_1"] and any((tmp_path / "cache").iterdir())
    with pytest.raises(ContractError, match="not a wids index"):
        open_wids(root / contract.INDEX_NAME)


def test_hugging_face_datasets_names_our_members(tmp_path, hf_offline):
    path = tmp_path / "shard-000000.tar"
    items = [make_sample(f"k{i}", i, audio=False) for i in range(3)]  # a flac would need torchcodec: see hf_features
    write_shard(path, items)
    inferred = hf_offline.load_dataset(
        "webdataset", data_files=[str(path)], split="train", cache_dir=str(tmp_path / "c")
    )
    members = {"json", "frame_00.jpg", "frame_01.jpg", *(contract.mel_member(p) for p in PROFILES)}
    assert set(inferred.column_names) == members | {"__key__", "__url__"}
    mel = np.asarray(inferred[2]["mel.audioldm.npy"], dtype=np.float16)
    assert mel.shape == (64, 20) and np.array_equal(mel, contract.decode_npy(dict(items)["k2"]["mel.audioldm.npy"]))


def test_hugging_face_datasets_with_our_features(corpus, hf_offline, tmp_path):
    root, samples = corpus
    files = {"train": train_urls(root)}
    features = hf_features(PROFILES, audio=True, frames=2)
    dataset = hf_offline.load_dataset(
        "webdataset", data_files=files, split="train", cache_dir=str(tmp_path / "c2"), features=features
    )
    assert len(dataset) == sum(map(len, TRAIN))
    row = dataset[1]
    original = contract.decode_sample(samples[row["__key__"]])
    mel = np.asarray(row[contract.mel_member("make-an-audio")], dtype=np.float16)
    assert mel.shape == (80, 12) and np.array_equal(mel, original.mels["make-an-audio"])
    assert contract.SampleMeta.model_validate(row["json"]) == original.meta
    assert row["flac"] == original.audio and row["frame_00.jpg"].size == (8, 8)


def test_hugging_face_json_feature_survives_samples_that_differ(tmp_path, hf_offline):
    items = [
        make_sample(f"k{i}", i, audio=False, frames=0, meta={"tags": ["x"]} if i < 5 else {"description": "new"})
        for i in range(7)
    ]
    path = tmp_path / "shard-000000.tar"
    write_shard(path, items)
    features = hf_features(PROFILES)
    dataset = hf_offline.load_dataset(
        "webdataset", data_files=[str(path)], split="train", cache_dir=str(tmp_path / "c"), features=features
    )
    assert dataset[6]["json"]["meta"] == {"description": "new"}


# --- inspect ---------------------------------------------------------------------------------------


def test_inspect_a_good_shard(corpus):
    root, _ = corpus
    report = inspect_shard(root / "train" / "shard-000001.tar")
    assert report["problems"] == [] and report["complete"]
    assert report["samples"] == len(TRAIN[1]) and report["splits"] == {"train": len(TRAIN[1])}
    assert report["profiles"] == {"audioldm": [64, 20], "make-an-audio": [80, 12]}
    assert report["keys"] == {"first": "fs_1", "last": "zzzz"}


def raw_tar(path: Path, entries: list[tuple[str, bytes]], **header) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in entries:
            info = tar_info(name, len(data))
            for field, value in header.get(name, {}).items():
                setattr(info, field, value)
            tar.addfile(info, io.BytesIO(data))


def test_inspect_finds_each_kind_of_problem(tmp_path):
    good = dict(make_sample("k0")[1])
    schema = dict(make_sample("k2")[1])
    schema["json"] = schema["json"].replace(b'"split":"train"', b'"split":"train","colour":"red"')
    shape, dtype = dict(make_sample("k3")[1]), dict(make_sample("k4")[1])
    shape["mel.audioldm.npy"] = contract.encode_npy(make_mels(0)["audioldm"][:, :5])
    dtype["mel.audioldm.npy"] = contract.encode_npy(make_mels(0)["audioldm"].astype(np.float32))
    test_split = dict(make_sample("k5", split="test")[1])
    entries = [
        ("bad key.json", good["json"]),
        *((f"k0.{m}", d) for m, d in sorted(good.items())),
        ("k1.pkl", pickle.dumps([1])),
        *((f"k2.{m}", d) for m, d in sorted(schema.items())),
        *((f"k3.{m}", d) for m, d in sorted(shape.items())),
        *((f"k4.{m}", d) for m, d in sorted(dtype.items())),
        *((f"k5.{m}", d) for m, d in sorted(test_split.items())),
        ("k0.extra.txt", b"again"),
        (f"{'x' * 120}.json", b"{}"),
    ]
    path = tmp_path / "shard-000000.tar"
    raw_tar(path, entries, **{"k3.json": {"mtime": 1700000000, "uname": "bigdata"}})
    report = inspect_shard(path)
    problems = "\n".join(report["problems"])
    expected = [
        "bad sample key 'bad key'",  # bad key
        "k1: unknown member 'pkl'",
        "k1: no json member",  # unknown member
        "k2: JSON does not match t2a.sample/1: colour",  # schema
        "k3: mel.audioldm.npy is float16[64, 5], the json declares float16[64, 20]",  # shape
        "k4: mel.audioldm.npy is float32[64, 20], the json declares float16[64, 20]",  # dtype
        "k3.json: header departs from the contract: mtime 1700000000 (not 946684800), uname 'bigdata' (not '')",
        "samples of several splits in one shard",
        "key 'k0' appears again after other keys",
        "k0.extra.txt: out of order",
        "unknown member 'extra.txt'",
        "bad sample key 'xxxxxxxx",  # a name wids would cut: keys are at most 64 characters
        "no shard-000000.stats.json",  # never committed
    ]
    for text in expected:
        assert text in problems, text
    assert not report["complete"]


def test_inspect_finds_a_stats_mismatch_and_a_truncated_tar(tmp_path):
    path = tmp_path / "shard-000000.tar"
    write_stats(path, write_shard(path, [make_sample("a"), make_sample("b", 1)]), {})
    data = bytearray(path.read_bytes())
    offset = data.index(b"\x93NUMPY") + 200  # inside a mel payload: the sample still decodes
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    report = inspect_shard(path)
    others = [p for p in report["problems"] if not p.startswith("stats mismatch: sha256")]
    assert others == ["a: mel.audioldm.npy does not match its checksum (corrupt member)"] and not report["complete"]
    path.write_bytes(bytes(data[:3000]))
    report = inspect_shard(path)
    problems = "\n".join(report["problems"])
    assert (
        "unreadable tar" in problems and "stats mismatch: bytes" in problems and "stats mismatch: samples" in problems
    )
    with pytest.raises(ContractError, match="unreadable tar"):
        list(iter_members(path))
    stats_path(path).unlink()
    assert "no shard-000000.stats.json" in "\n".join(inspect_shard(path)["problems"])
