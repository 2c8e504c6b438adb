"""Mel spectrograms of a profile, in-process: soxr to resample, torch.stft on CPU, float32 out.

Shared by the shard writer and the trainer, so nothing here knows about Beam or shards. One
`MelExtractor` per (profile, process) keeps the window, the mel filter bank and the silence column.

The same input gives bitwise the same output whatever the torch thread count (tested at 1, 2 and
4), by construction rather than by luck:

- the STFT transforms each frame on its own (the threads split the frames, never one transform),
  so the thread count cannot change a frame's bytes;
- everything after it runs in NumPy, which uses one thread: power, magnitude, compression are
  elementwise and correctly rounded, and the mel projection is `FilterBank.project`, a sparse
  product that sums each band's non-zero weights in a fixed order, not a BLAS GEMM. A GEMM's blocking, and so the
  order in which it sums, follows the thread count (torch 2.14's MKL sgemm gave different bits at
  1 and 2 threads for the clipsonic and vqgan-32k shapes).

Bitwise equality across CPU models is not claimed: MKL's FFT chooses its code by the instruction
set.
"""

from __future__ import annotations

import os
from typing import BinaryIO

import librosa
import numpy as np
import scipy.sparse
import soundfile as sf
import soxr
import torch

from pipelines.core.features.profiles import MelProfile

# libsoxr's "HQ" recipe (python-soxr's default): 20-bit precision, passband to 91.3 % of the
# output Nyquist, linear phase. VHQ (28-bit) costs more and buys nothing audible once the mel is
# stored as float16 (10-bit mantissa).
RESAMPLE_QUALITY = "HQ"


def load_audio(path: str | os.PathLike | BinaryIO) -> tuple[np.ndarray, int]:
    """A sound file → (float32 mono samples in [-1, 1], sample rate); channels are averaged."""
    audio, rate = sf.read(path, dtype="float32", always_2d=True)  # [samples, channels]
    return to_mono(audio), int(rate)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """float32 1-D samples from 1-D or [samples, channels] float audio (no copy when already so)."""
    audio = np.asarray(audio)
    if not np.issubdtype(audio.dtype, np.floating):
        raise ValueError(f"expected float samples in [-1, 1], got {audio.dtype} (read with dtype='float32')")
    if audio.ndim == 2:
        audio = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono samples or [samples, channels], got shape {audio.shape}")
    return np.ascontiguousarray(audio, dtype=np.float32)


class FilterBank:
    """A mel basis [n_mels, n_freq] applied as a sparse matrix, in a fixed summation order.

    A triangular filter covers a few bins (a bin lies in at most two bands), so the basis is held in
    CSR form (scipy.sparse): the product touches ~2·n_freq weights instead of n_mels·n_freq, and each
    output row is y = w₀·x₀, then y += w₁·x₁, … in ascending bin order — one loop in one thread,
    whatever torch's thread count or the BLAS (a GEMM's blocking, and so its order of summation,
    follows the thread count).
    """

    def __init__(self, basis: np.ndarray):
        self.matrix = scipy.sparse.csr_matrix(np.asarray(basis, dtype=np.float32))
        self.matrix.sort_indices()
        self.shape = self.matrix.shape

    def project(self, magnitude: np.ndarray) -> np.ndarray:
        """float32 [n_freq, frames] → float32 [n_mels, frames]."""
        if magnitude.shape[0] != self.shape[1]:
            raise ValueError(f"expected [{self.shape[1]}, frames], got {magnitude.shape}")
        return np.asarray(self.matrix @ magnitude, dtype=np.float32)


