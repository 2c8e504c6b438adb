"""AudioLDM's mixup augmentation (§3.3, Eq. 8): x₁,₂ = λ·x₁ + (1 − λ)·x₂, λ ~ Beta(5, 5).

AudioLDM conditions its LDM on the CLAP *audio* embedding of the training clip, so the mixed audio
needs no mixed text. Waveforms of different lengths are mixed with the shorter one zero-padded at
its end (the mix is as long as the longer clip); mel spectrograms, latents or embeddings must have
equal shapes.
"""

from __future__ import annotations

import numpy as np


def mixup(x1: np.ndarray, x2: np.ndarray, rng: np.random.Generator, alpha: float = 5.0) -> tuple[np.ndarray, float]:
    """(λ·x1 + (1 − λ)·x2, λ) with λ ~ Beta(alpha, alpha) drawn from `rng`."""
    if not alpha > 0:
        raise ValueError(f"mixup alpha must be positive, got {alpha}")
    x1, x2 = np.asarray(x1), np.asarray(x2)
    if x1.shape != x2.shape:
        x1, x2 = _pad_waveforms(x1, x2)
    lam = float(rng.beta(alpha, alpha))
    dtype = np.result_type(x1.dtype, x2.dtype, np.float32)  # float32 stays float32
    mixed = lam * x1.astype(dtype, copy=False) + (1.0 - lam) * x2.astype(dtype, copy=False)
    return mixed.astype(dtype, copy=False), lam


def _pad_waveforms(x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x1.ndim != 1 or x2.ndim != 1:
        raise ValueError(f"mixup needs equal shapes (only 1-D waveforms are padded), got {x1.shape} and {x2.shape}")
    length = max(len(x1), len(x2))
    return np.pad(x1, (0, length - len(x1))), np.pad(x2, (0, length - len(x2)))
