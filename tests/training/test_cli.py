"""The trainer's commands on inputs a user gets wrong: one line and an exit status, never a
traceback, and never after the whole schedule has trained (docs/reliability.md, issue 14 items 12, 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from train_corpus import build_train_corpus
from train_shards import write_split
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.core.config import ConfigError
from training.cli import loader_message
from training.config import load_config
from training.tasks import vae as train_vae

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def vae_config(root: Path, shards: Path, **data) -> Path:
    config = {
        "run": str(root / "run"),
        "device": "cpu",
        "data": {"shards": str(shards), "profile": "audioldm", "crop_frames": 16, "batch_size": 2, **data},
        "vae": {
            "block_out_channels": [8, 16],
            "layers_per_block": 1,
            "latent_channels": 4,
            "norm_num_groups": 4,
            "loss": {"adversarial_start": 100, "discriminator_channels": 4, "discriminator_layers": 1},
            "train": {"steps": 5, "ema_decay": 0.0, "checkpoint_every": 1, "log_every": 1},
        },
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_train_vae_without_a_valid_split_stops_before_the_first_step(tmp_path):
    """Item 14: the validation split is checked before any step (it used to fail after the last)."""
    shards = build_train_corpus(tmp_path / "shards", splits={"train": (2, 4)})
    config = vae_config(tmp_path, shards)
    with pytest.raises(ConfigError, match="validates on data.valid_split: it reads split 'valid'"):
        train_vae.train(load_config(config))
    assert not (tmp_path / "run").exists()  # no step, no checkpoint, no log
    done = CliRunner().invoke(app, ["train", "vae", "--config", str(config)])
    assert done.exit_code == 2 and "split 'valid'" in done.output and "Traceback" not in done.output


def test_the_loaders_error_rate_stop_is_one_line(tmp_path):
    """Item 12: too many broken samples stop training with the loader's sentence, exit 2, no
    traceback, also when a DataLoader worker raised it (torch pastes the worker's traceback in)."""
    root = write_split(tmp_path / "shards", shards=2, per_shard=6, corrupt={0: "garbage"})
    write_split(root, "valid", shards=1, per_shard=2)
    config = vae_config(tmp_path, root, workers=1, shard_shuffle=False, min_samples_for_rate=4)
    done = CliRunner().invoke(app, ["train", "vae", "--config", str(config)])
    assert done.exit_code == 2, done.output
    assert "samples skipped" in done.output and "t2a inspect" in done.output
    assert "Traceback" not in done.output and "Original" not in done.output


def test_a_workers_pasted_traceback_is_cut_to_the_loaders_sentence():
    pasted = (
        "Caught LoaderError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\ntraining.data.stream.LoaderError: slot 0: 6 of 6 samples skipped'
    )
    assert loader_message(RuntimeError(pasted)) == "slot 0: 6 of 6 samples skipped"
    assert loader_message(RuntimeError("slot 1: 3 of 4 samples skipped")) == "slot 1: 3 of 4 samples skipped"


def test_sample_eta_with_another_sampler_is_one_line(tmp_path):
    """DDIM η is for the ddim sampler only: asked with another, one line before any model loads."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_index.json").write_text("{}")
    common = ["sample", "--checkpoint", str(tmp_path / "model"), "--device", "cpu", "a dog barks"]
    done = CliRunner().invoke(app, [*common, "--sampler", "ddpm", "--eta", "0.5"])
    assert done.exit_code == 2 and "eta (DDIM η) is for sampler ddim only" in done.output
    assert "Traceback" not in done.output
    done = CliRunner().invoke(app, [*common, "--eta", "-1"])
    assert done.exit_code == 2 and "must be a number >= 0" in done.output
