"""The retrieval expert: caption bank texts, top-k order and scores on a hand-made bank, exclusion,
and the on-disk bank cache (hits, invalidation, corrupt entries). A hashing bag-of-words encoder
stands in for CLAP's text tower."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from pipelines.annotate.prompts.retrieval import (
    CaptionBank,
    RetrievalConfig,
    bank_checksum,
    bank_texts,
    chance_caption,
    load_or_build_bank,
    retrieve,
)


class HashingEncoder:
    """Deterministic text embeddings: words hashed into `dim` buckets, L2-normalised. Counts calls."""

    def __init__(self, sha: str = "encoder-a", dim: int = 16):
        self.provenance = {"model": "hashing", "sha256": sha}
        self.dim = dim
        self.calls = 0

    def embed_text(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dim] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


TEXTS = ["a dog barks", "rain falls on a roof", "a car passes by", "birds chirp", "a siren wails"]


# --- bank texts ---------------------------------------------------------------------------------


def test_bank_texts_normalises_dedupes_sorts_and_reads_files(tmp_path):
    extra = tmp_path / "extra.txt"
    extra.write_text(
        "# a comment line\nbirds chirp\n\n  wind   blows \r\n   # indented comment\nÉcho dans une église\n",
        encoding="utf-8",
    )
    texts = bank_texts(["b  dog barks ", "a cat\tmeows", "", "   ", "b dog barks", "birds chirp"], [extra])
    assert texts == ("a cat meows", "b dog barks", "birds chirp", "wind blows", "Écho dans une église")


def test_bank_texts_unreadable_file_names_it(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00caption")
    with pytest.raises(ValueError, match="caption bank file .*bad.txt: cannot read it as UTF-8"):
        bank_texts([], [bad])


def test_config_resolves_bank_files_against_the_config_dir(tmp_path):
    (tmp_path / "captions.txt").write_text("a dog barks\n")
    config = RetrievalConfig.model_validate({"bank_files": ["captions.txt"]}, context={"base_dir": tmp_path})
    assert config.bank_files == [tmp_path / "captions.txt"] and config.top_k == 3
    with pytest.raises(ValidationError, match="file not found"):
        RetrievalConfig.model_validate({"bank_files": ["gone.txt"]}, context={"base_dir": tmp_path})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        RetrievalConfig(top_k=0)


# --- retrieval on a hand-made bank --------------------------------------------------------------


def _unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees)), 0.0]


# Texts at angles from the x axis: the query is the x axis, so cosine = cos(angle).
ANGLES = {"alpha": 60, "bravo": 10, "charlie": 30, "delta": 30, "echo": 90, "foxtrot": 10}


@pytest.fixture()
def bank() -> CaptionBank:
    texts = tuple(sorted(ANGLES))
    embeddings = np.array([_unit(ANGLES[t]) for t in texts], np.float32)
    return CaptionBank(texts, embeddings, "hand-made")


def test_top_k_by_cosine_ties_by_text(bank):
    got = retrieve(bank, np.array([2.0, 0.0, 0.0]), k=4)  # not unit length: normalised first
    assert [text for text, _ in got] == ["bravo", "foxtrot", "charlie", "delta"]
    np.testing.assert_allclose([s for _, s in got], np.cos(np.radians([10, 10, 30, 30])), atol=1e-6)
    assert all(isinstance(score, float) for _, score in got)


def test_ties_at_the_cut_keep_the_first_texts(bank):
    assert [t for t, _ in retrieve(bank, np.array([1.0, 0.0, 0.0]), k=3)] == ["bravo", "foxtrot", "charlie"]
    assert [t for t, _ in retrieve(bank, np.array([1.0, 0.0, 0.0]), k=1)] == ["bravo"]


def test_exclusion_matches_normalised_text(bank):
    got = retrieve(bank, np.array([1.0, 0.0, 0.0]), k=3, exclude=["  bravo ", "charlie", "not in bank"])
    assert [t for t, _ in got] == ["foxtrot", "delta", "alpha"]
    everything = retrieve(bank, np.array([1.0, 0.0, 0.0]), k=10, exclude=["echo"])
    assert [t for t, _ in everything] == ["bravo", "foxtrot", "charlie", "delta", "alpha"]
    assert retrieve(bank, np.array([1.0, 0.0, 0.0]), k=2, exclude=list(ANGLES)) == []


def test_chance_caption_is_seeded_by_key_scored_and_never_excluded(bank):
    query = np.array([1.0, 0.0, 0.0])
    picks = {key: chance_caption(bank, key, query) for key in (f"clip{i}" for i in range(40))}
    assert picks["clip3"] == chance_caption(bank, "clip3", query) and len({t for t, _ in picks.values()}) > 2
    for text, score in picks.values():
        assert score == pytest.approx(math.cos(math.radians(ANGLES[text])), abs=1e-6)
    assert all(
        chance_caption(bank, f"k{i}", query, exclude=["alpha", "bravo"])[0] not in ("alpha", "bravo") for i in range(40)
    )
    assert chance_caption(bank, "k", query, exclude=list(ANGLES)) is None


def test_empty_bank_and_bad_queries(bank):
    empty = CaptionBank((), np.zeros((0, 0), np.float32), "empty")
    assert retrieve(empty, np.ones(3), k=3) == []
    with pytest.raises(ValueError, match="audio embedding has 2 dims, the caption bank 3"):
        retrieve(bank, np.ones(2), k=1)
    with pytest.raises(ValueError, match="zero or not finite"):
        retrieve(bank, np.zeros(3), k=1)


# --- building and caching -----------------------------------------------------------------------


def test_bank_is_built_normalised_and_aligned(tmp_path):
    encoder = HashingEncoder()
    bank = load_or_build_bank(TEXTS + ["a dog  barks"], encoder, tmp_path, batch_size=2)
    assert bank.texts == bank_texts(TEXTS)
    assert encoder.calls == 3  # 5 unique texts in batches of 2
    np.testing.assert_allclose(bank.embeddings, HashingEncoder().embed_text(list(bank.texts)), atol=1e-6)
    assert bank.embeddings.dtype == np.float32 and not bank.embeddings.flags.writeable
    top = retrieve(bank, HashingEncoder().embed_text(["a dog barks"])[0], k=1)
    assert top[0][0] == "a dog barks" and top[0][1] == pytest.approx(1.0, abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{bank.checksum}.json", f"{bank.checksum}.npy"]
    meta = json.loads((tmp_path / f"{bank.checksum}.json").read_text())
    assert meta["texts"] == list(bank.texts) and meta["encoder"]["sha256"] == "encoder-a"


def test_second_build_is_a_cache_hit(tmp_path):
    first = load_or_build_bank(TEXTS, HashingEncoder(), tmp_path)
    encoder = HashingEncoder()
    second = load_or_build_bank(list(reversed(TEXTS)), encoder, tmp_path)
    assert encoder.calls == 0
    assert second.checksum == first.checksum and second.texts == first.texts
    np.testing.assert_array_equal(second.embeddings, first.embeddings)


@pytest.mark.parametrize(
    "texts, sha",
    [(TEXTS + ["wind blows"], "encoder-a"), (TEXTS[:-1], "encoder-a"), (TEXTS, "encoder-b")],
)
def test_new_texts_or_encoder_invalidate_the_cache(tmp_path, texts, sha):
    first = load_or_build_bank(TEXTS, HashingEncoder(), tmp_path)
    encoder = HashingEncoder(sha=sha)
    other = load_or_build_bank(texts, encoder, tmp_path)
    assert encoder.calls > 0 and other.checksum != first.checksum
    assert other.checksum == bank_checksum(bank_texts(texts), encoder)


def _truncate(path):
    path.write_bytes(path.read_bytes()[:40])


def _wrong_rows(path):
    np.save(path, np.eye(4, 16, dtype=np.float32))


def _not_unit(path):
    np.save(path, 2 * np.load(path))


def _float64(path):
    np.save(path, np.load(path).astype(np.float64))


@pytest.mark.parametrize("corrupt", [_truncate, _wrong_rows, _not_unit, _float64])
def test_corrupt_cached_embeddings_are_rebuilt(tmp_path, corrupt):
    bank = load_or_build_bank(TEXTS, HashingEncoder(), tmp_path)
    corrupt(tmp_path / f"{bank.checksum}.npy")
    encoder = HashingEncoder()
    rebuilt = load_or_build_bank(TEXTS, encoder, tmp_path)
    assert encoder.calls == 1
    np.testing.assert_array_equal(rebuilt.embeddings, bank.embeddings)
    again = HashingEncoder()
    load_or_build_bank(TEXTS, again, tmp_path)
    assert again.calls == 0  # the rebuilt entry was written back


@pytest.mark.parametrize(
    "edit",
    [
        lambda meta: {**meta, "texts": meta["texts"][::-1]},
        lambda meta: {**meta, "encoder": {"sha256": "someone-else"}},
        lambda meta: "not a dict",
    ],
)
def test_cache_metadata_that_disagrees_is_not_trusted(tmp_path, edit):
    bank = load_or_build_bank(TEXTS, HashingEncoder(), tmp_path)
    meta_path = tmp_path / f"{bank.checksum}.json"
    meta_path.write_text(json.dumps(edit(json.loads(meta_path.read_text()))))
    encoder = HashingEncoder()
    load_or_build_bank(TEXTS, encoder, tmp_path)
    assert encoder.calls == 1


def test_unparsable_metadata_or_a_missing_half_rebuilds(tmp_path):
    bank = load_or_build_bank(TEXTS, HashingEncoder(), tmp_path)
    (tmp_path / f"{bank.checksum}.json").write_text("{not json")
    encoder = HashingEncoder()
    load_or_build_bank(TEXTS, encoder, tmp_path)
    (tmp_path / f"{bank.checksum}.npy").unlink()
    load_or_build_bank(TEXTS, encoder, tmp_path)
    assert encoder.calls == 2


def test_empty_bank_needs_no_encoder_calls(tmp_path):
    encoder = HashingEncoder()
    bank = load_or_build_bank(["", "  "], encoder, tmp_path)
    assert bank.texts == () and bank.embeddings.shape == (0, 0) and encoder.calls == 0
    assert retrieve(bank, np.ones(16), k=3) == []


class _BadEncoder(HashingEncoder):
    def embed_text(self, texts):
        return np.ones((len(texts) + 1, self.dim), np.float32)


def test_encoder_contract_errors(tmp_path):
    with pytest.raises(ValueError, match=r"embed_text returned shape \(6, 16\) for 5 texts"):
        load_or_build_bank(TEXTS, _BadEncoder(), tmp_path)
    nameless = HashingEncoder()
    nameless.provenance = {"model": "hashing"}
    with pytest.raises(ValueError, match=r"has no provenance\['sha256'\]"):
        load_or_build_bank(TEXTS, nameless, tmp_path)
    assert list(tmp_path.iterdir()) == []
