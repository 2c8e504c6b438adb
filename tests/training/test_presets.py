"""The papers' presets (training/configs/*.yaml): each resolves by name, and every LDM-family preset trains
one VAE step, encodes its latents and trains one LDM step with its own recipe (profile, conditioning,
schedule, CFG dropout, level counts) at tiny widths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from train_corpus import build_train_corpus

from demo.models import build_clap
from pipelines.core.config import ConfigError, load_yaml
from training.config import PRESETS, load_config, preset_path
from training.loop import read_metrics

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LDM_PRESETS = sorted(p.stem for p in PRESETS.glob("*.yaml") if (load_yaml(p) or {}).get("generator") == "ldm")
PAPER_PRESETS = ("audioldm-s", "audioldm-l", "make-an-audio")


def test_the_paper_presets_are_ldm_presets_and_resolve_by_name():
    assert set(PAPER_PRESETS) <= set(LDM_PRESETS)
    s, big = load_config(preset="audioldm-s"), load_config(preset="audioldm-l")
    assert s.ldm.unet.block_out_channels == [128, 256, 384, 640] and s.ldm.unet.head_channels == 32
    assert big.ldm.unet.block_out_channels == [256, 512, 768, 1280] and big.ldm.unet.head_channels == 64
    assert s.vae.train.optim.lr == 4.5e-6 and s.vae.loss.adversarial_start == 50_000
    assert (s.sample.steps, s.sample.sampler, s.sample.guidance) == (200, "ddim", 2.0)
    # DDIM η: not in the AudioLDM paper; its released code samples with ddim_eta=1.0 (Make-An-Audio's: η = 0)
    assert (s.sample.eta, big.sample.eta, load_config(preset="make-an-audio").sample.eta) == (1.0, 1.0, 0.0)
    assert s.data.shards == os.path.normpath(PRESETS / "../../data/audiocaps/shards")
    maa = load_config(preset="make-an-audio")
    assert (maa.vae.latent_channels, len(maa.vae.block_out_channels) - 1) == (4, 3)  # C = 4, r = 8
    assert maa.ldm.unet.block_out_channels == [320, 640] and maa.ldm.cfg_dropout == 0.2
    assert maa.ldm.conditioning == "clap-text" and maa.ldm.unet.cross_attention_dim == 1024
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*audioldm-s"):
        preset_path("nope")


def test_a_file_with_a_preset_key_overrides_the_preset_and_keeps_its_own_paths(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("preset: audioldm-s\nrun: runs/x\ndata: {shards: shards, batch_size: 2}\nldm: {train: {steps: 7}}\n")
    config = load_config(own)
    assert config.run == tmp_path / "runs/x" and config.data.shards == str(tmp_path / "shards")
    assert config.data.batch_size == 2 and config.data.profile == "audioldm"  # merged key by key
    assert config.ldm.train.steps == 7 and config.ldm.train.optim.lr == 3e-5
    assert config.ldm.encoders.clap == os.path.normpath(PRESETS / "../../models/clap")  # the preset's, from its folder
    assert load_config(own, preset="audioldm-s") == config
    with pytest.raises(ConfigError, match="give one"):
        load_config(own, preset="make-an-audio")


def test_sample_eta_is_ddim_only_and_not_negative(tmp_path):
    from training.config import SampleConfig

    assert (
        SampleConfig().eta == 0.0 and load_config(PRESETS / "demo.yaml").sample.eta == 0.0
    )  # the demo's DDIM as before
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        SampleConfig(eta=-0.5)
    with pytest.raises(ValueError, match="eta .DDIM η. is for sampler ddim only; with sampler ddpm set eta: 0"):
        SampleConfig(sampler="ddpm", eta=1.0)
    own = tmp_path / "mine.yaml"  # the preset's η = 1 with another sampler: a one-line config error
    own.write_text("preset: audioldm-s\nrun: r\ndata: {shards: s}\nsample: {sampler: dpm-solver++}\n")
    with pytest.raises(ConfigError, match="sample: .*eta .DDIM η. is for sampler ddim only"):
        load_config(own)


def test_the_profile_training_window_is_used_when_no_crop_is_given(tmp_path):
    """CLIPSonic §3: 64-frame (2-s) windows cut from the stored 312-frame mel: the profile's train_frames."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run": "r", "data": {"shards": "s", "profile": "clipsonic"}}))
    assert load_config(path).data.crop_frames == 64 and load_config(path).ldm_data.crop_frames == 64
    path.write_text(yaml.safe_dump({"run": "r", "data": {"shards": "s", "profile": "clipsonic", "crop_frames": 32}}))
    assert load_config(path).data.crop_frames == 32
    path.write_text(yaml.safe_dump({"run": "r", "data": {"shards": "s", "profile": "audioldm"}}))
    assert load_config(path).data.crop_frames is None  # the whole stored mel


