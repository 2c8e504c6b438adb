"""Quality measures on synthesized signals whose bandwidth, clipping, loudness, silence and DC offset
are known by construction."""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from pipelines.qc.measures import CLIP_LEVEL, measure
from pipelines.qc.vad import SpeechDetector

RATE = 48000


def noise(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1


def test_bandwidth_of_audio_upsampled_from_8_khz_is_its_nyquist_frequency():
    narrow = soxr.resample(noise(4.0, rate=8000), 8000, RATE, quality="VHQ")  # what AudioSet often holds
    full = noise(4.0)
    medium = soxr.resample(noise(4.0, rate=22050), 22050, RATE, quality="VHQ")
    assert measure(narrow, RATE)["bandwidth_hz"] == pytest.approx(4000, abs=150)
    assert measure(medium, RATE)["bandwidth_hz"] == pytest.approx(11025, abs=250)
    assert measure(full, RATE)["bandwidth_hz"] > 23000


def test_clipping_ratio_of_a_hard_clipped_sine_matches_the_arcsine_law():
    t = np.arange(4 * RATE) / RATE
    clipped = np.clip(2.0 * np.sin(2 * np.pi * 441 * t), -1, 1)  # 441 Hz: whole periods in a second
    expected = 1 - (2 / math.pi) * math.asin(CLIP_LEVEL / 2.0)  # share of time |2 sin| ≥ 0.999
    assert measure(clipped, RATE)["clipping"] == pytest.approx(expected, abs=2e-3)
    assert measure(0.5 * np.sin(2 * np.pi * 441 * t), RATE)["clipping"] == 0.0


def test_integrated_loudness_follows_itu_r_bs_1770():
    t = np.arange(10 * RATE) / RATE
    tone = 0.1 * np.sin(2 * np.pi * 997 * t)  # -20 dBFS peak: BS.1770 gives -3.01 LKFS at 0 dBFS
    assert measure(tone, RATE)["loudness_lufs"] == pytest.approx(-23.01, abs=0.2)
    louder = measure(tone * 2, RATE)["loudness_lufs"]
    assert louder - measure(tone, RATE)["loudness_lufs"] == pytest.approx(20 * math.log10(2), abs=0.05)
    assert measure(np.zeros(RATE * 2), RATE)["loudness_lufs"] is None  # below the absolute gate
    assert measure(tone[: RATE // 10], RATE)["loudness_lufs"] is None  # shorter than one 400-ms block


def test_silence_ratio_dc_offset_and_peak():
    signal = np.concatenate([noise(3.0), np.zeros(RATE)]) + 0.0  # the last quarter is digital silence
    values = measure(signal, RATE)
    assert values["silence"] == pytest.approx(0.25, abs=0.01)
    shifted = measure(noise(2.0) + 0.05, RATE)
    assert shifted["dc_offset"] == pytest.approx(0.05, abs=0.005)
    assert measure(np.full(RATE, 0.5), RATE)["peak_dbfs"] == pytest.approx(20 * math.log10(0.5))


def test_measures_are_the_same_on_every_call():
    x = noise(3.0, seed=3).astype(np.float32)
    detector = SpeechDetector()
    first, second = measure(x, RATE, detector), measure(x, RATE, detector)
    assert first == second


def test_silero_vad_finds_no_speech_in_a_tone_or_noise():
    detector = SpeechDetector()
    t = np.arange(3 * RATE) / RATE
    assert detector((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), RATE) < 0.1
    assert detector(noise(3.0).astype(np.float32), RATE) < 0.1


@pytest.fixture(scope="module")
def espeak() -> str:
    """Debian's espeak-ng (a speech synthesizer), installed with apt-get where missing and possible."""
    found = shutil.which("espeak-ng")
    if not found and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for args in (["install", "-y", "espeak-ng"], ["update"], ["install", "-y", "espeak-ng"]):
            if subprocess.run(["apt-get", *args], env=env, capture_output=True, timeout=300).returncode == 0 and (
                shutil.which("espeak-ng")
            ):
                break
        found = shutil.which("espeak-ng")
    if not found:
        pytest.skip("espeak-ng is not installed and cannot be (`apt-get install -y espeak-ng`)")
    return found


def test_silero_vad_finds_synthesized_speech_and_its_share(espeak, tmp_path):
    wav = tmp_path / "speech.wav"
    subprocess.run([espeak, "-w", str(wav), "The quick brown fox jumps over the lazy dog."], check=True)
    speech, rate = sf.read(wav, dtype="float32")
    detector = SpeechDetector()
    alone = detector(speech, rate)
    assert alone > 0.7
    padded = detector(np.concatenate([speech, np.zeros(3 * speech.size, np.float32)]), rate)
    assert padded == pytest.approx(alone / 4, abs=0.08)
