"""LSD (AudioLDM §4, Table 5) against an independent numpy computation and known closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from training.sample.lsd import lsd, lsd_to_file


def reference_lsd(estimate: np.ndarray, reference: np.ndarray, n_fft: int = 2048, hop: int = 512) -> float:
    """Written from the definition: reflect-padded centred frames, periodic Hann, rfft, mean of per-frame RMS log10 power differences."""

    def power(x: np.ndarray) -> np.ndarray:
        padded = np.pad(x, n_fft // 2, mode="reflect")
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
        starts = range(0, len(padded) - n_fft + 1, hop)
        return np.array([np.abs(np.fft.rfft(padded[s : s + n_fft] * window)) ** 2 for s in starts])

    d = np.log10(power(reference) + 1e-10) - np.log10(power(estimate) + 1e-10)
    return float(np.mean(np.sqrt(np.mean(d**2, axis=1))))


@pytest.fixture(scope="module")
def signals() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(16000)
    noise = 0.3 * rng.standard_normal(16000)
    return tone, noise


def test_lsd_equals_the_reference_computation(signals):
    tone, noise = signals
    for estimate, reference in ((tone, noise), (noise, tone), (tone + noise, tone)):
        assert lsd(estimate, reference) == pytest.approx(reference_lsd(estimate, reference), rel=1e-9)


def test_lsd_closed_forms(signals):
    tone, noise = signals
    assert lsd(tone, tone) == 0.0
    assert lsd(0.5 * noise, noise) == pytest.approx(np.log10(4), rel=1e-6)  # |log10 a²| for a = 0.5
    assert lsd(3 * tone, tone) == pytest.approx(2 * np.log10(3), rel=1e-6)
    # a low-passed estimate (the 8-kHz input of AudioLDM's Table 5) is further than a full-band one
    low = np.fft.irfft(np.fft.rfft(noise) * (np.arange(8001) < 4000), n=16000)
    assert lsd(low, noise) > lsd(noise + 0.01 * tone, noise)
    with pytest.raises(ValueError, match="empty"):
        lsd(np.zeros(0), tone)


def test_lsd_to_file_resamples_the_reference(signals, tmp_path):
    tone, _ = signals
    sf.write(tmp_path / "ref.wav", tone.astype(np.float32), 16000, subtype="FLOAT")
    assert lsd_to_file(tone, 16000, tmp_path / "ref.wav") == pytest.approx(0.0, abs=1e-5)
    t = np.arange(32000) / 32000
    sf.write(tmp_path / "ref32.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 32000, subtype="FLOAT")
    assert lsd_to_file(0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000), 16000, tmp_path / "ref32.wav") < 0.5
