"""Diffsound's mask-based text generation (MBTG, Diffsound §IV-C).

The paper replaces the words a human would add around the event names with mask tokens: "[MASK]
[MASK] dog bark [MASK] man speaking [MASK]" — "we randomly insert m ∈ {1, 2} mask tokens on either
side of the label". Its example puts one group of masks in each gap: before the first label,
between two labels (one group, shared by both sides) and after the last, and shows the labels
lower-cased; this module does the same.

The draw is seeded by a stable hash of `key` (the clip id in the annotate job), so a re-run writes
the same text. Algorithm 3 calls MBTG afresh in every epoch; a trainer gets that by passing a key
such as f"{clip_id}/{epoch}".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from pipelines.annotate.prompts.labels import distinct_names


def key_rng(key: str) -> np.random.Generator:
    """A generator seeded from `key` alone; Python's hash() changes between processes."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def mbtg_text(names: Sequence[str], key: str, mask_token: str = "[MASK]", counts: Sequence[int] = (1, 2)) -> str | None:
    """Labels with m ~ U(counts) mask tokens in each of the len(labels) + 1 gaps; None without labels."""
    labels = [name.lower() for name in distinct_names(names)]
    if not labels:
        return None
    if not counts or min(counts) < 1:
        raise ValueError(f"mask counts must be positive integers, got {list(counts)}")
    rng = key_rng(key)
    drawn = rng.choice(np.asarray(counts, dtype=np.int64), size=len(labels) + 1)
    parts = [" ".join([mask_token] * int(drawn[0]))]
    for label, count in zip(labels, drawn[1:]):
        parts += [label, " ".join([mask_token] * int(count))]
    return " ".join(parts)
