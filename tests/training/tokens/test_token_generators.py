"""`t2a train ar|dd` on token shards, sampling through the codebook decoder, resume, CFG dropout, the presets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from tiny_tokens import tiny_tokens_config

from training.config import load_config
from training.loop import read_metrics
from training.tasks import ar as train_ar
from training.tasks import dd as train_dd
from training.tasks import encode_tokens
from training.tasks import vq as train_vq

TASKS = {"ar": train_ar, "dd": train_dd}


def metric(folder: Path, key: str) -> list[tuple[int, float]]:
    return [(m["step"], m[key]) for m in read_metrics(folder) if key in m]


@pytest.fixture(scope="module")
def generators(token_run) -> Path:
    config = load_config(token_run)
    train_ar.train(config)
    train_dd.train(config)
    return token_run


def test_the_ar_and_dd_losses_fall(generators):
    config = load_config(generators)
    ar = [v for _, v in metric(config.ar_dir, "loss")]
    assert len(ar) == 12 and np.mean(ar[-3:]) < 0.8 * np.mean(ar[:3])
    x0 = [v for _, v in metric(config.dd_dir, "loss_x0")]  # −log p(x0 | x_t): L_vlb's t-draw is noisier
    assert len(x0) == 12 and np.mean(x0[-3:]) < 0.8 * np.mean(x0[:3])
    assert (
        metric(config.dd_dir, "loss_vlb")
        and metric(config.dd_dir, "valid_loss")
        and metric(config.ar_dir, "valid_loss")
    )
    for kind in ("ar", "dd"):
        saved = json.loads((getattr(config, f"{kind}_dir") / "model" / "t2a.json").read_text())
        assert saved["kind"] == f"token-{kind}" and saved["grid"] == [8, 16] and saved["profile"] == "audioldm"


@pytest.mark.parametrize("kind", ["ar", "dd"])
def test_sampling_is_deterministic_by_seed_and_writes_what_evaluate_reads(generators, tmp_path, kind):
    from typer.testing import CliRunner

    from pipelines.cli import app

    config = load_config(generators)
    checkpoint = getattr(config, f"{kind}_dir")
    runner = CliRunner()
    outputs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        args = [
            "sample",
            "--checkpoint",
            str(checkpoint),
            "a dog barks",
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / name),
        ]
        result = runner.invoke(app, [*args, "--steps", "4", "--top-k", "8", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        outputs.append(json.loads((tmp_path / name / "samples.json").read_text()))
    a, b, c = outputs
    assert a["model"]["tokens"] == b["model"]["tokens"] != c["model"]["tokens"]
    wave_a, rate = sf.read(tmp_path / "a" / a["items"][0]["wav"])
    wave_b, _ = sf.read(tmp_path / "b" / b["items"][0]["wav"])
    assert rate == 16000 and np.array_equal(wave_a, wave_b) and len(wave_a) == 32 * 160  # 8 token rows · r = 4 frames
    assert a["items"][0]["prompt"] == "a dog barks" and a["request"]["top_k"] == 8
    if kind == "ar":
        assert max(a["model"]["tokens"][0]) < 32


@pytest.mark.parametrize("kind", ["ar", "dd"])
def test_a_killed_run_resumes_with_the_same_losses(generators, token_corpus, tmp_path, monkeypatch, kind):
    """Kill at step 8 (checkpoints every 3), resume: steps 7–12 equal the uninterrupted run's."""
    from training.models import token_ar, token_dd

    reference = metric(getattr(load_config(generators), f"{kind}_dir"), "loss")
    config = load_config(tiny_tokens_config(tmp_path, *token_corpus))
    config.run.mkdir(parents=True)
    for name in ("vq", "tokens"):  # the same codebook and token shards as the reference run
        os.symlink(load_config(generators).run / name, config.run / name)
    module, name = (token_ar, "ar_loss") if kind == "ar" else (token_dd, "dd_loss")
    real, calls = getattr(module, name), []

    def dies_at_step_8(*args, **kwargs):
        calls.append(1)
        if len(calls) == 8:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, dies_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        TASKS[kind].train(config)
    monkeypatch.setattr(module, name, real)
    out = getattr(config, f"{kind}_dir")
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["step"] == 6
    TASKS[kind].train(config)
    assert [(s, v) for s, v in metric(out, "loss") if s > 6] == [(s, v) for s, v in reference if s > 6]


def test_cfg_dropout_replaces_the_text_at_its_rate(generators):
    from training.models.text_features import drop_text

    states, mask = torch.ones(4000, 3, 2), torch.ones(4000, 3)
    null = (torch.zeros(1, 3, 2), torch.tensor([[1.0, 0.0, 0.0]]))
    dropped_states, dropped_mask, dropped = drop_text(states, mask, null, 0.2, torch.Generator().manual_seed(0))
    assert abs(float(dropped.float().mean()) - 0.2) < 0.02
    assert dropped_states[dropped].abs().sum() == 0 and dropped_mask[dropped].sum() == dropped.sum()
    assert dropped_states[~dropped].eq(1).all()
    logged = [v for _, v in metric(load_config(generators).dd_dir, "cfg_dropped")]
    assert 0 < np.mean(logged) < 0.6  # dd.cfg_dropout 0.2 in the tiny config, 4 rows a step


@pytest.mark.parametrize("preset", ["diffsound", "vqgan-32k"])
def test_each_token_preset_trains_one_step_on_a_tiny_override(preset, token_corpus, tmp_path):
    raw = yaml.safe_load(Path(f"training/configs/{preset}.yaml").read_text())
    shards, clap = token_corpus
    tiny_loop = {"steps": 1, "checkpoint_every": 1, "log_every": 1}
    raw["run"], raw["device"] = str(tmp_path / "run"), "cpu"
    raw["data"] |= {"shards": str(shards), "profile": "audioldm", "crop_frames": 16, "batch_size": 2, "workers": 0}
    raw["codebook"] |= {"block_out_channels": [8, 8, 8], "layers_per_block": 1, "norm_num_groups": 4, "code_dim": 8}
    raw["codebook"]["loss"] |= {
        "perceptual_weight": 0.0,
        "perceptual": None,
        "discriminator_channels": 4,
        "discriminator_layers": 2,
        "adversarial_start": 0,
    }
    raw["codebook"]["train"] |= tiny_loop
    kind = raw["generator"]
    sizes = {
        "ar": {"n_layer": 1, "n_head": 2, "n_embd": 16},
        "dd": {"layers": 1, "heads": 2, "dim": 16, "timesteps": 4},
    }
    raw[kind] |= sizes[kind]
    raw[kind]["text"] |= {"model": str(clap), "kind": "clap"}
    raw[kind]["train"] |= tiny_loop
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.codebook.codebook_size == {"diffsound": 256, "vqgan-32k": 1024}[preset]
    train_vq.train(config)
    encode_tokens.encode(config)
    TASKS[kind].train(config)
    loss = metric(getattr(config, f"{kind}_dir"), "loss")
    assert [s for s, _ in loss] == [1] and np.isfinite(loss[0][1])
    assert (
        json.loads((getattr(config, f"{kind}_dir") / "model" / "t2a.json").read_text())["codebook_size"]
        == config.codebook.codebook_size
    )
