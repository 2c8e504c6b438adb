"""The shard contract: keys, member names, codecs, the sample schema, build/decode.

The sample builders live in tests/support/shard_samples.py, shared with the other shard tests.
"""

from __future__ import annotations

import io
import json
import pickle
import random

import numpy as np
import pytest
from shard_samples import ALL_CHARS_KEY, PROFILES, flac_bytes, jpeg_bytes, make_mels, make_meta, make_sample

from pipelines.shard import contract
from pipelines.shard.contract import ContractError, SampleMeta

# --- keys and member names -------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ALL_CHARS_KEY, "-leading-dash", "_", "0", "yt_--abcdEFG_9_30000", "k" * 64])
def test_keys_with_every_allowed_character(key):
    assert contract.check_key(key) == key


@pytest.mark.parametrize("key", ["a.b", "a/b", "a b", "", "k" * 161, "ü", "a\nb", "..", None])
def test_bad_keys_are_rejected(key):
    with pytest.raises(ContractError):
        contract.check_key(key)


def test_member_names_fit_the_ustar_name_field():
    longest = contract.member_name("k" * 64, contract.mel_member("p" * 26))  # the longest key and profile
    assert len(longest) <= contract.NAME_MAX == 100
    with pytest.raises(ContractError, match="bad mel profile|profile"):
        contract.mel_member("p" * 27)
    with pytest.raises(ValueError, match="bad sample key"):  # ContractError, or pydantic's error naming it
        make_sample("k" * 65)


def test_member_kinds():
    kinds = {
        "json": "json",
        "flac": "audio",
        "mel.audioldm.npy": "mel",
        "mel.make-an-audio.npy": "mel",
        "frame_00.jpg": "frame",
        "frame_99.jpg": "frame",
        "clap_audio.npy": "embedding",
        "clip_image.npy": "embedding",
    }
    for member, kind in kinds.items():
        assert contract.member_kind(member) == kind
    for member in ["pkl", "pth", "txt", "mel.AudioLDM.npy", "mel..npy", "frame_1.jpg", "frame_100.jpg", "npy", "wav"]:
        assert contract.member_kind(member) is None
    assert contract.mel_profile("mel.make-an-audio.npy") == "make-an-audio"
    assert contract.split_name("-k_1.mel.audioldm.npy") == ("-k_1", "mel.audioldm.npy")


def test_member_name_builders_refuse_what_readers_would_misread():
    for profile in ["AudioLDM", "a.b", "", "x" * 41]:
        with pytest.raises(ContractError):
            contract.mel_member(profile)
    with pytest.raises(ContractError):
        contract.frame_member(100)
    with pytest.raises(ContractError):
        contract.embedding_member("clap_text")


# --- codecs ----------------------------------------------------------------------------------------


def test_npy_round_trip_is_exact_and_deterministic():
    mel = make_mels(3)["audioldm"]
    data = contract.encode_npy(mel)
    assert data == contract.encode_npy(mel.copy()) == contract.encode_npy(mel.astype(">f2"))  # byte order normalized
    assert data == contract.encode_npy(np.asfortranarray(mel))  # memory layout normalized
    back = contract.decode_npy(data)
    assert back.dtype == np.float16 and np.array_equal(back, mel)
    assert contract.npy_size(mel.shape, np.float16) == len(data)
    assert contract.npy_size((512,), np.float32) == len(contract.encode_npy(np.zeros(512, np.float32)))


def test_npy_decode_refuses_object_arrays_and_pickles():
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ContractError, match="not a plain .npy"):
        contract.decode_npy(objects.getvalue())
    with pytest.raises(ContractError):
        contract.decode_npy(pickle.dumps(np.zeros(3)))
    with pytest.raises(ContractError, match="object arrays"):
        contract.encode_npy(np.array([object()], dtype=object))


def test_json_is_sorted_compact_utf8_and_refuses_nan():
    assert contract.encode_json({"b": 1, "a": ["é", 0.5]}) == '{"a":["é",0.5],"b":1}'.encode()
    with pytest.raises(ContractError):
        contract.encode_json({"a": float("nan")})
    with pytest.raises(ContractError):
        contract.decode_json(b'{"a": NaN}')
    with pytest.raises(ContractError):
        contract.decode_json(b"\xff")


