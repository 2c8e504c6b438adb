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
    # every 4th clip has no frames (audio-only beside the videos): clip-image training leaves it out of its batches
    shards = build_train_corpus(
        root / "shards",
        frames=80,
        profile="clipsonic",
        clip_frames=3,
        frameless_every=4,
        splits={"train": (2, 6), "valid": (1, 4)},
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


@pytest.fixture(scope="module")
def mel_model(corpus, tmp_path_factory) -> tuple[Path, Path]:
    """(config, model folder) of the clipsonic-mel preset trained 6 steps on the tiny corpus."""
    config_path = preset("clipsonic-mel", tmp_path_factory.mktemp("mel"), corpus, steps=6)
    return config_path, train_ldm.train(load_config(config_path))


@pytest.fixture(scope="module")
def prior(corpus, mel_model) -> Path:
    """CLIPSonic-SD's prior trained on the corpus's "a photo of [label]" texts against its frames."""
    from training.tasks import prior as train_prior

    raw = yaml.safe_load(mel_model[0].read_text())
    raw["data"]["batch_size"] = 8
    raw["prior"] = {
        "width": 32,
        "layers": 2,
        "heads": 2,
        "sample_steps": 8,
        "batch_size": 8,
        "train": {"steps": 120, "optim": {"lr": 3e-3}, "ema_decay": 0.0, "checkpoint_every": 120, "log_every": 1},
    }
    path = mel_model[0].with_name("prior.yaml")
    path.write_text(yaml.safe_dump(raw))
    return train_prior.train(load_config(path))


def test_mel_space_preset_trains_on_64x64_mels_and_samples_deterministically(mel_model):
    from training.models.melspace import MelSpace
    from training.models.pipeline import load_bundle
    from training.sample.generate import Request, generate

    config, model = load_config(mel_model[0]), mel_model[1]
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


def test_the_prior_learns_to_close_the_modality_gap(prior):
    """CLIPSonic Table 2 on a learnable fixture: each label's frames lie around one direction that the raw
    CLIP text embedding of "a photo of [label]" does not point to; the prior's outputs do."""
    import json

    loss = [m["loss"] for m in read_metrics(prior.parent) if "loss" in m]
    assert np.mean(loss[-20:]) < 0.5 * np.mean(loss[:20])
    gap = json.loads((prior.parent / "gap.json").read_text())
    assert gap["split"] == "valid" and gap["clips"] == 3  # the 4th valid clip has no frames
    assert abs(gap["text-zs"]) < 0.4 and gap["text-prior"] > 0.6 and gap["text-prior"] > gap["text-zs"] + 0.4


def _jpeg(path: Path, colour: tuple[int, int, int]) -> Path:
    from PIL import Image

    Image.new("RGB", (64, 48), colour).save(path, format="JPEG")
    return path


def _mp4(path: Path) -> Path:
    import subprocess

    from pipelines.core.tools import ffmpeg_exe

    video = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=2"]
    audio = ["-f", "lavfi", "-i", "sine=frequency=440:duration=2:sample_rate=16000"]
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *video, *audio, "-shortest", str(path)], check=True)
    return path


