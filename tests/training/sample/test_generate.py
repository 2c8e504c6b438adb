"""training/sample/generate.py on tiny random diffusers models: shapes, seeds, CFG (eq. 9), style transfer, inpainting, files."""

from __future__ import annotations

import importlib
import json
import sys
import types
import zlib
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image

from pipelines.core.config import ConfigError
from training.models.bundle import Bundle
from training.sample import generate as sample
from training.sample.generate import (
    Request,
    encode_source,
    generate,
    guided_prediction,
    layout,
    read_prompts,
    run,
    sample_latents,
    write_outputs,
)

RATE, HOP, N_MELS = 16_000, 160, 64  # the audioldm profile
SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0015,
    "beta_end": 0.0195,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
}


class HashConditioner:
    """A Conditioner (training.models.bundle) for tests: text → a fixed random vector via the UNet's class embedding."""

    name, kind, dim = "test-hash", "class", 6

    def from_prompts(self, prompts: list[str]) -> torch.Tensor:
        return torch.stack(
            [torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(p.encode()))) for p in prompts]
        )

    def from_batch(self, batch):
        return self.from_prompts(batch["caption"])

    def null(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, self.dim)

    def unet_kwargs(self, condition: torch.Tensor) -> dict:
        return {"encoder_hidden_states": None, "class_labels": condition}

    def to(self, device):
        return self


def _fallback_sampler(name: str, config: dict):
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    if name == "dpm-solver++":
        return DPMSolverMultistepScheduler(**config, algorithm_type="dpmsolver++")
    return {"ddim": DDIMScheduler, "ddpm": DDPMScheduler}[name](**config)


@pytest.fixture(autouse=True)
def sampler_registry(monkeypatch):
    """training.models.ldm.make_sampler when that module is there, a local stand-in until it is."""
    try:
        ldm = importlib.import_module("training.models.ldm")
    except ImportError:
        ldm = None
    if not hasattr(ldm, "make_sampler"):
        monkeypatch.setitem(sys.modules, "training.models.ldm", types.SimpleNamespace(make_sampler=_fallback_sampler))


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    # AudioLDM's layout: attention blocks whose "cross" attention is self-attention (no token states),
    # the CLAP-like vector through a FiLM class embedding (AudioLDM App. B).
    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
        class_embed_type="simple_projection",
        projection_class_embeddings_input_dim=HashConditioner.dim,
    )
    return Bundle(vae.eval(), unet.eval(), dict(SCHEDULER), HashConditioner(), "audioldm", frames=24, info={"step": 7})


@pytest.fixture(scope="module")
def source_wav(tmp_path_factory) -> str:
    t = np.arange(int(0.32 * 44_100)) / 44_100  # resampled to 16 kHz by the extractor
    path = tmp_path_factory.mktemp("src") / "chirp.wav"
    sf.write(path, (0.4 * np.sin(2 * np.pi * (300 * t + 2000 * t**2))).astype(np.float32), 44_100)
    return str(path)


def test_layout_rounds_up_to_what_the_unet_can_halve(bundle):
    assert layout(bundle, None).latent == (4, 12, 32)  # bundle.frames = 24: r = 2, multiple of 4
    shape = layout(bundle, 0.3)  # 30 frames → 32 generated
    assert (shape.frames, shape.padded, shape.ratio, shape.latent) == (30, 32, 2, (4, 16, 32))
    assert layout(bundle, 10.24).frames == 1024  # not 1025 through float round-off


def test_generate_shapes_for_seconds_and_default(bundle):
    mels, waves = generate(bundle, Request(["a dog"], steps=2, seconds=0.3, per_prompt=2, griffin_lim_iters=2))
    assert mels.shape == (2, 30, N_MELS) and mels.dtype == torch.float32
    assert waves.shape == (2, round(0.3 * RATE)) and torch.isfinite(waves).all()
    mels, waves = generate(bundle, Request(["a", "b", "c"], steps=2, griffin_lim_iters=2))
    assert mels.shape == (3, 24, N_MELS) and waves.shape == (3, 24 * HOP)


def test_seed_determinism_and_items_independent_of_batch(bundle):
    one = sample_latents(bundle, Request(["a dog"], steps=3, seed=5))
    again = sample_latents(bundle, Request(["a dog"], steps=3, seed=5))
    assert torch.equal(one, again)
    many = sample_latents(bundle, Request(["a dog", "rain"], steps=3, seed=5, per_prompt=2))  # dog, dog, rain, rain
    assert torch.allclose(many[0], one[0], atol=1e-4)  # batched convs may round differently
    shifted = sample_latents(bundle, Request(["a dog"], steps=3, seed=6))
    assert torch.allclose(many[1], shifted[0], atol=1e-4)  # item i starts from seed + i
    assert not torch.allclose(one, shifted, atol=1e-3)
    assert not torch.allclose(many[2], shifted[0], atol=1e-3)  # same noise, another prompt


