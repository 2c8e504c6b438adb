"""The streaming loader (training/data/loader.py): splitting, infinite equal batches, determinism, exact
resume, error counting, http streaming, and the example functions, transforms and filters."""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from train_shards import CLAP_DIM, sample_key, write_split

from pipelines.core.config import ConfigError
from demo.server import Fault, LoopbackServer
from pipelines.shard import contract
from training.data import stream as data_stream
from pipelines.core.features import MelExtractor, get_profile
from training.config import DataConfig, ReprogramConfig
from training.data.clips import build_clip_index
from training.data.loader import (
    LoaderError, ShardInfo, ShardStream, StreamLoader, collate, curriculum_filter, iter_batches, latent_example,
    list_shards, make_loader, mel_example, mixup_transform, open_shard,
)

SHARDS, PER_SHARD = 4, 6
ALL_KEYS = {sample_key("train", 0, s, i) for s in range(SHARDS) for i in range(PER_SHARD)}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = write_split(tmp_path_factory.mktemp("corpus"), shards=SHARDS, per_shard=PER_SHARD)
    write_split(root, "valid", shards=1, per_shard=4)
    return root


@pytest.fixture(scope="module")
def shards(corpus) -> list[ShardInfo]:
    return list_shards(str(corpus), "train")


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> Path:
    """Shard 0 intact, 1 garbage, 2 truncated, 3 with an undecodable mel, 4 with an unknown member."""
    return write_split(tmp_path_factory.mktemp("damaged"), shards=5, corrupt={1: "garbage", 2: "truncate", 3: "member", 4: "unknown"})


def take(iterable, n: int) -> list:
    return list(itertools.islice(iterable, n))


def epoch_keys(batches, epoch: int) -> list[str]:
    return [key for batch in batches if batch["__epoch__"] == epoch for key in batch["key"]]


def assert_same_batches(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], torch.Tensor):
                assert torch.equal(a[key], b[key]), key
            elif isinstance(a[key], list):  # e.g. "wave": the reprogrammed samples' waveforms, None for the others
                assert len(a[key]) == len(b[key]), key
                for x, y in zip(a[key], b[key]):
                    assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y, key
            else:
                assert a[key] == b[key], key


# --- listing and opening --------------------------------------------------------------------------


def test_list_shards_from_folder_corpus_index_or_split_index(corpus):
    expected = [ShardInfo(str(corpus / "train" / f"shard-{s:06d}.tar"), PER_SHARD) for s in range(SHARDS)]
    assert list_shards(str(corpus), "train") == expected
    assert list_shards(str(corpus / "index.json"), "train") == expected
    assert list_shards(str(corpus / "train" / "index.json"), "train") == expected
    assert [s.nsamples for s in list_shards(str(corpus), "valid")] == [4]


def test_list_shards_errors_name_the_fix(corpus, tmp_path):
    with pytest.raises(ConfigError, match=r"not found: data.shards must name a corpus written by `t2a shard`.*train/index.json"):
        list_shards(str(tmp_path), "train")
    with pytest.raises(ConfigError, match="no split 'test'"):
        list_shards(str(corpus / "index.json"), "test")
    with pytest.raises(ConfigError, match="index of split 'valid', not 'train'"):
        list_shards(str(corpus / "valid" / "index.json"), "train")


def test_open_shard_retries_remote_failures_with_backoff(corpus):
    faults = {"/train/shard-000001.tar": [Fault(status=503, times=2)]}
    with LoopbackServer(corpus, faults=faults) as server:
        with open_shard(f"{server.url}/train/shard-000001.tar", backoff=0) as stream:
            assert stream.read() == (corpus / "train" / "shard-000001.tar").read_bytes()
        with pytest.raises(FileNotFoundError):
            open_shard(f"{server.url}/train/missing.tar", retries=1, backoff=0)
        assert len(server.requests_for("/train/missing.tar", method=None)) >= 2  # retried once
    with pytest.raises(FileNotFoundError):
        open_shard(str(corpus / "missing.tar"), backoff=60)  # a local file that is not there: no wait


