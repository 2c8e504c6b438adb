"""Diffusion directly on mel spectrograms (CLIPSonic §3), through the same sampler as the latent models.

CLIPSonic diffuses 64 × 64 mel crops (16 kHz, hop 512, 64 bands: the `clipsonic` profile, 2-s windows)
with no autoencoder. `MelSpace` stands where the VAE stands in a latent bundle: an identity "autoencoder"
with one channel and r = 1 whose only job is the normalisation z = (mel − shift_factor) · scaling_factor,
so that training/sample/generate.py (guidance, style transfer, inpainting, super-resolution) runs
unchanged: it divides by scaling_factor and adds shift_factor as it does for a VAE latent.

The shift and scale are the mean and 1/std of the training mels, measured once on the validation split
(as the VAE's scaling_factor is calibrated, Rombach et al. 2022 §4.3.2): the paper does not say how its
mels are scaled for the ADM UNet (its code, guided-diffusion, assumes data near [-1, 1]); our choice.
Saved as vae/ (config.json and an empty weight file) in the model folder; load_bundle reads it by class.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor

CLASS_NAME = "MelSpace"


@dataclass
class _Point:
    """A posterior that is one point: what `encode(...).latent_dist` gives for a mel."""

    mean: Tensor

    @property
    def parameters(self) -> Tensor:  # (mean, logvar) as latent shards store them: logvar −30, DiagonalGaussian's floor
        return torch.cat([self.mean, torch.full_like(self.mean, -30.0)], dim=1)

    def sample(self, generator=None) -> Tensor:
        return self.mean


@dataclass
class _Encoded:
    latent_dist: _Point


@dataclass
class _Decoded:
    sample: Tensor


class MelSpace(ModelMixin, ConfigMixin):
    """The identity map mel [B, 1, T, M] ↔ z [B, 1, T, M]; `config` carries the normalisation and r = 1."""

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        shift_factor: float = 0.0,
        scaling_factor: float = 1.0,
        latent_channels: int = 1,
        block_out_channels: tuple[int, ...] = (1,),  # one level: r = 2^0 (training.models.vae.compression)
        in_channels: int = 1,
        out_channels: int = 1,
    ):
        super().__init__()
        self.register_buffer("anchor", torch.zeros(1))  # gives the module a device and a dtype

    def encode(self, mel: Tensor) -> _Encoded:
        return _Encoded(_Point(mel))

    def decode(self, z: Tensor) -> _Decoded:
        return _Decoded(z)

    def normalise(self, mel: Tensor) -> Tensor:
        return (mel.float() - self.config.shift_factor) * self.config.scaling_factor


def calibrated(mels: list[Tensor]) -> MelSpace:
    """A MelSpace whose z has zero mean and unit variance over `mels` (any shapes)."""
    values = torch.cat([m.float().flatten() for m in mels])
    if values.numel() < 2:
        raise ValueError("mel-space diffusion calibrates its scale on the validation mels: found none")
    std = float(values.std())
    return MelSpace(shift_factor=float(values.mean()), scaling_factor=1.0 / max(std, 1e-6))


def is_mel_space(folder: Path) -> bool:
    import json

    config = Path(folder) / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("_class_name") == CLASS_NAME
