"""CLIP image and text embeddings (`CLIPModel` + `CLIPProcessor`) of the clip cache's 224x224 JPEG
frames; CLIPSonic conditions on them, Make-An-Audio (§4.3) pools 4 frames."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence

import numpy as np
import torch
import transformers
from PIL import Image, UnidentifiedImageError

from pipelines.annotate.encoders.base import (
    ModelLoadError,
    check_tokenizer,
    l2_normalise,
    per_item,
    require_weights,
    torch_device,
    transformers_folder,
)
from pipelines.annotate.encoders.config import ClipConfig
from pipelines.core.io import content_sha256
from pipelines.core.tools import package_version

KEY = "annotate.clip.model"


class ClipEncoder:
    def __init__(
        self, model: transformers.CLIPModel, processor: transformers.CLIPProcessor, provenance: dict[str, str]
    ):
        self.model = model.eval()
        self.processor = processor
        self.device = next(model.parameters()).device
        self.image_size = model.config.vision_config.image_size
        self.dim = model.config.projection_dim
        self.provenance = provenance
        self.max_tokens = min(processor.tokenizer.model_max_length, model.config.text_config.max_position_embeddings)
        self._lock = threading.Lock()  # shared by a worker's threads; fast tokenizers are not thread-safe
        self.batch_invariant = True  # load_clip sets it from the config (encoders.base.per_item)

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        """JPEG (or any PIL-readable) bytes → float32 [N, dim], L2-normalised."""
        if not len(images):
            return np.zeros((0, self.dim), np.float32)
        pictures = [_decode(data, i) for i, data in enumerate(images)]
        with self._lock, torch.inference_mode():
            return l2_normalise(per_item(self._embed_images, pictures, self.batch_invariant))

    def _embed_images(self, pictures: list) -> np.ndarray:
        pixels = self.processor.image_processor(images=pictures, return_tensors="pt")["pixel_values"]
        return self.model.get_image_features(pixel_values=pixels.to(self.device)).pooler_output.float().cpu().numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts (truncated to the model's positions) → float32 [B, dim], L2-normalised."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock, torch.inference_mode():
            return l2_normalise(per_item(self._embed_text, texts, self.batch_invariant))

    def _embed_text(self, texts: list[str]) -> np.ndarray:
        tokens = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        ids, mask = tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device)
        return self.model.get_text_features(input_ids=ids, attention_mask=mask).pooler_output.float().cpu().numpy()


def _decode(data: bytes, index: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"image {index} is not a readable picture: {error}") from None


def clip_provenance(config: ClipConfig) -> dict[str, str]:
    """What `load_clip(config, ...).provenance` will be, without loading the model."""
    folder = transformers_folder(config.model, KEY, "clip")
    return {"model": config.model, "sha256": content_sha256(folder), "transformers": package_version("transformers")}


def load_clip(config: ClipConfig, device: str) -> ClipEncoder:
    """The configured CLIP on `device` ("cpu" or "cuda", never guessed), in eval mode."""
    target = torch_device(device)
    folder = transformers_folder(config.model, KEY, "clip")
    try:
        model, info = transformers.CLIPModel.from_pretrained(folder, local_files_only=True, output_loading_info=True)
        processor = transformers.CLIPProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"{KEY}: cannot load CLIP from {folder}: {error}") from None
    require_weights(info, KEY, folder)
    check_tokenizer(processor.tokenizer, model.config.text_config.vocab_size, f"{KEY} {folder}")
    encoder = ClipEncoder(model.to(target), processor, clip_provenance(config))
    encoder.batch_invariant = config.batch_invariant
    return encoder
