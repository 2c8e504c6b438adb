import re

import numpy as np
import pytest

from pipelines.annotate.prompts import (
    ADJECTIVES,
    NOUNS,
    QUANTIFIERS,
    TEMPLATES,
    VERBS,
    Event,
    Words,
    apply_template,
    render,
    reprogram,
)

# Make-An-Audio Appendix F, copied from the paper's text with the extraction's *italics* removed.
PAPER_TEMPLATES = [
    "before v q a n of &, X",
    "X before v q a n of &,",
    "in front of v q a n of &, X",
    "first is X second is q a n of &",
    "after X, v q a n of &",
    "after v q a n of &, X",
    "behind v q a n of &, X",
    "v q a n of &, then X",
    "v q a n of &, following X",
    "v q a n of &, later X",
    "X after v q a n of &",
    "before X, v q a n of &",
]
# Which audio plays first, as each template's words say (module docstring explains the readings).
FIRST = ["X", "X", "X", "X", "X", "&", "&", "&", "X", "&", "&", "&"]
WORDS = Words(verb="listening to", quantifier="some", adjective="close-up", noun="sound")
RENDERED = [
    "before listening to some close-up sound of dog, a man speaks",
    "a man speaks before listening to some close-up sound of dog",
    "in front of listening to some close-up sound of dog, a man speaks",
    "first is a man speaks second is some close-up sound of dog",
    "after a man speaks, listening to some close-up sound of dog",
    "after listening to some close-up sound of dog, a man speaks",
    "behind listening to some close-up sound of dog, a man speaks",
    "listening to some close-up sound of dog, then a man speaks",
    "listening to some close-up sound of dog, following a man speaks",
    "listening to some close-up sound of dog, later a man speaks",
    "a man speaks after listening to some close-up sound of dog",
    "before a man speaks, listening to some close-up sound of dog",
]


def test_templates_and_word_sets_are_the_papers():
    assert [t.text for t in TEMPLATES] == PAPER_TEMPLATES
    assert [t.first for t in TEMPLATES] == FIRST
    assert all(t.events == 1 for t in TEMPLATES)
    assert VERBS == ("hearing", "noticing", "listening to", "appearing")
    assert ADJECTIVES == ("clear", "noisy", "close-up", "weird", "clean")
    assert NOUNS == ("audio", "sound", "voice")
    assert QUANTIFIERS == ("a", "the", "some")


@pytest.mark.parametrize("index", range(12))
def test_each_template_renders_and_orders_audio(index):
    template = TEMPLATES[index]
    clip, event = np.full(5, 1.0), Event(np.full(3, 2.0), "Dog")
    audio, caption = apply_template(template, clip, "A man speaks.", event, WORDS)
    assert caption == RENDERED[index]
    assert audio.dtype == np.float32 and audio.shape == (8,)
    expected = [1.0] * 5 + [2.0] * 3 if FIRST[index] == "X" else [2.0] * 3 + [1.0] * 5
    np.testing.assert_array_equal(audio, expected)


def test_render_is_one_pass_and_checks_labels():
    # a caption holding slot letters and '&' is not filled again; acronyms keep their case
    text = render(TEMPLATES[7], "TV & a radio play.", ["Bark"], Words("hearing", "a", "weird", "voice"))
    assert text == "hearing a weird voice of bark, then TV & a radio play"
    with pytest.raises(ValueError, match="takes 1 event label"):
        render(TEMPLATES[0], "x", ["a", "b"], WORDS)


def _runs(audio):
    """(value, length) of each constant run."""
    edges = np.flatnonzero(np.diff(audio)) + 1
    return [(float(part[0]), len(part)) for part in np.split(audio, edges)]


def test_reprogram_samples_n_in_0_1_2_and_concatenates_the_parts():
    events = [Event(np.full(3 + i, 2.0 + i), f"event {i}") for i in range(4)]
    seen = set()
    for seed in range(60):
        audio, caption = reprogram(np.full(10, 1.0), "A man speaks.", events, np.random.default_rng(seed))
        runs = _runs(audio)
        used = [int(value) - 2 for value, _ in runs if value != 1.0]
        seen.add(len(used))
        assert len(set(used)) == len(used)  # distinct events
        assert (1.0, 10) in runs and len(audio) == 10 + sum(3 + i for i in used)
        assert all(length == 3 + int(value) - 2 for value, length in runs if value != 1.0)
        if used:
            assert all(f"event {i}" in caption for i in used) and "man speaks" in caption
        else:
            assert caption == "A man speaks."
    assert seen == {0, 1, 2}


def test_reprogram_is_seeded_and_handles_an_empty_database():
    events = [Event(np.arange(4, dtype=np.float32), "Dog"), Event(np.ones(2), "Cat")]
    first = reprogram(np.zeros(6), "Rain falls", events, np.random.default_rng(7))
    again = reprogram(np.zeros(6), "Rain falls", events, np.random.default_rng(7))
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]
    captions = {reprogram(np.zeros(6), "Rain falls", events, np.random.default_rng(s))[1] for s in range(20)}
    assert len(captions) > 5
    audio, caption = reprogram(np.zeros(6), "Rain falls", [], np.random.default_rng(0))
    assert caption == "Rain falls" and audio.shape == (6,)


def test_words_sample_from_the_sets():
    rng = np.random.default_rng(0)
    sampled = [Words.sample(rng) for _ in range(200)]
    assert {w.verb for w in sampled} == set(VERBS) and {w.noun for w in sampled} == set(NOUNS)
    assert {w.adjective for w in sampled} == set(ADJECTIVES) and {w.quantifier for w in sampled} == set(QUANTIFIERS)


def test_reprogram_rejects_multichannel_audio():
    with pytest.raises(ValueError, match=re.escape("1-D mono waveform")):
        reprogram(np.zeros((2, 5)), "x", [], np.random.default_rng(0))
