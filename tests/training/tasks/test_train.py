"""The trainer end to end on a tiny corpus: train vae → encode-latents → train ldm → sample, resume, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_training import tiny_run_config as tiny_config
from train_corpus import build_train_corpus

from demo.models import build_clap
from pipelines.shard import contract
from pipelines.shard.reader import iter_members
from training.config import load_config
from training.loop import read_metrics
from training.tasks import encode_latents
from training.tasks import ldm as train_ldm
from training.tasks import vae as train_vae
from training.tasks import vocoder as train_vocoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    return build_train_corpus(root / "shards"), build_clap(root / "clap")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus) -> Path:
    """One full run: VAE, latents, LDM; returns its config path."""
    root = tmp_path_factory.mktemp("run")
    path = tiny_config(root, *corpus)
    config = load_config(path)
    train_vae.train(config)
    encode_latents.encode(config)
    train_ldm.train(config)
    return path


def losses(folder: Path, key: str = "loss") -> list[tuple[int, float]]:
    return [(m["step"], m[key]) for m in read_metrics(folder) if key in m]


def test_vae_is_saved_with_a_calibrated_scaling_factor_and_its_loss_falls(trained):
    config = load_config(trained)
    saved = json.loads((config.vae_dir / "model" / "config.json").read_text())
    assert saved["in_channels"] == 1 and saved["latent_channels"] == 8
    assert saved["scaling_factor"] != 1.0 and np.isfinite(saved["scaling_factor"])
    rec = [v for _, v in losses(config.vae_dir, "rec")]
    assert len(rec) == 30 and np.mean(rec[-5:]) < 0.7 * np.mean(rec[:5])
    assert any("valid_l1" in m for m in read_metrics(config.vae_dir))
    assert list((config.vae_dir / "logs").glob("events.out.tfevents.*"))


def test_latent_shards_are_keyed_by_the_vae_and_hold_the_posterior(trained):
    config = load_config(trained)
    location = encode_latents.latents_location(config)
    assert location.parent == config.latents_dir and (location / "index.json").is_file()
    info = json.loads((location / "latents.json").read_text())
    assert info["vae_sha256"].startswith(location.name)
    shards = sorted((location / "train").glob("*.tar"))
    assert len(shards) == 4
    key, members = next(iter_members(shards[0]))
    assert sorted(members) == ["clap_audio.npy", "json", "latent.npy"]
    latent = contract.decode_npy(members["latent.npy"])
    assert latent.dtype == np.float16 and latent.shape == (16, 32 // 4, 64 // 4)  # [2C, T/r, M/r]
    before = {p: p.stat().st_mtime_ns for p in shards}
    encode_latents.encode(config)  # a re-run skips shards that are done
    assert {p: p.stat().st_mtime_ns for p in shards} == before


def test_ldm_loss_falls_and_the_model_loads_in_audioldm_pipeline(trained):
    from diffusers import AudioLDMPipeline

    config = load_config(trained)
    loss = [v for _, v in losses(config.ldm_dir)]
    assert len(loss) == 12 and all(np.isfinite(loss))
    logged = {k for m in read_metrics(config.ldm_dir) for k in m}
    assert {"samples_per_s", "data_wait", "lr", "valid_loss"} <= logged
    pipe = AudioLDMPipeline.from_pretrained(config.ldm_dir / "model")
    audio = pipe(
        "a dog barks", num_inference_steps=2, audio_length_in_s=0.32, generator=torch.Generator().manual_seed(0)
    ).audios
    assert audio.shape[0] == 1 and audio.shape[-1] >= 0.32 * 16000 * 0.9


def test_sample_writes_wavs_and_pngs_deterministically(trained, tmp_path):
    from training.cli import model_folder
    from training.sample.generate import Request, run

    config = load_config(trained)
    request = Request(prompts=["a dog barks"], steps=3, guidance=2.0, seed=5)
    first = run(model_folder(config.ldm_dir), request, tmp_path / "a")
    second = run(model_folder(config.ldm_dir), request, tmp_path / "b")
    wavs = sorted(p for p in first if p.suffix == ".wav")
    assert wavs and {p.suffix for p in first} >= {".png", ".wav"}
    a, rate = sf.read(wavs[0])
    b, _ = sf.read(sorted(p for p in second if p.suffix == ".wav")[0])
    assert rate == 16000 and np.array_equal(a, b)


def test_a_killed_run_resumes_with_the_same_losses(corpus, trained, tmp_path, monkeypatch):
    """Kill the LDM run at step 8 (checkpoints every 3), resume: steps 7-12 equal the uninterrupted run's."""
    import training.models.ldm as ldm

    reference = losses(load_config(trained).ldm_dir)
    path = tiny_config(tmp_path, *corpus)
    config = load_config(path)
    (config.run).mkdir(parents=True)
    for name in ("vae", "latents"):  # the same VAE and latents as the reference run
        os.symlink(load_config(trained).run / name, config.run / name)
    real, calls = ldm.diffusion_loss, []

    def dies_at_step_8(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ldm, "diffusion_loss", dies_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        train_ldm.train(config)
    monkeypatch.setattr(ldm, "diffusion_loss", real)
    assert json.loads((config.ldm_dir / "checkpoints" / "latest.json").read_text())["step"] == 6
    train_ldm.train(config)
    resumed = [(s, v) for s, v in losses(config.ldm_dir) if s > 6]
    assert resumed == [(s, v) for s, v in reference if s > 6]


def test_a_vocoder_trains_on_the_corpus_audio_and_is_used_for_sampling(corpus, trained, tmp_path):
    from training.cli import model_folder
    from training.models.vocoder import load_vocoder
    from training.sample.generate import Request, run

    config = load_config(tiny_config(tmp_path, *corpus))
    saved = train_vocoder.train(config)
    mel_loss = [v for _, v in losses(config.vocoder_dir, "g_mel")]
    assert len(mel_loss) == 12 and np.mean(mel_loss[-3:]) < np.mean(mel_loss[:3])
    vocoder = load_vocoder(saved)
    assert vocoder(torch.zeros(1, 10, 64)).shape == (1, 10 * 160)  # AudioLDM's hop: upsampling 5·4·2·2·2
    written = run(
        model_folder(load_config(trained).ldm_dir),
        Request(prompts=["a dog barks"], steps=2),
        tmp_path / "out",
        vocoder=saved,
    )
    assert any(p.suffix == ".wav" for p in written)


def test_two_ranks_train_with_ddp_and_resume(corpus, trained, tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank streams its own shards; a checkpoint holds both ranks' states."""
    import subprocess
    import sys

    config = load_config(tiny_config(tmp_path, *corpus, **{"ldm.train.steps": 4, "ldm.train.checkpoint_every": 2}))
    config.run.mkdir(parents=True)
    for name in ("vae", "latents"):
        os.symlink(load_config(trained).run / name, config.run / name)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "training.tasks.ldm",
        "--config",
        str(tmp_path / "config.yaml"),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(config.ldm_dir / "checkpoints" / "step-000004.pt", weights_only=True)
    assert state["step"] == 4 and len(state["rank_states"]) == 2
    assert [s for s, _ in losses(config.ldm_dir)] == [1, 2, 3, 4]
    more = tiny_config(tmp_path, *corpus, **{"ldm.train.steps": 6, "ldm.train.checkpoint_every": 2})
    again = subprocess.run(
        command[:-1] + [str(more)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert again.returncode == 0 and "resumed from" in again.stderr
    assert [s for s, _ in losses(config.ldm_dir)] == [1, 2, 3, 4, 5, 6]


def test_cli_commands(trained, tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["train", "--help"])
    assert listed.exit_code == 0 and all(name in listed.output for name in ("vae", "ldm", "vocoder"))
    done = runner.invoke(
        app,
        [
            "sample",
            "--config",
            str(trained),
            "--steps",
            "2",
            "--out",
            str(tmp_path / "s"),
            "--device",
            "cpu",
            "a bell rings",
        ],
    )
    assert done.exit_code == 0, done.output
    assert len(list((tmp_path / "s").glob("*.wav"))) == 1 and (tmp_path / "s" / "samples.json").is_file()
    missing = runner.invoke(app, ["train", "ldm", "--config", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "cannot read" in missing.output and "nope.yaml" in missing.output


def test_ldm_latent_crops_stay_in_real_audio(trained):
    """The latent example gets the mel profile, so its crops never start in a short clip's padding
    (crop bounds themselves: tests/training/data/test_loader.py)."""
    from training.tasks.ldm import _data

    config = load_config(trained)
    data, example = _data(config, 4, config.data.crop_frames, encode_latents.latents_location)
    assert example.profile == config.data.profile and data.shards == str(encode_latents.latents_location(config))


def test_the_same_config_and_seed_give_the_same_ldm_losses(corpus, trained, tmp_path):
    """Two LDM runs from the same VAE, latents, config and seed: every logged loss is bitwise equal."""
    reference = losses(load_config(trained).ldm_dir)
    config = load_config(tiny_config(tmp_path, *corpus))
    config.run.mkdir(parents=True)
    for name in ("vae", "latents"):
        os.symlink(load_config(trained).run / name, config.run / name)
    train_ldm.train(config)
    assert len(reference) == 12 and losses(config.ldm_dir) == reference
