"""The mel VAE of AudioLDM App. C: a diffusers AutoencoderKL over one-channel mels, and its loss.

    vae = build_vae(config.vae)                     # r = 2^(levels - 1); AudioLDM: r = 4, C = 8
    moments = encode_moments(vae, mel)              # [B, 1, T, M] → [B, 2C, T/r, M/r] (mean, logvar)
    z = sample_latent(moments, generator)           # z = μ + σ·ε (App. C: "ẑ = ẑ_μ + ẑ_σ·ε")

The loss (App. C) is the mel's mean absolute error, a Gaussian constraint (KL to N(0, I)) and a PatchGAN
adversarial term that joins after `adversarial_start` steps, weighted adaptively as in taming-transformers
and latent-diffusion (Esser et al. 2021, eq. 7): λ = ‖∇_L L_rec‖ / ‖∇_L L_adv‖ at the decoder's last layer L.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import Tensor, nn

from pipelines.core.config import ConfigError
from training.config import VaeConfig, VaeLossConfig
from training.models.discriminator import NLayerDiscriminator

ADAPTIVE_MAX = 1e4  # the adaptive weight's clamp (taming-transformers)
LOGVAR_RANGE = (-30.0, 20.0)  # DiagonalGaussianDistribution's clamp


def build_vae(cfg: VaeConfig) -> AutoencoderKL:
    """From `cfg.init` (an AutoencoderKL folder, or a pipeline folder holding vae/) or a fresh one from the config."""
    if cfg.init is not None:
        return _load(Path(cfg.init))
    levels = len(cfg.block_out_channels)
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise ConfigError(
            f"vae.block_out_channels {cfg.block_out_channels} must all divide by vae.norm_num_groups {cfg.norm_num_groups}"
        )
    return AutoencoderKL(
        in_channels=1,
        out_channels=1,  # one mel channel: the mel is a [T, n_mels] image
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        scaling_factor=1.0,  # until calibrate_scaling measures it
    )


def _load(path: Path) -> AutoencoderKL:
    folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"vae.init: no AutoencoderKL at {path} (expected config.json there or in {path / 'vae'}); fix the path or remove vae.init"
        )
    vae = AutoencoderKL.from_pretrained(folder, local_files_only=True)
    if vae.config.in_channels != 1 or vae.config.out_channels != 1:
        raise ConfigError(
            f"vae.init: {folder} takes {vae.config.in_channels}-channel images; a mel VAE takes one channel"
        )
    return vae


def compression(vae: AutoencoderKL) -> int:
    """r: each of the encoder's levels but the last halves time and frequency."""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_moments(vae: AutoencoderKL, mel: Tensor) -> Tensor:
    """mel [B, 1, T, M] → the posterior's (mean, logvar) [B, 2C, T/r, M/r], what latent shards store."""
    r = compression(vae)
    if mel.dim() != 4 or mel.shape[1] != 1 or mel.shape[2] % r or mel.shape[3] % r:
        raise ValueError(
            f"the VAE encodes mels [B, 1, T, n_mels] with T and n_mels multiples of r = {r}; got {tuple(mel.shape)}"
        )
    return vae.encode(mel.to(vae.device, vae.dtype)).latent_dist.parameters


def sample_latent(moments: Tensor, generator: torch.Generator | None) -> Tensor:
    """z = μ + exp(½·logvar)·ε in float32, ε drawn from `generator` (on its own device, then moved)."""
    mean, logvar = moments.float().chunk(2, dim=1)
    std = torch.exp(0.5 * logvar.clamp(*LOGVAR_RANGE))
    if generator is None:
        noise = torch.randn(mean.shape, device=mean.device)
    else:
        noise = torch.randn(mean.shape, generator=generator, device=generator.device).to(mean.device)
    return mean + std * noise


