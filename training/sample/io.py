"""Files of a sampling run: WAV, mel PNG and JSON, each written atomically (a temp file, then rename).

A reader of run/samples never sees half a file, and a re-run with the same request overwrites the
same names (training/sample/generate.py names them NNN-<slug>).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from pipelines.core.io import atomic_path

# 16-bit PCM clips at ±1; a louder item is scaled down to this peak, a quieter one kept as it is.
PEAK = 0.99


def slug(text: str, limit: int = 40) -> str:
    """A file-name-safe, lower-case form of a prompt ("A dog barks!" → "a-dog-barks")."""
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return words[:limit].rstrip("-") or "prompt"


def write_wav(path: Path, wave: np.ndarray, sample_rate: int) -> None:
    """Mono float samples → 16-bit PCM WAV, scaled down only when its peak would clip."""
    wave = np.asarray(wave, np.float32)
    if not np.isfinite(wave).all():
        raise ValueError(f"{path.name}: the waveform has NaN or infinite samples (did the model diverge?)")
    peak = float(np.abs(wave).max(initial=0.0))
    if peak > PEAK:
        wave = wave * (PEAK / peak)
    with atomic_path(path) as tmp:
        sf.write(tmp, wave, sample_rate, subtype="PCM_16", format="WAV")


def write_mel_png(path: Path, mel: np.ndarray, hop_seconds: float, title: str) -> None:
    """A mel [T, n_mels] as an image: time (seconds) on x, mel bin on y, low bins at the bottom."""
    # A bare Figure renders through Agg without pyplot: no global backend switch, no shared state.
    from matplotlib.figure import Figure

    frames, bins = mel.shape
    figure = Figure(figsize=(max(4.0, min(frames / 100, 16.0)), 3.0), dpi=100)
    axes = figure.add_subplot()
    image = axes.imshow(mel.T, origin="lower", aspect="auto", cmap="magma", extent=(0, frames * hop_seconds, 0, bins))
    axes.set(xlabel="time (s)", ylabel="mel bin", title=title[:80])
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


def write_json(path: Path, content: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n")
