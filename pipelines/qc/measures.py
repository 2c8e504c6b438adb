"""Per-clip audio quality measures: cheap, deterministic, one clip at a time.

    bandwidth_hz    effective bandwidth: the highest frequency whose smoothed power is within
                    BANDWIDTH_DB of the spectrum's peak (Hann frames of 4096, hop 2048, averaged).
                    Audio upsampled from 8 kHz into a 48 kHz file (common in AudioSet/VGGSound)
                    has ~4000 Hz; a full-band recording has most of its Nyquist frequency.
    clipping        share of samples at full scale (|x| ≥ CLIP_LEVEL)
    loudness_lufs   integrated loudness, ITU-R BS.1770-4 (pyloudnorm): gated, K-weighted;
                    None for a clip shorter than one 400-ms block or below the absolute gate
    silence         share of 20-ms frames whose RMS is below SILENCE_DBFS
    dc_offset       the mean sample value
    peak_dbfs       the largest |sample|, in dBFS
    speech          share of the clip Silero VAD marks as speech (16 kHz; pipelines/qc/vad.py)

Each is a plain float64 computation over the whole clip in a fixed order, so a clip gives the same
numbers on every run and worker. MEASURES_VERSION changes whenever a definition changes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MEASURES_VERSION = "1"
BANDWIDTH_DB = 50.0
FFT_SIZE, FFT_HOP = 4096, 2048
SMOOTH_BINS = 9  # ~100 Hz at 48 kHz: a single tone does not set the peak alone
CLIP_LEVEL = 0.999
SILENCE_DBFS = -60.0
SILENCE_FRAME_S = 0.020
MEASURES = ("bandwidth_hz", "clipping", "loudness_lufs", "silence", "dc_offset", "peak_dbfs", "speech")


def measure(audio: np.ndarray, rate: int, speech: Any = None) -> dict[str, float | None]:
    """Every measure of one mono clip; `speech` is a callable (audio, rate) → share, or None to skip."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio, got shape {x.shape}")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return {
        "bandwidth_hz": bandwidth(x, rate),
        "clipping": clipping(x),
        "loudness_lufs": loudness(x, rate),
        "silence": silence(x, rate),
        "dc_offset": float(x.mean()) if x.size else 0.0,
        "peak_dbfs": 20 * math.log10(peak) if peak > 0 else None,
        "speech": float(speech(audio, rate)) if speech is not None and x.size else None,
    }


def power_spectrum(x: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, mean power) over Hann frames; a clip shorter than a frame is zero-padded to one."""
    if x.size < FFT_SIZE:
        x = np.pad(x, (0, FFT_SIZE - x.size))
    starts = np.arange(0, x.size - FFT_SIZE + 1, FFT_HOP)
    window = np.hanning(FFT_SIZE)
    power = np.zeros(FFT_SIZE // 2 + 1)
    for first in range(0, len(starts), 256):  # bounded memory for long clips
        frames = np.stack([x[s : s + FFT_SIZE] for s in starts[first : first + 256]]) * window
        power += (np.abs(np.fft.rfft(frames, axis=1)) ** 2).sum(axis=0)
    return np.fft.rfftfreq(FFT_SIZE, 1.0 / rate), power / len(starts)


def bandwidth(x: np.ndarray, rate: int) -> float:
    freqs, power = power_spectrum(x, rate)
    smooth = np.convolve(power, np.ones(SMOOTH_BINS) / SMOOTH_BINS, mode="same")
    if not np.any(smooth > 0):
        return 0.0
    level = 10 * np.log10(np.maximum(smooth, 1e-30))
    above = np.flatnonzero(level >= level.max() - BANDWIDTH_DB)
    return float(freqs[above[-1]])


def clipping(x: np.ndarray) -> float:
    return float(np.count_nonzero(np.abs(x) >= CLIP_LEVEL) / x.size) if x.size else 0.0


def loudness(x: np.ndarray, rate: int) -> float | None:
    import pyloudnorm

    if x.size < int(0.4 * rate):
        return None
    value = pyloudnorm.Meter(rate).integrated_loudness(x)
    return float(value) if math.isfinite(value) else None


def silence(x: np.ndarray, rate: int) -> float:
    size = max(int(round(SILENCE_FRAME_S * rate)), 1)
    n = x.size // size
    if n == 0:
        return 1.0 if not np.any(x) else 0.0
    rms = np.sqrt(np.mean(np.square(x[: n * size].reshape(n, size)), axis=1))
    return float(np.count_nonzero(rms < 10 ** (SILENCE_DBFS / 20)) / n)
