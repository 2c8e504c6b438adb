"""What sampling needs of a trained model, in one object: `Bundle`, and the `Conditioner` protocol.

training/models/pipeline.py saves and loads bundles (a diffusers pipeline folder); training/sample/generate.py
generates from one. A conditioner turns the training batch or the user's prompts into the UNet's
conditioning, so the three modes (training/models/conditioning.py) share one sampler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


class Conditioner(Protocol):
    name: str  # the registry name: clap-audio, clap-text, clip-image
    kind: str  # "class": a global vector through the UNet's class embedding (FiLM); "cross": token states

    def from_batch(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> torch.Tensor:
        """The training condition of a collated batch (embeddings from the shards, or encoded captions);
        `generator` draws what the mode draws per step (clip-image's random frame, CLIPSonic §2)."""

    def from_prompts(self, prompts: list[str]) -> torch.Tensor:
        """The sampling condition of text prompts."""

    def null(self, batch_size: int) -> torch.Tensor:
        """The unconditional condition (classifier-free guidance), batch_size rows."""

    def unet_kwargs(self, condition: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Keyword arguments of UNet2DConditionModel.forward carrying the condition."""

    def to(self, device: torch.device | str) -> Conditioner: ...


@dataclass
class Bundle:
    vae: Any  # diffusers.AutoencoderKL (1-channel mel in, scaling_factor in its config)
    unet: Any  # diffusers.UNet2DConditionModel
    scheduler_config: dict[str, Any]  # the DDPMScheduler config the UNet was trained with
    conditioner: Conditioner
    profile: str  # mel profile name (pipelines.core.features), e.g. "audioldm"
    vocoder: Any | None = None  # transformers.SpeechT5HifiGan, None: Griffin-Lim
    frames: int | None = None  # the training window in mel frames (the default sample length)
    info: dict[str, Any] = field(default_factory=dict)  # training provenance (t2a.json)