def test_streaming_over_http_equals_local(corpus):
    example = mel_example("audioldm", 8, random_crop=True)
    local = list(iter_batches(str(corpus), "train", example, batch_size=5))
    with LoopbackServer(corpus) as server:
        remote_shards = list_shards(server.url, "train")
        assert [s.url for s in remote_shards] == [f"{server.url}/train/shard-{s:06d}.tar" for s in range(SHARDS)]
        remote = list(iter_batches(server.url, "train", example, batch_size=5))
        streamed = take(StreamLoader(remote_shards, example, batch_size=4, shuffle_buffer=6), 3)
        assert len(server.requests_for("/train/shard-*.tar")) >= SHARDS
    assert_same_batches(local, remote)
    assert_same_batches(take(StreamLoader(list_shards(str(corpus), "train"), example, batch_size=4, shuffle_buffer=6), 3), streamed)


def test_streaming_from_s3_with_storage_options(corpus):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = "http://{}:{}".format(*server.get_host_and_port())
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        client.create_bucket(Bucket="corpus")
        for path in (p for p in corpus.rglob("*") if p.is_file()):
            client.upload_file(str(path), "corpus", f"demo/{path.relative_to(corpus)}")
        options = {"key": "test", "secret": "test", "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
        data = DataConfig(shards="s3://corpus/demo", storage_options=options, batch_size=4, shuffle_buffer=6)
        example = mel_example("audioldm", 8)
        remote = list(iter_batches(data, "train", example, batch_size=5))
        streamed = take(make_loader(data, "train", example), 3)
    finally:
        server.stop()
    assert_same_batches(list(iter_batches(str(corpus), "train", example, batch_size=5)), remote)
    assert_same_batches(take(make_loader(DataConfig(shards=str(corpus), batch_size=4, shuffle_buffer=6), "train", example), 3), streamed)


# --- splitting, infinite stream, determinism ------------------------------------------------------


def test_two_ranks_two_workers_read_every_sample_once_per_epoch(shards):
    per_slot = {}
    for rank in (0, 1):
        stream = ShardStream(shards, mel_example("audioldm"), batch_size=1, rank=rank, world_size=2, workers=2, shuffle_buffer=4)
        for worker in (0, 1):
            batches = list(itertools.takewhile(lambda b: b["__epoch__"] < 2, stream.slot_batches(worker)))
            per_slot[stream.slot_of(worker)] = batches
    assert sorted(per_slot) == [0, 1, 2, 3]
    for epoch in (0, 1):
        keys = [key for batches in per_slot.values() for key in epoch_keys(batches, epoch)]
        assert len(keys) == len(set(keys)) and set(keys) == ALL_KEYS
    deals = [[sorted(epoch_keys(per_slot[slot], epoch)) for slot in range(4)] for epoch in (0, 1)]
    assert deals[0] != deals[1]  # shards are dealt anew every epoch


def test_dataloader_workers_split_the_epoch_and_match_in_process_order(shards):
    stream = ShardStream(shards, mel_example("audioldm"), batch_size=1, workers=2, shuffle_buffer=4, seed=5)
    batches = take(DataLoader(stream, batch_size=None, num_workers=2), 2 * len(ALL_KEYS))
    assert [b["__slot__"] for b in batches[:6]] == [0, 1, 0, 1, 0, 1]  # workers in turn
    keys = epoch_keys(batches, 0)
    assert len(keys) == len(set(keys)) and set(keys) == ALL_KEYS
    assert_same_batches(batches[:12], take(iter(stream), 12))  # no worker processes: the same batches


def test_batches_are_always_full_and_carry_over_epochs(shards):
    stream = ShardStream(shards, mel_example("audioldm", 4), batch_size=5, shuffle_buffer=3)
    batches = take(iter(stream), 12)  # 60 samples: 2.5 epochs of 24
    assert all(len(b["key"]) == 5 and b["mel"].shape == (5, 1, 4, 64) for b in batches)
    keys = [key for b in batches for key in b["key"]]
    assert set(keys[:24]) == ALL_KEYS and set(keys[24:48]) == ALL_KEYS
    assert [b["__epoch__"] for b in batches[4:6]] == [1, 1]  # batch 5 spans epochs 0 and 1: its last sample's
    assert [b["__position__"] for b in batches[:6]] == [5, 10, 15, 20, 1, 6]


@pytest.mark.parametrize("workers", [0, 2])
def test_same_arguments_same_batches(shards, workers):
    def loader(seed):
        return StreamLoader(shards, mel_example("audioldm", 6), batch_size=4, seed=seed, workers=workers, shuffle_buffer=8,
                            batch_transform=mixup_transform(0.5))

    first = take(loader(3), 8)
    assert_same_batches(first, take(loader(3), 8))
    assert [b["key"] for b in take(loader(4), 8)] != [b["key"] for b in first]


def test_fewer_shards_than_slots_is_a_config_error(shards):
    with pytest.raises(ConfigError, match=r"4 shard\(s\) for 6 reader slots \(2 rank\(s\) × 3 worker\(s\)\).*shards.max_samples"):
        ShardStream(shards, mel_example("audioldm"), batch_size=2, world_size=2, workers=3)


# --- resume ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_continues_exactly(tmp_path, workers):
    root = write_split(tmp_path, shards=4, per_shard=6, corrupt={2: "member", 3: "truncate"})
    shards = list_shards(str(root), "train")
    reprogram = ReprogramConfig(probability=0.5, counts=[1])
    clips = build_clip_index(shards)  # D: the truncated shard's unread clips have no audio there

    def loader():
        return StreamLoader(shards, mel_example("audioldm", 8, reprogram=reprogram, clips=clips), batch_size=5, seed=1, workers=workers,
                            shuffle_buffer=5, batch_transform=mixup_transform(0.5), max_error_rate=0.5)

    first = loader()
    batches, seen, states = iter(first), [], []
    for _ in range(13):  # the state after each batch handed out (the workers have prefetched more)
        seen.append(next(batches))
        states.append(json.loads(json.dumps(first.state_dict())))
    assert states[4]["batches"] == 5 and first.samples == 65
    assert set(first.errors) & {"shard: ReadError", "shard: truncated"} and "decode: ContractError" in first.errors
    for k in (3, 5, 8):  # odd k: with two workers, slot 1 goes first after the resume
        second = loader()
        second.load_state_dict(states[k - 1])
        assert second.samples == 5 * k
        assert_same_batches(take(second, 5), seen[k : k + 5])
        assert second.state_dict() == states[k + 4]  # positions and error counts: nothing counted twice on replay


def test_incompatible_state_restarts_at_the_earliest_epoch(shards, caplog):
    def loader(seed):
        return StreamLoader(shards, mel_example("audioldm"), batch_size=5, seed=seed, shuffle_buffer=4)

    first = loader(0)
    take(first, 7)  # into epoch 1
    other = loader(9)
    with caplog.at_level(logging.WARNING, logger="training.data.loader"):
        other.load_state_dict(first.state_dict())
    assert "another seed" in caplog.text and "epoch 1" in caplog.text
    fresh = ShardStream(shards, mel_example("audioldm"), batch_size=5, seed=9, shuffle_buffer=4, state={"epoch": 1})
    assert_same_batches(take(other, 2), [{k: v for k, v in b.items() if not k.startswith("__")} for b in take(iter(fresh), 2)])


# --- errors ---------------------------------------------------------------------------------------


def test_damaged_shards_are_counted_and_the_rest_arrives(damaged):
    shards = list_shards(str(damaged), "train")
    bad_key = sample_key("train", 0, 0, 1)

    def example(sample, rng):
        if sample["__key__"] == bad_key:
            raise ValueError("refused")
        return mel_example("audioldm")(sample, rng)

    stream = ShardStream(shards, example, batch_size=1, shard_shuffle=False, max_error_rate=1.0)
    batches = list(itertools.takewhile(lambda b: b["__epoch__"] < 1, stream.slot_batches(0)))
    keys = epoch_keys(batches, 0)
    truncated = [k for k in keys if k.startswith("tr0-2-")]
    good = {sample_key("train", 0, s, i) for s in (0, 3, 4) for i in range(PER_SHARD)} - {bad_key, sample_key("train", 0, 3, 0), sample_key("train", 0, 4, 0)}
    assert set(keys) - set(truncated) == good
    assert truncated == [sample_key("train", 0, 2, i) for i in range(len(truncated))] and 0 < len(truncated) < PER_SHARD
    errors = dict(batches[-1]["__errors__"])
    # A tar cut inside a member is a ReadError; cut at a member boundary, the index's count tells ("truncated").
    broken = errors.pop("shard: ReadError") + errors.pop("shard: truncated", 0)
    assert broken == PER_SHARD + PER_SHARD - len(truncated)
    assert errors == {"decode: ContractError": 2, "example: ValueError": 1}


def test_flipped_bytes_in_a_member_are_counted_and_skipped_never_delivered(tmp_path):
    """Issue 14, item 9: 64 flipped bytes inside a mel still decode as a float16 array; the checksum
    the writer recorded finds them, and the sample is skipped like a truncated shard's."""
    root = write_split(tmp_path, shards=2, per_shard=4, corrupt={1: "flip"})
    stream = ShardStream(list_shards(str(root), "train"), mel_example("audioldm"), batch_size=1, shard_shuffle=False, max_error_rate=1.0)
    batches = list(itertools.takewhile(lambda b: b["__epoch__"] < 1, stream.slot_batches(0)))
    keys = epoch_keys(batches, 0)
    flipped = sample_key("train", 0, 1, 0)
    assert flipped not in keys and len(keys) == 7
    assert batches[-1]["__errors__"] == {"checksum": 1}
    unverified = ShardStream(list_shards(str(root), "train"), mel_example("audioldm"), batch_size=1, shard_shuffle=False, verify=False)
    assert flipped in epoch_keys(list(itertools.takewhile(lambda b: b["__epoch__"] < 1, unverified.slot_batches(0))), 0)


@pytest.mark.parametrize("workers", [0, 2])
def test_error_rate_above_the_limit_stops_the_loader(damaged, workers):
    shards = list_shards(str(damaged), "train")
    loader = StreamLoader(shards, mel_example("audioldm"), batch_size=2, workers=workers, max_error_rate=0.1, min_samples_for_rate=20)
    with pytest.raises(LoaderError, match=r"skipped \(.*> data.max_error_rate 10.0%\): shard: (ReadError|truncated) ×\d+.*t2a inspect"):
        take(loader, 100)


# --- example functions, transforms, filters -------------------------------------------------------


def _decoded(corpus: Path, shard: int = 0) -> list[dict]:
    tally = data_stream.Tally(0)
    info = list_shards(str(corpus), "train")[shard]
    return [data_stream.decode(raw) for raw in data_stream.read_samples([info], tally)]


def test_mel_example_transposes_and_crops_within_real_frames(corpus):
    sample = _decoded(corpus)[0]
    stored = sample[contract.mel_member("audioldm")]  # [64, 20], real_frames 18
    whole = mel_example("audioldm", random_crop=False)(sample, np.random.default_rng(0))
    assert whole["mel"].dtype == torch.float32 and whole["mel"].shape == (1, 20, 64)
    assert np.array_equal(whole["mel"][0], stored.T.astype(np.float32))
    starts = set()
    for seed in range(40):
        window = mel_example("audioldm", 8)(sample, np.random.default_rng(seed))["mel"][0]
        start = next(s for s in range(13) if np.array_equal(window, stored.T[s : s + 8].astype(np.float32)))
        starts.add(start)
    assert starts == set(range(11))  # uniform in [0, real_frames - T] = [0, 10]
    assert whole["caption"] == f"selected {sample['__key__']}" and whole["event_count"] == 1
    assert whole["clap_audio"].shape == (CLAP_DIM,) and whole["clap_audio"].dtype == np.float32
    with pytest.raises(ValueError, match="lower data.crop_frames"):
        mel_example("audioldm", 21)(sample, np.random.default_rng(0))


def test_caption_falls_back_to_human_caption_then_label_text():
    from training.data.examples import caption_of

    human = [{"text": "a dog", "kind": "human"}, {"text": "tags", "kind": "source_text"}]
    assert caption_of({"selected_caption": "chosen", "captions": human}) == "chosen"
    assert caption_of({"selected_caption": None, "captions": human[::-1], "label_text": "Dog"}) == "a dog"
    assert caption_of({"captions": human[1:], "label_text": "Dog"}) == "Dog"
    assert caption_of({"captions": []}) == ""


def test_reprogramming_joins_single_event_clips_of_the_corpus(corpus):
    samples = _decoded(corpus, 1)
    config = ReprogramConfig(probability=1.0, counts=[1])
    clips = build_clip_index(list_shards(str(corpus), "train"))
    example = mel_example("audioldm", reprogram=config, clips=clips)
    assert example.wants("flac") and not mel_example("audioldm").wants("flac")
    target = samples[-1]
    out = example(target, np.random.default_rng(0))
    original = mel_example("audioldm")(target, np.random.default_rng(0))
    assert out["caption"] != original["caption"] and "clip " + target["__key__"] in out["caption"]
    assert any(label in out["caption"] for label in ("dog", "speech", "siren", "rain"))
    assert out["mel"].shape == original["mel"].shape and not np.array_equal(out["mel"], original["mel"])
    with pytest.raises(ValueError, match="ClipIndex"):
        mel_example("audioldm", reprogram=config)


def test_reprogramming_gives_clip_and_event_a_share_of_the_window(tmp_path):
    import io

    import soundfile as sf

    from training.data.clips import ClipIndex

    def flac(audio):
        buffer = io.BytesIO()
        sf.write(buffer, audio, 48000, format="FLAC")
        return buffer.getvalue()

    noise = np.random.default_rng(0).uniform(-0.5, 0.5, 12 * 48000).astype(np.float32)
    event = tmp_path / "event.flac"
    event.write_bytes(flac(np.zeros_like(noise)))
    d = ClipIndex([str(event)], np.array([b"ev"]), np.array([0], np.int32), np.array([0]), np.array([event.stat().st_size]),
                  np.array([0], np.int32), ["Dog"])
    meta = {"selected_caption": "A noise.", "event_count": 1, "mels": {"audioldm": {"real_frames": 1024}}}
    sample = {"__key__": "clip", "json": meta, "mel.audioldm.npy": np.zeros((64, 1024), np.float16), "flac": flac(noise)}
    example = mel_example("audioldm", reprogram=ReprogramConfig(probability=1.0, counts=[1]), clips=d)
    out = example(sample, np.random.default_rng(3))
    assert "noise" in out["caption"] and "dog" in out["caption"]
    silence = float(MelExtractor(get_profile("audioldm")).silence.mean())
    silent = (out["mel"][0].mean(dim=1) < silence + 1).float().mean()
    assert 0.4 < silent < 0.6  # the 12-s clip and the silent event each kept half of the 10.24-s window


def test_latent_example_crops_time_rows(tmp_path):
    root = write_split(tmp_path, shards=1, per_shard=2, latent=(8, 5, 16))
    sample = _decoded(root)[0]
    stored = sample[contract.LATENT]
    whole = latent_example(random_crop=False)(sample, np.random.default_rng(0))
    assert "mel" not in whole and whole["latent"].dtype == torch.float32 and np.array_equal(whole["latent"], stored.astype(np.float32))
    cropped = latent_example(3)(sample, np.random.default_rng(1))["latent"]
    assert cropped.shape == (8, 3, 16) and any(np.array_equal(cropped, stored[:, s : s + 3].astype(np.float32)) for s in range(3))
    # real_frames 18 of 20 frames → ceil(18 · 5 / 20) = 5 rows of real audio: every start 0..2 is possible
    assert latent_example(3, profile="audioldm")(sample, np.random.default_rng(1))["latent"].shape == (8, 3, 16)
    batch = next(iter_batches(str(root), "train", latent_example(3), batch_size=2))
    assert batch["latent"].shape == (2, 8, 3, 16) and batch["clap_audio"].shape == (2, CLAP_DIM)


def test_mixup_mixes_mel_and_embeddings_with_one_lambda():
    rng = np.random.default_rng(0)

    def example(i):
        clap = rng.standard_normal(4).astype(np.float32)
        return {"key": f"k{i}", "mel": rng.standard_normal((1, 3, 2)).astype(np.float32), "clap_audio": clap / np.linalg.norm(clap), "caption": f"c{i}"}

    batch = [example(0), example(1)]
    assert mixup_transform(0.0)(batch, np.random.default_rng(0)) == batch
    assert mixup_transform(1.0)(batch[:1], np.random.default_rng(0)) == batch[:1]
    mixed = mixup_transform(1.0)(batch, np.random.default_rng(0))
    first, partner = batch
    lam = (mixed[0]["mel"] - partner["mel"]).ravel()[0] / (first["mel"] - partner["mel"]).ravel()[0]
    assert 0 < lam < 1 and np.allclose(mixed[0]["mel"], lam * first["mel"] + (1 - lam) * partner["mel"], atol=1e-5)
    clap = lam * first["clap_audio"] + (1 - lam) * partner["clap_audio"]
    assert np.allclose(mixed[0]["clap_audio"], clap / np.linalg.norm(clap), atol=1e-5)
    assert mixed[0]["caption"] == "c0" and mixed[1]["caption"] == "c1"
    assert np.array_equal(batch[0]["mel"], first["mel"])  # the inputs are not changed in place


def test_curriculum_filter_follows_algorithm_3_then_keeps_every_labelled_clip(shards):
    keep = curriculum_filter(2)
    table = {(epoch, count): keep({"json": {"event_count": count}}, epoch) for epoch in range(7) for count in (0, 1, 2, 3)}
    assert [c for c in (0, 1, 2, 3) if table[(1, c)]] == [1]
    assert [c for c in (0, 1, 2, 3) if table[(2, c)]] == [2, 3] == [c for c in (0, 1, 2, 3) if table[(5, c)]]
    assert [c for c in (0, 1, 2, 3) if table[(6, c)]] == [1, 2, 3]
    stream = ShardStream(shards, mel_example("audioldm"), batch_size=1, sample_filter=curriculum_filter(1))
    batches = list(itertools.takewhile(lambda b: b["__epoch__"] < 4, stream.slot_batches(0)))
    counts = {epoch: {c for b in batches if b["__epoch__"] == epoch for c in b["event_count"]} for epoch in range(4)}
    assert counts == {0: {1}, 1: {2, 3}, 2: {2, 3}, 3: {1, 2, 3}}


def test_collate_stacks_arrays_and_lists_the_rest():
    batch = collate([
        {"mel": np.zeros((1, 2, 3), np.float32), "caption": "a", "n": 1, "clip_image": np.zeros((2, 4)), "extra": None},
        {"mel": np.ones((1, 2, 3), np.float32), "caption": "b", "n": 2, "clip_image": np.zeros((3, 4))},
    ])
    assert batch["mel"].shape == (2, 1, 2, 3) and batch["mel"].dtype == torch.float32 and batch["mel"][1].sum() == 6
    assert batch["caption"] == ["a", "b"] and batch["n"] == [1, 2] and batch["extra"] == [None, None]
    assert [t.shape for t in batch["clip_image"]] == [(2, 4), (3, 4)]


# --- entry points ---------------------------------------------------------------------------------


def test_make_loader_reads_the_data_config(corpus, shards):
    data = DataConfig(shards=str(corpus), batch_size=3, shuffle_buffer=4, crop_frames=8)
    example = mel_example("audioldm", 8)
    batches = take(make_loader(data, "train", example, seed=2), 4)
    assert_same_batches(batches, take(StreamLoader(shards, example, batch_size=3, seed=2, shuffle_buffer=4), 4))
    assert len(take(make_loader(data, "train", example, batch_size=7), 1)[0]["key"]) == 7


def test_iter_batches_is_one_pass_in_index_order_split_by_rank(corpus):
    example = mel_example("audioldm", 8)
    whole = list(iter_batches(str(corpus), "train", example, batch_size=5))
    assert [len(b["key"]) for b in whole] == [5, 5, 5, 5, 4]
    assert [k for b in whole for k in b["key"]] == [sample_key("train", 0, s, i) for s in range(SHARDS) for i in range(PER_SHARD)]
    for rank in (0, 1):
        keys = [k for b in iter_batches(DataConfig(shards=str(corpus)), "train", example, batch_size=5, rank=rank, world_size=2) for k in b["key"]]
        assert keys == [sample_key("train", 0, s, i) for s in range(rank, SHARDS, 2) for i in range(PER_SHARD)]
    first = next(iter_batches(str(corpus), "train", example, batch_size=5))
    assert torch.equal(first["mel"], whole[0]["mel"])  # crops are seeded: validation is repeatable
