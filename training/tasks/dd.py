"""`t2a train dd`: Diffsound's discrete diffusion over codebook indices (training/models/token_dd.py).

Algorithm 1: t ~ U{1..T}, x_t ~ q(x_t | x_0) with the dd.transition matrices (mask-and-uniform by default,
§VI-B) under the linear schedule, the denoiser predicts p_θ(x̃_0 | x_t, y) from the text features y (a frozen
CLIP text encoder in the paper; dd.text), and the loss is λ·L_x0 + L_vlb (eq. 23, λ = dd.aux_weight = 1e-4),
logged as loss_x0, loss_vlb and prior_kl. The shared machinery (token shards, loader, curriculum and MBTG
texts, text dropout for guidance, checkpoints, export to <run>/dd/model) is training/tasks/token_generator.py's.
"""

from __future__ import annotations

from pathlib import Path

from training.config import TrainConfig
from training.loop import command
from training.models import token_dd
from training.tasks.token_generator import train_generator


def train(config: TrainConfig) -> Path:
    cfg = config.dd
    schedules: dict[int, token_dd.DiscreteSchedule] = {}

    def build(info, text):
        schedules[0] = token_dd.DiscreteSchedule(info["codebook_size"], cfg.timesteps, cfg.transition, cfg.final_mask)
        if cfg.dim % cfg.heads:
            raise ValueError(f"dd.dim {cfg.dim} must divide by dd.heads {cfg.heads}")
        return token_dd.TokenDenoiser(
            codebook_size=info["codebook_size"],
            grid=tuple(info["grid"]),
            text_dim=text.dim,
            timesteps=cfg.timesteps,
            layers=cfg.layers,
            heads=cfg.heads,
            dim=cfg.dim,
            dropout=cfg.dropout,
        )

    def loss(model, sequence, states, mask, generator):
        return token_dd.dd_loss(model, schedules[0], sequence, states, mask, generator, cfg.aux_weight)

    extra = {
        "transition": cfg.transition,
        "timesteps": cfg.timesteps,
        "final_mask": cfg.final_mask,
        "sample_steps": cfg.steps,
    }
    return train_generator(config, "dd", config.dd_dir, build, loss, extra)


if __name__ == "__main__":  # `python -m training.tasks.dd --config …` (accelerate launch, torchrun)
    command(__doc__, train)
