"""The spectrogram codebook: a diffusers VQModel over one-channel mels, its loss, its health.

    vq = build_codebook(config.codebook)          # encoder → n_z-dim codes → nearest of K → decoder
    codes = encode_indices(vq, mel)               # mel [B, 1, T, M] → indices [B, T/r, M/r] (int64)
    mel = decode_indices(vq, codes)               # indices → mel [B, 1, T'·r, M] (T' = T/r, floored)

Downsampling. The encoder halves time and frequency once per level but the last (r = 2^(levels − 1)),
each time with a stride-2 3×3 convolution after padding one row/column at the end (taming-transformers'
and diffusers' Downsample2D): n → ⌊(n − 2)/2⌋ + 1 = ⌈n/2⌉ for even n, ⌊n/2⌋ + 1 for odd. Diffsound §VI-B
turns its 860 × 80 mel into 53 × 5 tokens: with SpecVQGAN's ch_mult (1, 1, 2, 2, 4), i.e. five levels and
four halvings, 860 → 430 → 215 → 107 → 53 frames and 80 → 40 → 20 → 10 → 5 bins. The decoder doubles
four times: 53 × 5 tokens decode to 848 × 80 (9.84 s of the 9.98 s the 860 frames hold; the last
12 frames are not represented). Li et al. 2023's 800 × 80 mel (vqgan-32k) gives 50 × 5 tokens.

Token grid. Indices are stored [T', F'] (time rows, frequency columns, as the mel [T, n_mels]); the
papers' grid is m × t (frequency × time). Li et al. 2023 §2.3 flattens it column-major after SpecVQGAN:
the m codes of time column 1, then of column 2, ...: that is `grid.reshape(B, T'·F')` of the [T', F']
layout here (`flatten_column_major`).

Loss (`CodebookLoss`). Diffsound §III-B eq. 2–3: ‖s − ŝ‖₁ + ‖sg[E(s)] − z_q‖² + β‖sg[z_q] − E(s)‖² (β = 1)
+ λ_d·GAN; Li et al. 2023 §2.1 eq. 3–4: the same with ‖x̂ − x‖², a β, the GAN term and a perceptual term
Σ_s 1/(M_s T_s)‖x^s − x̂^s‖² over the scales of a VGGish-ish mel classifier (training/models/vggishish.py).
The GAN part is the hinge loss of taming-transformers (the VQGAN both papers follow) with its adaptive
weight, zeroed before `adversarial_start` (Diffsound §VI-B: the first 2 epochs; Li et al. §3.2).
The straight-through estimator (VQ-VAE, van den Oord et al. 2017) carries the decoder's gradient to the encoder.

Health (`CodebookHealth`): an EMA of the per-batch code histogram; logged as usage (share of the K codes
used in the batch), perplexity (exp of the batch histogram's entropy; K when all codes are equally used)
and dead codes (EMA share below `dead_usage`); every `restart_every` steps the dead codes are restarted
at encoder outputs drawn from the batch (Dhariwal et al. 2020, Jukebox's random restarts), so a
collapsed codebook shows in the logs and recovers.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import VQModel
from torch import Tensor, nn

from pipelines.core.config import ConfigError
from training.config import CodebookConfig, CodebookLossConfig
from training.models.discriminator import NLayerDiscriminator
from training.models.vae import _adaptive_weight, _floats, _frozen


def build_codebook(cfg: CodebookConfig) -> VQModel:
    """From `cfg.init` (a VQModel folder) or a fresh VQModel: 1-channel mels, K codes of n_z dimensions."""
    if cfg.init is not None:
        folder = Path(cfg.init)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"codebook.init: no VQModel at {folder} (no config.json); fix the path or remove it")
        return VQModel.from_pretrained(folder, local_files_only=True)
    levels = len(cfg.block_out_channels)
    if any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise ConfigError(
            f"codebook.block_out_channels {cfg.block_out_channels} must all divide by codebook.norm_num_groups {cfg.norm_num_groups}"
        )
    return VQModel(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.code_dim,
        num_vq_embeddings=cfg.codebook_size,
        vq_embed_dim=cfg.code_dim,
        norm_num_groups=cfg.norm_num_groups,
        scaling_factor=1.0,
    )


def levels(vq: VQModel) -> int:
    return len(vq.config.block_out_channels) - 1


def grid_shape(vq: VQModel, frames: int, n_mels: int) -> tuple[int, int]:
    """The token grid (T', F') of a [frames, n_mels] mel: each halving maps n → ⌊(n − 2)/2⌋ + 1."""
    for _ in range(levels(vq)):
        frames, n_mels = (frames - 2) // 2 + 1, (n_mels - 2) // 2 + 1
    return frames, n_mels


def codebook_size(vq: VQModel) -> int:
    return int(vq.config.num_vq_embeddings)


def encode_latents(vq: VQModel, mel: Tensor) -> Tensor:
    """mel [B, 1, T, M] → the encoder's continuous codes ẑ [B, n_z, T', F'] (before quantisation)."""
    if mel.dim() != 4 or mel.shape[1] != 1:
        raise ValueError(f"the codebook encodes mels [B, 1, T, n_mels]; got {tuple(mel.shape)}")
    return vq.encode(mel.to(vq.device, vq.dtype)).latents


