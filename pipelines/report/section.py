"""One SECTION of report.json (the whole corpus, or one source), accumulated row by row.

`ClipFacts` is what one annotation row contributes, worked out once (data.py) and added to the
corpus's section and to its source's. Every counter here is bounded (histograms, small heaps) except
the 8-byte caption hashes the duplicate and distinct-n figures need.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.annotate.store import STATUSES as ANNOTATION_STATUSES
from pipelines.core.records import STATUSES as INGEST_STATUSES
from pipelines.report.distillation import DROPPED, Distillation
from pipelines.report.stats import MARGIN_EDGES, Acceptance, IntStats, Stats, empty_stats, ratio
from pipelines.report.text import ARTEFACT_KINDS
from pipelines.review.design import origin

TOP_REASONS = 10
LABEL_EXAMPLES = 10
ARTEFACT_EXAMPLES = 5
MOST_REPEATED = 10
TABLE5 = ("label_text", "captioning", "retrieval", "selected")  # Make-An-Audio App. A, Table 5


@dataclass
class ClipFacts:
    clip_id: str
    key: int  # sort key: sha256(clip_id)
    status: str
    reason: str | None  # folded (status.reason_key) for failures, drops and fallbacks; None when plainly selected
    candidates: list[tuple[str, float | None]]  # (expert, clap_score)
    best: float | None
    label_score: float | None
    chance_score: float | None
    event_count: int | None
    caption: str | None = None  # the selected caption of an ok clip
    expert: str | None = None
    score: float | None = None
    labels: list[dict] = field(default_factory=list)
    mentions: bool = False
    named: list[str] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    unigrams: list[int] = field(default_factory=list)
    bigrams: list[int] = field(default_factory=list)
    exact: int = 0
    near: int = 0
    artefacts: list[str] = field(default_factory=list)
    licence: str | None = None  # SPDX-like id (pipelines.core.licences), where clip.json was read
    licence_raw: str | None = None
    judge: str = "unknown"  # distillation.JUDGE_KEYS: did the row's retrieval rank by the judge's score?
    without_keep_human: str | None = None  # the expert selected with keep_human off; None: no human caption


class HashCounts:
    """Every 8-byte hash added, kept as uint64 chunks: 8 bytes per item instead of a dict entry's ~100."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.buffer: list[int] = []
        self._counted: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, value: int) -> None:
        self.buffer.append(value)
        if len(self.buffer) >= 16384:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.chunks.append(np.asarray(self.buffer, dtype=np.uint64))
            self.buffer = []

    def counted(self) -> tuple[np.ndarray, np.ndarray]:
        """(distinct hashes, their counts), computed once after the last add."""
        if self._counted is None:
            self._flush()
            values = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=np.uint64)
            self.chunks = []
            self._counted = np.unique(values, return_counts=True)
        return self._counted

    def duplicate_rate(self) -> float | None:
        """Captions that repeat an earlier one: (n − distinct) / n."""
        distinct, counts = self.counted()
        total = int(counts.sum())
        return ratio(total - len(distinct), total)

    def most_repeated(self, k: int) -> list[tuple[int, int]]:
        """(hash, count) of the k most repeated (count ≥ 2), most first, ties by hash."""
        distinct, counts = self.counted()
        repeated = np.flatnonzero(counts >= 2)
        order = sorted(repeated, key=lambda i: (-int(counts[i]), int(distinct[i])))[:k]
        return [(int(distinct[i]), int(counts[i])) for i in order]


class DistinctHashes:
    """A set of 8-byte hashes as one sorted uint64 array, merged from a buffer now and then."""

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=np.uint64)
        self.buffer: list[int] = []
        self.total = 0

    def update(self, hashes: list[int]) -> None:
        self.total += len(hashes)
        self.buffer.extend(hashes)
        if len(self.buffer) >= 16384:
            self._flush()

    def _flush(self) -> None:
        if self.buffer:
            self.values = np.union1d(self.values, np.asarray(self.buffer, dtype=np.uint64))
            self.buffer = []

    def distinct(self) -> int:
        self._flush()
        return len(self.values)


