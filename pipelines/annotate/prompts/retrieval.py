"""Make-An-Audio's retrieval expert: the bank captions nearest a clip's label text (or its CLAP audio).

Make-An-Audio (§3.2.1, App. E.2) pairs the captioning
expert (pipelines/annotate/prompts/experts.py) with an audio-text retrieval expert; CLAP selection then
picks among both experts' candidates. The paper's retrieval model is BERT + a multi-modal
transformer trained on AudioCaps and Clotho, a model apart from the CLAP that judges. Here the bank
(the corpus's own human captions plus optional caption files) is ranked by default by text–text
cosine with the clip's label text (`query: labels`), and the retrieved captions are then scored by
CLAP like any candidate; `query: audio` ranks by CLAP audio → text, the judge's own score.

The bank's text embeddings are computed once per (texts, text encoder) and cached on disk under
their checksum, so every annotate run over the same corpus reuses them.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import json
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import Field

from pipelines.core.config import InputFile, StrictModel
from pipelines.core.io import atomic_path, write_text_atomic
from pipelines.core.storage import location

log = logging.getLogger(__name__)

NORM_TOLERANCE = 1e-3  # |‖row‖ - 1| allowed in a cached bank; float32 rounding is ~1e-7


class TextEncoder(Protocol):
    """What retrieval needs from a CLAP backend (pipelines/encoders implements it)."""

    provenance: dict[str, str]  # must hold "sha256": the model's checksum

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """float32 [len(texts), D], rows L2-normalised."""
        ...


class RetrievalConfig(StrictModel):
    top_k: int = Field(3, ge=1)  # retrieved captions per clip
    # What ranks the bank (Make-An-Audio §3.2.1, App. E.2: the retrieval expert is its own model, apart from
    # the CLAP that judges). "labels": text–text cosine of the bank captions with the clip's label text
    # (CLAP's text tower), so the ranking is not the audio–text score CLAP then selects by; clips without
    # labels get no retrieved candidates. "audio": CLAP audio → text, the judge's own score (retrieved
    # captions are then favoured by construction).
    query: Literal["labels", "audio"] = "labels"
    # Caption files (UTF-8, one caption per line, '#' starts a comment line) added to the bank
    # beside the corpus's own human captions.
    bank_files: list[InputFile] = []


@dataclass(frozen=True, eq=False)  # eq on arrays is ambiguous; compare checksums instead
class CaptionBank:
    texts: tuple[str, ...]  # sorted, unique, whitespace-normalised
    embeddings: np.ndarray  # float32 [N, D], L2-normalised, read-only; row i ↔ texts[i]
    checksum: str  # sha256 over the texts and the text encoder's sha256


def normalise(text: str) -> str:
    """Whitespace runs → one space, ends stripped: the form bank texts and exclusions compare in."""
    return " ".join(text.split())


def bank_texts(captions: Iterable[str], files: Sequence[Path] = ()) -> tuple[str, ...]:
    """Sorted unique non-empty normalised captions from `captions` and the caption files."""
    lines = list(captions)
    for path in files:
        lines.extend(_caption_lines(location(path)))
    return tuple(sorted({text for text in map(normalise, lines) if text}))


def _caption_lines(path: Path) -> list[str]:
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"caption bank file {path}: cannot read it as UTF-8 text ({error})") from None
    return [line for line in content.splitlines() if not line.strip().startswith("#")]


def bank_checksum(texts: Sequence[str], encoder: TextEncoder) -> str:
    """The cache key: the texts and the text encoder's sha256 (which fixes D as well)."""
    payload = {"texts": list(texts), "encoder": _encoder_sha(encoder)}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def _encoder_sha(encoder: TextEncoder) -> str:
    sha = (getattr(encoder, "provenance", None) or {}).get("sha256")
    if not sha:
        raise ValueError(f"text encoder {type(encoder).__name__} has no provenance['sha256']; the bank cache needs it")
    return sha


# --- building and caching -----------------------------------------------------------------------


def load_or_build_bank(
    texts: Sequence[str], encoder: TextEncoder, cache_dir: Path, batch_size: int = 64
) -> CaptionBank:
    """The bank for `texts` (normalised as by bank_texts): from the cache, else embedded and cached.

    A cache entry is trusted only if its texts, encoder checksum, shape and row norms check out;
    anything else is rebuilt and overwritten.
    """
    texts = bank_texts(texts)
    checksum = bank_checksum(texts, encoder)
    if not texts:
        return CaptionBank((), _frozen(np.zeros((0, 0), np.float32)), checksum)
    cache_dir = location(cache_dir)  # a local folder or an object store (annotations/banks of the output)
    embeddings = _load_cached(cache_dir, checksum, texts, _encoder_sha(encoder))
    if embeddings is None:
        embeddings = _embed(texts, encoder, batch_size)
        _write_cache(cache_dir, checksum, texts, encoder.provenance, embeddings)
    return CaptionBank(texts, _frozen(embeddings), checksum)


