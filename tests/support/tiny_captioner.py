"""The tiny random Whisper captioner, built once per test session, and test clips for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from demo.captioner import build_captioner

_BUILT: dict[Path, Path] = {}


def tiny_captioner_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a tiny captioner (seed 0), shared by every test of the session."""
    base = tmp_path_factory.getbasetemp()
    if base not in _BUILT:
        _BUILT[base] = build_captioner(tmp_path_factory.mktemp("tiny-captioner"))
    return _BUILT[base]


def noise_clip(seed: int, seconds: float = 2.0, rate: int = 16000) -> np.ndarray:
    """Mono float32 noise in [-0.5, 0.5] with a seed-dependent tone, so clips differ audibly."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * seed) * t)
    return (0.2 * rng.uniform(-1, 1, t.size) + tone).astype(np.float32)