# --- the schema ------------------------------------------------------------------------------------


def test_sample_json_round_trip_and_schema_version():
    mels = make_mels()
    meta = make_meta("yt_abcdefghijk_30000", mels=mels, audio=flac_bytes(), frames=2)
    text = meta.to_json()
    payload = json.loads(text)
    assert payload["schema"] == contract.SCHEMA == "t2a.sample/1"
    assert list(payload) == sorted(payload) and b" " not in text.split(b'"captions"')[0]
    assert SampleMeta.from_json(text) == meta
    assert payload["candidates"] == [] and payload["selected_caption"] is None and payload["embeddings"] == {}
    with pytest.raises(ContractError, match="schema"):
        SampleMeta.from_json(contract.encode_json({**payload, "schema": "t2a.sample/2"}))


@pytest.mark.parametrize(
    "change, where",
    [
        ({"colour": "red"}, "colour"),  # unknown field
        ({"duration": "9.5"}, "duration"),  # strict: no str → float
        ({"event_count": True}, "event_count"),  # strict: no bool → int
        ({"event_count": -1}, "event_count"),
        ({"split": "validation"}, "split"),
        ({"key": "a.b"}, "key"),
        ({"frames": ["frame_01.jpg"]}, "frame_00"),
        ({"segment": {"start": 5.0, "end": 1.0}}, "segment"),
        ({"labels": [{"name": "Dog"}]}, "labels.0.mid"),
        ({"candidates": [{"text": "a dog", "clap_score": 0.3}]}, "candidates.0.expert"),
        ({"audio": {"member": "flac", "sha256": "x", "bytes": 5}}, "audio.sha256"),
    ],
)
def test_schema_violations_are_named(change, where):
    payload = json.loads(make_meta("k", mels=make_mels()).to_json())
    with pytest.raises(ContractError, match=where.split(".")[0]):
        SampleMeta.from_json(contract.encode_json({**payload, **change}))


def test_mel_entries_must_agree_with_themselves():
    payload = json.loads(make_meta("k", mels=make_mels()).to_json())
    mel = payload["mels"]["audioldm"]
    for change in [{"member": "mel.other.npy"}, {"n_mels": 80}, {"real_frames": 999}, {"dtype": "float32"}]:
        broken = {**payload, "mels": {**payload["mels"], "audioldm": {**mel, **change}}}
        with pytest.raises(ContractError, match="mels"):
            SampleMeta.from_json(contract.encode_json(broken))


def test_candidates_are_typed_and_ready():
    meta = make_meta(
        "k",
        mels=make_mels(),
        candidates=[{"text": "a dog barks", "expert": "captioner", "clap_score": 0.41}],
        selected_caption="a dog barks",
    )
    assert SampleMeta.from_json(meta.to_json()).candidates[0].clap_score == 0.41


# --- samples ---------------------------------------------------------------------------------------


def test_build_and_decode_round_trip():
    mels, flac, jpgs = make_mels(1), flac_bytes(1), [jpeg_bytes(1), jpeg_bytes(2)]
    arrays = {"clap_audio": np.random.default_rng(0).standard_normal(512).astype(np.float16)}
    embeddings = {"clap_audio": {"member": "clap_audio.npy", "shape": [512], "dtype": "float16", "model": "clap-tiny"}}
    meta = make_meta("-k_Z9", mels=mels, audio=flac, frames=2, embeddings=embeddings)
    members = contract.build_sample(meta, mels, audio=flac, frames=jpgs, arrays=arrays)
    assert list(members) == sorted(meta.members()) == sorted(members)
    sample = contract.decode_sample(members)
    assert sample.key == "-k_Z9" and sample.meta.model_copy(update={"xxh3": {}}) == meta
    assert set(sample.meta.xxh3) == set(members)  # every member, the JSON itself included
    assert all(np.array_equal(sample.mels[p], mels[p]) for p in PROFILES)
    assert sample.audio == flac and sample.frames == jpgs
    assert np.array_equal(sample.arrays["clap_audio"], arrays["clap_audio"])