class Examples:
    """The k rows with the smallest sort keys seen: a deterministic sample in bounded memory."""

    def __init__(self, k: int):
        self.k = k
        self.heap: list[tuple[int, str, dict]] = []  # (-key, clip_id, example): a max-heap on the key

    def offer(self, key: int, clip_id: str, make: Any) -> None:
        item = (-key, clip_id)
        if self.k == 0:
            return
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, (*item, make()))
        elif item > self.heap[0][:2]:
            heapq.heapreplace(self.heap, (*item, make()))

    def items(self) -> list[dict]:
        return [example for _, _, example in sorted(self.heap, key=lambda e: (-e[0], e[1]))]


class Section:
    def __init__(self, threshold: float):
        self.rows, self.by_status, self.reasons = 0, Counter(), Counter()
        self.clips, self.annotated, self.fallback = Counter(), 0, 0
        self.annotation_reasons: Counter = Counter()
        self.by_expert: dict[str, Stats] = {}
        self.selected, self.chance, self.label = Stats(), Stats(), Stats()
        self.over_label, self.over_chance = Stats(MARGIN_EDGES), Stats(MARGIN_EDGES)
        self.acceptance = Acceptance(threshold)
        self.wins: Counter = Counter()
        self.labelled, self.mentioning, self.unlabelled = 0, 0, 0
        self.label_examples = Examples(LABEL_EXAMPLES)
        self.captions, self.lengths = 0, IntStats()
        self.unigrams, self.bigrams = DistinctHashes(), DistinctHashes()
        self.exact, self.near = HashCounts(), HashCounts()
        self.artefacts: Counter = Counter()
        self.artefact_examples = {kind: Examples(ARTEFACT_EXAMPLES) for kind in ARTEFACT_KINDS}
        self.composition: Counter = Counter()
        self.texts: dict[int, str] = {}  # the most repeated captions' texts, filled by the second pass
        self.origins: Counter = Counter()
        self.margin_positive = 0
        self.licences: Counter = Counter()
        self.unread_licences: Counter = Counter()
        self.distillation = Distillation()

    def add_status(self, status: str, reason: str, rows: int) -> None:
        self.rows += rows
        self.by_status[status] += rows
        if status not in ("ok", "cached"):
            self.reasons[(status, reason)] += rows

    def add(self, clip: ClipFacts) -> None:
        self.clips[clip.status] += 1
        if clip.reason is not None:
            self.annotation_reasons[(clip.status, clip.reason)] += 1
        if clip.status == "failed":
            return
        self.annotated += 1
        self.acceptance.add(clip.best)
        for expert, score in clip.candidates:
            if expert not in self.by_expert:
                self.by_expert[expert] = Stats()
            self.by_expert[expert].add(score)
        self.label.add(clip.label_score)
        self.chance.add(clip.chance_score)
        chosen = clip.expert if clip.status == "ok" and clip.expert else DROPPED
        self.distillation.add(clip.candidates, clip.label_score, chosen, clip.judge, clip.without_keep_human)
        if clip.status == "ok":
            self._add_selected(clip)

    def _add_selected(self, clip: ClipFacts) -> None:
        self.fallback += clip.reason is not None
        self.wins[clip.expert] += 1
        self.origins[origin(clip.expert)] += 1
        self.selected.add(clip.score)
        if clip.licence:
            self.licences[clip.licence] += 1
            if clip.licence == "LicenseRef-Other":
                self.unread_licences[clip.licence_raw or ""] += 1
        if clip.score is not None and clip.label_score is not None:
            self.over_label.add(clip.score - clip.label_score)
        if clip.score is not None and clip.chance_score is not None:
            self.over_chance.add(clip.score - clip.chance_score)
            self.margin_positive += clip.score > clip.chance_score
        events = clip.event_count or 0
        self.composition["no_labels" if events == 0 else "single_event" if events == 1 else "multi_event"] += 1
        if clip.caption is not None:
            self._add_text(clip)

    def _add_text(self, clip: ClipFacts) -> None:
        self.captions += 1
        self.lengths.add(len(clip.words))
        self.unigrams.update(clip.unigrams)
        self.bigrams.update(clip.bigrams)
        self.exact.add(clip.exact)
        self.near.add(clip.near)
        for kind in clip.artefacts:
            self.artefacts[kind] += 1
            self.artefact_examples[kind].offer(
                clip.key, clip.clip_id, lambda: {"clip_id": clip.clip_id, "caption": clip.caption}
            )
        if clip.labels:
            self.labelled += 1
            self.mentioning += clip.mentions
            if clip.named:
                self.unlabelled += 1
                names = [label["name"] for label in clip.labels]
                example = lambda: {
                    "clip_id": clip.clip_id,
                    "caption": clip.caption,
                    "labels": names,
                    "named": clip.named,
                }  # noqa: E731
                self.label_examples.offer(clip.key, clip.clip_id, example)

    def wanted_texts(self) -> set[int]:
        """The caption hashes whose text the second pass must find (the most repeated)."""
        return {h for h, _ in self.exact.most_repeated(MOST_REPEATED)}

    def summary(self) -> dict[str, Any]:
        return {
            "availability": self._availability(),
            "annotations": self._annotations(),
            "scores": self._scores(),
            "distillation": self.distillation.summary(),
            "labels": self._labels(),
            "text": self._text(),
            "artefacts": self._artefacts(),
            "composition": {k: self.composition[k] for k in ("single_event", "multi_event", "no_labels")},
        }

    def _availability(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "by_status": {s: self.by_status[s] for s in INGEST_STATUSES},
            "top_reasons": _top_reasons(self.reasons),
        }

    def _annotations(self) -> dict[str, Any]:
        return {
            "clips": sum(self.clips.values()),
            "by_status": {s: self.clips[s] for s in ANNOTATION_STATUSES},
            "fallback": self.fallback,
            "top_reasons": _top_reasons(self.annotation_reasons),
        }

    def _scores(self) -> dict[str, Any]:
        by_expert = {expert: stats.summary() for expert, stats in sorted(self.by_expert.items())}
        selected = self.selected.summary()
        oks = sum(self.wins.values())
        means = {
            "label_text": self.label.summary()["mean"],
            "selected": selected["mean"],
            **{e: by_expert[e]["mean"] if e in by_expert else None for e in ("captioning", "retrieval")},
        }
        return {
            "by_expert": by_expert,
            "selected": selected,
            "human": by_expert.get("human", empty_stats()),
            "chance": self.chance.summary(),
            "margin_over_label": self.over_label.summary(),
            "margin_over_chance": self.over_chance.summary(),
            "acceptance": self.acceptance.summary(),
            "win_rate": {expert: n / oks for expert, n in sorted(self.wins.items())},
            "origins": {name: self.origins[name] for name in ("human", "label", "expert")},
            "margin_positive": ratio(self.margin_positive, self.over_chance.summary()["n"]),
            "table5": {name: means[name] for name in TABLE5},
        }

    def _labels(self) -> dict[str, Any]:
        return {
            "clips_with_labels": self.labelled,
            "mentions_label": self.mentioning,
            "mention_rate": ratio(self.mentioning, self.labelled),
            "names_unlabelled_class": self.unlabelled,
            "unlabelled_class_rate": ratio(self.unlabelled, self.labelled),
            "examples": self.label_examples.items(),
        }

    def _text(self) -> dict[str, Any]:
        repeated = [{"text": self.texts.get(h, ""), "count": n} for h, n in self.exact.most_repeated(MOST_REPEATED)]
        return {
            "captions": self.captions,
            "length_words": self.lengths.summary(),
            "vocabulary": self.unigrams.distinct(),
            "distinct_1": ratio(self.unigrams.distinct(), self.unigrams.total) or 0.0,
            "distinct_2": ratio(self.bigrams.distinct(), self.bigrams.total) or 0.0,
            "exact_duplicate_rate": self.exact.duplicate_rate() or 0.0,
            "near_duplicate_rate": self.near.duplicate_rate() or 0.0,
            "most_repeated": repeated,
        }

    def _artefacts(self) -> dict[str, Any]:
        return {
            kind: {
                "count": self.artefacts[kind],
                "rate": ratio(self.artefacts[kind], self.captions) or 0.0,
                "examples": self.artefact_examples[kind].items(),
            }
            for kind in ARTEFACT_KINDS
        }


def _top_reasons(reasons: Counter) -> list[dict[str, Any]]:
    ordered = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:TOP_REASONS]
    return [{"status": status, "reason": reason, "rows": n} for (status, reason), n in ordered]
