"""Make-An-Audio's dynamic reprogramming (§3.2.2, templates in Appendix F).

Online, each time a clip is drawn: N ∈ {0, 1, 2} events are sampled from a database of single-label
clips and concatenated with the clip "according to the template", whose text joins the clip's
caption X with the event's label &. Appendix F prints 12 templates (below, verbatim except the
extraction's italics), each with exactly one &; so N = 0 leaves the pair as it is and N = 2 applies
a template twice, the second around the first's result. What the paper does not print, and this
module decides:

- the audio order each template's words state: "X before …&", "after X, …&", "first is X second is
  …&" play X first; "after …&, X", "…&, then X", "X after …&" play the event first. "in front of"
  and "behind" are read as "before" and "after"; "…&, following X" is read as English does
  ("following" = after X), so X plays first;
- the printed template 2 ends with a comma ("X before v q a n of &,"), kept in the text and dropped
  when rendering, as is any trailing comma;
- X enters the sentence without its final full stop and with a lower-case first letter (unless it
  starts with an acronym); & is the event's label as it reads inside a sentence (labels.inline_name).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pipelines.annotate.prompts.labels import inline_name

# Appendix F's word sets: v, a, n and q
VERBS = ("hearing", "noticing", "listening to", "appearing")
ADJECTIVES = ("clear", "noisy", "close-up", "weird", "clean")
NOUNS = ("audio", "sound", "voice")
QUANTIFIERS = ("a", "the", "some")

_SLOT = re.compile(r"(?<![\w-])[vqanX](?![\w-])|&")


@dataclass(frozen=True)
class Template:
    text: str  # Appendix F's text: X the caption, & the event label, v q a n the words
    first: Literal["X", "&"]  # which audio plays first

    @property
    def events(self) -> int:
        return self.text.count("&")


TEMPLATES = (
    Template("before v q a n of &, X", "X"),
    Template("X before v q a n of &,", "X"),
    Template("in front of v q a n of &, X", "X"),
    Template("first is X second is q a n of &", "X"),
    Template("after X, v q a n of &", "X"),
    Template("after v q a n of &, X", "&"),
    Template("behind v q a n of &, X", "&"),
    Template("v q a n of &, then X", "&"),
    Template("v q a n of &, following X", "X"),
    Template("v q a n of &, later X", "&"),
    Template("X after v q a n of &", "&"),
    Template("before X, v q a n of &", "&"),
)


@dataclass(frozen=True)
class Words:
    verb: str
    quantifier: str
    adjective: str
    noun: str

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Words:
        return cls(*(str(words[rng.integers(len(words))]) for words in (VERBS, QUANTIFIERS, ADJECTIVES, NOUNS)))


@dataclass(frozen=True)
class Event:
    audio: np.ndarray  # a single-event clip from the database, mono, the clip's sample rate
    label: str


def render(template: Template, caption: str, event_labels: Sequence[str], words: Words) -> str:
    """The template's text with its slots filled; the same inputs always give the same text."""
    if len(event_labels) != template.events:
        raise ValueError(f"template {template.text!r} takes {template.events} event label(s), got {len(event_labels)}")
    labels = iter(event_labels)
    fill = {"v": words.verb, "q": words.quantifier, "a": words.adjective, "n": words.noun, "X": _inline(caption)}

    def slot(match: re.Match[str]) -> str:
        token = match.group(0)
        return inline_name(next(labels)) if token == "&" else fill[token]

    return _SLOT.sub(slot, template.text).rstrip(" ,")  # one pass: filled text is never re-read


def reprogram(
    audio: np.ndarray,
    caption: str,
    events: Sequence[Event],
    rng: np.random.Generator,
    counts: Sequence[int] = (0, 1, 2),
) -> tuple[np.ndarray, str]:
    """(waveform, caption) → a new pair with N ~ U(counts) sampled events (fewer if `events` has fewer)."""
    if not counts or min(counts) < 0:
        raise ValueError(f"reprogramming event counts must be non-negative integers, got {list(counts)}")
    audio = _mono(audio, "the clip")
    n = min(int(rng.choice(np.asarray(counts))), len(events))
    for index in rng.choice(len(events), size=n, replace=False) if n else ():
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        audio, caption = apply_template(template, audio, caption, events[int(index)], Words.sample(rng))
    return audio, caption


def apply_template(
    template: Template, audio: np.ndarray, caption: str, event: Event, words: Words
) -> tuple[np.ndarray, str]:
    """One reprogramming step: the event's audio joined to the clip's in the template's order."""
    other = _mono(event.audio, f"event {event.label!r}")
    audio = _mono(audio, "the clip")
    joined = np.concatenate([audio, other] if template.first == "X" else [other, audio])
    return joined, render(template, caption, [event.label], words)


def _inline(caption: str) -> str:
    caption = " ".join(caption.split()).rstrip(".")
    first = caption.split(" ", 1)[0]
    if not caption or (len(first) > 1 and first.isupper()) or re.match(r"I\b", caption):
        return caption  # an acronym, or the pronoun I
    return caption[0].lower() + caption[1:]


def _mono(audio: np.ndarray, what: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"{what}: reprogramming takes a 1-D mono waveform, got shape {audio.shape}")
    return audio
