"""The backend-free contract: windowing, pooling, devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from pipelines.annotate.encoders import ClapConfig, ModelLoadError, audio_windows, load_clap, pool_windows
from pipelines.annotate.encoders.base import l2_normalise

RATE, W = 48000, 4800  # 0.1-s windows keep the arrays small; the rules do not depend on the length


def ramp(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.float32) + 1) / n


def test_short_audio_is_repeated_whole_then_zero_padded():
    audio = ramp(2000)
    windows = audio_windows(audio, RATE, RATE, W)
    assert windows.shape == (1, W) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows[0, :4000], np.tile(audio, 2))  # W // 2000 = 2 whole copies
    np.testing.assert_array_equal(windows[0, 4000:], 0)


def test_exact_window_is_the_audio():
    audio = ramp(W)
    np.testing.assert_array_equal(audio_windows(audio, RATE, RATE, W), audio[None])


def test_long_audio_windows_cover_it_evenly_and_deterministically():
    audio = ramp(W * 5 // 2)  # 2.5 windows → 3, starting at 0, 0.75 W and 1.5 W
    windows = audio_windows(audio, RATE, RATE, W)
    assert windows.shape == (3, W)
    for window, start in zip(windows, (0, 3 * W // 4, 3 * W // 2)):
        np.testing.assert_array_equal(window, audio[start : start + W])
    assert windows[-1, -1] == audio[-1]  # the last window ends with the clip
    np.testing.assert_array_equal(audio_windows(audio, RATE, RATE, W), windows)


def test_other_rates_are_resampled_with_soxr_first():
    t = np.arange(44100) / 44100
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 1 s at 44.1 kHz
    windows = audio_windows(audio, 44100, RATE, RATE // 2)
    expected = soxr.resample(audio, 44100, RATE, quality="HQ")
    assert windows.shape == (2, RATE // 2) and windows.dtype == np.float32
    np.testing.assert_allclose(np.concatenate(windows), expected, atol=1e-6)
    spectrum = np.abs(np.fft.rfft(np.concatenate(windows)))
    assert np.argmax(spectrum) == 440  # 1 s at 48 kHz: bin k is k Hz


def test_windows_reject_bad_input():
    with pytest.raises(ValueError, match="empty audio"):
        audio_windows(np.zeros(0, np.float32), RATE, RATE, W)
    with pytest.raises(ValueError, match="mono"):
        audio_windows(np.zeros((10, 2), np.float32), RATE, RATE, W)


def test_pool_is_the_normalised_mean():
    embeddings = l2_normalise(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    pooled = pool_windows(embeddings)
    np.testing.assert_allclose(pooled, [2**-0.5, 2**-0.5, 0.0], rtol=1e-6)
    assert pooled.dtype == np.float32 and pooled.shape == (3,)
    np.testing.assert_array_equal(pool_windows(embeddings[:1]), embeddings[0])
    with pytest.raises(ValueError, match="window embeddings"):
        pool_windows(np.zeros((0, 3), np.float32))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_cuda_is_an_error_not_a_fallback(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="device 'cuda': CUDA is not available"):
        load_clap(ClapConfig(model=str(tmp_path)), "cuda")


def test_unknown_device_is_an_error(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="expected 'cpu' or 'cuda'"):
        load_clap(ClapConfig(model=str(tmp_path)), "tpu")
