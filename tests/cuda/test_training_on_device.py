"""The trainer's CUDA paths on a tiny corpus: bf16 train steps of the VAE, LDM, CLAP and vocoder; a
checkpoint with the CUDA RNG state, killed and resumed to the same losses; sampling (shapes, seeds)
and evaluation on the device. Skipped without a GPU; bench/gpu_check.sh runs them (tests/support/on_device.py)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from on_device import DEVICE, MARKS
from tiny_training import tiny_run_config
from train_corpus import build_train_corpus

from demo.models import build_clap
from training.config import load_config
from training.loop import read_metrics
from training.state import rank_state, restore_rank_state

pytestmark = MARKS
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BF16 = "bf16"
# A 128x128 HTSAT input instead of 256x256 (tests/training/tasks/test_clap.py): a few ms per CLAP step.
SMALL_CLAP = {
    "window_seconds": 0.25,
    "config": {"audio_config": {"spec_size": 128, "freq_ratio": 2, "window_size": 4}},
    "batch_size": 4,
    "train": {"steps": 4, "optim": {"lr": 1e-3}, "ema_decay": 0.0, "checkpoint_every": 2, "log_every": 1},
}


def device_config(root: Path, corpus: Path, clap: Path, **overrides) -> Path:
    """The tiny run on DEVICE, every model in bf16 autocast, a few steps each."""
    return tiny_run_config(
        root,
        corpus,
        clap,
        **{
            "device": DEVICE,
            "vae.train.steps": 4,
            "vae.train.checkpoint_every": 2,
            "vae.train.mixed_precision": BF16,
            "vae.loss.adversarial_start": 2,  # the discriminator's bf16 steps too
            "ldm.train.steps": 6,
            "ldm.train.checkpoint_every": 3,
            "ldm.train.mixed_precision": BF16,
            "vocoder.train.steps": 4,
            "vocoder.train.checkpoint_every": 2,
            "vocoder.train.mixed_precision": BF16,
            "clap": {**SMALL_CLAP, "train": {**SMALL_CLAP["train"], "mixed_precision": BF16}},
            **overrides,
        },
    )


def losses(folder: Path, key: str = "loss") -> list[tuple[int, float]]:
    return [(m["step"], m[key]) for m in read_metrics(folder) if key in m]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("corpus")
    return build_train_corpus(root / "shards"), build_clap(root / "clap")


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus) -> Path:
    """One tiny run on the device: VAE, latents, LDM, vocoder, CLAP; returns its config path."""
    from training.tasks import clap, encode_latents, ldm, vae, vocoder

    path = device_config(tmp_path_factory.mktemp("run"), *corpus)
    config = load_config(path)
    vae.train(config)
    encode_latents.encode(config)
    ldm.train(config)
    vocoder.train(config)
    clap.train(config)
    return path


@pytest.mark.parametrize(("model", "key"), [("vae", "rec"), ("ldm", "loss"), ("vocoder", "g_mel"), ("clap", "loss")])
def test_bf16_train_steps_give_finite_losses(run, model, key):
    config = load_config(run)
    folder = config.run / model
    logged = [v for _, v in losses(folder, key)]
    steps = getattr(config, model).train.steps
    assert len(logged) == steps and all(math.isfinite(v) for v in logged), logged
    assert math.isfinite(next(m for m in read_metrics(folder) if "grad_norm" in m)["grad_norm"])
    saved = json.loads(torch.load(folder / "checkpoints" / f"step-{steps:06d}.pt", weights_only=True)["config"])
    assert saved["device"] == DEVICE and saved[model]["train"]["mixed_precision"] == BF16


def test_the_checkpoint_holds_the_device_rng_state(run):
    state = torch.load(load_config(run).ldm_dir / "checkpoints" / "step-000006.pt", weights_only=True)
    (rank,) = state["rank_states"]
    assert ("cuda" in rank) == (DEVICE == "cuda")
    if DEVICE == "cuda":
        assert len(rank["cuda"]) == torch.cuda.device_count() and rank["cuda"][0].dtype == torch.uint8


def test_rank_state_restores_the_device_rng():
    generator = torch.Generator().manual_seed(3)
    saved = rank_state(generator, {"epoch": 1})
    first = torch.randn(64, device=DEVICE), torch.randn(4, generator=generator)
    assert restore_rank_state(saved, generator) == {"epoch": 1}
    again = torch.randn(64, device=DEVICE), torch.randn(4, generator=generator)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def test_a_killed_run_resumes_on_the_device_with_the_same_losses(corpus, run, tmp_path, monkeypatch):
    """The LDM killed at step 5 (checkpoints every 3) and resumed: steps 4-6 equal the uninterrupted run's
    (to bf16 kernel rounding: another batch, timestep or noise would move them by far more)."""
    import training.models.ldm as ldm_model
    from training.tasks import ldm

    reference = losses(load_config(run).ldm_dir)
    config = load_config(device_config(tmp_path, *corpus))
    config.run.mkdir(parents=True)
    for name in ("vae", "latents"):  # the same VAE and latents as the reference run
        os.symlink(load_config(run).run / name, config.run / name)
    real, calls = ldm_model.diffusion_loss, []

    def dies_at_step_5(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ldm_model, "diffusion_loss", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        ldm.train(config)
    monkeypatch.setattr(ldm_model, "diffusion_loss", real)
    assert json.loads((config.ldm_dir / "checkpoints" / "latest.json").read_text())["step"] == 3
    ldm.train(config)
    resumed = losses(config.ldm_dir)
    assert [s for s, _ in resumed] == [s for s, _ in reference] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([v for _, v in resumed], [v for _, v in reference], rtol=1e-3)


@pytest.fixture(scope="module")
def samples(run, tmp_path_factory) -> Path:
    from training.cli import model_folder
    from training.sample.generate import Request
    from training.sample.generate import run as sample

    out = tmp_path_factory.mktemp("samples")
    request = Request(prompts=["a dog barks", "rain falls on a roof"], steps=4, seed=5)
    sample(model_folder(load_config(run).ldm_dir), request, out, device=DEVICE)
    return out


def test_sampling_on_the_device_has_the_cpu_shapes_and_is_seed_deterministic(run):
    from training.cli import model_folder
    from training.models.pipeline import load_bundle
    from training.sample.generate import Request, generate

    folder = model_folder(load_config(run).ldm_dir)
    request = Request(prompts=["a dog barks", "rain falls on a roof"], steps=4, seed=5)
    on_device = load_bundle(folder, DEVICE)
    mels, waves = generate(on_device, request, DEVICE)
    again, _ = generate(on_device, request, DEVICE)
    other, _ = generate(on_device, Request(prompts=request.prompts, steps=4, seed=6), DEVICE)
    cpu_mels, cpu_waves = generate(load_bundle(folder, "cpu"), request, "cpu")
    assert mels.shape == cpu_mels.shape and waves.shape == cpu_waves.shape
    assert torch.isfinite(mels).all() and torch.isfinite(waves).all()
    assert torch.equal(mels, again)
    assert not torch.equal(mels, other)


def test_evaluate_on_the_device_gives_the_cpu_figures(samples, corpus):
    from training.evaluate.run import evaluate

    shards, clap = corpus
    figures = {
        device: evaluate(samples, shards, None, clap_folder=clap, device=device, split="valid")["metrics"]
        for device in (DEVICE, "cpu")
    }
    assert figures[DEVICE].keys() == figures["cpu"].keys()
    for name, value in figures["cpu"].items():
        if isinstance(value, float):
            assert figures[DEVICE][name] == pytest.approx(value, rel=1e-3, abs=1e-4), name
    assert figures[DEVICE]["fd_clap"] is not None and math.isfinite(figures[DEVICE]["fd_clap"])