def _reference(bundle, prompt: str, guidance: float, steps: int = 4, seed: int = 0) -> torch.Tensor:
    """A DDIM loop written out: ε̂ = ε_u + w (ε_c − ε_u) with two separate forwards."""
    scheduler = sample._sampler("ddim", bundle.scheduler_config)
    scheduler.set_timesteps(steps)
    cond, null = bundle.conditioner.from_prompts([prompt]), bundle.conditioner.null(1)
    x = (
        torch.randn(layout(bundle, None).latent, generator=torch.Generator().manual_seed(seed))[None]
        * scheduler.init_noise_sigma
    )
    with torch.no_grad():
        for t in scheduler.timesteps:
            conditional = bundle.unet(x, t, encoder_hidden_states=None, class_labels=cond).sample
            unconditional = bundle.unet(x, t, encoder_hidden_states=None, class_labels=null).sample
            x = scheduler.step(unconditional + guidance * (conditional - unconditional), t, x).prev_sample
    return x


def test_classifier_free_guidance_follows_eq9(bundle):
    results = {w: sample_latents(bundle, Request(["a cat meows"], steps=4, guidance=w)) for w in (0.0, 1.0, 2.0)}
    for w, latents in results.items():
        assert torch.allclose(latents, _reference(bundle, "a cat meows", w), atol=1e-4), w
    assert not torch.allclose(results[0.0], results[1.0], atol=1e-3)
    assert not torch.allclose(results[1.0], results[2.0], atol=1e-3)


def test_guidance_one_makes_a_single_conditional_forward(bundle):
    calls = []
    handle = bundle.unet.register_forward_hook(lambda module, args, kwargs_out: calls.append(args[0].shape[0]))
    try:
        for w in (1.0, 0.0, 3.0):
            sample_latents(bundle, Request(["x", "y"], steps=2, guidance=w))
    finally:
        handle.remove()
    assert calls == [2, 2, 2, 2, 4, 4]  # the doubled batch only when w ∉ {0, 1}
    x = torch.randn(1, *layout(bundle, None).latent)
    cond = bundle.conditioner.from_prompts(["x"])
    with torch.no_grad():
        plain = bundle.unet(x, torch.tensor(500), encoder_hidden_states=None, class_labels=cond).sample
        guided = guided_prediction(
            bundle.unet, bundle.conditioner, x, torch.tensor(500), cond, bundle.conditioner.null(1), 1.0
        )
    assert torch.equal(plain, guided)


def test_sampling_leaves_the_modules_mode_as_it_was(bundle):
    modes = []
    handle = bundle.unet.register_forward_hook(lambda module, args, out: modes.append(module.training))
    bundle.unet.train()
    try:
        generate(bundle, Request(["x"], steps=1, griffin_lim_iters=1))
        assert modes == [False] and bundle.unet.training and not bundle.vae.training
    finally:
        handle.remove()
        bundle.unet.eval()


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++", "ddpm"])
def test_every_sampler_runs_deterministically(bundle, sampler):
    request = Request(["wind"], steps=4, sampler=sampler, seed=3)
    latents = sample_latents(bundle, request)
    assert latents.shape == (1, *layout(bundle, None).latent) and torch.isfinite(latents).all()
    assert torch.equal(latents, sample_latents(bundle, request))


def test_v_prediction_goes_through_the_scheduler(bundle):
    v_bundle = replace(bundle, scheduler_config={**SCHEDULER, "prediction_type": "v_prediction"})
    for sampler in ("ddim", "dpm-solver++"):
        v = sample_latents(v_bundle, Request(["wind"], steps=4, sampler=sampler))
        eps = sample_latents(bundle, Request(["wind"], steps=4, sampler=sampler))
        assert torch.isfinite(v).all() and not torch.allclose(v, eps, atol=1e-3)


def test_samplers_differ(bundle):
    ddim, dpm = (sample_latents(bundle, Request(["wind"], steps=4, sampler=s)) for s in ("ddim", "dpm-solver++"))
    assert not torch.allclose(ddim, dpm, atol=1e-4)


