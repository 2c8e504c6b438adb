"""The latent diffusion model: the UNet per conditioning mode, the forward process, the loss against its closed
form, that the loss falls, CFG dropout, and the samplers by name."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from tiny_training import LATENT_CHANNELS, build_tiny_clap, build_tiny_clip, tiny_ldm_config

from pipelines.core.config import ConfigError
from pipelines.core.registry import UnknownName
from training.config import SchedulerConfig, UnetConfig
from training.models.conditioning import build_conditioner, drop_condition
from training.models.ldm import build_scheduler, build_unet, diffusion_loss, make_sampler

MODES = ("clap-audio", "clap-text", "clip-image")
BATCH = {
    "clap_audio": torch.randn(4, 32, generator=torch.Generator().manual_seed(1)),
    "clip_image_mean": torch.randn(4, 32, generator=torch.Generator().manual_seed(2)),
    "caption": ["a dog barks", "rain falls on a roof", "a car passes by", "a bell rings twice"],
}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> dict:
    base = tmp_path_factory.getbasetemp()
    return {"clap": build_tiny_clap(base), "clip": build_tiny_clip(base)}


@pytest.fixture(scope="module")
def conditioners(encoders) -> dict:
    return {mode: build_conditioner(tiny_ldm_config(mode, **encoders)) for mode in MODES}


def _unet(mode, encoders, conditioners, **overrides):
    torch.manual_seed(0)
    return build_unet(tiny_ldm_config(mode, **encoders, **overrides), conditioners[mode], LATENT_CHANNELS, (8, 16))


def test_clap_audio_unet_has_audioldms_diffusers_layout(encoders, conditioners):
    config = _unet("clap-audio", encoders, conditioners).config
    # scripts/convert_original_audioldm_to_diffusers.py: no attention at the first level, "cross" attention
    # over the block's own width (self-attention), the CLAP vector through a concatenated class embedding.
    assert config.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D")
    assert config.up_block_types == ("CrossAttnUpBlock2D", "UpBlock2D")
    assert list(config.cross_attention_dim) == [8, 16]
    assert (config.class_embed_type, config.projection_class_embeddings_input_dim, config.class_embeddings_concat) == (
        "simple_projection",
        32,
        True,
    )
    assert config.sample_size == 8  # the latent's time length: AudioLDMPipeline's default duration


@pytest.mark.parametrize("mode", MODES)
def test_unet_predicts_a_latent_shaped_output_from_each_conditioning(mode, encoders, conditioners):
    unet, conditioner = _unet(mode, encoders, conditioners), conditioners[mode]
    condition = conditioner.from_batch(BATCH)
    assert unet.config.cross_attention_dim == ([8, 16] if mode == "clap-audio" else conditioner.dim)
    latents = torch.randn(4, LATENT_CHANNELS, 8, 16)
    with torch.no_grad():
        out = unet(latents, torch.tensor([0, 10, 500, 999]), **conditioner.unet_kwargs(condition)).sample
        other = unet(latents, torch.tensor([0, 10, 500, 999]), **conditioner.unet_kwargs(conditioner.null(4))).sample
    assert out.shape == latents.shape
    assert not torch.allclose(out, other)  # the condition reaches the output


def test_a_wider_cross_attention_projects_the_tokens(encoders, conditioners):
    unet = _unet(
        "clap-text",
        encoders,
        conditioners,
        unet=UnetConfig(
            block_out_channels=[8, 16],
            layers_per_block=1,
            attention_head_dim=2,
            norm_num_groups=4,
            cross_attention_dim=24,
        ),
    )
    assert (unet.config.cross_attention_dim, unet.config.encoder_hid_dim, unet.encoder_hid_proj.in_features) == (
        24,
        32,
        32,
    )
    with pytest.raises(ConfigError, match="ldm.unet.cross_attention_dim applies to cross-attention"):
        _unet(
            "clap-audio",
            encoders,
            conditioners,
            unet=UnetConfig(
                block_out_channels=[8, 16], attention_head_dim=2, norm_num_groups=4, cross_attention_dim=24
            ),
        )


def test_init_reads_a_unet_or_a_pipeline_folder_and_checks_it_fits(encoders, conditioners, tmp_path):
    unet = _unet("clap-audio", encoders, conditioners)
    unet.save_pretrained(tmp_path / "pipeline" / "unet")
    loaded = _unet("clap-audio", encoders, conditioners, init=str(tmp_path / "pipeline"))
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), unet.state_dict().values()))
    with pytest.raises(ConfigError, match="does not fit conditioning 'clap-text'"):
        _unet("clap-text", encoders, conditioners, init=str(tmp_path / "pipeline" / "unet"))
    with pytest.raises(ConfigError, match="ldm.init: no UNet2DConditionModel"):
        _unet("clap-audio", encoders, conditioners, init=str(tmp_path / "nothing"))


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_forward_process_follows_the_config(schedule):
    scheduler = build_scheduler(SchedulerConfig(beta_schedule=schedule))
    betas = scheduler.betas.double()
    assert scheduler.config.num_train_timesteps == len(betas) == 1000  # AudioLDM App. B
    assert float(betas[0]) == pytest.approx(0.0015) and float(betas[-1]) == pytest.approx(0.0195)
    spaced = betas if schedule == "linear" else betas.sqrt()  # scaled_linear: latent-diffusion's "linear"
    torch.testing.assert_close(
        spaced[1:] - spaced[:-1],
        torch.full((999,), float(spaced[1] - spaced[0]), dtype=torch.float64),
        atol=1e-7,
        rtol=0,
    )
    assert scheduler.config.clip_sample is False


class Recorder(torch.nn.Module):
    """A stand-in UNet predicting zeros and recording its inputs: the loss is then mean(target²)."""

    def forward(self, noisy, t, **kwargs):
        self.noisy, self.t, self.kwargs = noisy, t, kwargs
        return SimpleNamespace(sample=torch.zeros_like(noisy))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_loss_matches_the_closed_form(prediction):
    scheduler = build_scheduler(SchedulerConfig(prediction_type=prediction))
    latents = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    unet = Recorder()
    loss = diffusion_loss(unet, scheduler, latents, {"class_labels": "c"}, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)  # the same draws, in the same order: t, then ε
    t = torch.randint(0, 1000, (3,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    alpha_bar = torch.cumprod(1 - scheduler.betas, 0)[t].view(3, 1, 1, 1)
    assert torch.equal(unet.t, t) and unet.kwargs == {"class_labels": "c"}
    torch.testing.assert_close(unet.noisy, alpha_bar.sqrt() * latents + (1 - alpha_bar).sqrt() * noise)  # eq. 2
    target = noise if prediction == "epsilon" else alpha_bar.sqrt() * noise - (1 - alpha_bar).sqrt() * latents
    assert float(loss) == pytest.approx(float(target.square().mean()), rel=1e-5)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_min_snr_weights_each_sample_by_min_snr_gamma_over_snr(prediction):
    scheduler = build_scheduler(SchedulerConfig(prediction_type=prediction))
    latents = torch.randn(64, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    weighted = diffusion_loss(Recorder(), scheduler, latents, {}, torch.Generator().manual_seed(5), snr_gamma=5.0)
    generator = torch.Generator().manual_seed(5)
    t = torch.randint(0, 1000, (64,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    alpha_bar = torch.cumprod(1 - scheduler.betas, 0)[t]
    snr = alpha_bar / (1 - alpha_bar)  # Hang et al. 2023: SNR_t = ᾱ_t / (1 − ᾱ_t)
    a = alpha_bar.view(64, 1, 1, 1)
    target = noise if prediction == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * latents
    weight = snr.clamp(max=5.0) / (snr if prediction == "epsilon" else snr + 1)
    expected = (target.square().mean(dim=(1, 2, 3)) * weight).mean()
    assert float(weighted) == pytest.approx(float(expected), rel=1e-5)
    assert (weight <= 1.0 + 1e-6).all() and (weight < 1.0).any()  # down-weights the nearly noise-free steps only


def test_loss_is_float32_under_autocast(encoders, conditioners):
    unet, conditioner = _unet("clap-audio", encoders, conditioners), conditioners["clap-audio"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = diffusion_loss(
            unet,
            build_scheduler(SchedulerConfig()),
            torch.randn(2, LATENT_CHANNELS, 8, 16),
            conditioner.unet_kwargs(conditioner.null(2)),
            torch.Generator().manual_seed(0),
        )
    assert loss.dtype == torch.float32 and loss.dim() == 0


@pytest.mark.parametrize("mode", MODES)
def test_loss_falls_on_a_fixed_latent_batch(mode, encoders, conditioners):
    unet, conditioner = _unet(mode, encoders, conditioners), conditioners[mode]
    scheduler = build_scheduler(SchedulerConfig())
    generator = torch.Generator().manual_seed(0)
    latents = 0.5 * torch.randn(4, LATENT_CHANNELS, 8, 16, generator=generator) + torch.linspace(-1, 1, 16)
    kwargs = conditioner.unet_kwargs(conditioner.from_batch(BATCH))

    def held_out() -> float:  # the same timesteps and noise every time
        with torch.no_grad():
            return float(diffusion_loss(unet, scheduler, latents, kwargs, torch.Generator().manual_seed(123)))

    opt = torch.optim.Adam(unet.parameters(), lr=3e-3)
    first = held_out()
    for _ in range(30):
        loss = diffusion_loss(unet, scheduler, latents, kwargs, generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out() < 0.7 * first


def test_condition_dropout_rate_and_determinism():
    condition, null = torch.ones(20_000, 3), torch.zeros(1, 3).expand(20_000, 3)
    dropped = drop_condition(condition, null, 0.1, torch.Generator().manual_seed(0))
    rows = dropped[:, 0] == 0
    assert (dropped[rows] == 0).all() and (dropped[~rows] == 1).all()  # whole rows, one or the other
    assert float(rows.float().mean()) == pytest.approx(0.1, abs=0.01)
    assert torch.equal(dropped, drop_condition(condition, null, 0.1, torch.Generator().manual_seed(0)))
    assert not torch.equal(dropped, drop_condition(condition, null, 0.1, torch.Generator().manual_seed(1)))
    assert torch.equal(drop_condition(condition, null, 0.0, torch.Generator()), condition)
    assert torch.equal(drop_condition(condition, null, 1.0, torch.Generator()), null)
    tokens = torch.ones(4000, 5, 2)  # token states: whole [L, H] rows are replaced
    dropped = drop_condition(tokens, torch.zeros(4000, 5, 2), 0.5, torch.Generator().manual_seed(0))
    assert set(dropped.sum(dim=(1, 2)).tolist()) == {0.0, 10.0}


def test_samplers_by_name_share_the_training_forward_process():
    config = dict(build_scheduler(SchedulerConfig(prediction_type="v_prediction")).config)
    ddim = make_sampler("ddim", config)
    assert isinstance(ddim, DDIMScheduler) and (ddim.config.set_alpha_to_one, ddim.config.steps_offset) == (False, 1)
    dpm = make_sampler("dpm-solver++", config)
    assert isinstance(dpm, DPMSolverMultistepScheduler) and dpm.config.algorithm_type == "dpmsolver++"
    ddpm = make_sampler("ddpm", config)
    assert type(ddpm) is DDPMScheduler
    for sampler in (ddim, dpm, ddpm):
        assert sampler.config.prediction_type == "v_prediction"
        torch.testing.assert_close(sampler.betas, build_scheduler(SchedulerConfig()).betas)
    with pytest.raises(UnknownName, match="unknown sampler 'euler'; valid names: ddim, ddpm, dpm-solver"):
        make_sampler("euler", config)
