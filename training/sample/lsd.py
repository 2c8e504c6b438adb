"""Log-spectral distance (LSD), the super-resolution metric of AudioLDM §4 (Table 5), as Wang & Wang
(2021) define it:

    LSD = 1/T Σ_t sqrt( 1/F Σ_f ( log10 |X(t, f)|² − log10 |X̂(t, f)|² )² )

over the STFT power spectra of the reference X and the estimate X̂ (Hann window 2048, hop 512 at
16 kHz, centred frames: our choice, the paper does not give them; a floor of 1e-10 on the power keeps
silent bins finite). Lower is better;
LSD(a·x, x) = |log10 a²| for any scale a.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

N_FFT, HOP = 2048, 512
FLOOR = 1e-10


def power_spectrogram(wave: np.ndarray | torch.Tensor, n_fft: int = N_FFT, hop: int = HOP) -> torch.Tensor:
    """[frames, n_fft/2 + 1] |STFT|² (float64)."""
    wave = torch.as_tensor(np.asarray(wave, dtype=np.float64))
    spec = torch.stft(
        wave,
        n_fft,
        hop_length=hop,
        window=torch.hann_window(n_fft, dtype=torch.float64),
        center=True,
        return_complex=True,
    )
    return spec.abs().square().T


def lsd(
    estimate: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor, n_fft: int = N_FFT, hop: int = HOP
) -> float:
    """LSD between two waveforms of one sample rate (cut to the shorter of the two)."""
    n = min(len(estimate), len(reference))
    if n == 0:
        raise ValueError("LSD of an empty signal")
    x = torch.log10(power_spectrogram(reference[:n], n_fft, hop) + FLOOR)
    y = torch.log10(power_spectrogram(estimate[:n], n_fft, hop) + FLOOR)
    return float(((x - y) ** 2).mean(dim=1).sqrt().mean())


def lsd_to_file(estimate: np.ndarray | torch.Tensor, rate: int, reference: Path) -> float:
    """LSD of a waveform at `rate` against an audio file, resampled to `rate` (soxr, as the extractor does)."""
    import soundfile as sf
    import soxr

    audio, file_rate = sf.read(str(reference), dtype="float64", always_2d=True)
    audio = audio.mean(axis=1)
    if file_rate != rate:
        audio = soxr.resample(audio, file_rate, rate)
    return lsd(np.asarray(estimate, dtype=np.float64), audio)
