"""The latent diffusion model: a diffusers UNet2DConditionModel, the DDPM forward process and its loss,
and the samplers by name.

AudioLDM App. B: Stable Diffusion's UNet, attention in every level but the first, N = 1000 steps,
linear β 0.0015 → 0.0195, DDIM sampling. The loss is eq. 3, ‖ε − ε_θ(z_n, n, E)‖², with z_n from eq. 2;
Make-An-Audio eq. 1 is the same objective.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UNet2DConditionModel
from torch import Tensor

from pipelines.core.config import ConfigError
from pipelines.core.registry import Registry
from training.config import LdmConfig, SchedulerConfig

SAMPLERS: Registry[Any] = Registry("sampler")


def build_unet(
    cfg: LdmConfig, conditioner, latent_channels: int, sample_size: tuple[int, int] | int
) -> UNet2DConditionModel:
    """From `cfg.init` (fine-tuning; a UNet folder or a pipeline folder holding unet/) or from `cfg.unet`.

    clap-audio has exactly the layout diffusers' AudioLDM conversion writes (scripts/convert_original_audioldm_
    to_diffusers.py): the CLAP vector through a "simple_projection" class embedding concatenated to the time
    embedding (App. B: FiLM), cross_attention_dim = block_out_channels so the attention blocks attend to
    themselves (encoder_hidden_states=None), hence diffusers.AudioLDMPipeline runs it. Cross-attention modes
    attend to the conditioner's tokens (cross_attention_dim = its width, or `unet.cross_attention_dim` through
    a learned projection). sample_size is stored as the latent's time length: AudioLDMPipeline's default
    duration is sample_size · r · hop / sample_rate.
    """
    if cfg.init is not None:
        unet = _load(Path(cfg.init))
        _check_compatible(unet, conditioner, latent_channels)
        return unet
    u = cfg.unet
    attended = u.block_out_channels[1:] or u.block_out_channels  # the levels with attention, and the middle
    if u.head_channels is not None:
        if any(c % u.head_channels for c in attended):
            raise ConfigError(
                f"ldm.unet.block_out_channels {u.block_out_channels} must divide by head_channels {u.head_channels}"
            )
        # AudioLDM App. B: heads = channels / c_h per level (the first level has no attention; any count works there)
        heads: int | tuple[int, ...] = tuple(max(1, c // u.head_channels) for c in u.block_out_channels)
    else:
        heads = u.attention_head_dim
    if any(c % u.norm_num_groups for c in u.block_out_channels) or (
        u.head_channels is None and any(c % u.attention_head_dim for c in attended)
    ):
        raise ConfigError(
            f"ldm.unet.block_out_channels {u.block_out_channels} must divide by norm_num_groups {u.norm_num_groups} and attention_head_dim {u.attention_head_dim}"
        )
    levels = len(u.block_out_channels)
    common = dict(
        sample_size=sample_size if isinstance(sample_size, int) else int(sample_size[0]),
        in_channels=latent_channels,
        out_channels=latent_channels,
        layers_per_block=u.layers_per_block,
        block_out_channels=tuple(u.block_out_channels),
        norm_num_groups=u.norm_num_groups,
        # diffusers' (historically named) attention_head_dim is the number of heads; AudioLDM's conversion keeps 8.
        attention_head_dim=heads,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",),
    )
    return UNet2DConditionModel(**common, **_conditioning_layout(cfg, conditioner))


def _conditioning_layout(cfg: LdmConfig, conditioner) -> dict[str, Any]:
    if conditioner.kind == "class":
        if cfg.unet.cross_attention_dim is not None:
            raise ConfigError(
                f"ldm.unet.cross_attention_dim applies to cross-attention conditioning; {conditioner.name!r} conditions through the class embedding: remove it"
            )
        return dict(
            cross_attention_dim=list(cfg.unet.block_out_channels),
            class_embed_type="simple_projection",
            projection_class_embeddings_input_dim=conditioner.dim,
            class_embeddings_concat=True,
        )
    width = cfg.unet.cross_attention_dim or conditioner.dim
    if width == conditioner.dim:
        return dict(cross_attention_dim=width)
    # Make-An-Audio App. B: the 768-wide CLAP token states are projected to the 1024 condition channels.
    return dict(cross_attention_dim=width, encoder_hid_dim=conditioner.dim, encoder_hid_dim_type="text_proj")


def _load(path: Path) -> UNet2DConditionModel:
    folder = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"ldm.init: no UNet2DConditionModel at {path} (expected config.json there or in {path / 'unet'}); fix the path or remove ldm.init"
        )
    return UNet2DConditionModel.from_pretrained(folder, local_files_only=True)


def _check_compatible(unet: UNet2DConditionModel, conditioner, latent_channels: int) -> None:
    c = unet.config
    if c.in_channels != latent_channels:
        raise ConfigError(
            f"ldm.init: the UNet takes {c.in_channels} latent channels but the VAE makes {latent_channels}"
        )
    if conditioner.kind == "class":
        ok = c.class_embed_type == "simple_projection" and c.projection_class_embeddings_input_dim == conditioner.dim
        wants = f"a simple_projection class embedding of width {conditioner.dim}"
    else:
        width = c.encoder_hid_dim if c.encoder_hid_dim_type == "text_proj" else c.cross_attention_dim
        ok, wants = width == conditioner.dim, f"cross-attention to {conditioner.dim}-wide tokens"
    if not ok:
        raise ConfigError(f"ldm.init: the UNet does not fit conditioning {conditioner.name!r}, which needs {wants}")


def build_scheduler(cfg: SchedulerConfig) -> DDPMScheduler:
    """The forward process q(z_n | z_0) (AudioLDM eq. 1-2; App. B: N = 1000, β 0.0015 → 0.0195).

    AudioLDM's code (latent-diffusion's make_beta_schedule "linear") spaces √β linearly, which diffusers calls
    "scaled_linear" and its AudioLDM conversion uses; beta_schedule "linear" spaces β itself linearly."""
    return DDPMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_start=cfg.beta_start,
        beta_end=cfg.beta_end,
        beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction_type,
        clip_sample=False,  # latents are not bounded like pixels in [-1, 1]
    )


def diffusion_loss(
    unet,
    scheduler: DDPMScheduler,
    latents: Tensor,
    unet_kwargs: dict,
    generator: torch.Generator,
    snr_gamma: float | None = None,
) -> Tensor:
    """AudioLDM eq. 3: n ~ U{0..N-1}, ε ~ N(0, I), z_n = √ᾱ_n·z_0 + √(1-ᾱ_n)·ε (eq. 2); MSE to ε, or to
    v = √ᾱ_n·ε − √(1-ᾱ_n)·z_0 for prediction_type v_prediction. The loss is float32 under autocast too.

    `snr_gamma`: Min-SNR-γ weighting (Hang et al. 2023, eq. 7 for ε): each sample's MSE times
    min(SNR_n, γ) / SNR_n (/ (SNR_n + 1) for v), so the nearly noise-free steps, whose fine detail the
    plain loss is dominated by, stop crowding out the mid-noise steps where coarse structure and
    the condition are learned; diffusers' training scripts' `--snr_gamma`."""
    rows, device = latents.shape[0], latents.device
    latents = latents.float()
    t = torch.randint(
        0, scheduler.config.num_train_timesteps, (rows,), generator=generator, device=generator.device
    ).to(device)
    noise = torch.randn(latents.shape, generator=generator, device=generator.device).to(device)
    noisy = scheduler.add_noise(latents, noise, t)
    if scheduler.config.prediction_type == "epsilon":
        target = noise
    elif scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, t)
    else:
        raise ValueError(
            f"unsupported prediction_type {scheduler.config.prediction_type!r}; use epsilon or v_prediction"
        )
    prediction = unet(noisy, t, **unet_kwargs).sample
    if snr_gamma is None:
        return F.mse_loss(prediction.float(), target)
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, t).float()
    weight = torch.clamp(snr, max=snr_gamma) / (snr if scheduler.config.prediction_type == "epsilon" else snr + 1)
    return (
        F.mse_loss(prediction.float(), target, reduction="none").mean(dim=tuple(range(1, target.ndim))) * weight
    ).mean()


def make_sampler(name: str, scheduler_config: dict[str, Any]):
    """A fresh sampler (`ddim`, `dpm-solver++`, `ddpm`) over the training forward process `scheduler_config`."""
    return SAMPLERS.get(name)(dict(scheduler_config))


def _from(cls, config: dict[str, Any], **overrides):
    # Only the target's own arguments: a DDPM config carries keys DDIM does not take, and vice versa.
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in config.items() if k in accepted}, **overrides)


@SAMPLERS.register("ddim")
def _ddim(config: dict[str, Any]) -> DDIMScheduler:
    # AudioLDM App. B samples with latent-diffusion's DDIM: timesteps offset by one, last step to ᾱ_0.
    return _from(DDIMScheduler, {**config, "set_alpha_to_one": False, "steps_offset": 1})


@SAMPLERS.register("dpm-solver++")
def _dpm_solver(config: dict[str, Any]) -> DPMSolverMultistepScheduler:
    return _from(DPMSolverMultistepScheduler, {**config, "algorithm_type": "dpmsolver++"})


@SAMPLERS.register("ddpm")
def _ddpm(config: dict[str, Any]) -> DDPMScheduler:
    return _from(DDPMScheduler, config)
