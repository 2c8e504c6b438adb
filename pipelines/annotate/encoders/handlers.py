"""Beam ModelHandlers for the encoders, used as `RunInference(KeyedModelHandler(handler))`.

Each handler loads its model in `load_model` (once per worker; never at import or graph
construction), on the configured device, and batches with the config's `batch.min`/`batch.max`.
`run_inference` returns one float32 [dim] numpy array per element, in order: the element's own
embedding, not a PredictionResult. The CLAP audio and text handlers of one worker process share
one loaded model (a real CLAP is ~600 MB), as do the two CLIP handlers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler

from pipelines.annotate.encoders.config import BatchSize, ClapConfig, ClipConfig

_MODELS: dict[tuple[str, str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def _shared(kind: str, config: Any, device: str, load: Callable[[Any, str], Any]) -> Any:
    """One loaded model per (kind, config, device) and process."""
    key = (kind, config.model_dump_json(), device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = load(config, device)
        return _MODELS[key]


class _EncoderHandler(ModelHandler):
    namespace = "t2a_encoders"

    def __init__(self, config: Any, device: str):
        batch: BatchSize = config.batch
        super().__init__(min_batch_size=batch.min, max_batch_size=batch.max)  # → batch_elements_kwargs()
        self.config = config
        self.device = device

    def get_metrics_namespace(self) -> str:
        return self.namespace

    def get_num_bytes(self, batch: Sequence[Any]) -> int:
        # The default pickles the whole batch: 15 MB of audio windows for a batch of 8.
        return sum(_size(element) for element in batch)

    def run_inference(
        self, batch: Sequence[Any], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[np.ndarray]:
        return list(self._embed(model, batch))  # [B, dim] → B arrays [dim]

    def _embed(self, model: Any, batch: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError


def _size(element: Any) -> int:
    if isinstance(element, np.ndarray):
        return element.nbytes
    return len(element.encode()) if isinstance(element, str) else len(element)


class _ClapHandler(_EncoderHandler):
    def __init__(self, config: ClapConfig, device: str):
        super().__init__(config, device)

    def load_model(self) -> Any:
        from pipelines.annotate.encoders.loading import load_clap

        return _shared("clap", self.config, self.device, load_clap)


class ClapAudioHandler(_ClapHandler):
    """Element: float32 [window_samples] mono at 48 kHz (one `audio_windows` row)."""

    namespace = "t2a_clap_audio"

    def _embed(self, model: Any, batch: Sequence[np.ndarray]) -> np.ndarray:
        return model.embed_audio(np.stack(batch))


class ClapTextHandler(_ClapHandler):
    """Element: a text (caption candidate)."""

    namespace = "t2a_clap_text"

    def _embed(self, model: Any, batch: Sequence[str]) -> np.ndarray:
        return model.embed_text(list(batch))


class _ClipHandler(_EncoderHandler):
    def __init__(self, config: ClipConfig, device: str):
        super().__init__(config, device)

    def load_model(self) -> Any:
        from pipelines.annotate.encoders.clip import load_clip

        return _shared("clip", self.config, self.device, load_clip)


class ClipImageHandler(_ClipHandler):
    """Element: a frame's JPEG bytes."""

    namespace = "t2a_clip_image"

    def _embed(self, model: Any, batch: Sequence[bytes]) -> np.ndarray:
        return model.embed_images(list(batch))


class ClipTextHandler(_ClipHandler):
    """Element: a text."""

    namespace = "t2a_clip_text"

    def _embed(self, model: Any, batch: Sequence[str]) -> np.ndarray:
        return model.embed_text(list(batch))
