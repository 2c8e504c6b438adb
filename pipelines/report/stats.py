"""Streaming statistics: running sums and fixed-bin histograms, so memory does not grow with the corpus.

Mean, std, min and max are exact. Percentiles of scores are read off the histogram (linear within
a bin: at most one bin width, 0.05 for scores, from the exact value); percentiles of caption lengths
are exact (lengths are small integers, counted one counter per length).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

BINS = 40
SCORE_EDGES = np.round(np.linspace(-1.0, 1.0, BINS + 1), 6)
MARGIN_EDGES = np.round(np.linspace(-2.0, 2.0, BINS + 1), 6)  # a difference of two cosines lies in [-2, 2]
THRESHOLDS = SCORE_EDGES  # the acceptance curve's x axis: -1, -0.95, ..., 1
PERCENTILES = (("p10", 0.10), ("p50", 0.50), ("p90", 0.90))


def empty_stats(edges: np.ndarray = SCORE_EDGES) -> dict[str, Any]:
    return {
        "n": 0,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
        "p10": None,
        "p50": None,
        "p90": None,
        "histogram": {"edges": [float(e) for e in edges], "counts": [0] * (len(edges) - 1)},
    }


class Stats:
    """Count, sums, extremes and a fixed-bin histogram of a stream of floats (values outside the
    edges land in the end bins; min/max keep the true extremes)."""

    FLUSH = 4096  # values are buffered and folded in fixed-size chunks: the same sums whatever the batch size

    def __init__(self, edges: np.ndarray = SCORE_EDGES):
        self.edges = np.asarray(edges, dtype=np.float64)
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.n, self.total, self.squares = 0, 0.0, 0.0
        self.low, self.high = math.inf, -math.inf
        self.buffer: list[float] = []

    def add(self, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            self.buffer.append(float(value))
            if len(self.buffer) >= self.FLUSH:
                self._flush()

    def _flush(self) -> None:
        if not self.buffer:
            return
        values = np.asarray(self.buffer, dtype=np.float64)
        self.buffer = []
        self.n += len(values)
        self.total += float(values.sum())
        self.squares += float(np.square(values).sum())
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))
        index = np.clip(np.searchsorted(self.edges, values, side="right") - 1, 0, len(self.counts) - 1)
        self.counts += np.bincount(index, minlength=len(self.counts))

    def quantile(self, q: float) -> float | None:
        """The q-quantile read off the histogram, linear within its bin, clamped to [min, max]."""
        self._flush()
        if self.n == 0:
            return None
        target = q * self.n
        cumulative = np.cumsum(self.counts)
        i = min(int(np.searchsorted(cumulative, target, side="left")), len(self.counts) - 1)
        before = cumulative[i - 1] if i else 0
        fraction = (target - before) / self.counts[i] if self.counts[i] else 0.0
        value = self.edges[i] + fraction * (self.edges[i + 1] - self.edges[i])
        return float(min(max(value, self.low), self.high))

    def summary(self) -> dict[str, Any]:
        self._flush()
        if self.n == 0:
            return empty_stats(self.edges)
        mean = self.total / self.n
        std = math.sqrt(max(self.squares / self.n - mean * mean, 0.0))  # population std
        return {
            "n": self.n,
            "mean": mean,
            "std": std,
            "min": self.low,
            "max": self.high,
            **{name: self.quantile(q) for name, q in PERCENTILES},
            "histogram": {"edges": [float(e) for e in self.edges], "counts": [int(c) for c in self.counts]},
        }


class IntStats:
    """Exact statistics of small non-negative integers (caption lengths in words): one counter per value."""

    def __init__(self) -> None:
        self.counter: Counter[int] = Counter()

    def add(self, value: int) -> None:
        self.counter[int(value)] += 1

    def summary(self) -> dict[str, Any]:
        n = sum(self.counter.values())
        if n == 0:
            return {**empty_stats(np.linspace(0.0, 1.0, BINS + 1))}
        values = np.array(sorted(self.counter), dtype=np.float64)
        weights = np.array([self.counter[int(v)] for v in values], dtype=np.float64)
        mean = float((values * weights).sum() / n)
        std = math.sqrt(max(float((values * values * weights).sum() / n) - mean * mean, 0.0))
        low, high = float(values[0]), float(values[-1])
        edges = np.linspace(low, high, BINS + 1) if high > low else np.linspace(low - 0.5, low + 0.5, BINS + 1)
        counts, _ = np.histogram(values, bins=edges, weights=weights)
        return {
            "n": n,
            "mean": mean,
            "std": std,
            "min": low,
            "max": high,
            **{name: _weighted_percentile(values, weights, q) for name, q in PERCENTILES},
            "histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        }


def _weighted_percentile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """numpy's default ("linear") percentile of the values repeated by their weights."""
    cumulative = np.cumsum(weights)
    position = q * (cumulative[-1] - 1)
    lower, upper = math.floor(position), math.ceil(position)
    at = lambda rank: float(values[int(np.searchsorted(cumulative, rank + 1, side="left"))])  # noqa: E731
    return at(lower) + (position - lower) * (at(upper) - at(lower))


class Acceptance:
    """rate(t): the fraction of annotated clips whose best candidate scores ≥ t, at every threshold."""

    def __init__(self, configured: float):
        self.configured = configured
        self.clips = 0
        self.accepted = np.zeros(len(THRESHOLDS), dtype=np.int64)

    def add(self, best: float | None) -> None:
        self.clips += 1
        if best is not None and math.isfinite(best):
            self.accepted += best >= THRESHOLDS

    def summary(self) -> dict[str, Any]:
        rates = [float(a) / self.clips if self.clips else None for a in self.accepted]
        return {"thresholds": [float(t) for t in THRESHOLDS], "rate": rates, "configured": self.configured}


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None