def nearest(vq: VQModel, z: Tensor) -> Tensor:
    """Diffsound eq. 1 / Li et al. eq. 1: argmin_k ‖ẑ_ij − z_k‖ per position → [B, T', F'] int64."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).float()
    codes = vq.quantize.embedding.weight.float()
    distances = flat.square().sum(1, keepdim=True) - 2 * flat @ codes.T + codes.square().sum(1)[None]
    return distances.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])


@torch.no_grad()
def encode_indices(vq: VQModel, mel: Tensor) -> Tensor:
    return nearest(vq, encode_latents(vq, mel))


def lookup(vq: VQModel, indices: Tensor) -> Tensor:
    """Li et al. 2023 eq. 7: (z_q)_ij = z_l where s_ij = l; [B, T', F'] → [B, n_z, T', F']."""
    return vq.quantize.embedding(indices.to(vq.device)).permute(0, 3, 1, 2).contiguous()


def decode_codes(vq: VQModel, z_q: Tensor) -> Tensor:
    return vq.decode(z_q, force_not_quantize=True).sample


@torch.no_grad()
def decode_indices(vq: VQModel, indices: Tensor) -> Tensor:
    """Li et al. 2023 eq. 8: x̂ = D(z_q); indices [B, T', F'] → mel [B, 1, T'·r, F'·r]."""
    return decode_codes(vq, lookup(vq, indices))


def flatten_column_major(grid: Tensor) -> Tensor:
    """[B, T', F'] → [B, T'·F']: each time column's F' frequency codes in turn (Li et al. 2023 §2.3)."""
    return grid.reshape(grid.shape[0], -1)


def unflatten_column_major(sequence: Tensor, grid: tuple[int, int]) -> Tensor:
    return sequence.reshape(sequence.shape[0], *grid)


class VqForward(nn.Module):
    """mel → (reconstruction, ẑ, z_q, indices) in one forward (DDP sees a forward call)."""

    def __init__(self, vq: VQModel):
        super().__init__()
        self.vq = vq

    def forward(self, mel: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z = self.vq.encode(mel).latents
        indices = nearest(self.vq, z.detach())
        z_q = lookup(self.vq, indices)
        straight = z + (z_q - z).detach()  # straight-through: ∂ŝ/∂ẑ = ∂ŝ/∂z_q
        return decode_codes(self.vq, straight), z, z_q, indices


class CodebookLoss(nn.Module):
    """Eq. 2–3 (Diffsound) / eq. 3–4 (Li et al. 2023); owns the patch discriminator (its own optimizer)."""

    def __init__(self, cfg: CodebookLossConfig, perceptual: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        self.discriminator = NLayerDiscriminator(1, cfg.discriminator_channels, cfg.discriminator_layers)
        # A frozen Vggishish, kept outside the module's parameters and state: not trained here, not checkpointed.
        object.__setattr__(self, "perceptual", perceptual)
        if cfg.perceptual_weight > 0 and perceptual is None:
            raise ConfigError(
                "codebook.loss.perceptual_weight > 0 needs codebook.loss.perceptual: a `t2a train vggishish` model folder"
            )

    def discriminator_parameters(self):
        return self.discriminator.parameters()

    def generator_loss(
        self, mel: Tensor, reconstruction: Tensor, z: Tensor, z_q: Tensor, step: int, last_layer: Tensor | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        diff = reconstruction.float() - mel.float()
        rec = diff.abs().mean() if self.cfg.reconstruction == "l1" else diff.square().mean()
        codebook = (z.detach().float() - z_q.float()).square().mean()  # ‖sg[ẑ] − z_q‖²: moves the codes
        commitment = (z_q.detach().float() - z.float()).square().mean()  # ‖sg[z_q] − ẑ‖²: moves the encoder
        total = rec + codebook + self.cfg.beta * commitment
        perceptual = torch.zeros((), device=rec.device)
        if self.cfg.perceptual_weight > 0:
            perceptual = perceptual_distance(self.perceptual, mel, reconstruction)
            total = total + self.cfg.perceptual_weight * perceptual
        adv, weight = torch.zeros((), device=rec.device), 0.0
        if step >= self.cfg.adversarial_start and self.cfg.adversarial_weight > 0:
            with _frozen(self.discriminator):
                adv = -self.discriminator(reconstruction).float().mean()
            scale = (
                _adaptive_weight(rec + self.cfg.perceptual_weight * perceptual, adv, last_layer)
                if self.cfg.adaptive
                else 1.0
            )
            weight = self.cfg.adversarial_weight * scale
            total = total + weight * adv
        parts = _floats(
            rec=rec,
            codebook=codebook,
            commitment=commitment,
            perceptual=perceptual,
            adv=adv,
            adv_weight=weight,
            total=total,
        )
        return total, parts

    def discriminator_loss(self, mel: Tensor, reconstruction: Tensor, step: int) -> tuple[Tensor, dict[str, float]]:
        """Hinge: ½·(E[relu(1 − D(x))] + E[relu(1 + D(x̂))]); a grad-free 0 while the adversarial part is zeroed."""
        if step < self.cfg.adversarial_start or self.cfg.adversarial_weight == 0:
            return torch.zeros((), device=mel.device), {"loss": 0.0, "logits_real": 0.0, "logits_fake": 0.0}
        real = self.discriminator(mel.detach()).float()
        fake = self.discriminator(reconstruction.detach()).float()
        loss = 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        return loss, _floats(loss=loss, logits_real=real.mean(), logits_fake=fake.mean())


def perceptual_distance(network: nn.Module, mel: Tensor, reconstruction: Tensor) -> Tensor:
    """Li et al. 2023 eq. 4: Σ_s 1/(M_s·T_s)·‖x^s − x̂^s‖² over the classifier's scales (features channel-averaged)."""
    with torch.no_grad():
        real = network.features(mel.float())
    fake = network.features(reconstruction.float())
    total = torch.zeros((), device=mel.device)
    for a, b in zip(real, fake):
        total = total + (a - b).square().sum(dim=(2, 3)).mean() / (a.shape[2] * a.shape[3])
    return total