@torch.no_grad()
def calibrate_scaling(vae: AutoencoderKL, mels: Iterable[Tensor]) -> float:
    """1 / std of posterior samples over `mels` (Rombach et al. 2022 §4.3.2, Stable Diffusion's 0.18215),
    so the LDM sees unit-variance latents. The caller stores it: vae.register_to_config(scaling_factor=…)."""
    generator = torch.Generator().manual_seed(0)
    total, squares, count = 0.0, 0.0, 0
    for mel in mels:
        z = sample_latent(encode_moments(vae, mel), generator).double()
        total, squares, count = total + float(z.sum()), squares + float(z.square().sum()), count + z.numel()
    if count < 2:
        raise ValueError("calibrate_scaling needs at least one mel batch")
    variance = (squares - total * total / count) / (count - 1)
    if variance <= 0:
        raise ValueError("the VAE's latents have zero variance: cannot calibrate the scaling factor")
    return float(variance**-0.5)


class VaeLoss(nn.Module):
    """AudioLDM App. C's three terms; owns the PatchGAN discriminator (give `parameters()` to its optimizer)."""

    def __init__(self, cfg: VaeLossConfig):
        super().__init__()
        self.cfg = cfg
        self.discriminator = NLayerDiscriminator(1, cfg.discriminator_channels, cfg.discriminator_layers)

    def generator_loss(
        self, mel: Tensor, reconstruction: Tensor, posterior, step: int, last_layer: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """L1 + kl_weight·KL + [step ≥ adversarial_start]·adversarial_weight·λ·(−D(x̂)).mean().

        KL is the posterior's per-sample sum (as in latent-diffusion, where kl_weight = 1e-6 comes from)
        divided by the mel's element count, the same normalisation as the mean-absolute-error term.
        `posterior`: a DiagonalGaussianDistribution or its moments [B, 2C, h, w]."""
        if isinstance(posterior, Tensor):
            posterior = DiagonalGaussianDistribution(posterior.float())
        rec = (reconstruction.float() - mel.float()).abs().mean()
        kl = posterior.kl().float().mean() / mel[0].numel()
        total = rec + self.cfg.kl_weight * kl
        adv, weight = torch.zeros((), device=rec.device), 0.0
        if step >= self.cfg.adversarial_start:
            with _frozen(self.discriminator):  # its gradients come from discriminator_loss only
                adv = -self.discriminator(reconstruction).float().mean()
            weight = self.cfg.adversarial_weight * _adaptive_weight(rec, adv, last_layer)
            total = total + weight * adv
        return total, _floats(rec=rec, kl=kl, adv=adv, adv_weight=weight, total=total)

    def discriminator_loss(self, mel: Tensor, reconstruction: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """The hinge loss ½·(E[relu(1 − D(x))] + E[relu(1 + D(x̂))]); a grad-free 0 before adversarial_start."""
        if step < self.cfg.adversarial_start:
            return torch.zeros((), device=mel.device), {"loss": 0.0, "logits_real": 0.0, "logits_fake": 0.0}
        real = self.discriminator(mel.detach()).float()
        fake = self.discriminator(reconstruction.detach()).float()
        loss = 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        return loss, _floats(loss=loss, logits_real=real.mean(), logits_fake=fake.mean())


def _adaptive_weight(rec: Tensor, adv: Tensor, last_layer: Tensor | None) -> float:
    """‖∇ rec‖ / ‖∇ adv‖ at the decoder's last layer, clamped to [0, 1e4] (taming-transformers); 1 without one."""
    if last_layer is None or not (torch.is_grad_enabled() and last_layer.requires_grad and adv.requires_grad):
        return 1.0
    rec_grad = torch.autograd.grad(rec, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adv, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (adv_grad.norm() + 1e-4)
    return float(weight.clamp(0.0, ADAPTIVE_MAX))


def _floats(**values: Tensor | float) -> dict[str, float]:
    return {k: float(v.detach()) if isinstance(v, Tensor) else float(v) for k, v in values.items()}


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """The module's parameters take no gradient in the forwards inside (the input still does)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(module.parameters(), flags):
            parameter.requires_grad_(flag)
