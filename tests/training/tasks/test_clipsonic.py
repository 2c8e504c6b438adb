"""CLIPSonic end to end on a tiny corpus: the presets (mel-domain and latent) train on clips whose CLIP
frame embeddings condition them (one random frame per step), and sample through `t2a sample`'s path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_training import build_tiny_clip
from train_corpus import build_train_corpus

from training.config import load_config
from training.loop import read_metrics
from training.tasks import encode_latents
from training.tasks import ldm as train_ldm
from training.tasks import vae as train_vae

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CONFIGS = Path(__file__).resolve().parents[3] / "training" / "configs"
TINY_UNET = {"block_out_channels": [16, 32], "layers_per_block": 1, "attention_head_dim": 4, "norm_num_groups": 8}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clipsonic")
    shards = build_train_corpus(
        root / "shards", frames=80, profile="clipsonic", clip_frames=3, splits={"train": (2, 6), "valid": (1, 4)}
    )
    return shards, build_tiny_clip(tmp_path_factory.getbasetemp())


def preset(name: str, root: Path, corpus: tuple[Path, Path], steps: int) -> Path:
    """training/configs/<name>.yaml with every paper value kept, on a tiny model, corpus and schedule."""
    raw = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    shards, clip = corpus
    raw.update(run=str(root / "run"), device="cpu")
    raw["data"].update(shards=str(shards), batch_size=4, workers=0, shuffle_buffer=8)
    ldm = raw["ldm"]
    ldm.update(encoders={"clip": str(clip)}, unet=TINY_UNET)
    ldm["train"].update(steps=steps, checkpoint_every=steps, log_every=1, ema_decay=0.9)
    if "vae" in raw:
        raw["vae"].update(block_out_channels=[8, 16, 16], layers_per_block=1, latent_channels=4, norm_num_groups=4)
        raw["vae"]["train"].update(steps=2, checkpoint_every=2, log_every=1, ema_decay=0.0)
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_presets_keep_the_papers_values():
    for name, space in (("clipsonic", "latent"), ("clipsonic-mel", "mel")):
        config = load_config(CONFIGS / f"{name}.yaml")
        ldm = config.ldm
        assert (config.data.profile, config.data.crop_frames, config.data.batch_size) == ("clipsonic", 64, 32)
        assert (ldm.space, ldm.conditioning, ldm.clip_frames, ldm.cfg_dropout) == (space, "clip-image", "random", 0.1)
        assert (ldm.scheduler.num_train_timesteps, ldm.scheduler.beta_schedule) == (4000, "squaredcos_cap_v2")
        assert (ldm.train.optim.lr, config.sample.steps, config.sample.guidance) == (1e-4, 1000, 1.5)


def test_mel_space_preset_trains_on_64x64_mels_and_samples_deterministically(corpus, tmp_path):
    from training.models.melspace import MelSpace
    from training.models.pipeline import load_bundle
    from training.sample.generate import Request, generate

    config = load_config(preset("clipsonic-mel", tmp_path, corpus, steps=6))
    model = train_ldm.train(config)
    loss = [m["loss"] for m in read_metrics(config.ldm_dir) if "loss" in m]
    assert len(loss) == 6 and all(np.isfinite(loss))
    bundle = load_bundle(model)
    assert isinstance(bundle.vae, MelSpace) and bundle.frames == 64
    assert bundle.unet.config.in_channels == 1 and bundle.unet.config.sample_size == 64
    assert -5.5 < bundle.vae.config.shift_factor < -4.5  # the corpus mels sit around -5 (calibrated mean)
    assert not (model / "model_index.json").exists()  # not an AudioLDMPipeline: there is no VAE
    request = Request(prompts=["a photo of a dog", "a photo of rain"], steps=3, guidance=1.5, sampler="ddpm", seed=3)
    mels, waves = generate(bundle, request)
    again, _ = generate(bundle, request)
    assert mels.shape == (2, 64, 64) and waves.shape == (2, 64 * 512)
    assert torch.equal(mels, again) and torch.isfinite(mels).all()


def test_latent_preset_trains_one_step(corpus, tmp_path):
    config = load_config(preset("clipsonic", tmp_path, corpus, steps=1))
    train_vae.train(config)
    encode_latents.encode(config)
    model = train_ldm.train(config)
    assert (model / "unet" / "config.json").is_file()
    assert [m["step"] for m in read_metrics(config.ldm_dir) if "loss" in m] == [1]
