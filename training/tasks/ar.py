"""`t2a train ar`: the autoregressive token generator of Li et al. 2023 §2.3 (training/models/token_ar.py).

A transformers GPT-2 (ar.n_layer, ar.n_head, ar.n_embd; the paper's hidden 1024) learns p(s | F_text)
(eq. 5) over the codebook indices flattened column-major, with F_text the frozen text encoder's hidden
states (ar.text: CLAP, CLIP or BERT, ≤ 30 tokens) as a prefix; the loss is eq. 6's negative log-likelihood
in nats per token. The shared machinery (token shards, loader, text dropout for guidance, checkpoints,
export to <run>/ar/model) is training/tasks/token_generator.py's.
"""

from __future__ import annotations

from pathlib import Path

from training.config import TrainConfig
from training.loop import command
from training.models import token_ar
from training.tasks.token_generator import train_generator


def train(config: TrainConfig) -> Path:
    cfg = config.ar

    def build(info, text):
        rows, cols = info["grid"]
        return token_ar.TokenGPT(
            codebook_size=info["codebook_size"],
            sequence_length=rows * cols,
            text_dim=text.dim,
            text_tokens=text.max_tokens,
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            dropout=cfg.dropout,
        )

    def loss(model, sequence, states, mask, generator):
        return token_ar.ar_loss(model, states, mask, sequence), {}

    return train_generator(config, "ar", config.ar_dir, build, loss, {"top_k": cfg.top_k})


if __name__ == "__main__":  # `python -m training.tasks.ar --config …` (accelerate launch, torchrun)
    command(__doc__, train)