def test_head_channels_give_each_level_its_own_head_count(tmp_path):
    from training.config import LdmConfig, UnetConfig
    from training.models.conditioning import build_conditioner
    from training.models.ldm import build_unet

    clap = build_clap(tmp_path / "clap")
    ldm = LdmConfig(
        encoders={"clap": str(clap)},
        unet=UnetConfig(block_out_channels=[8, 16, 24, 40], layers_per_block=1, head_channels=8, norm_num_groups=8),
    )
    unet = build_unet(ldm, build_conditioner(ldm), 4, (8, 16))
    assert tuple(unet.config.attention_head_dim) == (1, 2, 3, 5)  # AudioLDM App. B: heads = channels / c_h
    assert unet.down_blocks[3].attentions[0].transformer_blocks[0].attn1.heads == 5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    from pipelines.core.features import get_profile

    root = tmp_path_factory.mktemp("presets")
    profiles = sorted({load_config(preset=name).data.profile for name in LDM_PRESETS})
    profiles = [p for p in profiles if get_profile(p)]
    splits = {"train": (1, 4), "valid": (1, 2)}
    return build_train_corpus(root / "shards", splits=splits, profiles=tuple(profiles)), build_clap(root / "clap")


@pytest.mark.parametrize("name", LDM_PRESETS)
def test_every_ldm_preset_trains_one_step(name, corpus, tmp_path):
    from training.tasks import encode_latents
    from training.tasks import ldm as train_ldm
    from training.tasks import vae as train_vae

    shards, clap = corpus
    preset = load_config(preset=name)
    # Tiny widths with the preset's level counts (so r and the UNet's depth are the preset's); the rest is its own.
    heads = {"head_channels": 8} if preset.ldm.unet.head_channels else {"attention_head_dim": 2}
    unet = {"block_out_channels": [16 * (i + 1) for i in range(len(preset.ldm.unet.block_out_channels))], **heads}
    vae = [8, 16, 16, 16, 16][: len(preset.vae.block_out_channels)]
    loop = {"steps": 1, "checkpoint_every": 1, "log_every": 1, "validate_every": 0}
    override = {
        "preset": name,
        "run": str(tmp_path / "run"),
        "device": "cpu",
        "data": {"shards": str(shards), "crop_frames": 32, "batch_size": 2, "shuffle_buffer": 2, "workers": 0},
        "vae": {
            "block_out_channels": vae,
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "loss": {"discriminator_channels": 8, "discriminator_layers": 2},
            "train": loop,
        },
        "ldm": {
            "encoders": {"clap": str(clap), "clip": None},
            "unet": {"layers_per_block": 1, "norm_num_groups": 8, **unet},
            "batch_size": 2,
            "crop_frames": None,
            "train": loop,
        },
        "sample": {"prompts": []},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(override))
    config = load_config(path)
    # The recipe is the preset's: only sizes and locations were overridden.
    for field in ("profile",):
        assert getattr(config.data, field) == getattr(preset.data, field)
    assert config.ldm.scheduler == preset.ldm.scheduler and config.ldm.cfg_dropout == preset.ldm.cfg_dropout
    assert (
        config.ldm.conditioning == preset.ldm.conditioning and config.vae.latent_channels == preset.vae.latent_channels
    )
    assert len(config.vae.block_out_channels) == len(preset.vae.block_out_channels)
    train_vae.train(config)
    encode_latents.encode(config)
    train_ldm.train(config)
    steps = [m for m in read_metrics(config.ldm_dir) if "loss" in m]
    assert [m["step"] for m in steps] == [1] and steps[0]["loss"] == pytest.approx(steps[0]["loss"])  # finite
    assert (config.ldm_dir / "model").is_dir()


def test_the_cli_takes_a_preset_and_names_the_presets_on_a_wrong_one():
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, ["train", "ldm", "--preset", "audioldm-x"])
    assert result.exit_code == 2 and "unknown preset 'audioldm-x'" in result.output
    assert "audioldm-s" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["train", "vae"])
    assert result.exit_code == 2 and "--preset" in result.output