class MelExtractor:
    """profile → mel(audio) = (float32 [n_mels, frames], real_frames)."""

    def __init__(self, profile: MelProfile):
        p = self.profile = profile
        basis = librosa.filters.mel(sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax)
        self.basis = torch.from_numpy(basis)  # [n_mels, n_fft // 2 + 1], Slaney scale and norm
        self.filters = FilterBank(basis)
        # Periodic Hann of win_length centred in n_fft, as torch.stft and librosa.stft pad it.
        left = (p.n_fft - p.win_length) // 2
        self.window = torch.zeros(p.n_fft)
        self.window[left : left + p.win_length] = torch.hann_window(p.win_length, periodic=True)
        # What a zero signal gives, per mel bin: the padding value, never a bare 0.
        self.silence = self._log_mel(np.zeros(p.n_fft, np.float32))[:, 0].copy()  # [n_mels]

    def resample(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono float32 at the profile's rate (soxr, `RESAMPLE_QUALITY`); as is when already there."""
        audio = to_mono(audio)
        if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise ValueError(f"sample rate must be a positive integer, got {sample_rate!r}")
        if sample_rate == self.profile.sample_rate:
            return audio
        return soxr.resample(audio, int(sample_rate), self.profile.sample_rate, quality=RESAMPLE_QUALITY)

    def __call__(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
        return self.mel(self.resample(audio, sample_rate))

    @torch.inference_mode()
    def mel(self, audio: np.ndarray) -> tuple[np.ndarray, int]:
        """Audio at the profile's rate → (float32 [n_mels, frames], frames computed from real audio).

        A longer clip is cropped from the start (only the samples the first `frames` frames
        see are transformed, so the result equals cropping the full clip's mel); a shorter one
        is padded on the right with the silence column — or, for a `zero_pad_waveform` profile
        (AudioLDM's), its conditioned waveform is zero-padded to frames x hop samples before the
        STFT, so the frames around and after its end are those of the padded signal.
        """
        p = self.profile
        audio = to_mono(audio)
        if not np.isfinite(audio).all():
            raise ValueError("audio contains NaN or infinite samples")
        real = min(p.frames_for(audio.size), p.frames)
        window = p.frames * p.hop_length
        if p.zero_pad_waveform and 0 < audio.size < window:
            padded = np.pad(self.condition(audio), (0, window - audio.size))
            return np.ascontiguousarray(self._log_mel(padded)[:, : p.frames]), real
        out = np.empty((p.n_mels, p.frames), np.float32)
        if real:
            out[:, :real] = self._log_mel(self.condition(audio[: p.samples_needed]))[:, :real]
        out[:, real:] = self.silence[:, None]
        return out, real

    def condition(self, audio: np.ndarray) -> np.ndarray:
        """The waveform steps of the profile's family, on the stored part of the clip (never in place)."""
        p = self.profile
        if p.remove_dc:
            audio = audio - audio.mean(dtype=np.float32)
        if p.peak is not None:  # AudioLDM's normalize_wav: x / (max|x| + 1e-8) * peak
            audio = audio / np.float32(np.abs(audio).max() + 1e-8) * np.float32(p.peak)
        if p.clamp_waveform:
            audio = np.clip(audio, -1.0, 1.0)
        return audio

    def _log_mel(self, audio: np.ndarray) -> np.ndarray:
        """Samples → compressed mel, [n_mels, frames_for(len)], for the whole (already cropped) input."""
        p = self.profile
        padded = torch.from_numpy(np.pad(audio, p.pad, mode="reflect"))
        spec = torch.stft(padded, p.n_fft, p.hop_length, window=self.window, center=False, return_complex=True)
        ri = torch.view_as_real(spec).numpy()  # [n_freq, frames, 2]; NumPy from here on (module docstring)
        real, imag = ri[..., 0], ri[..., 1]
        power = real * real
        power += imag * imag  # |X|², [n_freq, frames]
        if p.magnitude_eps:
            power += np.float32(p.magnitude_eps)
        mel = self.filters.project(np.sqrt(power, out=power))  # [n_mels, frames]
        return _compress(mel, p)


def _compress(mel: np.ndarray, p: MelProfile) -> np.ndarray:
    """In the operation order of the family's code (see profiles.Compression). The log is taken in
    float64 and rounded once to float32: NumPy's float32 log10 is 1 ulp off at the floor itself
    (log10(1e-5) came out -5.0000005), float64 rounds to the nearest float32."""
    np.maximum(mel, np.float32(p.floor), out=mel)
    if p.compression not in ("ln", "log10", "specvqgan"):
        raise ValueError(f"mel profile {p.name!r}: unknown compression {p.compression!r}")
    log = np.log if p.compression == "ln" else np.log10
    mel = log(mel.astype(np.float64)).astype(np.float32)
    if p.compression == "specvqgan":
        mel *= np.float32(20)
        mel -= np.float32(20)
        mel += np.float32(100)
        mel /= np.float32(100)
        np.clip(mel, np.float32(0.0), np.float32(1.0), out=mel)
    return mel
