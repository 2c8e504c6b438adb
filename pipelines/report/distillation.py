"""The report's expert-distillation figures (Make-An-Audio §3.2.1, App. A), from the annotation rows alone.

Two choices of the annotate job, each shown by what its alternative would have done:

- retrieval: on the clips whose candidates hold both captioning and retrieval captions, which origin's best
  candidate wins the CLAP judgement, the mean CLAP score of each origin's candidates, and a Make-An-Audio
  App. A Table 5 row (mean CLAP score of the label text / the best captioning candidate / the best retrieved
  one / the best of both, i.e. "both + CLAP selection"), overall and split by whether the bank was ranked by the
  judge's own audio–text score (`provenance.retrieval.judge`, `query: audio`) or not (`query: labels`).
- keep_human: on the clips with human captions, the CLAP score of the best human caption against the best
  other candidate, and how many clips the selection would have given another text with
  `selection.keep_human: false` — the selection rerun on the stored candidate scores
  (`pipelines.annotate.prompts.select.select_caption`), threshold and fallback included.

Memory is bounded: counters and fixed-bin histograms (stats.Stats) per scope.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow.compute as pc
from pydantic import ValidationError

from pipelines.annotate.prompts.config import SelectionConfig
from pipelines.annotate.prompts.select import Candidate, select_caption
from pipelines.report.stats import MARGIN_EDGES, Stats, ratio

ORIGINS = ("captioning", "retrieval")
JUDGE_KEYS = ("judge", "not_judge", "unknown")  # provenance.retrieval.judge true / false / not recorded
TABLE5 = ("label_text", "captioning", "retrieval", "both_select")  # Make-An-Audio App. A, Table 5's columns
DROPPED = "dropped"


def judge_key(provenance: Mapping[str, Any] | None) -> str:
    """Whether the row's retrieval expert ranked by the judge's score: from `retrieval.judge`, else its `query`."""
    retrieval = (provenance or {}).get("retrieval") or {}
    judge = retrieval.get("judge")
    if judge is None and retrieval.get("query") in ("audio", "labels"):
        judge = retrieval["query"] == "audio"
    return "unknown" if judge is None else "judge" if judge else "not_judge"


def judge_keys(provenance: Any) -> list[str]:
    """A record batch's provenance column (JSON text per row) → each row's judge key; each distinct text is parsed
    once (a run writes one provenance), and the texts never become Python strings row by row."""
    unique = pc.unique(provenance)
    keys = [judge_key(_parse(text)) for text in unique.to_pylist()]
    return [keys[i] for i in pc.index_in(provenance, value_set=unique).to_pylist()]


def _parse(text: str | None) -> dict[str, Any]:
    try:
        payload = json.loads(text) if text else {}
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def counterfactual_selection(selection: Mapping[str, Any] | None, threshold: float) -> SelectionConfig:
    """The recorded selection rule with keep_human off (keys or values an older or newer t2a wrote are ignored)."""
    known = {k: v for k, v in (selection or {}).items() if k in SelectionConfig.model_fields and v is not None}
    known.setdefault("threshold", threshold)
    try:
        return SelectionConfig.model_validate({**known, "keep_human": False})
    except ValidationError:  # a value this version does not know: the report's threshold, the default rule
        return SelectionConfig(threshold=threshold, keep_human=False)


def without_keep_human(row: Mapping[str, Any], config: SelectionConfig) -> str | None:
    """The expert the selection would pick for a clip with human captions under `config` (keep_human off), or
    "dropped"; None when the clip has no human candidate."""
    candidates = [
        Candidate(c["text"] or "", c["expert"], c["clap_score"]) for c in row.get("candidates") or [] if c["expert"]
    ]
    if not any(c.expert == "human" and c.text for c in candidates):
        return None
    fallbacks = {"label_text": row.get("label_text"), "mbtg": row.get("mbtg_text")}
    chosen = select_caption(candidates, row.get("label_score"), config, fallbacks)
    return chosen.expert or DROPPED


def _finite(score: float | None) -> bool:
    return score is not None and math.isfinite(score)


class _Retrieval:
    """One group of clips having both captioning and retrieval candidates."""

    def __init__(self) -> None:
        self.clips = 0
        self.wins: Counter = Counter()
        self.selected: Counter = Counter()
        self.candidates = {origin: Stats() for origin in ORIGINS}
        self.table5 = {name: Stats() for name in TABLE5}

    def add(self, best: Mapping[str, float], scores: Mapping[str, list[float]], label: float | None, chosen: str):
        self.clips += 1
        # ties go to captioning, as the selection's tie order has it (select.EXPERTS)
        self.wins["captioning" if best["captioning"] >= best["retrieval"] else "retrieval"] += 1
        self.selected[chosen] += 1
        for origin in ORIGINS:
            for score in scores[origin]:
                self.candidates[origin].add(score)
            self.table5[origin].add(best[origin])
        self.table5["label_text"].add(label)
        self.table5["both_select"].add(max(best.values()))

    def summary(self) -> dict[str, Any]:
        means = {origin: self.candidates[origin].summary() for origin in ORIGINS}
        return {
            "clips": self.clips,
            "wins": {origin: self.wins[origin] for origin in ORIGINS},
            "win_rate": {origin: ratio(self.wins[origin], self.clips) for origin in ORIGINS},
            "selected": dict(sorted(self.selected.items())),
            "candidates": {origin: means[origin]["n"] for origin in ORIGINS},
            "mean": {origin: means[origin]["mean"] for origin in ORIGINS},
            "table5": {name: self.table5[name].summary()["mean"] for name in TABLE5},
        }


class Distillation:
    """The distillation figures of one scope, clip by clip (ClipFacts of non-failed rows)."""

    def __init__(self) -> None:
        self.retrieval = _Retrieval()
        self.by_judge = {key: _Retrieval() for key in JUDGE_KEYS}
        self.human_clips, self.replaced = 0, 0
        self.human, self.other = Stats(), Stats()
        self.margin = Stats(MARGIN_EDGES)
        self.replaced_by: Counter = Counter()

    def add(
        self,
        candidates: Sequence[tuple[str, float | None]],
        label_score: float | None,
        chosen: str,
        judge: str,
        counterfactual: str | None,
    ) -> None:
        """`chosen`: the selected expert or "dropped"; `counterfactual`: without_keep_human's answer."""
        scores: dict[str, list[float]] = {}
        for expert, score in candidates:
            if _finite(score):
                scores.setdefault(expert, []).append(float(score))
        best = {expert: max(values) for expert, values in scores.items()}
        if all(origin in best for origin in ORIGINS):
            pair = {origin: best[origin] for origin in ORIGINS}
            for group in (self.retrieval, self.by_judge[judge]):
                group.add(pair, scores, label_score, chosen)
        if counterfactual is not None:
            self._add_human(best, counterfactual)

    def _add_human(self, best: Mapping[str, float], counterfactual: str) -> None:
        self.human_clips += 1
        others = [score for expert, score in best.items() if expert != "human"]
        self.human.add(best.get("human"))
        if others and "human" in best:
            self.other.add(max(others))
            self.margin.add(best["human"] - max(others))
        if counterfactual != "human":
            self.replaced += 1
            self.replaced_by[counterfactual] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "retrieval": {
                **self.retrieval.summary(),
                "by_judge": {key: group.summary() for key, group in self.by_judge.items() if group.clips},
            },
            "keep_human": {
                "clips": self.human_clips,
                "human": self.human.summary(),
                "best_other": self.other.summary(),
                "margin": self.margin.summary(),
                "replaced": self.replaced,
                "replaced_rate": ratio(self.replaced, self.human_clips),
                "replaced_by": dict(sorted(self.replaced_by.items())),
            },
        }
