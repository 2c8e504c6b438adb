import random

import pytest

from pipelines.annotate.prompts import Candidate, Selection, SelectionConfig, select_caption

FALLBACKS = {"label_text": "Speech and music", "mbtg": "[MASK] speech [MASK] music [MASK]"}
CANDIDATES = [
    Candidate("a man talks over a song", "captioning", 0.42),
    Candidate("people chatting", "retrieval", 0.31),
    Candidate("Speech and music", "label_text", 0.35),
    Candidate("not scored", "human", None),
    Candidate("broken score", "human", float("nan")),
]


def test_argmax_above_threshold():
    selection = select_caption(CANDIDATES, 0.35, SelectionConfig(threshold=0.3, keep_human=False), FALLBACKS)
    assert selection == Selection("a man talks over a song", "captioning", 0.42, "selected")


def test_label_text_competes_and_can_win():
    candidates = [Candidate("birds", "captioning", 0.2), Candidate("Bird", "label_text", 0.5)]
    assert select_caption(candidates, 0.5, SelectionConfig(keep_human=False), FALLBACKS).expert == "label_text"


def test_above_label_text_rule():
    candidates = [Candidate("a man talks", "captioning", 0.3), Candidate("Speech and music", "label_text", 0.35)]
    config = SelectionConfig(threshold=0.1, above_label_text=True, keep_human=False)
    assert select_caption(candidates[:1], 0.35, config, FALLBACKS) == Selection(
        "Speech and music", "label_text", 0.35, "fallback:label_text: best score 0.3 < label text score 0.35"
    )
    assert select_caption(candidates, 0.35, config, FALLBACKS).text == "Speech and music"  # reaches its own score
    # without a label score (no labels) the rule does not apply
    assert select_caption(candidates[:1], None, config, {}).text == "a man talks"
    assert (
        select_caption(candidates[:1], 0.35, SelectionConfig(threshold=0.1, keep_human=False), FALLBACKS).text
        == "a man talks"
    )


@pytest.mark.parametrize(
    "fallback, expected",
    [
        (
            "label_text",
            Selection("Speech and music", "label_text", 0.35, "fallback:label_text: best score 0.42 < threshold 0.5"),
        ),
        ("mbtg", Selection(FALLBACKS["mbtg"], "mbtg", None, "fallback:mbtg: best score 0.42 < threshold 0.5")),
        ("drop", Selection(None, None, None, "dropped: best score 0.42 < threshold 0.5")),
    ],
)
def test_each_fallback(fallback, expected):
    config = SelectionConfig(threshold=0.5, fallback=fallback, keep_human=False)
    assert select_caption(CANDIDATES, 0.35, config, FALLBACKS) == expected


def test_dropped_without_labels_or_scores():
    config = SelectionConfig(threshold=0.5, keep_human=False)
    selection = select_caption(CANDIDATES[:2], None, config, {"label_text": None, "mbtg": None})
    assert selection.text is None and selection.reason.startswith("dropped: best score 0.42 < threshold 0.5")
    assert "no label_text fallback" in selection.reason
    assert (
        select_caption([], None, SelectionConfig(fallback="mbtg", keep_human=False), FALLBACKS).reason
        == "fallback:mbtg: no scored candidate"
    )


def test_ties_are_broken_by_expert_order_then_text_whatever_the_input_order():
    tied = [
        Candidate("zebra", "retrieval", 0.4),
        Candidate("b text", "captioning", 0.4),
        Candidate("a text", "captioning", 0.4),
        Candidate("label", "label_text", 0.4),
        Candidate("lower", "human", 0.39),
    ]
    rng = random.Random(0)
    for _ in range(10):
        rng.shuffle(tied)
        assert select_caption(tied, 0.4, SelectionConfig(keep_human=False), FALLBACKS).text == "a text"
    assert (
        select_caption(tied + [Candidate("mine", "human", 0.4)], None, SelectionConfig(keep_human=False), {}).text
        == "mine"
    )


def test_a_human_caption_is_kept_unless_asked():
    """Make-An-Audio §3.2.1 distils captions for label-only and unlabelled audio: a clip with a human caption
    keeps its best-scoring one even when an expert scores higher (selection.keep_human, the default)."""
    candidates = [Candidate("a man talks", "human", 0.2), Candidate("a crowd cheers", "retrieval", 0.9)]
    candidates += [Candidate("people speak", "human", 0.3)]
    kept = select_caption(candidates, 0.1, SelectionConfig(threshold=0.5), FALLBACKS)
    assert (kept.text, kept.expert, kept.reason) == ("people speak", "human", "human: kept (selection.keep_human)")
    competing = select_caption(candidates, 0.1, SelectionConfig(threshold=0.5, keep_human=False), FALLBACKS)
    assert (competing.text, competing.expert) == ("a crowd cheers", "retrieval")
    unscored = [Candidate("b", "human", None), Candidate("a", "human", None)]
    assert select_caption(unscored, None, SelectionConfig(), FALLBACKS).text == "a"  # ties by text
    experts_only = candidates[1:2]
    assert select_caption(experts_only, 0.1, SelectionConfig(), FALLBACKS).expert == "retrieval"
