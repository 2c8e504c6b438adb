"""The listening table: a stratified sample of ok clips plus flagged outliers, in two streamed passes.

Strata are source × selected-score quantile. The quantile edges come from a fine histogram (0.001
wide bins) of each source's selected scores, so they are known only after the first pass; the
second pass keeps, per stratum, the `per_stratum` clips with the smallest sha256(clip_id) in a
bounded heap — the same clips whatever the batch size or row order. Outliers (the lowest selected
scores, the longest captions, one clip of each most duplicated caption) are chosen in the first pass
by the same key and fetched in the second.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from typing import Any

import numpy as np

from pipelines.report.section import ClipFacts, Examples
from pipelines.report.stats import Stats

OUTLIERS = 3
WORST = 5  # the verdict's "worst captions": lowest selected score, lowest margin over chance
FINE_EDGES = np.round(np.linspace(-1.0, 1.0, 2001), 6)


class Smallest:
    """The k items with the smallest (order, key) seen; bounded memory."""

    def __init__(self, k: int):
        self.k = k
        self.heap: list[tuple[Any, ...]] = []  # negated orders: a max-heap

    def offer(self, order: tuple[float, int], clip_id: str) -> None:
        item = (-order[0], -order[1], clip_id)
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, item)
        elif item > self.heap[0]:
            heapq.heapreplace(self.heap, item)

    def ids(self) -> list[str]:
        return [clip_id for *_, clip_id in self.heap]


class Listening:
    def __init__(self, per_stratum: int, quantiles: int):
        if per_stratum < 0 or quantiles < 1:
            raise ValueError(f"listening: per_stratum must be ≥ 0 and quantiles ≥ 1, got {per_stratum} and {quantiles}")
        self.per_stratum, self.quantiles = per_stratum, quantiles
        self.scores: dict[str, Stats] = {}
        self.lowest, self.longest = Smallest(WORST), Smallest(OUTLIERS)
        self.lowest_margin = Smallest(WORST)
        self.edges: dict[str, list[float]] = {}
        self.flags: dict[str, list[str]] = {}
        self.duplicated: dict[int, Examples] = {}
        self.strata: dict[str, Examples] = {}
        self.outliers: dict[str, dict] = {}

    def observe(self, source: str, clip: ClipFacts) -> None:
        """First pass: an ok clip's score and length."""
        if source not in self.scores:
            self.scores[source] = Stats(FINE_EDGES)
        self.scores[source].add(clip.score)
        if clip.score is not None:
            self.lowest.offer((clip.score, clip.key), clip.clip_id)
            if clip.chance_score is not None:
                self.lowest_margin.offer((clip.score - clip.chance_score, clip.key), clip.clip_id)
        if clip.caption is not None:
            self.longest.offer((-len(clip.words), clip.key), clip.clip_id)

    def plan(self, duplicated: list[int]) -> None:
        """Between the passes: the strata's edges, and which outliers to fetch."""
        for source, stats in self.scores.items():
            self.edges[source] = [stats.quantile(k / self.quantiles) or 0.0 for k in range(1, self.quantiles)]
        outliers = (("lowest_score", self.lowest), ("lowest_margin", self.lowest_margin), ("longest", self.longest))
        for flag, ids in ((flag, found.ids()) for flag, found in outliers):
            for clip_id in ids:
                self.flags.setdefault(clip_id, []).append(flag)
        self.duplicated = {h: Examples(1) for h in duplicated}

    def stratum(self, source: str, score: float | None) -> str:
        edges = self.edges.get(source, [])
        index = bisect.bisect_right(edges, score) if score is not None else 0
        return f"{source}/q{index + 1}"

    def offer(self, source: str, clip: ClipFacts, row: dict[str, Any]) -> None:
        """Second pass: an ok clip and its raw annotation row."""
        stratum = self.stratum(source, clip.score)
        item = {**row, "source": source, "stratum": stratum}
        if stratum not in self.strata:
            self.strata[stratum] = Examples(self.per_stratum)
        self.strata[stratum].offer(clip.key, clip.clip_id, lambda: item)
        if clip.clip_id in self.flags:
            self.outliers[clip.clip_id] = item
        if clip.exact in self.duplicated:
            self.duplicated[clip.exact].offer(clip.key, clip.clip_id, lambda: item)

    def rows(self, describe: Callable[[dict[str, Any], list[str]], dict[str, Any]]) -> list[dict[str, Any]]:
        """Every sampled row, described (paths, labels) by `describe(row, flags)`, in stratum order."""
        chosen: dict[str, dict] = {}
        for examples in self.strata.values():
            chosen.update((item["clip_id"], item) for item in examples.items())
        chosen.update(self.outliers)
        flags = {clip_id: list(flags) for clip_id, flags in self.flags.items()}
        for examples in self.duplicated.values():
            for item in examples.items():
                chosen[item["clip_id"]] = item
                flags.setdefault(item["clip_id"], []).append("duplicated")
        ordered = sorted(
            chosen.values(), key=lambda item: (item["source"], int(item["stratum"].rsplit("/q", 1)[1]), item["clip_id"])
        )
        return [describe(item, flags.get(item["clip_id"], [])) for item in ordered]