def test_query_modes_sample_with_shapes_and_determinism(mel_model, prior, tmp_path):
    """CLIPSonic §2: text-zs, text-prior, image (CLIPSonic-IQ) and video (Make-An-Audio §4.3's 4 pooled frames)."""
    from pipelines.annotate.encoders.clip import load_clip
    from pipelines.annotate.encoders.config import ClipConfig
    from pipelines.core.frames import video_frames
    from training.models.pipeline import load_bundle
    from training.sample.generate import Request, generate
    from training.sample.queries import query_condition

    bundle = load_bundle(mel_model[1])
    images = (_jpeg(tmp_path / "red.jpg", (200, 30, 30)), _jpeg(tmp_path / "blue.jpg", (20, 30, 220)))
    clip = tmp_path / "clip.mp4"
    _mp4(clip)
    requests = {
        "text-zs": Request(prompts=["a photo of dog"], steps=2, seed=1),
        "text-prior": Request(
            prompts=["a photo of dog", "a photo of rain"], steps=2, seed=1, query="text-prior", prior=prior
        ),
        "image": Request(prompts=["red.jpg", "blue.jpg"], steps=2, seed=1, query="image", images=images),
        "video": Request(prompts=["clip.mp4"], steps=2, seed=1, query="video", video=clip),
    }
    for mode, request in requests.items():
        condition = query_condition(bundle, request)
        assert condition.shape == (len(request.prompts), 1, 32), mode
        torch.testing.assert_close(condition.norm(dim=-1), torch.ones(len(request.prompts), 1))
        mels, _ = generate(bundle, request)
        assert mels.shape == (len(request.prompts), 64, 64) and torch.equal(mels, generate(bundle, request)[0]), mode
    # the image query is the annotate stage's embedding of the picture; the video's, the mean of 4 ingest frames
    encoder = load_clip(ClipConfig(model=str(mel_model[1] / "clip")), "cpu")
    expected = torch.from_numpy(encoder.embed_images([images[0].read_bytes()]))
    torch.testing.assert_close(query_condition(bundle, requests["image"])[:1, 0], expected)
    frames = video_frames(clip)
    assert len(frames) == 4
    pooled = torch.nn.functional.normalize(torch.from_numpy(encoder.embed_images(frames)).mean(0), dim=-1)
    torch.testing.assert_close(query_condition(bundle, requests["video"])[0, 0], pooled)


def test_query_mistakes_are_one_line_errors(mel_model, tmp_path):
    from pipelines.core.config import ConfigError
    from training.models.pipeline import load_bundle
    from training.sample.generate import Request, generate

    with pytest.raises(ConfigError, match="--query image needs --image"):
        Request(prompts=["x"], query="image")
    with pytest.raises(ConfigError, match="unknown query 'audio'"):
        Request(prompts=["x"], query="audio")
    with pytest.raises(ConfigError, match="--prior is for --query text-prior"):
        Request(prompts=["x"], prior=tmp_path)
    bundle = load_bundle(mel_model[1])
    with pytest.raises(ConfigError, match="no diffusion prior there"):
        generate(bundle, Request(prompts=["x"], steps=1, query="text-prior", prior=tmp_path))
    with pytest.raises(ConfigError, match="cannot read the image"):
        generate(bundle, Request(prompts=["x"], steps=1, query="image", images=(tmp_path / "none.jpg",)))
    (tmp_path / "not.mp4").write_bytes(b"not a video")
    with pytest.raises(ConfigError, match="not.mp4: cannot read the video"):
        generate(bundle, Request(prompts=["x"], steps=1, query="video", video=tmp_path / "not.mp4"))


def test_widened_unet_starts_from_the_trained_predictions():
    """Make-An-Audio §4.2's inpainting UNet: 1 + C + C inputs, new channels zero → the same output at init."""
    from diffusers import UNet2DConditionModel

    from training.models.inpaint import WithContext, context, is_inpainting, widen

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        attention_head_dim=2,
        norm_num_groups=4,
        sample_size=8,
    ).eval()
    wide = widen(unet).eval()
    assert wide.config.in_channels == 9 and wide.config.out_channels == 4 and is_inpainting(wide, 4)
    assert not is_inpainting(unet, 4)
    x, t, states = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 1, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    extra = context(torch.randn(2, 4, 8, 8), mask)
    assert extra.shape == (2, 5, 8, 8) and torch.equal(extra[:, :1], mask)
    with torch.no_grad():
        expected = unet(x, t, encoder_hidden_states=states).sample
        torch.testing.assert_close(WithContext(wide, extra)(x, t, encoder_hidden_states=states).sample, expected)
        doubled = WithContext(wide, extra)(
            torch.cat([x, x]), torch.tensor(10), encoder_hidden_states=torch.cat([states, states])
        )
    assert doubled.sample.shape == (4, 4, 8, 8)  # classifier-free guidance's [null; cond] batch


