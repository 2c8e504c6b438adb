"""Typed settings of the CLAP and CLIP encoders (the `annotate.clap` and `annotate.clip` blocks).

Nothing here imports torch: `pipelines.datasets` validates these models for every command.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipelines.annotate.encoders.backends import CLAP_BACKENDS
from pipelines.core.config import InputDir, StrictModel, _resolve
from pipelines.core.registry import UnknownName

# "org/name" or "name": what a Hugging Face model id looks like. A value of this shape that is not
# an existing folder is looked up in the local Hugging Face cache; anything else is a path.
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
LAION_WINDOW_SECONDS = 10.0  # laion_clap hard-codes 480000 samples (hook.py get_audio_embedding_from_data)


class BatchSize(StrictModel):
    """Bounds for beam.BatchElements in front of a model (RunInference)."""

    min: int = Field(1, ge=1)
    max: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> BatchSize:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


def model_reference(value: str, info: ValidationInfo) -> str:
    """A folder path (made absolute against the config's folder) or, when it has the shape of a
    hub id and no such folder exists, the id as written."""
    path = Path(value).expanduser()
    resolved = _resolve(path, info)
    explicit = path.is_absolute() or value.startswith((".", "~"))
    if explicit or resolved.exists() or not _HUB_ID.fullmatch(value):
        return str(resolved)
    return value


class ClapConfig(StrictModel):
    """CLAP (audio and text embeddings in one space), from local files only."""

    backend: str = "transformers"  # a name in CLAP_BACKENDS
    # transformers: a folder with ClapModel + ClapProcessor files, or an id in the local HF cache;
    # laion_clap: a checkpoint file in LAION's original .pt layout.
    model: str
    text_model: InputDir | None = None  # laion_clap only: folder with roberta-base's config + tokenizer
    amodel: str = "HTSAT-tiny"  # laion_clap only: audio architecture (laion_clap's model_configs)
    enable_fusion: bool = False  # laion_clap only: the checkpoint's feature-fusion variant
    window_seconds: float = Field(10.0, gt=0, le=60)  # audio per embedding; longer clips → several windows
    batch: BatchSize = BatchSize()
    # Embed each element of a batch on its own: embeddings, scores and captions are then the same
    # bytes on every run (encoders.base.per_item). false: one forward pass per batch, faster on a
    # GPU, with embeddings that vary in the last bits with Beam's batching.
    batch_invariant: bool = True

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        try:
            CLAP_BACKENDS.get(value)
        except UnknownName as error:
            raise ValueError(str(error)) from None
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("backend") == "laion_clap":  # a checkpoint file: always a path
            return str(_resolve(Path(value), info))
        return model_reference(value, info)

    @model_validator(mode="after")
    def _backend_settings(self) -> ClapConfig:
        if self.backend == "laion_clap":
            if self.text_model is None:
                raise ValueError(
                    "backend laion_clap needs text_model: a local folder with roberta-base's config.json and "
                    "tokenizer files (laion_clap would otherwise fetch 'roberta-base' from the hub)"
                )
            if self.window_seconds != LAION_WINDOW_SECONDS:
                raise ValueError(
                    f"backend laion_clap takes {LAION_WINDOW_SECONDS:g}-s windows only; set window_seconds: 10"
                )
        else:
            # Compared with the defaults, not `model_fields_set`: a dumped and reloaded config stays valid.
            defaults = {"text_model": None, "amodel": "HTSAT-tiny", "enable_fusion": False}
            laion_only = [key for key, value in defaults.items() if getattr(self, key) != value]
            if laion_only:
                raise ValueError(f"{', '.join(laion_only)}: only used by backend laion_clap, not {self.backend}")
        return self


class ClipConfig(StrictModel):
    """CLIP (image and text embeddings), from local files only."""

    model: str  # a folder with CLIPModel + CLIPProcessor files, or an id in the local HF cache
    batch: BatchSize = BatchSize()
    batch_invariant: bool = True  # as ClapConfig.batch_invariant

    @field_validator("model")
    @classmethod
    def _model(cls, value: str, info: ValidationInfo) -> str:
        return model_reference(value, info)
