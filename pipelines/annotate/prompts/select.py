"""CLAP selection of a clip's caption among its candidates (Make-An-Audio §3.2.1).

"We select from these candidates that endow high CLAP score as the final caption (we include a
threshold to select faithful results)." The label text is one of the candidates (expert
"label_text"): the issue scores it as the baseline, and when it is the best-aligned text it is the
right caption. With `above_label_text` a candidate must also reach the label text's score — the
label text itself always does, so it wins unless something aligns better.

When no candidate qualifies the configured fallback supplies the text; a clip without that
fallback (no labels) is dropped. Every outcome has a reason for the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipelines.annotate.prompts.config import SelectionConfig

# Tie order: texts written for the clip first, then expert output, then text made from labels.
EXPERTS = ("human", "captioning", "retrieval", "source_text", "label_text", "mbtg")


@dataclass(frozen=True)
class Candidate:
    text: str
    expert: str  # one of EXPERTS
    score: float | None = None  # CLAP text–audio cosine; None when it was not scored


@dataclass(frozen=True)
class Selection:
    text: str | None
    expert: str | None
    score: float | None
    reason: str  # "selected" | "fallback:<expert>: <why>" | "dropped: <why>"


def select_caption(
    candidates: Sequence[Candidate],
    label_score: float | None,
    config: SelectionConfig,
    fallbacks: Mapping[str, str | None],
) -> Selection:
    human = [c for c in candidates if c.expert == "human" and c.text]
    if config.keep_human and human:  # Make-An-Audio §3.2.1: distillation is for clips without human captions
        best = sorted(human, key=lambda c: _rank(Candidate(c.text, c.expert, c.score if _finite(c.score) else -1e9)))[0]
        return Selection(best.text, "human", best.score, "human: kept (selection.keep_human)")
    scored = sorted((c for c in candidates if c.text and _finite(c.score)), key=_rank)
    floor = label_score if config.above_label_text and _finite(label_score) else None
    for candidate in scored:  # best first: the first that qualifies is the argmax
        if _qualifies(candidate.score, config.threshold, floor):
            return Selection(candidate.text, candidate.expert, candidate.score, "selected")
    why = _why_none(scored[0].score if scored else None, config.threshold, floor)
    return _fallback(why, candidates, label_score, config, fallbacks)


def _finite(score: float | None) -> bool:
    return score is not None and math.isfinite(score)


def _rank(candidate: Candidate) -> tuple[float, int, str, str]:
    order = EXPERTS.index(candidate.expert) if candidate.expert in EXPERTS else len(EXPERTS)
    return (-float(candidate.score or 0.0), order, candidate.expert, candidate.text)


def _qualifies(score: float | None, threshold: float, floor: float | None) -> bool:
    assert score is not None
    return score >= threshold and (floor is None or score >= floor)


def _why_none(best: float | None, threshold: float, floor: float | None) -> str:
    if best is None:
        return "no scored candidate"
    if best < threshold:
        return f"best score {best:.4g} < threshold {threshold:.4g}"
    return f"best score {best:.4g} < label text score {floor:.4g}"


def _fallback(
    why: str,
    candidates: Sequence[Candidate],
    label_score: float | None,
    config: SelectionConfig,
    fallbacks: Mapping[str, str | None],
) -> Selection:
    if config.fallback == "drop":
        return Selection(None, None, None, f"dropped: {why}")
    text = fallbacks.get(config.fallback)
    if not text:
        return Selection(None, None, None, f"dropped: {why}; no {config.fallback} fallback (the clip has no labels)")
    known = [c.score for c in candidates if c.text == text and _finite(c.score)]
    score = (
        label_score if config.fallback == "label_text" and label_score is not None else (known[0] if known else None)
    )
    return Selection(text, config.fallback, score, f"fallback:{config.fallback}: {why}")
