"""The diffusion prior of CLIPSonic §2 (-PD, -SD; DALL-E 2's prior): a CLIP text embedding → a CLIP image
embedding, so text queries reach the image-embedding region the audio model was trained on.

CLIPSonic App. (diffusion prior): the input sequence is [the CLIP text embedding, the diffusion step
embedding, the noised CLIP image embedding, a learnable final query], through a causal transformer whose
last output predicts the clean image embedding (x0, not ε); MSE to the target; a cosine schedule of 1000
training steps and 64 sampling steps; the text replaced by a learnable placeholder 10 % of the time; at
inference two embeddings are drawn per text and the one closer (cosine) to the text embedding is kept.
Not as the paper: the encoded CLIP text tokens that start DALL-E 2's sequence are left out (the text
embedding alone conditions), and widths are set by `prior:` (the paper's is 12 layers at CLIP's width).

    prior = DiffusionPrior(dim=768, width=768, layers=12, heads=12)
    loss = prior_loss(prior, scheduler, text, image, generator)      # training
    image = prior.generate(text, seed=0)                              # [B, dim], L2-normalised

A model folder is diffusers' layout (config.json + weights, `save_pretrained` / `from_pretrained`);
a pretrained prior (-PD) converted to it loads the same way (`--prior FOLDER`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from pipelines.core.config import ConfigError

TOKENS = 4  # text embedding, step embedding, noised image embedding, final query


class DiffusionPrior(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(
        self,
        dim: int,
        width: int = 256,
        layers: int = 4,
        heads: int = 4,
        num_train_timesteps: int = 1000,
        sample_steps: int = 64,
        candidates: int = 2,
    ):
        super().__init__()
        self.text_in, self.image_in = nn.Linear(dim, width), nn.Linear(dim, width)
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        self.null_text = nn.Parameter(torch.zeros(dim))  # CLIPSonic App.: the learnable placeholder (CFG dropout)
        self.query = nn.Parameter(torch.randn(width) * 0.02)
        self.positions = nn.Parameter(torch.randn(TOKENS, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm, self.out = nn.LayerNorm(width), nn.Linear(width, dim)
        self.register_buffer("causal", nn.Transformer.generate_square_subsequent_mask(TOKENS), persistent=False)

    def forward(self, noisy: Tensor, t: Tensor, text: Tensor) -> Tensor:
        """x̂0 [B, dim] from the noised image embedding [B, dim], steps [B] and text embeddings [B, dim]."""
        steps = self.time_embed(self.time_proj(t.reshape(-1).expand(len(noisy))).to(noisy.dtype))
        sequence = torch.stack(
            [self.text_in(text), steps, self.image_in(noisy), self.query.expand(len(noisy), -1)], dim=1
        )
        hidden = self.transformer(sequence + self.positions, mask=self.causal.to(sequence.dtype), is_causal=True)
        return self.out(self.norm(hidden[:, -1]))

    def scheduler(self) -> DDPMScheduler:
        """The cosine forward process (CLIPSonic App.: 1000 steps), predicting the sample itself."""
        return make_scheduler(self.config.num_train_timesteps)

    @torch.no_grad()
    def generate(self, text: Tensor, seed: int = 0, steps: int | None = None) -> Tensor:
        """[B, dim] L2-normalised image embeddings for L2-normalised text embeddings [B, dim]: `candidates`
        draws per text (each row from its own generator, seed + row), the one of highest cosine to the text."""
        text = F.normalize(text.float(), dim=-1).to(self.device)
        scheduler = self.scheduler()
        scheduler.set_timesteps(steps or self.config.sample_steps, device=self.device)
        k, dim = self.config.candidates, text.shape[-1]
        # One generator per (text, candidate): a row's embedding does not depend on what else is drawn.
        generators = [torch.Generator().manual_seed((seed + i) * 1000 + j) for i in range(len(text)) for j in range(k)]
        x = torch.stack([torch.randn(dim, generator=g) for g in generators]).to(self.device)  # [B·k, dim]
        texts = text.repeat_interleave(k, dim=0)
        for t in scheduler.timesteps:
            x0 = self(x, t.reshape(1), texts)
            x = scheduler.step(x0, t, x, generator=generators).prev_sample
        images = F.normalize(x, dim=-1).reshape(len(text), k, -1)
        best = torch.einsum("bkd,bd->bk", images, text).argmax(dim=1)
        return images[torch.arange(len(text)), best]


def make_scheduler(num_train_timesteps: int) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="sample",
        clip_sample=False,
    )


def prior_loss(
    prior: DiffusionPrior,
    scheduler: DDPMScheduler,
    text: Tensor,
    image: Tensor,
    generator: torch.Generator,
    dropout: float = 0.0,
) -> Tensor:
    """CLIPSonic App.: MSE between the predicted and the target CLIP image embedding at a uniform step;
    with probability `dropout` a row's text is the learnable placeholder (classifier-free guidance)."""
    rows, device = image.shape[0], image.device
    t = torch.randint(0, scheduler.config.num_train_timesteps, (rows,), generator=generator).to(device)
    noise = torch.randn(image.shape, generator=generator).to(device)
    drop = (torch.rand(rows, generator=generator) < dropout).to(device)[:, None]
    text = torch.where(drop, prior.null_text.expand_as(text), text)
    noisy = scheduler.add_noise(image, noise, t)
    return F.mse_loss(prior(noisy, t, text).float(), image.float())


def load_prior(folder: Path | str | None, device: str | torch.device = "cpu") -> DiffusionPrior:
    """A prior folder (`t2a train prior` writes <run>/prior/model; -PD: a pretrained prior in this layout)."""
    if folder is None:
        raise ConfigError("--query text-prior needs --prior FOLDER (a `t2a train prior` model)")
    folder = Path(folder)
    folder = folder / "model" if (folder / "model" / "config.json").is_file() else folder
    if not (folder / "config.json").is_file():
        raise ConfigError(f"--prior {folder}: no diffusion prior there (config.json not found); run `t2a train prior`")
    return DiffusionPrior.from_pretrained(folder, local_files_only=True).to(device).eval()
