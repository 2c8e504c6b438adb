"""Mel profiles and the extractor: shapes, a float64 librosa reference, padding and cropping,
resampling, bitwise determinism, errors. Signals are generated here; nothing is downloaded."""

from __future__ import annotations

import contextlib
import dataclasses

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import chirp

from pipelines.core.features import PROFILES, MelExtractor, MelProfile, UnknownName, get_profile, load_audio

NAMES = ["audioldm", "clipsonic", "diffsound", "make-an-audio", "vqgan-32k"]
# Values of the stored units that a silent signal gives: log(1e-5), log10(1e-5), the [0, 1] floor.
SILENCE = {"ln": np.float32(np.log(1e-5)), "log10": np.float32(-5.0), "specvqgan": np.float32(0.0)}
# 20·log10 of a magnitude, per unit of each compression.
DB_PER_UNIT = {"ln": 20 / np.log(10), "log10": 20.0, "specvqgan": 100.0}
# Agreement with the librosa reference holds in bins within this many dB of their frame's peak
# (see MelProfile's docstring: below, float32 FFT round-off dominates).
REFERENCE_RANGE_DB = 80.0


@pytest.fixture(scope="module")
def extractors() -> dict[str, MelExtractor]:
    return {name: MelExtractor(get_profile(name)) for name in NAMES}


@contextlib.contextmanager
def torch_threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def signal(kind: str, rate: int, seconds: float = 10.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    rng = np.random.default_rng(seed)
    if kind == "noise":
        x = 0.3 * rng.standard_normal(t.size)
    elif kind == "faint":  # mels just above the 1e-5 floor, where HiFi-GAN's sqrt(|X|² + 1e-9) shows
        x = 1e-5 * rng.standard_normal(t.size)
    elif kind == "chirp":  # 50 Hz to just under Nyquist: every mel bin is swept
        x = 0.5 * chirp(t, 50, t[-1], rate / 2 - 100, method="logarithmic")
    elif kind == "sines":
        x = 0.3 * np.sin(2 * np.pi * 1000 * t) + 0.01 * np.sin(2 * np.pi * 3333 * t + 1)
    elif kind == "tones":  # below soxr HQ's passband edge at 16 kHz (0.913 · 8 kHz), faded in and out
        x = sum(0.2 * np.sin(2 * np.pi * f * t + i) for i, f in enumerate((440, 1000, 3000, 6000)))
        x *= np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.1)  # no edge transient sets a clip's peak
    else:
        raise ValueError(kind)
    return x.astype(np.float32)


