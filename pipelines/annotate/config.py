"""The `annotate:` block of a corpus in datasets.yaml (docs/annotate.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipelines.annotate.encoders.config import ClapConfig, ClipConfig
from pipelines.annotate.prompts.config import CaptioningConfig, PromptConfig, SelectionConfig
from pipelines.annotate.prompts.retrieval import RetrievalConfig
from pipelines.core.config import StrictModel


class AnnotateConfig(StrictModel):
    """The annotate stage (pipelines/annotate/job.py, docs/annotate.md)."""

    device: Literal["cpu", "cuda"] = "cpu"  # explicit, never guessed; `t2a annotate --device` overrides it
    clap: ClapConfig  # audio embeddings, and the scores that select captions
    clip: ClipConfig | None = None  # CLIP frame embeddings; left out: no `clip_image` embedding
    prompts: PromptConfig = PromptConfig()
    captioning: CaptioningConfig | None = None  # the captioning expert; left out: no generated candidates
    retrieval: RetrievalConfig | None = RetrievalConfig()  # the retrieval expert; null turns it off
    selection: SelectionConfig = SelectionConfig()
    silence_db: float = Field(-60.0, le=0)  # a clip whose peak is below this (dBFS) is a failure, not an embedding
