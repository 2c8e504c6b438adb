"""CLAP through transformers (`ClapModel` + `ClapProcessor`), e.g. laion/clap-htsat-unfused saved
locally. Only local files: a folder, or an id already in the Hugging Face cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers

from pipelines.annotate.encoders.base import (
    CLAP_RATE,
    AudioTextEncoder,
    ModelLoadError,
    check_tokenizer,
    require_weights,
    torch_device,
    transformers_folder,
)
from pipelines.annotate.encoders.config import ClapConfig
from pipelines.core.io import content_sha256
from pipelines.core.tools import package_version

KEY = "annotate.clap.model"


class TransformersClap(AudioTextEncoder):
    """A loaded ClapModel (eval mode, on its device) with its processor; fp32."""

    def __init__(
        self,
        model: transformers.ClapModel,
        processor: transformers.ClapProcessor,
        window_samples: int,
        provenance: dict[str, str],
    ):
        super().__init__()
        self.model = model.eval()
        self.processor = processor
        self.device = next(model.parameters()).device
        self.window_samples = window_samples
        self.dim = model.config.projection_dim
        self.provenance = provenance
        self.fused = bool(model.config.audio_config.enable_fusion)
        text = model.config.text_config
        # RoBERTa positions start after the padding index: max_position_embeddings - 2 tokens fit.
        offset = 0 if text.pad_token_id is None else text.pad_token_id + 1
        self.max_tokens = min(processor.tokenizer.model_max_length, text.max_position_embeddings - offset)

    @torch.inference_mode()
    def _embed_audio(self, windows: np.ndarray) -> np.ndarray:
        # Inputs are exactly max_length long, so neither "rand_trunc" (random crop) nor padding
        # applies; both are still named, since the extractor's default is "fusion".
        features = self.processor.feature_extractor(
            list(windows),
            sampling_rate=CLAP_RATE,
            max_length=self.window_samples,
            truncation="fusion" if self.fused else "rand_trunc",
            padding="repeatpad",
            return_tensors="pt",
        )
        # The extractor marks a random clip "longer" when none is (feature_extraction_clap.py);
        # LAION's eval path uses no fusion branch for clips that fit one window.
        is_longer = torch.zeros_like(features["is_longer"])
        output = self.model.get_audio_features(
            input_features=features["input_features"].to(self.device), is_longer=is_longer.to(self.device)
        )
        return output.pooler_output.float().cpu().numpy()  # [B, dim]

    @torch.inference_mode()
    def _embed_text(self, texts: list[str]) -> np.ndarray:
        tokens = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        output = self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
        )
        return output.pooler_output.float().cpu().numpy()  # [B, dim]


def provenance(config: ClapConfig) -> dict[str, str]:
    folder = transformers_folder(config.model, KEY, "clap")
    return {
        "backend": "transformers",
        "model": config.model,
        "sha256": content_sha256(folder),
        "transformers": package_version("transformers"),
    }


def load(config: ClapConfig, device: str) -> TransformersClap:
    target = torch_device(device)
    folder = transformers_folder(config.model, KEY, "clap")
    try:
        model, info = transformers.ClapModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
        processor = transformers.ClapProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{KEY}: cannot load CLAP from {folder}: {error}") from None
    require_weights(info, KEY, folder)
    check_tokenizer(processor.tokenizer, model.config.text_config.vocab_size, f"{KEY} {folder}")
    window = round(config.window_seconds * CLAP_RATE)
    _check_feature_extractor(processor.feature_extractor, window, folder)
    return TransformersClap(model.to(target), processor, window, provenance(config))


def _check_feature_extractor(extractor: transformers.ClapFeatureExtractor, window: int, folder: Path) -> None:
    if extractor.sampling_rate != CLAP_RATE:
        raise ModelLoadError(
            f"{KEY}: {folder} expects {extractor.sampling_rate} Hz audio; the clip cache and windows are {CLAP_RATE} Hz"
        )
    if extractor.nb_max_samples != window:
        seconds = extractor.nb_max_samples / CLAP_RATE
        raise ModelLoadError(
            f"{KEY}: {folder} was trained on {seconds:g}-s inputs (max_length_s) but annotate.clap.window_seconds "
            f"gives {window / CLAP_RATE:g} s; set window_seconds: {seconds:g}"
        )