def _embed(texts: tuple[str, ...], encoder: TextEncoder, batch_size: int) -> np.ndarray:
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    parts = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        part = np.asarray(encoder.embed_text(chunk), dtype=np.float32)
        if part.ndim != 2 or part.shape[0] != len(chunk) or (parts and part.shape[1] != parts[0].shape[1]):
            raise ValueError(
                f"embed_text returned shape {part.shape} for {len(chunk)} texts; expected [{len(chunk)}, D]"
            )
        parts.append(part)
    embeddings = np.concatenate(parts)  # [N, D]
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise ValueError("embed_text returned a zero or non-finite embedding")
    return (embeddings / norms).astype(np.float32)  # re-normalised: rounding never builds up


def _load_cached(cache_dir: Path, checksum: str, texts: tuple[str, ...], encoder_sha: str) -> np.ndarray | None:
    array_path, meta_path = cache_dir / f"{checksum}.npy", cache_dir / f"{checksum}.json"
    if not (array_path.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        embeddings = np.load(io.BytesIO(array_path.read_bytes()), allow_pickle=False)
        problem = _cache_problem(meta, embeddings, texts, encoder_sha)
    except (OSError, ValueError, EOFError) as error:  # JSONDecodeError is a ValueError
        problem = f"unreadable: {error}"
    if problem:
        log.warning("caption bank cache %s: %s; rebuilding it", array_path, problem)
        return None
    return embeddings


def _cache_problem(meta: Any, embeddings: np.ndarray, texts: tuple[str, ...], encoder_sha: str) -> str | None:
    if not isinstance(meta, dict) or meta.get("texts") != list(texts):
        return "texts differ"
    if (meta.get("encoder") or {}).get("sha256") != encoder_sha:
        return "text encoder differs"
    if embeddings.dtype != np.float32 or embeddings.ndim != 2 or embeddings.shape[0] != len(texts):
        return f"embeddings are {embeddings.dtype} {embeddings.shape}, expected float32 [{len(texts)}, D]"
    norms = np.linalg.norm(embeddings, axis=1)
    if not np.all(np.abs(norms - 1) <= NORM_TOLERANCE):  # also false for NaN
        return "embeddings are not unit vectors"
    return None


def _write_cache(
    cache_dir: Path, checksum: str, texts: tuple[str, ...], provenance: dict, embeddings: np.ndarray
) -> None:
    """Array first, then metadata; each to a temporary name and renamed, so readers never see half."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta = {"checksum": checksum, "encoder": dict(provenance), "shape": list(embeddings.shape), "texts": list(texts)}
    with atomic_path(cache_dir / f"{checksum}.npy") as temp, temp.open("wb") as handle:
        np.save(handle, embeddings, allow_pickle=False)
    write_text_atomic(cache_dir / f"{checksum}.json", json.dumps(meta, ensure_ascii=False, indent=1, sort_keys=True))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# --- retrieval ----------------------------------------------------------------------------------


def retrieve(
    bank: CaptionBank, audio_embedding: np.ndarray, k: int, exclude: Collection[str] = ()
) -> list[tuple[str, float]]:
    """The k bank texts with the highest cosine to the audio embedding, best first, ties by text.

    `exclude` (the clip's own human captions) is compared after whitespace normalisation.
    """
    if not bank.texts or k < 1:
        return []
    query = np.asarray(audio_embedding, dtype=np.float32).reshape(-1)  # [D]
    if query.shape[0] != bank.embeddings.shape[1]:
        raise ValueError(f"audio embedding has {query.shape[0]} dims, the caption bank {bank.embeddings.shape[1]}")
    norm = float(np.linalg.norm(query))
    if not np.isfinite(norm) or norm == 0:
        raise ValueError("audio embedding is zero or not finite")
    scores = bank.embeddings @ (query / norm)  # [N] cosines
    excluded = _indices(bank.texts, exclude)
    scores[excluded] = -np.inf
    k = min(k, len(bank.texts) - len(excluded))
    if k < 1:
        return []
    kth = np.partition(scores, len(scores) - k)[len(scores) - k]
    tied_or_better = np.flatnonzero(scores >= kth)  # keeps every text tied with the k-th
    best = sorted(tied_or_better, key=lambda i: (-scores[i], bank.texts[i]))[:k]
    return [(bank.texts[i], float(scores[i])) for i in best]


def _indices(texts: tuple[str, ...], wanted: Collection[str]) -> list[int]:
    """Positions of the normalised `wanted` texts in the sorted bank (absent ones skipped)."""
    found = set()
    for text in map(normalise, wanted):
        i = bisect.bisect_left(texts, text)
        if i < len(texts) and texts[i] == text:
            found.add(i)
    return sorted(found)


def chance_caption(
    bank: CaptionBank, key: str, audio_embedding: np.ndarray, exclude: Collection[str] = ()
) -> tuple[str, float] | None:
    """A bank caption picked at random (seeded by `key`, never one of `exclude`) and its cosine with
    the audio: the chance baseline a selected caption's score is compared with (report)."""
    excluded = set(_indices(bank.texts, exclude))
    allowed = [i for i in range(len(bank.texts)) if i not in excluded]
    if not allowed:
        return None
    seed = int.from_bytes(hashlib.sha256(f"chance/{key}".encode()).digest()[:8], "big")
    index = allowed[seed % len(allowed)]
    query = np.asarray(audio_embedding, dtype=np.float32).reshape(-1)
    return bank.texts[index], float(bank.embeddings[index] @ (query / np.linalg.norm(query)))
