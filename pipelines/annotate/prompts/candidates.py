"""One clip's caption candidates, their CLAP scores and the selection: the text side of the
annotate job (pipelines/annotate/job.py), without Beam or models.

Make-An-Audio (§3.2.1, App. E.2) distils captions from experts and lets CLAP pick: each
candidate keeps its expert — `human` captions (they calibrate the scale), `captioning`,
`retrieval`, cleaned `source_text`, and the `label_text` baseline — and gets the cosine of its CLAP
text embedding with the clip's CLAP audio embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.annotate.prompts.config import PromptConfig, SelectionConfig
from pipelines.annotate.prompts.labels import label_text
from pipelines.annotate.prompts.mbtg import mbtg_text
from pipelines.annotate.prompts.select import Candidate, select_caption
from pipelines.annotate.prompts.source_text import clean_source_text
from pipelines.core.records import ClipRecord


@dataclass(frozen=True)
class ClipInfo:
    """What the text side needs of a clip; no media."""

    clip_id: str
    digest: str
    labels: tuple[str, ...]
    captions: tuple[str, ...]  # human captions
    source_text: str | None  # cleaned uploader text
    event_count: int
    windows: int
    frames: int


@dataclass(frozen=True)
class Proposal:
    clip_id: str
    candidates: tuple[tuple[str, str, float | None], ...]  # (text, expert, score; None until scored)
    label_text: str | None
    mbtg_text: str | None
    texts: tuple[str, ...]  # distinct texts that still need a CLAP text embedding, in order
    bank_checksum: str | None = None
    chance_score: float | None = None  # CLAP score of another clip's caption: the chance baseline


def clip_info(entry: ClipRecord, digest: str, events: int, windows: int, frames: int, config: PromptConfig) -> ClipInfo:
    """A clip.json record → ClipInfo; Freesound/FSD50K uploader text is cleaned into one candidate."""
    captions = entry.captions
    meta = entry.meta or {}
    uploaded = next((c.text for c in captions if c.kind == "source_text"), None)
    title = meta.get("title") or meta.get("name")
    cleaned = (
        clean_source_text(title, meta.get("description") or uploaded, config.source_text_max_chars)
        if uploaded or title
        else None
    )
    return ClipInfo(
        clip_id=entry.clip_id,
        digest=digest,
        labels=tuple(label.name for label in entry.labels),
        captions=tuple(c.text for c in captions if c.kind == "human"),
        source_text=cleaned,
        event_count=events,
        windows=windows,
        frames=frames,
    )


def propose(
    info: ClipInfo,
    generated: Sequence[str],
    retrieved: Sequence[tuple[str, float]],
    config: PromptConfig,
    bank_checksum: str | None = None,
    chance_score: float | None = None,
    retrieval_scored: bool = True,
) -> Proposal:
    """Every candidate with its expert; retrieved ones come scored when their retrieval score is the CLAP
    audio–text cosine (`retrieval_scored`), else CLAP scores them like the others (text–text retrieval)."""
    label = label_text(info.labels)
    candidates: list[tuple[str, str, float | None]] = [(text, "human", None) for text in info.captions]
    candidates += [(text, "captioning", None) for text in generated]
    if info.source_text:
        candidates.append((info.source_text, "source_text", None))
    candidates += [(text, "retrieval", float(score) if retrieval_scored else None) for text, score in retrieved]
    if label:
        candidates.append((label, "label_text", None))
    candidates = list(dict.fromkeys(candidates))  # one entry per (text, expert, score), first kept
    texts = tuple(dict.fromkeys(text for text, _, score in candidates if score is None))
    masked = mbtg_text(info.labels, info.clip_id, config.mask_token, config.mask_counts)
    return Proposal(info.clip_id, tuple(candidates), label, masked, texts, bank_checksum, chance_score)


def select(
    proposal: Proposal, text_embeddings: Mapping[int, np.ndarray], audio: np.ndarray, config: SelectionConfig
) -> dict[str, Any]:
    """CLAP scores (cosine of L2-normalised embeddings) and the selection → the row's text fields.
    `text_embeddings[i]` embeds `proposal.texts[i]`."""
    scores = {
        text: float(np.dot(text_embeddings[i], audio)) for i, text in enumerate(proposal.texts) if i in text_embeddings
    }
    candidates = [
        Candidate(text, expert, score if score is not None else scores.get(text))
        for text, expert, score in proposal.candidates
    ]
    label_score = scores.get(proposal.label_text) if proposal.label_text else None
    fallbacks = {"label_text": proposal.label_text, "mbtg": proposal.mbtg_text}
    selection = select_caption(candidates, label_score, config, fallbacks)
    ranked = sorted(candidates, key=lambda c: (-(c.score if c.score is not None else -np.inf), c.expert, c.text))
    return {
        "status": "ok" if selection.text else "dropped",
        "reason": selection.reason,
        "selected_caption": selection.text,
        "selected_expert": selection.expert,
        "selected_score": selection.score,
        "label_text": proposal.label_text,
        "label_score": label_score,
        "mbtg_text": proposal.mbtg_text,
        "chance_score": proposal.chance_score,
        "candidates": [{"text": c.text, "expert": c.expert, "clap_score": c.score} for c in ranked],
    }
