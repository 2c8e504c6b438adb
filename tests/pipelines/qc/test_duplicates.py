"""Near-duplicate groups and leakage on constructed embeddings: known pairs, chains, blocks."""

from __future__ import annotations

import numpy as np

from pipelines.qc import duplicates


def base(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    return duplicates.normalise(np.random.default_rng(seed).standard_normal((n, dim)))


def near(vector: np.ndarray, cosine: float, seed: int) -> np.ndarray:
    """A unit vector at exactly `cosine` from `vector`."""
    other = np.random.default_rng(seed).standard_normal(vector.shape)
    other -= other.dot(vector) * vector
    other /= np.linalg.norm(other)
    return cosine * vector + np.sqrt(1 - cosine**2) * other


def test_pairs_above_the_threshold_and_only_those_whatever_the_block_size():
    x = base(50)
    x[10] = near(x[3], 0.99, 1)
    x[40] = near(x[3], 0.95, 2)  # below 0.98: not a duplicate
    x[45] = near(x[20], 0.985, 3)
    for block in (7, 16, 2048):
        pairs = duplicates.near_pairs(x, 0.98, block=block)
        assert [(a, b) for a, b, _ in pairs] == [(3, 10), (20, 45)]
        assert pairs[0][2] == np.float32(0.99) or abs(pairs[0][2] - 0.99) < 1e-5


def test_groups_are_transitive_and_keep_the_smallest_id():
    ids = ["c", "a", "d", "b", "e"]
    keepers = duplicates.groups(ids, [(0, 2, 0.99), (2, 3, 0.99)])  # c~d, d~b: one group {b, c, d}
    assert keepers == {"c": "b", "d": "b", "b": "b"}
    assert duplicates.groups(ids, []) == {}


def test_leakage_finds_a_reference_clip_under_another_id():
    corpus = base(30, seed=1)
    reference = base(12, seed=2)
    corpus[7] = near(reference[5], 0.995, 4)
    found = duplicates.leaks(corpus, reference, [f"test_{i}" for i in range(12)], 0.98, block=8)
    assert list(found) == [7] and found[7][0] == "test_5" and abs(found[7][1] - 0.995) < 1e-4
    assert duplicates.leaks(corpus, reference[:0], [], 0.98) == {}
