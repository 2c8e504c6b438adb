"""Saving and loading trained models: diffusers' AudioLDMPipeline runs a saved clap-audio model, load_bundle
gives back what was saved for every mode, writes are atomic, and model_hash identifies a VAE."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_training import LATENT_CHANNELS, build_tiny_clap, build_tiny_clip, tiny_ldm_config, tiny_vae_config

from training.models.bundle import Bundle
from training.models.conditioning import build_conditioner
from training.models.ldm import build_scheduler, build_unet
from training.models.pipeline import SCHEMA, load_bundle, model_hash, save_pipeline
from training.models.vae import build_vae
from training.models.vocoder import build_vocoder

FRAMES = 32  # 0.32 s of the audioldm profile (hop 160 at 16 kHz); latents 16 x 32 with r = 2


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict:
    base = tmp_path_factory.getbasetemp()
    return {"clap": build_tiny_clap(base), "clip": build_tiny_clip(base)}


def make_bundle(mode: str, encoders: dict, **extra) -> Bundle:
    torch.manual_seed(0)
    ldm = tiny_ldm_config(mode, **encoders)
    conditioner = build_conditioner(ldm)
    unet = build_unet(ldm, conditioner, LATENT_CHANNELS, (FRAMES // 2, 32))
    vae = build_vae(tiny_vae_config())
    vae.register_to_config(scaling_factor=0.7)
    scheduler = dict(build_scheduler(ldm.scheduler).config)
    return Bundle(
        vae.eval(), unet.eval(), scheduler, conditioner, "audioldm", frames=FRAMES, info={"steps": 3}, **extra
    )


@pytest.fixture(scope="module")
def saved_clap_audio(encoders, tmp_path_factory):
    bundle = make_bundle("clap-audio", encoders)
    return bundle, save_pipeline(tmp_path_factory.mktemp("models") / "model", bundle, clap_dir=str(encoders["clap"]))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_audioldm_pipeline_runs_a_saved_clap_audio_model(saved_clap_audio):
    from diffusers import AudioLDMPipeline

    bundle, folder = saved_clap_audio
    pipe = AudioLDMPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    audio = pipe(
        "a dog", num_inference_steps=2, audio_length_in_s=0.32, generator=torch.Generator().manual_seed(0)
    ).audios
    assert audio.shape == (1, 5120) and np.isfinite(audio).all()
    default = pipe("a dog", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).audios
    assert default.shape == (1, FRAMES * 160)  # sample_size · r · hop: the training window
    assert _same_weights(pipe.unet, bundle.unet) and pipe.vae.config.scaling_factor == 0.7
    # The pipeline's text embedding (and its "" negative) is the conditioner's: guidance agrees.
    with torch.no_grad():
        embeds = pipe._encode_prompt(["a dog"], "cpu", 1, True)
    torch.testing.assert_close(embeds[1:], bundle.conditioner.from_prompts(["a dog"]))
    torch.testing.assert_close(embeds[:1], bundle.conditioner.null(1))


def test_meta_says_the_vocoder_is_untrained(saved_clap_audio, encoders):
    _, folder = saved_clap_audio
    meta = json.loads((folder / "t2a.json").read_text())
    assert (meta["schema"], meta["conditioning"], meta["profile"], meta["frames"]) == (
        SCHEMA,
        "clap-audio",
        "audioldm",
        FRAMES,
    )
    assert meta["vocoder_trained"] is False and meta["encoders"]["clap"] == str(encoders["clap"])
    vocoder = json.loads((folder / "vocoder" / "config.json").read_text())
    assert (vocoder["model_in_dim"], vocoder["sampling_rate"], vocoder["upsample_rates"]) == (
        64,
        16000,
        [5, 4, 2, 2, 2],
    )
    assert load_bundle(folder).vocoder is None  # t2a sample falls back to Griffin-Lim


@pytest.mark.parametrize("mode", ["clap-audio", "clap-text", "clip-image"])
def test_load_bundle_gives_back_what_was_saved(mode, encoders, tmp_path):
    bundle = make_bundle(mode, encoders)
    folder = save_pipeline(tmp_path / "model", bundle, clap_dir=None)
    assert (folder / "model_index.json").is_file() == (mode == "clap-audio")
    loaded = load_bundle(folder)
    assert _same_weights(loaded.vae, bundle.vae) and _same_weights(loaded.unet, bundle.unet)
    assert _same_weights(loaded.conditioner.encoder, bundle.conditioner.encoder)
    assert loaded.scheduler_config == {k: v for k, v in bundle.scheduler_config.items() if not k.startswith("_")}
    assert (loaded.profile, loaded.frames, loaded.info, loaded.conditioner.name) == (
        "audioldm",
        FRAMES,
        {"steps": 3},
        mode,
    )
    assert loaded.vae.config.scaling_factor == 0.7
    torch.testing.assert_close(loaded.conditioner.from_prompts(["a bell"]), bundle.conditioner.from_prompts(["a bell"]))
    torch.testing.assert_close(loaded.conditioner.null(2), bundle.conditioner.null(2))


def test_a_given_vocoder_is_saved_and_loaded_in_every_mode(encoders, tmp_path):
    vocoder = build_vocoder(64, 16000, 160)
    folder = save_pipeline(tmp_path / "model", make_bundle("clap-text", encoders, vocoder=vocoder), clap_dir=None)
    assert json.loads((folder / "t2a.json").read_text())["vocoder_trained"] is True
    assert _same_weights(load_bundle(folder).vocoder, vocoder)


def test_a_plain_audioldm_pipeline_loads_as_clap_audio(saved_clap_audio, tmp_path):
    import shutil

    _, folder = saved_clap_audio
    plain = tmp_path / "audioldm"
    shutil.copytree(folder, plain)
    (plain / "t2a.json").unlink()
    loaded = load_bundle(plain)
    assert (loaded.conditioner.name, loaded.profile, loaded.frames) == (
        "clap-audio",
        "audioldm",
        FRAMES,
    )  # sample_size · r
    assert loaded.vocoder is not None  # a downloaded AudioLDM's HiFi-GAN is trained
    assert (loaded.scheduler_config["beta_start"], loaded.scheduler_config["num_train_timesteps"]) == (0.0015, 1000)
    with pytest.raises(FileNotFoundError, match="neither a trained model"):
        load_bundle(tmp_path)


def test_saving_replaces_a_model_atomically(encoders, tmp_path, monkeypatch):
    bundle = make_bundle("clip-image", encoders)
    folder = save_pipeline(tmp_path / "model", bundle, clap_dir=None)
    bundle.info = {"steps": 9}
    save_pipeline(folder, bundle, clap_dir=None)
    assert json.loads((folder / "t2a.json").read_text())["info"] == {"steps": 9}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp or old folders left
    monkeypatch.setattr(bundle.unet, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    bundle.info = {"steps": 12}
    with pytest.raises(OSError, match="disk full"):
        save_pipeline(folder, bundle, clap_dir=None)
    assert json.loads((folder / "t2a.json").read_text())["info"] == {"steps": 9}  # the old model is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_model_hash_covers_config_and_weights_only(tmp_path):
    torch.manual_seed(0)
    vae = build_vae(tiny_vae_config())
    vae.save_pretrained(tmp_path / "a")
    vae.save_pretrained(tmp_path / "b")
    digest = model_hash(tmp_path / "a")
    assert len(digest) == 64 and digest == model_hash(tmp_path / "b")
    (tmp_path / "b" / "README.md").write_text("notes")
    assert model_hash(tmp_path / "b") == digest
    with torch.no_grad():
        vae.decoder.conv_out.bias.add_(1.0)
    vae.save_pretrained(tmp_path / "b")
    assert model_hash(tmp_path / "b") != digest
    with pytest.raises(FileNotFoundError, match="no config.json"):
        model_hash(tmp_path)
