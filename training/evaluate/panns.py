"""PANNs Cnn14 (Kong et al. 2020) as an embedder: the 2048-d clip embedding AudioLDM's FD/FAD and
KL are computed on (AudioLDM §4.2), from a Cnn14 checkpoint file (e.g. Cnn14_mAP=0.431.pth).

The architecture is laion_clap's bundled copy (laion_clap.clap_module.pann_model). `import
laion_clap` itself builds tokenizers by hub name, so only the three modules the model needs are
imported, under placeholder parent packages; nothing is downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipelines.annotate.encoders import ModelLoadError
from pipelines.annotate.encoders.base import torch_device
from pipelines.core.io import content_sha256
from training.evaluate.data import Clip

# Cnn14's published front end: 32 kHz, 1024-point window, hop 320, 64 mels over 50–14000 Hz, 527 AudioSet classes.
PANN_RATE, WINDOW, HOP, MELS, FMIN, FMAX, CLASSES = 32000, 1024, 320, 64, 50, 14000, 527


_PANN: Any = None
_LOCK = threading.Lock()


def pann_module() -> Any:
    """laion_clap.clap_module.pann_model, imported once without running laion_clap/__init__.py."""
    global _PANN
    with _LOCK:
        if _PANN is None:
            _PANN = _import_pann()
        return _PANN


def _import_pann() -> Any:
    if "laion_clap" in sys.modules:  # imported for real already (the laion_clap CLAP backend)
        return importlib.import_module("laion_clap.clap_module.pann_model")
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the panns embedder needs the laion-clap package (its bundled Cnn14 code); install laion-clap"
        )
    root = Path(list(spec.submodule_search_locations)[0])
    try:
        for name, folder in (("laion_clap", root), ("laion_clap.clap_module", root / "clap_module")):
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
        return importlib.import_module("laion_clap.clap_module.pann_model")
    finally:
        # The placeholders must not outlive the import: a later `import laion_clap` gets the real package.
        for name in [n for n in sys.modules if n == "laion_clap" or n.startswith("laion_clap.")]:
            del sys.modules[name]


def new_cnn14() -> torch.nn.Module:
    return pann_module().Cnn14(PANN_RATE, WINDOW, HOP, MELS, FMIN, FMAX, CLASSES)


class PannsEmbedder:
    """Clips → Cnn14 'embedding' [N, 2048], one clip per forward (any length: Cnn14 pools over time)."""

    def __init__(self, path: Path, device: str):
        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"PANNs checkpoint file not found: {path} (a Cnn14 .pth, e.g. Cnn14_mAP=0.431.pth)")
        self.name = "panns"
        self.device = torch_device(device)
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("model", state)  # PANNs checkpoints wrap the state dict in {"model": ...}
        model = new_cnn14()
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys:
            raise ModelLoadError(
                f"{path} is not a Cnn14 checkpoint: {len(result.missing_keys)} weights missing (e.g. {result.missing_keys[0]})"
            )
        self.model = model.to(self.device).eval()
        self.provenance = {"model": str(path), "sha256": content_sha256(path)}

    @torch.inference_mode()
    def embed_audio(self, clips: list[Clip]) -> np.ndarray:
        import soxr

        from pipelines.core.features.mel import RESAMPLE_QUALITY

        rows = []
        for clip in clips:
            audio, rate = clip.audio()
            if rate != PANN_RATE:
                audio = soxr.resample(audio, rate, PANN_RATE, quality=RESAMPLE_QUALITY)
            # Five 2x time poolings need some frames: shorter clips are zero-padded to one second.
            audio = np.pad(np.asarray(audio, np.float32), (0, max(0, PANN_RATE - len(audio))))
            wave = torch.as_tensor(audio, device=self.device)[None]  # [1, samples]
            rows.append(self.model({"waveform": wave}, device=self.device)["embedding"][0].float().cpu().numpy())
        return np.stack(rows) if rows else np.zeros((0, 2048), np.float32)