def _today(bundle, request: Request) -> torch.Tensor:
    """The DDIM loop as sample_latents ran it before sample.eta: scheduler.step with the generators, no η."""
    shape = layout(bundle, request.seconds)
    generators = [torch.Generator().manual_seed(request.seed + i) for i in range(len(request.prompts))]
    scheduler = sample._sampler("ddim", bundle.scheduler_config)
    scheduler.set_timesteps(request.steps)
    cond = bundle.conditioner.from_prompts(request.prompts)
    null = bundle.conditioner.null(len(request.prompts))
    x = torch.stack([torch.randn(shape.latent, generator=g) for g in generators]) * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            prediction = guided_prediction(bundle.unet, bundle.conditioner, x, t, cond, null, request.guidance)
            x = scheduler.step(prediction, t, x, generator=generators).prev_sample
    return x


def test_ddim_eta_zero_is_todays_output_byte_for_byte(bundle):
    request = Request(["wind", "rain"], steps=4, seed=3, eta=0.0)
    assert sample_latents(bundle, request).numpy().tobytes() == _today(bundle, request).numpy().tobytes()


def test_ddim_eta_adds_seeded_noise(bundle):
    """η > 0 (AudioLDM's released code: 1.0): DDIM draws noise at every step from the items' generators, so the
    same seed gives the same bytes, and the result leaves the deterministic (η = 0) path."""
    noisy = sample_latents(bundle, Request(["wind"], steps=4, seed=3, eta=1.0))
    assert torch.isfinite(noisy).all()
    assert (
        noisy.numpy().tobytes() == sample_latents(bundle, Request(["wind"], steps=4, seed=3, eta=1.0)).numpy().tobytes()
    )
    assert not torch.allclose(noisy, sample_latents(bundle, Request(["wind"], steps=4, seed=3)), atol=1e-3)
    assert not torch.allclose(noisy, sample_latents(bundle, Request(["wind"], steps=4, seed=3, eta=0.5)), atol=1e-3)
    assert not torch.allclose(noisy, sample_latents(bundle, Request(["wind"], steps=4, seed=4, eta=1.0)), atol=1e-3)


def _forwards(bundle, request) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    calls = []
    handle = bundle.unet.register_forward_hook(lambda module, args, out: calls.append((args[0].clone(), args[1])))
    try:
        return sample_latents(bundle, request), calls
    finally:
        handle.remove()


