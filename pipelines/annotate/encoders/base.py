"""The CLAP contract shared by every backend: fixed-length 48 kHz windows in, L2-normalised
embeddings out; windowing, pooling, devices, model-folder checks. The backends are named in
`backends.py`; `loading.load_clap` builds the configured one.

torch and the model libraries are imported only when a model is loaded: `pipelines.datasets`
imports this module (through the config) for every command.
"""

from __future__ import annotations

import json
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

CLAP_RATE = 48000  # every public CLAP checkpoint is trained on 48 kHz audio (LAION-CLAP, HTSAT front end)
PROBE_TEXT = "a dog barks while a car passes by"


class ModelLoadError(RuntimeError):
    """A missing or unusable model; the message names the path or setting and what to do."""


class AudioTextEncoder(ABC):
    """CLAP, any backend: `embed_audio` and `embed_text` land in one space (cosine = dot product)."""

    sample_rate: int = CLAP_RATE
    window_samples: int
    dim: int
    provenance: dict[str, str]

    def __init__(self) -> None:
        # Beam shares one loaded model between the threads of a worker; fast tokenizers and the
        # feature extractors are not safe to call concurrently ("Already borrowed").
        self._lock = threading.Lock()
        self.batch_invariant = True  # load_clap sets it from the config's `batch_invariant`

    def embed_audio(self, windows: np.ndarray) -> np.ndarray:
        """float32 [B, window_samples] mono at `sample_rate` → float32 [B, dim], L2-normalised."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] != self.window_samples:
            raise ValueError(
                f"expected windows of shape [B, {self.window_samples}], got {windows.shape} (use audio_windows)"
            )
        if not len(windows):
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            return l2_normalise(per_item(self._embed_audio, windows, self.batch_invariant))

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts → float32 [B, dim], L2-normalised."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        with self._lock:
            return l2_normalise(per_item(self._embed_text, texts, self.batch_invariant))

    @abstractmethod
    def _embed_audio(self, windows: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _embed_text(self, texts: list[str]) -> np.ndarray: ...


def per_item(embed: Callable[[Any], Any], batch: Any, batch_invariant: bool) -> np.ndarray:
    """`embed(batch)`, or with `batch_invariant` each element embedded on its own and stacked.

    Beam's BatchElements forms batches by timing, so a batched forward pass makes an element's
    embedding depend on its neighbours (the kernels a matmul picks follow the batch size, padded
    texts follow the longest one) and runs disagree in the last bits, which then move CLAP scores,
    selected captions and everything trained on them. One element at a time, an embedding is a
    function of the element alone.
    """
    if not batch_invariant:
        return np.asarray(embed(batch), dtype=np.float32)
    return np.concatenate([np.asarray(embed(batch[i : i + 1]), dtype=np.float32) for i in range(len(batch))])


def l2_normalise(embeddings: Any) -> np.ndarray:
    """[..., D] → float32 unit rows; a model's own normalisation is not relied on."""
    x = np.asarray(embeddings, dtype=np.float32)
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def audio_windows(audio: np.ndarray, rate: int, sample_rate: int, window_samples: int) -> np.ndarray:
    """Mono float32 audio at `rate` → float32 [n, window_samples] at `sample_rate` (soxr HQ when
    the rates differ).

    Shorter than a window: repeated whole, then zero-padded (LAION-CLAP's "repeatpad"). Longer:
    n = ceil(len / window) windows whose starts are spaced evenly from 0 to len - window, so the
    whole clip is seen and the same clip always gives the same windows (CLAP's own random crop
    of long inputs is never used).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples, got shape {audio.shape}")
    if not audio.size:
        raise ValueError("empty audio: nothing to embed")
    if rate != sample_rate:
        import soxr

        from pipelines.core.features.mel import RESAMPLE_QUALITY

        audio = soxr.resample(audio, rate, sample_rate, quality=RESAMPLE_QUALITY).astype(np.float32)
    n = len(audio)
    if n <= window_samples:
        tiled = np.tile(audio, window_samples // n)
        return np.pad(tiled, (0, window_samples - len(tiled)))[None, :]
    count = math.ceil(n / window_samples)
    starts = np.round(np.linspace(0, n - window_samples, count)).astype(np.int64)
    return np.stack([audio[s : s + window_samples] for s in starts])


def pool_windows(embeddings: np.ndarray) -> np.ndarray:
    """[n, D] window embeddings of one clip → [D]: their mean, L2-normalised."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or not len(embeddings):
        raise ValueError(f"expected [n >= 1, D] window embeddings, got shape {embeddings.shape}")
    return l2_normalise(embeddings.mean(axis=0))


