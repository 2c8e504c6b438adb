"""Tiny configs for the discrete-token generators (codebook, AR, DD) on tests/support/train_corpus.py."""

from __future__ import annotations

from pathlib import Path

import yaml
from tiny_training import tiny_run_config

K = 32  # codebook size in tests


def tiny_tokens_config(root: Path, corpus: Path, clap_folder: Path, **overrides) -> Path:
    """root/config.yaml: a VQ codebook r = 4 (K = 32, n_z = 8) on 16-frame crops of the 64-bin audioldm
    mels (4 × 16 tokens), a 2-layer GPT-2 and a 2-layer discrete-diffusion denoiser (T = 10), CLAP text."""
    Path(root).mkdir(parents=True, exist_ok=True)
    path = tiny_run_config(root, corpus, clap_folder)
    config = yaml.safe_load(path.read_text())
    loop = {"optim": {"lr": 3e-3}, "ema_decay": 0.0, "checkpoint_every": 10, "log_every": 1}
    text = {"kind": "clap", "model": str(clap_folder), "max_tokens": 8}
    config |= {
        "vggishish": {"channels": [4, 8], "train": {**loop, "steps": 4}},
        "codebook": {
            "codebook_size": K,
            "code_dim": 8,
            "block_out_channels": [8, 16, 16],
            "layers_per_block": 1,
            "norm_num_groups": 4,
            "restart_every": 5,
            "dead_usage": 0.01,
            "usage_decay": 0.8,
            "loss": {"adversarial_start": 12, "discriminator_channels": 8, "discriminator_layers": 2},
            "train": {**loop, "steps": 20},
        },
        "ar": {
            "text": text,
            "n_layer": 2,
            "n_head": 2,
            "n_embd": 32,
            "dropout": 0.0,
            "cfg_dropout": 0.2,
            "top_k": 8,
            "train": {**loop, "steps": 12, "checkpoint_every": 3, "optim": {"lr": 3e-3}},
        },
        "dd": {
            "text": text,
            "timesteps": 10,
            "layers": 2,
            "heads": 2,
            "dim": 32,
            "steps": 5,
            "cfg_dropout": 0.2,
            "train": {**loop, "steps": 12, "checkpoint_every": 3, "optim": {"lr": 3e-3}},
        },
    }
    for dotted, value in overrides.items():
        node = config
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    path.write_text(yaml.safe_dump(config))
    return path
