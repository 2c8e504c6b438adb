"""Frozen text features for the token generators: a text encoder's hidden states, at most 30 tokens.

Li et al. 2023 §2.2 / §3.2 feeds the caption to BERT, CLIP or a CLAP text encoder and takes "a feature
taken from hidden states", with "the maximum sequence length … set to 30"; Diffsound §IV uses CLIP's.
`TextFeatures(kind, folder)` loads one from a local folder (a transformers ClapModel, CLIPModel or any
AutoModel such as BertModel, with its tokenizer), frozen, and maps texts to (states [B, L, H], mask [B, L])
with L = max_tokens (padding to it). `save` writes text_encoder/ and tokenizer/ into a model folder so a
trained generator samples without the original path; `from_folder` reads them back.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from torch import Tensor

from pipelines.core.config import ConfigError
from training.models.conditioning import TEXT_ENCODER, TOKENIZER, load_clap_text, load_clip_text

KINDS = ("clap", "clip", "bert")


class TextFeatures:
    def __init__(self, kind: str, encoder, tokenizer, max_tokens: int):
        if kind not in KINDS:
            raise ConfigError(f"text features: unknown kind {kind!r}; valid: {', '.join(KINDS)}")
        self.kind, self.encoder, self.tokenizer = kind, encoder.eval().requires_grad_(False), tokenizer
        self.max_tokens = min(max_tokens, tokenizer.model_max_length)
        self._null: tuple[Tensor, Tensor] | None = None

    @classmethod
    def load(
        cls, kind: str, folder: str | Path | None, max_tokens: int, tokenizer_folder: Path | None = None
    ) -> TextFeatures:
        if folder is None or not Path(folder).is_dir():
            raise ConfigError(
                f"text.model: {folder!r} is not a local model folder; give a {kind} model folder (nothing is downloaded)"
            )
        folder = Path(folder)
        if kind == "clap":
            encoder, tokenizer = load_clap_text(folder, tokenizer_folder)
        elif kind == "clip":
            encoder, tokenizer = load_clip_text(folder, tokenizer_folder)
        else:
            encoder = transformers.AutoModel.from_pretrained(folder, local_files_only=True)
            tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_folder or folder, local_files_only=True)
        return cls(kind, encoder, tokenizer, max_tokens)

    @classmethod
    def from_folder(cls, folder: Path, kind: str, max_tokens: int) -> TextFeatures:
        return cls.load(kind, Path(folder) / TEXT_ENCODER, max_tokens, Path(folder) / TOKENIZER)

    def save(self, folder: Path) -> None:
        self.encoder.save_pretrained(Path(folder) / TEXT_ENCODER)
        self.tokenizer.save_pretrained(Path(folder) / TOKENIZER)

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device) -> TextFeatures:
        self.encoder.to(device)
        self._null = None
        return self

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """(states [B, L, H] float32 with padded positions zeroed, mask [B, L] float32)."""
        tokens = self.tokenizer(
            list(texts), padding="max_length", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        return states * mask[..., None], mask.float()

    def null(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The features of "" (classifier-free guidance's unconditional input), batch_size rows."""
        if self._null is None:
            self._null = self([""])
        states, mask = self._null
        return states.expand(batch_size, -1, -1).clone(), mask.expand(batch_size, -1).clone()


def drop_text(
    states: Tensor, mask: Tensor, null: tuple[Tensor, Tensor], probability: float, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """Classifier-free guidance training: each row replaced by the null text with `probability` (B draws
    from `generator`, whatever the probability). Returns (states, mask, dropped [B] bool)."""
    drop = torch.rand(states.shape[0], generator=generator) < probability
    rows = drop.to(states.device)
    states = torch.where(rows[:, None, None], null[0].to(states), states)
    mask = torch.where(rows[:, None], null[1].to(mask), mask)
    return states, mask, drop