def torch_device(device: str) -> torch.device:
    """ "cpu" or "cuda" (or "cuda:N"), as configured; CUDA that is not there is an error, not a fallback."""
    import torch

    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__}); "
                "set annotate.device: cpu or run where a GPU is visible"
            )
        return torch.device(device)
    raise ModelLoadError(f"device {device!r}: expected 'cpu' or 'cuda'")


def check_tokenizer(tokenizer: Any, vocab_size: int, where: str) -> None:
    """Refuse a tokenizer that does not fit its text model: transformers quietly builds a
    tokenizer of special tokens only when a folder lacks the vocabulary files, and its
    embeddings are then the same garbage for every text."""
    size = len(tokenizer)
    if size > vocab_size:
        raise ModelLoadError(
            f"{where}: the tokenizer has {size} tokens but the text model only {vocab_size}; they do not belong together"
        )
    ids = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids)
    if size < vocab_size // 2 or not ids or all(i in special for i in ids):
        raise ModelLoadError(
            f"{where}: the tokenizer has {size} tokens for a text model of {vocab_size} and turns "
            f"{PROBE_TEXT!r} into {ids}; the folder lacks its vocabulary files (tokenizer.json, or vocab.json + merges.txt)"
        )


def hub_folder(reference: str, key: str) -> Path:
    """A model reference (folder or hub id, see config.model_reference) → an existing local folder;
    ids resolve in the local Hugging Face cache only, nothing is downloaded."""
    path = Path(reference)
    if path.is_absolute():
        if not path.is_dir():
            raise ModelLoadError(f"{key}: model folder not found: {path}")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(reference, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ModelLoadError(
            f"{key}: {reference!r} is neither a folder nor a model in the local Hugging Face cache "
            "(nothing is downloaded); give the path of a folder holding the model's files"
        ) from None


# What a transformers model folder holds (save_pretrained of the model and of its processor).
TRANSFORMERS_FILES = {
    "model config": ("config.json",),
    "weights": (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    ),
    "processor config": ("preprocessor_config.json", "processor_config.json"),
    "tokenizer": ("tokenizer.json", "vocab.json"),
}


def transformers_folder(reference: str, key: str, model_type: str) -> Path:
    """A checked local folder with a transformers model of `model_type` and its processor."""
    folder = hub_folder(reference, key)
    require_files(folder, key, TRANSFORMERS_FILES)
    found = json.loads((folder / "config.json").read_text()).get("model_type")
    if found != model_type:
        raise ModelLoadError(f"{key}: {folder} holds a {found!r} model, not {model_type!r} (config.json model_type)")
    return folder


def require_weights(loading_info: dict[str, Any], key: str, folder: Path) -> None:
    """from_pretrained initialises absent weights at random, with a log line only: refuse instead."""
    missing = sorted(loading_info["missing_keys"])
    if missing:
        raise ModelLoadError(
            f"{key}: {folder} lacks weights for {len(missing)} parameters (e.g. {missing[0]}); they would be random"
        )


def require_files(folder: Path, key: str, groups: dict[str, tuple[str, ...]]) -> None:
    """Each group (what it is → file names, any of which will do) must have a file in `folder`."""
    for what, names in groups.items():
        if not any((folder / name).is_file() for name in names):
            raise ModelLoadError(f"{key}: the model folder {folder} is missing the {what} ({' or '.join(names)})")
