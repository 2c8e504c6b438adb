"""VGGish-ish: a small VGG-style classifier on the mel, whose per-scale features give the codebook's
perceptual term (Li et al. 2023 §2.1 eq. 4, after SpecVQGAN's "VGGish-ish" trained on VGGSound).

Each block is two 3×3 convolutions with ReLU and a 2×2 max-pool; `features(mel)` returns every block's
output (the scales s of eq. 4), `forward(mel)` the label logits (global average pool, linear). It is a
diffusers ModelMixin/ConfigMixin, so `save_pretrained` / `from_pretrained` give a folder (config.json +
weights) that a training config names by local path (codebook.loss.perceptual). `t2a train vggishish`
(training/tasks/vggishish.py) trains it with a sigmoid per label on the corpus labels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from pipelines.core.config import ConfigError


class Vggishish(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512), labels: tuple[str, ...] = ()):
        super().__init__()
        blocks, previous = [], 1
        for width in channels:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(previous, width, 3, padding=1),
                    nn.ReLU(),
                    nn.Conv2d(width, width, 3, padding=1),
                    nn.ReLU(),
                    nn.MaxPool2d(2, ceil_mode=True),
                )
            )
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(previous, max(len(labels), 1))

    def features(self, mel: Tensor) -> list[Tensor]:
        """mel [B, 1, T, M] → each block's output [B, C_s, T_s, M_s]."""
        out, h = [], mel
        for block in self.blocks:
            h = block(h)
            out.append(h)
        return out

    def forward(self, mel: Tensor) -> Tensor:
        return self.head(self.features(mel)[-1].mean(dim=(2, 3)))


def load_vggishish(folder: str | Path, device: str | torch.device = "cpu") -> Vggishish:
    """A frozen, eval-mode classifier from a local folder."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"codebook.loss.perceptual: no VGGish-ish model at {folder} (no config.json); train one with `t2a train vggishish`"
        )
    return Vggishish.from_pretrained(folder, local_files_only=True).to(device).eval().requires_grad_(False)
