"""One clip's candidates, CLAP scores and selection, with hand-set embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from records import clip_record

from pipelines.annotate.prompts import PromptConfig, SelectionConfig
from pipelines.annotate.prompts.candidates import clip_info, propose, select

ENTRY = clip_record(
    "fs_1",
    labels=[{"mid": "/m/0bt9lr", "name": "Dog"}, {"mid": "/m/09x0r", "name": "Speech"}],
    captions=[
        {"text": "A dog barks", "origin": "table", "kind": "human"},
        {"text": "dog_bark_01.wav recorded with Zoom H4n http://x.y", "origin": "freesound", "kind": "source_text"},
    ],
    meta={"title": "dog_bark_01.wav", "description": "Dog barking in the yard. http://example.com"},
)


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture()
def proposal():
    info = clip_info(ENTRY, "d" * 64, events=2, windows=1, frames=0, config=PromptConfig())
    assert info.captions == ("A dog barks",) and info.source_text and "http" not in info.source_text
    return propose(info, ["a dog is barking", "A dog barks"], [("a cat meows", 0.5)], PromptConfig())


def test_every_expert_keeps_its_candidates_and_retrieved_ones_come_scored(proposal):
    experts = [expert for _, expert, _ in proposal.candidates]
    assert experts == ["human", "captioning", "captioning", "source_text", "retrieval", "label_text"]
    assert ("a cat meows", "retrieval", 0.5) in proposal.candidates
    assert proposal.label_text == "Dog and speech" and proposal.mbtg_text.count("[MASK]") >= 3
    # "A dog barks" comes from two experts but is embedded once
    assert proposal.texts.count("A dog barks") == 1 and "a cat meows" not in proposal.texts


def test_scores_are_cosines_and_the_best_above_threshold_wins(proposal):
    audio = unit(1, 0, 0)
    directions = {"A dog barks": unit(1, 1, 0), "a dog is barking": unit(1, 0.2, 0), "Dog and speech": unit(0, 1, 0)}
    embeddings = {i: directions.get(text, unit(0, 0, 1)) for i, text in enumerate(proposal.texts)}
    row = select(proposal, embeddings, audio, SelectionConfig(threshold=0.6, keep_human=False))
    assert (
        row["status"] == "ok"
        and row["selected_caption"] == "a dog is barking"
        and row["selected_expert"] == "captioning"
    )
    assert row["selected_score"] == pytest.approx(float(unit(1, 0.2, 0)[0]))
    assert row["label_score"] == pytest.approx(0.0, abs=1e-6)
    scores = [c["clap_score"] for c in row["candidates"]]
    assert scores == sorted(scores, reverse=True) and len(row["candidates"]) == len(proposal.candidates)


def test_no_candidate_above_threshold_falls_back_or_drops(proposal):
    embeddings = {i: unit(0, 0, 1) for i in range(len(proposal.texts))}
    row = select(proposal, embeddings, unit(1, 0, 0), SelectionConfig(threshold=0.9, fallback="mbtg", keep_human=False))
    assert row["selected_caption"] == proposal.mbtg_text and row["reason"].startswith("fallback")
    row = select(proposal, embeddings, unit(1, 0, 0), SelectionConfig(threshold=0.9, fallback="drop", keep_human=False))
    assert row["status"] == "dropped" and row["selected_caption"] is None


def test_text_text_retrieval_candidates_are_scored_by_clap_like_the_others():
    """With retrieval.query: labels the retrieval score is a text–text cosine: CLAP judges those candidates."""
    info = clip_info(ENTRY, "d" * 64, events=2, windows=1, frames=0, config=PromptConfig())
    unscored = propose(info, [], [("a dog barks loudly", 0.99)], PromptConfig(), retrieval_scored=False)
    assert ("a dog barks loudly", "retrieval", None) in unscored.candidates and "a dog barks loudly" in unscored.texts
    scored = propose(info, [], [("a dog barks loudly", 0.99)], PromptConfig())
    assert ("a dog barks loudly", "retrieval", 0.99) in scored.candidates and "a dog barks loudly" not in scored.texts
