"""Named mel-spectrogram profiles: each paper's preprocessing as one frozen config.

A paper fixes rate, FFT, hop and mel count; everything it leaves open (band edges, framing,
magnitude, log, level normalisation) follows the public code of the family the paper builds on,
named in the profile's comment. Where no such code exists the choice is marked as ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from pipelines.core.registry import Registry

# "center": reflect-pad n_fft // 2 on each side, frames start at the first sample (librosa and
#   torch `center=True`; AudioLDM's TacotronSTFT; SpecVQGAN through librosa 0.8).
# "hifigan": reflect-pad (n_fft - hop) // 2 on each side, `center=False` (HiFi-GAN's and BigVGAN's
#   `mel_spectrogram`, NATSpeech's MelNet): exactly samples // hop frames.
Padding = Literal["center", "hifigan"]

# "ln": log(max(mel, floor)) (HiFi-GAN `dynamic_range_compression`).
# "log10": log10(max(mel, floor)) (NATSpeech `dynamic_range_compression_torch`).
# "specvqgan": clip((20·log10(max(mel, floor)) - 20 + 100) / 100, 0, 1) — SpecVQGAN's TRANSFORMS:
#   dB with a -100 dB floor, shifted by -20 dB, scaled to [0, 1].
Compression = Literal["ln", "log10", "specvqgan"]


@dataclass(frozen=True)
class MelProfile:
    """One mel-spectrogram recipe; `MelExtractor` turns a clip into float32 [n_mels, frames].

    Accuracy: against a float64 librosa reference computed the same way (same framing, window,
    magnitude, Slaney basis and compression; tests/pipelines/core/features/test_mel.py) the largest
    absolute difference, in the stored units, is at most `tolerance` — 1e-3 for ln and log10
    profiles, 1e-4 for specvqgan ones (dB / 100) — in every mel bin within 80 dB of its frame's
    loudest bin. Measured: <= 1e-6 on noise, <= 4e-4 (ln, log10) / 6e-5 (dB / 100) on sines and
    chirps. Bins further down sit near float32 FFT round-off, which the log magnifies (up to 3e-2
    nats in a pure chirp's bins ~120 dB down). Storing as float16 rounds by up to 4e-3 at |x| ~ 11.
    """

    name: str
    sample_rate: int
    n_fft: int
    win_length: int  # Hann (periodic) of this length, zero-padded at both ends to n_fft
    hop_length: int
    n_mels: int  # librosa Slaney mel basis (htk=False, norm="slaney") over [fmin, fmax]
    fmin: float
    fmax: float
    frames: int  # the stored length: cropped from the start, or padded with the silence value
    padding: Padding
    compression: Compression
    source: str  # the paper section the fixed values come from
    floor: float = 1e-5  # mel magnitudes are clamped to this before the log
    magnitude_eps: float = 0.0  # added to |X|² under the square root (HiFi-GAN family: 1e-9)
    # Waveform steps, in this order, on the part of the clip that is stored:
    remove_dc: bool = False  # subtract the mean
    peak: float | None = None  # scale so that max |x| is this (None: keep the level)
    clamp_waveform: bool = False  # clamp samples to [-1, 1]
    train_frames: int | None = None  # when the model trains on windows the loader cuts: their length
    # A clip shorter than the window (frames x hop samples): False: framed as it is and the frames after its
    # end filled with the silence column; True: the conditioned waveform zero-padded to the window before the
    # STFT, as AudioLDM's `pad_wav` does (so fine-tuning from AudioLDM weights sees the input they were trained on).
    zero_pad_waveform: bool = False
    tolerance: float = 1e-3  # max |torch - librosa float64| in stored units (see the docstring)

    def __post_init__(self) -> None:
        problems = []
        if self.padding not in get_args(Padding) or self.compression not in get_args(Compression):
            problems.append(f"padding must be one of {get_args(Padding)}, compression one of {get_args(Compression)}")
        if not 0 < self.win_length <= self.n_fft:
            problems.append(f"win_length {self.win_length} must be in (0, n_fft={self.n_fft}]")
        if self.hop_length <= 0 or self.n_mels <= 0 or self.frames <= 0:
            problems.append("hop_length, n_mels and frames must be positive")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            problems.append(f"need 0 <= fmin < fmax <= sample_rate/2, got {self.fmin}, {self.fmax}")
        if self.train_frames is not None and not 0 < self.train_frames <= self.frames:
            problems.append(f"train_frames {self.train_frames} must be in (0, frames={self.frames}]")
        if problems:
            raise ValueError(f"mel profile {self.name!r}: " + "; ".join(problems))

    @property
    def pad(self) -> int:
        """Samples of reflection padding on each side of the clip."""
        return self.n_fft // 2 if self.padding == "center" else (self.n_fft - self.hop_length) // 2

    def frames_for(self, samples: int) -> int:
        """Frames the framing yields for a clip of this many samples (uncropped)."""
        padded = samples + 2 * self.pad
        return 0 if samples <= 0 or padded < self.n_fft else (padded - self.n_fft) // self.hop_length + 1

    @property
    def samples_needed(self) -> int:
        """Samples that determine the first `frames` frames; the rest of a longer clip is dropped."""
        return (self.frames - 1) * self.hop_length + self.n_fft - self.pad


PROFILES: Registry[MelProfile] = Registry("mel profile")


def get_profile(name: str) -> MelProfile:
    """The registered profile; an unknown name raises `UnknownName` listing the valid ones."""
    return PROFILES.get(name)


def _register(profile: MelProfile) -> MelProfile:
    return PROFILES.register(profile.name)(profile)


# AudioLDM App. D: 16 kHz, 64 mels, window = FFT = 1024, hop 160, fmin 0, fmax 8000.
# App. E pads clips to 10 s; the released code pads to 1024 frames x hop 160 = 10.24 s
# (audioldm/audio/tools.py `wav_to_fbank(target_length=1024)`), which the 1024 here follows.
# Open choices follow that released code (audioldm/audio/tools.py, stft.py):
# TacotronSTFT = reflect padding of n_fft/2 (centred frames), magnitude |X| with no epsilon,
# log(clamp(mel, 1e-5)); `normalize_wav` = mean removed, peak scaled to 0.5; then clamped to [-1, 1].
# A shorter clip is zero-padded to 10.24 s as a waveform before the STFT (`read_wav_file` → `pad_wav`).
_register(
    MelProfile(
        name="audioldm",
        sample_rate=16_000,
        n_fft=1024,
        win_length=1024,
        hop_length=160,
        n_mels=64,
        fmin=0,
        fmax=8000,
        frames=1024,
        padding="center",
        compression="ln",
        clamp_waveform=True,
        remove_dc=True,
        peak=0.5,
        zero_pad_waveform=True,
        source="AudioLDM App. D",
    )
)

# Make-An-Audio §5.1: 16 kHz, FFT 1024, hop 256, 80 x 624 mel from 10-s clips.
# Open choices follow its preprocessing, preprocess/mel_spec.py + NAT_mel.MelNet (NATSpeech's
# HiFi-GAN mel): window 1024, fmin 0, fmax 8000, waveform clamped to [-1, 1], HiFi-GAN framing
# (625 frames for 10 s, cropped to 624), sqrt(|X|² + 1e-9), log10(clamp(mel, 1e-5)); no level change.
_register(
    MelProfile(
        name="make-an-audio",
        sample_rate=16_000,
        n_fft=1024,
        win_length=1024,
        hop_length=256,
        n_mels=80,
        fmin=0,
        fmax=8000,
        frames=624,
        padding="hifigan",
        compression="log10",
        magnitude_eps=1e-9,
        clamp_waveform=True,
        source="Make-An-Audio §5.1",
    )
)

# Diffsound §VI-A: 22.05 kHz, 1024-point Hann window, hop 256, 80 mels, 860 x 80 from 10 s.
# Its VQ-VAE follows SpecVQGAN ([3], §VI-B); the Diffsound repository ships SpecVQGAN's
# Codebook/feature_extraction/extract_mel_spectrogram.py and a conda env pinning librosa 0.8.0:
# fmin 125, fmax 7600, librosa.stft centred with that librosa's default reflect padding,
# magnitude (spec_power=1), then LowerThresh(1e-5), 20·log10, -20, +100, /100, clip to [0, 1],
# TrimSpec(860). Silence is 0.0 on this scale.
_register(
    MelProfile(
        name="diffsound",
        sample_rate=22_050,
        n_fft=1024,
        win_length=1024,
        hop_length=256,
        n_mels=80,
        fmin=125,
        fmax=7600,
        frames=860,
        padding="center",
        compression="specvqgan",
        tolerance=1e-4,
        source="Diffsound §VI-A",
    )
)

# CLIPSonic §3: 16 kHz, hop 512, FFT 2048, 64 mels; the model trains on 64 x 64 (2-s)
# windows, which the loader cuts: the stored mel is the whole clip, 10 s -> 312 frames.
# No CLIPSonic code is public; the mels are inverted by BigVGAN trained "using the code in [33]",
# so the open choices are BigVGAN's meldataset.py: window = FFT, fmin 0, fmax sr/2 (BigVGAN's
# fmax=None), HiFi-GAN framing, sqrt(|X|² + 1e-9), log(clamp(mel, 1e-5)), and its training input
# normalisation `librosa.util.normalize(audio) * 0.95` (peak 0.95, no DC removal). Our choice.
_register(
    MelProfile(
        name="clipsonic",
        sample_rate=16_000,
        n_fft=2048,
        win_length=2048,
        hop_length=512,
        n_mels=64,
        fmin=0,
        fmax=8000,
        frames=312,
        padding="hifigan",
        compression="ln",
        magnitude_eps=1e-9,
        peak=0.95,
        train_frames=64,
        source="CLIPSonic §3",
    )
)

# Li et al. 2023 §3.2: 32 kHz, ~10-s clips, 50-ms window (1600), 12.5-ms hop (400), 80 mel banks;
# n_fft 2048 is the next power of two >= the window. §2.1 builds on SpecVQGAN ([4], Iashin &
# Rahtu) and evaluates with its Melception, so the rest is SpecVQGAN's recipe (as for `diffsound`):
# centred librosa framing, magnitude, fmin 125, the [0, 1] dB scale; 801 frames cropped to 800.
# fmax is our choice: 16000 (Nyquist) — SpecVQGAN's 7600 was set for 22.05 kHz and would throw
# away the band that 32 kHz sampling is for.
_register(
    MelProfile(
        name="vqgan-32k",
        sample_rate=32_000,
        n_fft=2048,
        win_length=1600,
        hop_length=400,
        n_mels=80,
        fmin=125,
        fmax=16_000,
        frames=800,
        padding="center",
        compression="specvqgan",
        tolerance=1e-4,
        source="Li et al. 2023 §3.2",
    )
)
