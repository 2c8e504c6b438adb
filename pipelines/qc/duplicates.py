"""Near-duplicate groups and evaluation leakage from CLAP audio embeddings, by exact blocked search.

Two clips are near-duplicates when the cosine of their (L2-normalised) CLAP audio embeddings is at
least the threshold: re-uploads and re-encodings of one recording, frequent in AudioSet. The search
is exact: the upper triangle of the N×N similarity matrix is computed in BLOCK×BLOCK float32 tiles
(memory BLOCK² · 4 bytes, whatever N), so the cost is N²·D/2 multiply-adds; bench/qc_cost.py measures
it (docs/BENCHMARKS.md). Pairs join groups with a union-find; a group's keeper is its smallest clip
id, so the same corpus gives the same groups whatever order the clips come in.

Leakage: each clip's best match among a reference set (the CLAP audio embeddings of an evaluation
set, built as its own corpus) at or above the threshold, under whatever id it has there.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK = 2048


def normalise(embeddings: np.ndarray) -> np.ndarray:
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [N, D], got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def near_pairs(embeddings: np.ndarray, threshold: float, block: int = BLOCK) -> list[tuple[int, int, float]]:
    """Every pair (i, j), i < j, whose cosine is ≥ threshold, sorted."""
    x = normalise(embeddings)
    pairs: list[tuple[int, int, float]] = []
    for start in range(0, len(x), block):
        rows = x[start : start + block]
        for other in range(start, len(x), block):
            sims = rows @ x[other : other + block].T
            i, j = np.nonzero(sims >= threshold)
            i, j = i + start, j + other
            upper = i < j
            pairs += [
                (int(a), int(b), float(s))
                for a, b, s in zip(i[upper], j[upper], sims[i[upper] - start, j[upper] - other])
            ]
    return sorted(pairs)


def groups(ids: Sequence[str], pairs: list[tuple[int, int, float]]) -> dict[str, str]:
    """clip id → its group's keeper (the smallest id in the group), for clips in a group of ≥ 2."""
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b, _ in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            keep, other = (ra, rb) if ids[ra] < ids[rb] else (rb, ra)
            parent[other] = keep
    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(find(i), []).append(i)
    found = {}
    for group in members.values():
        if len(group) > 1:
            keeper = min(ids[i] for i in group)
            found.update({ids[i]: keeper for i in group})
    return found


def leaks(
    embeddings: np.ndarray, reference: np.ndarray, reference_ids: Sequence[str], threshold: float, block: int = BLOCK
) -> dict[int, tuple[str, float]]:
    """row index → (reference id, cosine) of its best reference match at or above the threshold."""
    if not len(reference) or not len(embeddings):
        return {}
    x, ref = normalise(embeddings), normalise(reference)
    found: dict[int, tuple[str, float]] = {}
    for start in range(0, len(x), block):
        best_sim = np.full(min(block, len(x) - start), -np.inf, dtype=np.float32)
        best_at = np.zeros(len(best_sim), dtype=np.int64)
        for other in range(0, len(ref), block):
            sims = x[start : start + block] @ ref[other : other + block].T
            at = np.argmax(sims, axis=1)
            value = sims[np.arange(len(at)), at]
            better = value > best_sim
            best_sim[better], best_at[better] = value[better], at[better] + other
        for i in np.flatnonzero(best_sim >= threshold):
            found[int(i) + start] = (reference_ids[int(best_at[i])], float(best_sim[i]))
    return found