def test_build_refuses_data_that_disagrees_with_the_json():
    mels, flac = make_mels(), flac_bytes()
    meta = make_meta("k", mels=mels, audio=flac, frames=1)
    cases = {
        "declares float16": dict(
            mels={**mels, "audioldm": mels["audioldm"].astype(np.float32)}, audio=flac, frames=[jpeg_bytes()]
        ),
        "declares float16\\[64, 20\\]": dict(
            mels={**mels, "audioldm": mels["audioldm"][:, :5]}, audio=flac, frames=[jpeg_bytes()]
        ),
        "mel.make-an-audio.npy is missing": dict(
            mels={"audioldm": mels["audioldm"]}, audio=flac, frames=[jpeg_bytes()]
        ),
        "sha256": dict(mels=mels, audio=flac_bytes(seed=9), frames=[jpeg_bytes()]),
        "frame_01.jpg is not declared": dict(mels=mels, audio=flac, frames=[jpeg_bytes(), jpeg_bytes()]),
        "not a JPEG": dict(mels=mels, audio=flac, frames=[b"GIF89a"]),
    }
    for message, kwargs in cases.items():
        with pytest.raises(ContractError, match=message):
            contract.build_sample(meta, **kwargs)


def test_decode_refuses_unknown_undeclared_and_mismatched_members():
    key, members = make_sample("k", frames=1)
    for extra, message in [
        ({"pkl": pickle.dumps({"x": 1})}, "unknown member 'pkl'"),
        ({"frame_01.jpg": jpeg_bytes()}, "not declared"),
        ({"__key__": "other"}, "differs from the tar key"),
    ]:
        with pytest.raises(ContractError, match=message):
            contract.decode_sample({**members, **extra})
    with pytest.raises(ContractError, match="no json"):
        contract.decode_sample({k: v for k, v in members.items() if k != "json"})
    assert contract.check_sample({**members, "__key__": key, "__url__": "x.tar"}) == []


def test_sample_builders_are_deterministic():
    seeds = random.Random(0).sample(range(100), 3)
    assert [make_sample(f"k{s}", s) for s in seeds] == [make_sample(f"k{s}", s) for s in seeds]


@pytest.mark.parametrize("member", ["mel.audioldm.npy", "flac", "frame_01.jpg", "clap_audio.npy", "json"])
def test_a_flipped_byte_in_any_member_is_a_checksum_error(member):
    """Issue 14, item 9: bytes flipped inside a member (where the npy/JSON still parses) are caught
    by the checksum the writer records, before anything is decoded."""
    mels, flac, jpgs = make_mels(1), flac_bytes(1), [jpeg_bytes(1), jpeg_bytes(2)]
    arrays = {"clap_audio": np.random.default_rng(0).standard_normal(512).astype(np.float16)}
    embeddings = {"clap_audio": {"member": "clap_audio.npy", "shape": [512], "dtype": "float16", "model": "clap-tiny"}}
    meta = make_meta("k", mels=mels, audio=flac, frames=2, embeddings=embeddings)
    members = contract.build_sample(meta, mels, audio=flac, frames=jpgs, arrays=arrays)
    contract.verify_checksums(members)
    data = bytearray(members[member])
    if member == "json":  # a caption's letter changed: still valid JSON and a valid SampleMeta
        data = bytearray(bytes(data).replace(b'"source":"audioset"', b'"source":"audiosat"'))
    else:
        for i in range(64):  # 64 bytes flipped in the payload's last part (npy header untouched)
            data[-1 - 3 * i] ^= 0xFF
    corrupt = {**members, member: bytes(data)}
    assert corrupt[member] != members[member]
    with pytest.raises(contract.ChecksumError, match=f"{member} does not match its checksum"):
        contract.verify_checksums(corrupt)
    assert any("does not match its checksum" in p for p in contract.check_sample(corrupt))