def reference(p: MelProfile, audio: np.ndarray) -> np.ndarray:
    """The profile computed the librosa way in float64, over the whole clip (no crop; a zero_pad_waveform
    profile's short clip zero-padded to the window)."""
    x = audio.astype(np.float64)
    if p.remove_dc:
        x = x - x.mean()
    if p.peak is not None:
        x = x / (np.abs(x).max() + 1e-8) * p.peak
    if p.clamp_waveform:
        x = np.clip(x, -1.0, 1.0)
    if p.zero_pad_waveform and x.size < p.frames * p.hop_length:  # AudioLDM's pad_wav
        x = np.pad(x, (0, p.frames * p.hop_length - x.size))
    center = p.padding == "center"
    if not center:  # HiFi-GAN framing: reflect (n_fft - hop) / 2, then no centring
        x = np.pad(x, (p.n_fft - p.hop_length) // 2, mode="reflect")
    stft = librosa.stft(
        x,
        n_fft=p.n_fft,
        hop_length=p.hop_length,
        win_length=p.win_length,
        window="hann",
        center=center,
        pad_mode="reflect",
    )
    magnitude = np.sqrt(np.abs(stft) ** 2 + p.magnitude_eps)
    mel = librosa.feature.melspectrogram(
        S=magnitude, sr=p.sample_rate, n_fft=p.n_fft, n_mels=p.n_mels, fmin=p.fmin, fmax=p.fmax
    )
    mel = np.maximum(mel, p.floor)
    if p.compression == "ln":
        return np.log(mel)
    if p.compression == "log10":
        return np.log10(mel)
    return np.clip((20 * np.log10(mel) - 20 + 100) / 100, 0.0, 1.0)


def db_below_peak(p: MelProfile, mel: np.ndarray) -> np.ndarray:
    return (mel.max(axis=0, keepdims=True) - mel) * DB_PER_UNIT[p.compression]


# --- profiles --------------------------------------------------------------------------------------


def test_the_five_profiles_are_registered():
    assert PROFILES.names() == NAMES
    for name, profile in PROFILES.items():
        assert profile.name == name and profile.source


def test_an_unknown_profile_names_the_valid_ones():
    with pytest.raises(UnknownName, match="unknown mel profile 'audioldm2'; valid names: " + ", ".join(NAMES)):
        get_profile("audioldm2")


@pytest.mark.parametrize(
    "name, seconds, frames",
    [("audioldm", 10.24, 1024), ("make-an-audio", 10, 624), ("diffsound", 10, 860), ("vqgan-32k", 10, 800)],
)
def test_stored_frames_match_the_papers(name, seconds, frames):
    p = get_profile(name)
    assert p.frames == frames
    assert p.frames_for(round(seconds * p.sample_rate)) >= frames  # that much audio fills them all


def test_clipsonic_stores_the_clip_and_trains_on_two_second_windows():
    p = get_profile("clipsonic")
    assert p.train_frames == 64 and p.train_frames * p.hop_length / p.sample_rate == pytest.approx(2.0, abs=0.05)
    assert p.frames == p.frames_for(10 * p.sample_rate) == 312


def test_a_profile_with_impossible_values_is_refused():
    with pytest.raises(ValueError, match="fmax"):
        dataclasses.replace(get_profile("audioldm"), fmax=9000)
    with pytest.raises(ValueError, match="win_length"):
        dataclasses.replace(get_profile("audioldm"), win_length=2048)
    with pytest.raises(ValueError, match="compression one of"):
        dataclasses.replace(get_profile("audioldm"), compression="log2")


# --- the mel against librosa -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["noise", "faint", "chirp", "sines"])
@pytest.mark.parametrize("name", NAMES)
def test_mel_agrees_with_a_float64_librosa_reference(extractors, name, kind):
    p = get_profile(name)
    audio = signal(kind, p.sample_rate)
    mel, real = extractors[name].mel(audio)
    assert mel.shape == (p.n_mels, p.frames) and mel.dtype == np.float32
    assert real == min(p.frames_for(audio.size), p.frames)
    expected = reference(p, audio)[:, :real]
    error = np.abs(mel[:, :real] - expected)[db_below_peak(p, expected) <= REFERENCE_RANGE_DB]
    assert error.max() <= p.tolerance, f"max |error| {error.max():.2e} > {p.tolerance:.0e}"
    if kind in ("noise", "faint"):  # broadband: every bin is well above round-off
        assert np.abs(mel[:, :real] - expected).max() <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_a_1khz_sine_peaks_in_the_mel_bin_centred_nearest_1khz(extractors, name):
    p = get_profile(name)
    centres = librosa.mel_frequencies(p.n_mels + 2, fmin=p.fmin, fmax=p.fmax)[1:-1]
    t = np.arange(48_000 * 10) / 48_000
    mel, real = extractors[name](0.5 * np.sin(2 * np.pi * 1000 * t).astype(np.float32), 48_000)
    assert np.argmax(mel[:, :real].mean(axis=1)) == np.argmin(np.abs(centres - 1000))


# --- padding and cropping --------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in NAMES if not get_profile(n).zero_pad_waveform])
def test_a_short_clip_is_padded_with_the_silence_value(extractors, name):
    p, extractor = get_profile(name), extractors[name]
    audio = signal("noise", p.sample_rate, seconds=3.0)
    mel, real = extractor.mel(audio)
    assert real == p.frames_for(audio.size) < p.frames
    assert np.array_equal(extractor.silence, np.full(p.n_mels, SILENCE[p.compression]))
    assert (mel[:, real:] == SILENCE[p.compression]).all()
    np.testing.assert_allclose(mel[:, :real], reference(p, audio)[:, :real], atol=1e-5, rtol=0)


def audioldm_fbank(audio: np.ndarray, rate: int = 16000) -> np.ndarray:
    """AudioLDM's `wav_to_fbank(target_length=1024)` (package audioldm 0.1.1, audio/tools.py), in float64 with
    librosa: normalize_wav (mean removed, peak 0.5), pad_wav (zeros after the clip to 1024 x 160 samples),
    peak 0.5 again, TacotronSTFT (centred reflect framing, |X|, Slaney mel 0–8 kHz, log(clamp(·, 1e-5))),
    then the first 1024 frames (_pad_spec)."""
    x = audio.astype(np.float64)
    x = x - x.mean()
    x = x / (np.abs(x).max() + 1e-8) * 0.5
    x = np.pad(x, (0, 1024 * 160 - x.size))
    x = 0.5 * x / np.abs(x).max()
    stft = librosa.stft(x, n_fft=1024, hop_length=160, win_length=1024, window="hann", center=True, pad_mode="reflect")
    mel = librosa.feature.melspectrogram(S=np.abs(stft), sr=rate, n_fft=1024, n_mels=64, fmin=0, fmax=8000)
    return np.log(np.maximum(mel, 1e-5))[:, :1024]


@pytest.mark.parametrize("seconds", [3.0, 10.0, 10.2])
def test_a_short_audioldm_clip_is_zero_padded_to_10_24_s_before_the_stft_as_audioldm_does(extractors, seconds):
    """AudioLDM pads the waveform with zeros to 10.24 s and then frames it: the frames around the clip's
    end see the zeros, not a reflection, and later frames are the STFT of zeros (log 1e-5)."""
    p, extractor = get_profile("audioldm"), extractors["audioldm"]
    audio = signal("tones", p.sample_rate, seconds=seconds)
    mel, real = extractor.mel(audio)
    expected = audioldm_fbank(audio)
    assert real == min(p.frames_for(audio.size), p.frames) and mel.shape == expected.shape == (64, 1024)
    near = db_below_peak(p, expected) <= REFERENCE_RANGE_DB
    assert np.abs(mel - expected)[near].max() <= p.tolerance
    end = audio.size // p.hop_length
    if seconds < 10.0:
        assert (mel[:, end + 4 :] == SILENCE["ln"]).all()  # frames wholly in the zeros
        # The old convention (reflect at the clip's end, then the silence column) differs around the end.
        old = dataclasses.replace(p, zero_pad_waveform=False)
        before, _ = MelExtractor(old).mel(audio)
        assert np.abs(before - expected)[:, end - 3 : end + 4].max() > 1.0
        np.testing.assert_array_equal(before[:, : end - 4], mel[:, : end - 4])  # inside the clip: unchanged


@pytest.mark.parametrize("name", NAMES)
def test_silence_and_degenerate_clips(extractors, name):
    p, extractor = get_profile(name), extractors[name]
    zeros, real = extractor.mel(np.zeros(5 * p.sample_rate, np.float32))
    assert real == p.frames_for(5 * p.sample_rate) and (zeros == SILENCE[p.compression]).all()
    empty, real = extractor.mel(np.zeros(0, np.float32))
    assert real == 0 and (empty == SILENCE[p.compression]).all()
    tiny, real = extractor.mel(signal("noise", p.sample_rate, seconds=0.002))  # shorter than the padding
    assert real == p.frames_for(round(0.002 * p.sample_rate)) and np.isfinite(tiny).all()


@pytest.mark.parametrize("name", NAMES)
def test_a_long_clip_is_cropped_from_the_start(extractors, name):
    p, extractor = get_profile(name), extractors[name]
    audio = signal("noise", p.sample_rate, seconds=25.0)
    audio[p.samples_needed + 1000 :] *= 3.0  # louder after the stored part: must change nothing
    mel, real = extractor.mel(audio)
    assert real == p.frames
    assert np.array_equal(mel, extractor.mel(audio[: p.samples_needed])[0])
    if p.peak is None:  # the level of the whole clip is not used: frame for frame the full mel
        np.testing.assert_allclose(mel, reference(p, audio)[:, : p.frames], atol=1e-5, rtol=0)


# --- resampling ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [48_000, 44_100])
@pytest.mark.parametrize("name", NAMES)
def test_resampled_audio_gives_the_mel_of_audio_made_at_the_profile_rate(extractors, name, rate):
    p, extractor = get_profile(name), extractors[name]
    resampled = extractor.resample(signal("tones", rate), rate)
    direct = signal("tones", p.sample_rate)
    assert resampled.dtype == np.float32 and resampled.shape == direct.shape
    inner = slice(p.sample_rate // 10, -p.sample_rate // 10)  # away from the filter's edge effects
    assert np.abs(resampled[inner] - direct[inner]).max() < 2e-4  # measured <= 5e-5
    mel, real = extractor(signal("tones", rate), rate)
    expected, _ = extractor.mel(direct)
    loud = db_below_peak(p, expected[:, 2 : real - 2]) <= 30  # the tones, not the leakage between
    error_db = np.abs(mel - expected)[:, 2 : real - 2][loud] * DB_PER_UNIT[p.compression]
    assert error_db.max() < 0.1  # measured <= 0.032 dB (audioldm: peak normalisation)


def test_audio_already_at_the_profile_rate_is_not_resampled(extractors):
    audio = signal("noise", 16_000, seconds=1.0)
    assert extractors["audioldm"].resample(audio, 16_000) is audio


# --- determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_the_same_clip_gives_bitwise_the_same_mel_across_calls_and_thread_counts(name):
    audio = signal("noise", 48_000, seed=7) + signal("chirp", 48_000)
    results = []
    for threads in (1, 2, 4, 1, 2, 4):
        with torch_threads(threads):
            results.append(MelExtractor(get_profile(name))(audio, 48_000))
    for mel, real in results[1:]:
        assert real == results[0][1] and np.array_equal(mel, results[0][0])


# --- files and errors ------------------------------------------------------------------------------


def test_load_audio_reads_a_flac_as_float32_mono(tmp_path, extractors):
    audio = signal("noise", 48_000, seconds=2.0) * 0.5
    sf.write(tmp_path / "mono.flac", audio, 48_000, subtype="PCM_16")
    sf.write(tmp_path / "stereo.flac", np.stack([audio, -audio / 2], axis=1), 48_000, subtype="PCM_16")
    mono, rate = load_audio(tmp_path / "mono.flac")
    assert rate == 48_000 and mono.dtype == np.float32 and mono.shape == audio.shape
    assert np.abs(mono - audio).max() <= 1 / 32768  # 16-bit quantisation
    stereo, _ = load_audio(tmp_path / "stereo.flac")
    np.testing.assert_allclose(stereo, mono / 4, atol=2 / 32768)  # (x - x/2) / 2
    extractor = extractors["audioldm"]
    assert np.array_equal(extractor(*load_audio(tmp_path / "mono.flac"))[0], extractor(mono, 48_000)[0])


def test_bad_audio_is_refused_with_a_clear_message(extractors):
    extractor = extractors["audioldm"]
    with pytest.raises(ValueError, match="float samples"):
        extractor(np.zeros(16_000, np.int16), 16_000)
    with pytest.raises(ValueError, match="NaN"):
        extractor.mel(np.full(16_000, np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        extractor.mel(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match="sample rate"):
        extractor.resample(np.zeros(100, np.float32), 0)
