"""Pseudo-prompt texts (label text, MBTG, cleaned source text), CLAP caption selection, and the
trainer's online augmentations (dynamic reprogramming, mixup; the single-then-multi-event curriculum
is the loader's `training.data.examples.CurriculumFilter`).
Pure functions: randomness comes only from their `rng`, `key` or `seed` arguments."""

from pipelines.annotate.prompts.config import PromptConfig, SelectionConfig
from pipelines.annotate.prompts.labels import label_text, photo_prompt, sound_prompt
from pipelines.annotate.prompts.mbtg import mbtg_text
from pipelines.annotate.prompts.mixup import mixup
from pipelines.annotate.prompts.reprogram import (
    ADJECTIVES,
    NOUNS,
    QUANTIFIERS,
    TEMPLATES,
    VERBS,
    Event,
    Template,
    Words,
    apply_template,
    render,
    reprogram,
)
from pipelines.annotate.prompts.select import EXPERTS, Candidate, Selection, select_caption
from pipelines.annotate.prompts.source_text import clean_source_text

__all__ = [
    "ADJECTIVES",
    "EXPERTS",
    "NOUNS",
    "QUANTIFIERS",
    "TEMPLATES",
    "VERBS",
    "Candidate",
    "Event",
    "PromptConfig",
    "Selection",
    "SelectionConfig",
    "Template",
    "Words",
    "apply_template",
    "clean_source_text",
    "label_text",
    "mbtg_text",
    "mixup",
    "photo_prompt",
    "render",
    "reprogram",
    "select_caption",
    "sound_prompt",
]