def test_style_transfer_runs_only_the_steps_after_n0(bundle, source_wav):
    with torch.no_grad():
        source = encode_source(bundle, source_wav, layout(bundle, None).padded, "cpu")
    kept, calls = _forwards(
        bundle, Request(["birds"], steps=10, guidance=1.0, style_source=source_wav, style_strength=0.0)
    )
    assert not calls and torch.equal(kept, source)
    mels, _ = generate(
        bundle, Request(["birds"], steps=10, style_source=source_wav, style_strength=0.0, griffin_lim_iters=1)
    )
    with torch.no_grad():
        decoded = bundle.vae.decode(source / bundle.vae.config.scaling_factor).sample[:, 0]
    assert torch.allclose(mels, decoded, atol=1e-6)
    # n0 = 0.3·N: 3 of 10 DDIM steps, from z_n0 = √ᾱ·z_src + √(1−ᾱ)·ε(seed) (AudioLDM eq. 2 and 10).
    scheduler = sample._sampler("ddim", bundle.scheduler_config)
    scheduler.set_timesteps(10)
    _, calls = _forwards(
        bundle, Request(["birds"], steps=10, guidance=1.0, seed=4, style_source=source_wav, style_strength=0.3)
    )
    assert [int(t) for _, t in calls] == [int(t) for t in scheduler.timesteps[7:]]
    alpha = scheduler.alphas_cumprod[int(scheduler.timesteps[7])]
    noise = torch.randn(layout(bundle, None).latent, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(calls[0][0], alpha.sqrt() * source + (1 - alpha).sqrt() * noise, atol=1e-5)
    _, calls = _forwards(
        bundle, Request(["birds"], steps=10, guidance=1.0, style_source=source_wav, style_strength=1.0)
    )
    assert len(calls) == 10


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver++"])
def test_inpainting_keeps_the_observed_rows_exactly(bundle, source_wav, sampler):
    request = Request(
        ["thunder"], steps=5, sampler=sampler, per_prompt=2, inpaint_source=source_wav, inpaint_keep=(0.0, 0.1)
    )
    latents = sample_latents(bundle, request)
    with torch.no_grad():
        source = encode_source(bundle, source_wav, layout(bundle, None).padded, "cpu")
    kept = 5  # 0.1 s = frames 0..9 → latent rows 0..4 (r = 2)
    assert torch.equal(latents[:, :, :kept], source.expand(2, -1, -1, -1)[:, :, :kept])
    assert not torch.allclose(latents[:, :, kept:], source.expand(2, -1, -1, -1)[:, :, kept:], atol=1e-2)
    assert not torch.allclose(latents[0, :, kept:], latents[1, :, kept:], atol=1e-3)  # two seeds fill in differently


@pytest.fixture(scope="module")
def low_wav(tmp_path_factory) -> str:
    """8-kHz audio (AudioLDM §4 super-resolution, Table 5: 8 → 16 kHz)."""
    t = np.arange(int(0.32 * 8000)) / 8000
    path = tmp_path_factory.mktemp("low") / "low.wav"
    sf.write(path, (0.4 * np.sin(2 * np.pi * (300 * t + 2000 * t**2))).astype(np.float32), 8000)
    return str(path)


def test_band_mask_keeps_the_columns_whose_mel_bands_lie_inside():
    import librosa

    from training.sample.generate import Layout, band_mask

    bundle = Bundle(vae=None, unet=None, scheduler_config={}, conditioner=None, profile="audioldm")
    shape = Layout(frames=24, padded=24, ratio=2, latent=(4, 12, 32))
    mask = band_mask(bundle, shape, (0.0, 4000.0))
    edges = librosa.mel_frequencies(N_MELS + 2, fmin=0, fmax=8000)  # the audioldm profile's bands
    bands = int((edges[2:] <= 4000).sum())  # bands wholly below 4 kHz: their upper edge is
    assert mask.shape == (1, 1, 1, 32) and mask.flatten().tolist() == [1.0] * (bands // 2) + [0.0] * (32 - bands // 2)
    assert band_mask(bundle, shape, (0.0, 8000.0)).all()
    with pytest.raises(ConfigError, match="covers no whole mel band"):
        band_mask(bundle, shape, (100.0, 110.0))


def test_super_resolution_keeps_the_observed_low_band_exactly(bundle, low_wav):
    """AudioLDM §4 eq. 11 with a frequency mask: the low band of the 8-kHz input is kept, the rest generated."""
    from training.sample.generate import band_mask

    request = Request(["speech"], steps=4, per_prompt=2, super_resolve=low_wav)
    latents = sample_latents(bundle, request)
    with torch.no_grad():
        source = encode_source(bundle, low_wav, layout(bundle, None).padded, "cpu").expand(2, -1, -1, -1)
    kept = int(band_mask(bundle, layout(bundle, None), (0.0, 4000.0)).sum())
    assert 0 < kept < 32
    assert torch.equal(latents[..., :kept], source[..., :kept])
    assert not torch.allclose(latents[..., kept:], source[..., kept:], atol=1e-2)
    assert torch.equal(latents, sample_latents(bundle, request))  # determinism by seed
    lower = sample_latents(bundle, replace(request, cutoff=2000.0))  # a lower cutoff keeps fewer columns
    assert not torch.equal(lower[..., kept - 2 : kept], source[..., kept - 2 : kept])


def test_inpainting_masks_have_a_frequency_axis(bundle, source_wav):
    from training.sample.generate import band_mask

    request = Request(
        ["thunder"], steps=4, inpaint_source=source_wav, inpaint_keep=(0.0, 0.1), inpaint_band=(0.0, 4000.0)
    )
    latents = sample_latents(bundle, request)
    with torch.no_grad():
        source = encode_source(bundle, source_wav, layout(bundle, None).padded, "cpu")
    columns = int(band_mask(bundle, layout(bundle, None), (0.0, 4000.0)).sum())
    assert torch.equal(latents[:, :, :5, :columns], source[:, :, :5, :columns])  # kept: time ∩ band
    assert not torch.allclose(latents[:, :, :5, columns:], source[:, :, :5, columns:], atol=1e-2)
    band_only = sample_latents(bundle, replace(request, inpaint_keep=None))  # the whole time, the low band
    assert torch.equal(band_only[..., :columns], source[..., :columns])


def test_bad_requests_are_one_line_errors(bundle, tmp_path):
    with pytest.raises(ConfigError, match="unknown sampler 'euler'"):
        Request(["a"], sampler="euler")
    with pytest.raises(ConfigError, match=r"eta \(DDIM η\) is for sampler ddim only"):
        Request(["a"], sampler="ddpm", eta=0.5)
    with pytest.raises(ConfigError, match=r"eta \(DDIM η\) must be a number >= 0"):
        Request(["a"], eta=-0.1)
    with pytest.raises(ConfigError, match="inpaint_source and inpaint_keep"):
        Request(["a"], inpaint_keep=(1.0, 2.0))
    with pytest.raises(ConfigError, match="covers no frame"):
        sample_latents(bundle, Request(["a"], steps=1, inpaint_source=tmp_path / "x.wav", inpaint_keep=(5.0, 6.0)))
    with pytest.raises(ConfigError, match="cannot read the source audio"):
        sample_latents(bundle, Request(["a"], steps=1, style_source=tmp_path / "missing.wav"))
    with pytest.raises(ConfigError, match="cannot read the source audio"):
        sample_latents(bundle, Request(["a"], steps=1, super_resolve=tmp_path / "missing.wav"))
    with pytest.raises(ConfigError, match="cutoff"):
        Request(["a"], cutoff=4000.0)
    full = tmp_path / "full.wav"
    sf.write(full, np.zeros(1600, np.float32), 16000)
    with pytest.raises(ConfigError, match="nothing to super-resolve"):
        sample_latents(bundle, Request(["a"], steps=1, super_resolve=full))


def test_write_outputs_files_and_summary(tmp_path):
    request = Request(["A dog barks!", "rain on a roof"], steps=3, guidance=2.5, seed=9, per_prompt=2)
    mels = torch.randn(4, 24, N_MELS)
    waves = torch.linspace(-2, 2, 24 * HOP).repeat(4, 1)  # peak 2: must be scaled, not clipped
    paths = write_outputs(tmp_path / "out", request.prompts, mels, waves, RATE, request, info={"step": 7})
    names = [p.name for p in paths]
    assert names[:2] == ["000-a-dog-barks.wav", "000-a-dog-barks.png"]
    assert names[-3:] == ["003-rain-on-a-roof.wav", "003-rain-on-a-roof.png", "samples.json"]
    audio, rate = sf.read(paths[0])
    assert rate == RATE and audio.shape == (24 * HOP,) and sf.info(paths[0]).subtype == "PCM_16"
    assert 0.98 < np.abs(audio).max() <= 0.99 + 1e-4 and np.corrcoef(audio, waves[0].numpy())[0, 1] > 0.9999
    with Image.open(paths[1]) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]
    summary = json.loads(paths[-1].read_text())
    assert [item["seed"] for item in summary["items"]] == [9, 10, 11, 12]
    assert [item["prompt"] for item in summary["items"]] == ["A dog barks!"] * 2 + ["rain on a roof"] * 2
    assert summary["items"][3]["wav"] == "003-rain-on-a-roof.wav" and summary["model"] == {"step": 7}
    assert (
        summary["request"]["steps"] == 3
        and summary["request"]["guidance"] == 2.5
        and summary["request"]["sampler"] == "ddim"
    )
    assert summary["sample_rate"] == RATE
    assert not list((tmp_path / "out").glob("*.tmp"))
    with pytest.raises(ValueError, match="non-finite|NaN"):
        write_outputs(tmp_path / "bad", ["x"], mels[:1], torch.full((1, 100), float("nan")), RATE, Request(["x"]))


def test_read_prompts(tmp_path):
    listing = tmp_path / "prompts.txt"
    listing.write_text("# birds\na bird sings\n\n   \n  rain falls  \n#x\n")
    assert read_prompts(["wind"], listing) == ["wind", "a bird sings", "rain falls"]
    assert read_prompts(["wind", " "], None) == ["wind"]
    with pytest.raises(ConfigError, match="cannot read the prompts file"):
        read_prompts([], tmp_path / "missing.txt")
    only_comments = tmp_path / "empty.txt"
    only_comments.write_text("# nothing yet\n\n")
    assert read_prompts([], only_comments) == [] and read_prompts([], None) == []  # the caller falls back
    with pytest.raises(ConfigError, match="no prompts"):
        Request(read_prompts([], only_comments))


def test_run_loads_generates_and_writes(bundle, tmp_path, monkeypatch):
    loaded = []
    fake = types.SimpleNamespace(load_bundle=lambda path, device: loaded.append((path, device)) or bundle)
    monkeypatch.setitem(sys.modules, "training.models.pipeline", fake)
    paths = run(tmp_path / "ckpt", Request(["a bell"], steps=2, seconds=0.2, griffin_lim_iters=2), tmp_path / "samples")
    assert loaded == [(tmp_path / "ckpt", "cpu")]
    assert [p.name for p in paths] == ["000-a-bell.wav", "000-a-bell.png", "samples.json"]
    assert sf.info(paths[0]).frames == round(0.2 * RATE)
    assert json.loads(paths[-1].read_text())["model"] == {"step": 7}