def test_inpainting_fine_tune_trains_and_samples_with_the_mask_as_input(mel_model, tmp_path):
    import soundfile as sf

    from pipelines.core.config import ConfigError
    from training.models.pipeline import load_bundle
    from training.sample.generate import Request, generate
    from training.tasks import inpaint as train_inpaint

    raw = yaml.safe_load(mel_model[0].read_text())
    raw["inpaint"] = {
        "masks": ["frame", "thin", "thick"],
        "span": 4,
        "train": {"steps": 4, "optim": {"lr": 1e-3}, "ema_decay": 0.0, "checkpoint_every": 4, "log_every": 1},
    }
    path = mel_model[0].with_name("inpaint.yaml")
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    model = train_inpaint.train(config)
    metrics = list(read_metrics(config.inpaint_dir))
    assert len([m for m in metrics if "loss" in m]) == 4 and all(np.isfinite(m["loss"]) for m in metrics if "loss" in m)
    assert {"valid_loss_wide", "valid_loss_narrow"} <= {k for m in metrics for k in m}
    bundle = load_bundle(model)
    assert bundle.unet.config.in_channels == 3 and bundle.unet.config.out_channels == 1  # 1 + C + C, C = 1
    t = np.arange(3 * 16000) / 16000
    source = tmp_path / "src.wav"
    sf.write(source, (0.3 * np.sin(2 * np.pi * 500 * t)).astype(np.float32), 16000)
    request = Request(["a photo of dog"], steps=2, seconds=3.0, inpaint_source=source, inpaint_mask=(1.0, 2.0), seed=2)
    mels, _ = generate(bundle, request)
    assert mels.shape == (1, 94, 64) and torch.equal(mels, generate(bundle, request)[0])
    with pytest.raises(ConfigError, match="this is an inpainting model"):
        generate(bundle, Request(["a photo of dog"], steps=1))


def test_clipsonic_sd_through_the_commands(corpus, mel_model, prior, tmp_path):
    """The demo's CLIPSonic-SD stages (dvc.yaml *_clipsonic) as a user runs them, on the tiny corpus:
    photo prompts of the held-out labels → the prior → the mel model; and the mistakes a user makes."""
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app

    runner = CliRunner()
    assert load_config(CONFIGS / "demo-clipsonic.yaml").ldm.space == "mel"
    listed = runner.invoke(app, ["train", "--help"])
    assert all(name in listed.output for name in ("prior", "inpaint"))
    prompts = tmp_path / "prompts.txt"
    made = runner.invoke(app, ["prompts", str(corpus[0]), "--split", "valid", "--form", "photo", "--out", str(prompts)])
    assert made.exit_code == 0, made.output
    assert prompts.read_text().splitlines()[1:] == [
        "a photo of dog",
        "a photo of rain",
        "a photo of car",
        "a photo of bell",
    ]
    out = tmp_path / "samples"
    common = ["sample", "--config", str(mel_model[0]), "--steps", "2", "--device", "cpu", "--out", str(out)]
    done = runner.invoke(app, [*common, "--prompts-file", str(prompts), "--query", "text-prior", "--prior", str(prior)])
    assert done.exit_code == 0, done.output
    summary = json.loads((out / "samples.json").read_text())
    assert summary["request"]["query"] == "text-prior" and len(summary["items"]) == 4
    assert len(list(out.glob("*.wav"))) == 4
    wrong = runner.invoke(app, [*common, "--query", "image"])
    assert wrong.exit_code == 2 and "--query image needs --image" in wrong.output
    wrong = runner.invoke(app, [*common, "x", "--query", "text-prior", "--prior", str(tmp_path)])
    assert wrong.exit_code == 2 and "no diffusion prior there" in wrong.output and "Traceback" not in wrong.output


def test_a_held_out_split_without_frames_records_why_no_gap_was_measured(tmp_path, corpus):
    """The modality gap is a diagnostic: a split with no clip that has frames says so and returns no figure
    (the demo's small valid split), instead of failing the prior's training after it is saved."""
    from training.config import DataConfig, EncodersConfig
    from training.models.conditioning import ClipImage
    from training.tasks.prior import modality_gap

    shards = build_train_corpus(tmp_path / "shards", frames=80, profile="clipsonic", splits={"valid": (1, 3)})
    data = DataConfig(shards=str(shards), profile="clipsonic", batch_size=4, workers=0, shuffle_buffer=4)
    text_tower = ClipImage.from_encoders(EncodersConfig(clip=str(corpus[1])), "cpu")
    gap = modality_gap(text_tower, None, data, "valid")
    assert gap["clips"] == 0 and "no modality gap measured" in gap["note"] and "text-zs" not in gap
