"""Tiny trainer models for tests: configs that build in milliseconds, and tiny real CLAP / CLIP folders.

    vae = build_vae(tiny_vae_config())                              # r = 2, C = 4
    clap = build_tiny_clap(tmp_path_factory.getbasetemp())          # built once per session folder
    ldm = tiny_ldm_config("clap-audio", clap=clap)
    conditioner = build_conditioner(ldm); unet = build_unet(ldm, conditioner, 4, (16, 32))

The mels are the audioldm profile's 64 bins; 16 or 32 frames keep every forward pass a few milliseconds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import yaml

from demo.models import build_clap, build_clip
from training.config import EncodersConfig, LdmConfig, SchedulerConfig, UnetConfig, VaeConfig, VaeLossConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_MELS = 64  # the audioldm profile
LATENT_CHANNELS = 4


def tiny_vae_config(*, levels: int = 2, adversarial_start: int = 0, **overrides) -> VaeConfig:
    """block_out_channels [8, 16] (r = 2) or [8, 16, 16] (levels=3, r = 4), C = 4, 4 groups, 1 layer per block."""
    widths = [8, 16, 16, 16][:levels]
    loss = VaeLossConfig(adversarial_start=adversarial_start, discriminator_channels=8, discriminator_layers=2)
    values = dict(
        block_out_channels=widths, layers_per_block=1, latent_channels=LATENT_CHANNELS, norm_num_groups=4, loss=loss
    )
    return VaeConfig(**{**values, **overrides})


def tiny_ldm_config(conditioning: str, *, clap: Path | None = None, clip: Path | None = None, **overrides) -> LdmConfig:
    """A 2-level UNet [8, 16] (4 groups, 2 heads), the default AudioLDM forward process, for `conditioning`."""
    unet = UnetConfig(block_out_channels=[8, 16], layers_per_block=1, attention_head_dim=2, norm_num_groups=4)
    encoders = EncodersConfig(clap=str(clap) if clap else None, clip=str(clip) if clip else None)
    values = dict(conditioning=conditioning, encoders=encoders, unet=unet, scheduler=SchedulerConfig())
    return LdmConfig(**{**values, **overrides})


def build_tiny_clap(folder: Path) -> Path:
    """folder/tiny-clap: a random transformers ClapModel (projection 32, text hidden 32) + RobertaTokenizer.
    Reused when already there, so a session-wide folder builds it once (~1 s)."""
    target = Path(folder) / "tiny-clap"
    if not (target / "model.safetensors").is_file():
        build_clap(target)
    return target


def build_tiny_clip(folder: Path) -> Path:
    """folder/tiny-clip: a random transformers CLIPModel (projection 32) + CLIPTokenizer; reused when there."""
    target = Path(folder) / "tiny-clip"
    if not (target / "model.safetensors").is_file():
        build_clip(target)
    return target


def smooth_mels(batch: int, frames: int, *, seed: int = 0, n_mels: int = N_MELS) -> torch.Tensor:
    """[batch, 1, frames, n_mels] log-mel-like patterns (a few low-frequency waves around -5): learnable fast."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, frames)[:, None]
    f = torch.linspace(0, 1, n_mels)[None, :]
    mels = []
    for _ in range(batch):
        a, b, phase, amplitude = torch.rand(4, generator=generator) * torch.tensor(
            [2.5, 2.5, 2 * math.pi, 1.0]
        ) + torch.tensor([0.5, 0.5, 0.0, 0.5])
        mels.append(-5 + amplitude * torch.sin(2 * math.pi * (a * f + b * t) + phase))
    return torch.stack(mels)[:, None]


def tiny_run_config(root: Path, corpus: Path, clap_folder: Path, **overrides) -> Path:
    """root/config.yaml: a whole tiny run (VAE, LDM on clap-audio, vocoder, sampling) on `corpus`
    (tests/support/train_corpus.py) with the CLAP `clap_folder`; overrides by dotted key path ("ldm.train.steps": 4)."""
    config = {
        "run": str(root / "run"),
        "seed": 0,
        "device": "cpu",
        "data": {"shards": str(corpus), "profile": "audioldm", "crop_frames": 16, "batch_size": 4, "shuffle_buffer": 8},
        "vae": {
            "block_out_channels": [8, 16, 16],
            "layers_per_block": 1,
            "latent_channels": 8,
            "norm_num_groups": 4,
            "loss": {"adversarial_start": 10, "discriminator_channels": 8, "discriminator_layers": 2},
            "train": {"steps": 30, "optim": {"lr": 3e-3}, "ema_decay": 0.0, "checkpoint_every": 10, "log_every": 1},
        },
        "ldm": {
            "conditioning": "clap-audio",
            "encoders": {"clap": str(clap_folder)},
            "unet": {
                "block_out_channels": [16, 32],
                "layers_per_block": 1,
                "attention_head_dim": 8,
                "norm_num_groups": 8,
            },
            "train": {"steps": 12, "optim": {"lr": 1e-3}, "ema_decay": 0.9, "checkpoint_every": 3, "log_every": 1},
        },
        "vocoder": {
            "channels": 32,
            "segment_frames": 16,
            "loss": {"discriminator_channels": 4},
            "train": {"steps": 12, "optim": {"lr": 2e-3}, "ema_decay": 0.0, "checkpoint_every": 6, "log_every": 1},
        },
        "sample": {"prompts": ["a dog barks", "rain falls"], "steps": 4, "guidance": 2.0},
    }
    for path, value in overrides.items():
        node = config
        *parents, last = path.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    out = root / "config.yaml"
    out.write_text(yaml.safe_dump(config))
    return out