class CodebookHealth(nn.Module):
    """Usage, perplexity and dead codes of a codebook; restarts dead codes (see the module docstring)."""

    def __init__(self, size: int, decay: float = 0.99, dead_usage: float = 1e-3):
        super().__init__()
        self.decay, self.dead_usage = decay, dead_usage
        self.register_buffer("usage", torch.full((size,), 1.0 / size))  # EMA share per code; starts uniform

    @torch.no_grad()
    def observe(self, indices: Tensor) -> dict[str, float]:
        counts = torch.bincount(indices.flatten().cpu(), minlength=self.usage.numel()).double()
        share = counts / counts.sum()
        self.usage.mul_(self.decay).add_((1 - self.decay) * share.to(self.usage))
        entropy = -(share[share > 0] * share[share > 0].log()).sum()
        return {
            "usage": float((counts > 0).double().mean()),
            "perplexity": float(entropy.exp()),
            "dead_codes": float((self.usage < self.dead_usage).sum()),
        }

    @torch.no_grad()
    def restart(self, vq: VQModel, z: Tensor, generator: torch.Generator) -> int:
        """Dead codes ← encoder outputs of the batch drawn with `generator`; their usage reset to 1/K."""
        dead = (self.usage < self.dead_usage).nonzero().flatten()
        if len(dead) == 0:
            return 0
        flat = z.detach().permute(0, 2, 3, 1).reshape(-1, z.shape[1])
        picks = torch.randint(len(flat), (len(dead),), generator=generator)
        weight = vq.quantize.embedding.weight
        weight.data[dead.to(weight.device)] = flat[picks.to(flat.device)].to(weight.dtype)
        self.usage[dead] = 1.0 / self.usage.numel()
        return len(dead)
