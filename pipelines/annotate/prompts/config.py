"""Settings of the pseudo-prompt texts, the CLAP selection and the captioning expert
(`annotate.prompts`, `annotate.selection`, `annotate.captioning`); torch-free, so loading
datasets.yaml never imports a model library."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipelines.core.config import StrictModel


class PromptConfig(StrictModel):
    mask_token: str = Field("[MASK]", min_length=1)  # must be the text encoder's own mask token
    mask_counts: list[int] = [1, 2]  # Diffsound (§IV-C): m ∈ {1, 2} masks per gap
    source_text_max_chars: int = Field(200, ge=20, le=10_000)

    @field_validator("mask_counts")
    @classmethod
    def _counts(cls, counts: list[int]) -> list[int]:
        if not counts or any(not 1 <= count <= 8 for count in counts):
            raise ValueError(f"mask_counts must be a non-empty list of integers from 1 to 8, got {counts}")
        return counts


class SelectionConfig(StrictModel):
    # CLAP cosine; candidates below it are not selected (Make-An-Audio §3.2.1: "we include
    # a threshold to select faithful results"). Not bounded to [-1, 1]: above 1 forces the fallback.
    threshold: float = Field(0.0, allow_inf_nan=False)
    above_label_text: bool = False  # also require a score ≥ the label text's (AudioSetCaps' rule)
    fallback: Literal["label_text", "mbtg", "drop"] = "label_text"
    # Make-An-Audio §3.2.1 distils captions for label-only and unlabelled audio: a clip with a human caption
    # keeps it (its best-scoring one), whatever the experts propose. False: humans compete with the experts.
    keep_human: bool = True


class CaptionBatch(StrictModel):
    """Clips per generate() call (Beam's BatchElements bounds)."""

    min: int = Field(1, ge=1)
    max: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> CaptionBatch:
        if self.max < self.min:
            raise ValueError(f"batch.max ({self.max}) must be at least batch.min ({self.min})")
        return self


class CaptioningConfig(StrictModel):
    model: str  # a local folder (relative to the config file) or a model id in the local HF cache
    candidates: int = Field(3, ge=1)  # captions per clip (num_return_sequences)
    num_beams: int = Field(3, ge=1)  # beam search width; unused when do_sample
    do_sample: bool = False
    top_p: float = Field(0.9, gt=0, le=1)
    temperature: float = Field(1.0, gt=0)
    max_new_tokens: int = Field(30, ge=1)
    seed: int = 0  # sampling seed, combined with each clip's key
    batch: CaptionBatch = CaptionBatch()
    # Whisper only: the language token of a multilingual checkpoint ("en" when unset).
    language: str | None = None
    # Text forced after the decoder's start tokens and cut from the captions: the style prompt of
    # captioning fine-tunes such as MU-NLPC/whisper-*-audio-captioning ("clotho > caption:").
    decoder_prefix: str = ""

    @field_validator("model")
    @classmethod
    def _local_or_id(cls, value: str, info: ValidationInfo) -> str:
        """A folder path (absolute against the config's folder), or an id in the local HF cache
        when it has an id's shape and no such folder exists: the same rule as the encoders'."""
        from pipelines.annotate.encoders.config import model_reference

        if not value.strip():
            raise ValueError("model is empty; give a folder or a model id in the local Hugging Face cache")
        return model_reference(value, info)

    @model_validator(mode="after")
    def _enough_beams(self) -> CaptioningConfig:
        if not self.do_sample and self.num_beams < self.candidates:
            raise ValueError(
                f"num_beams ({self.num_beams}) must be at least candidates ({self.candidates}) for beam "
                "search; raise num_beams or set do_sample: true"
            )
        return self
