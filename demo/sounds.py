"""The demo corpus's sound classes: one synthesis function per AudioSet class, in one registry.

Each class has a signature a listener (or a classifier) can tell apart from the others: pitch
range, rhythm and texture differ. A synthesis function is `(rng, seconds, sr) -> float32 mono`,
peak-normalized to 1; the mixer applies gain and placement. The mids and names are the AudioSet
ontology's (pipelines/data/audioset_ontology.json); tests/demo/test_corpus.py checks them
against it, and that none is abstract or blacklisted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Synth = Callable[[np.random.Generator, float, int], np.ndarray]


@dataclass(frozen=True)
class SoundClass:
    key: str  # short registry name
    mid: str
    name: str
    synth: Synth
    durations: tuple[float, float]  # shortest and longest event, seconds
    colour: tuple[int, int, int]  # video background while the event plays
    phrases: tuple[str, ...]  # caption clauses: subject + verb, lower case
    tags: tuple[str, ...]  # Freesound tags and Clotho keywords
    vggsound: str  # VGGSound-style free-text label


# --- signal helpers ------------------------------------------------------------------------------


def _time(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def band_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float) -> np.ndarray:
    """White noise band-limited with a brick-wall FFT mask: cheap, exact and deterministic."""
    size = 1 << max(0, n - 1).bit_length()  # a power of two: FFTs of prime-ish lengths are 10x slower
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1.0 / sr)
    spectrum[(freqs < low) | (freqs > high)] = 0.0
    noise = np.fft.irfft(spectrum, size)[:n]
    rms = float(np.sqrt(np.mean(noise**2))) if n else 0.0
    return noise / rms if rms > 0 else noise  # unit RMS, so callers mix by level


def _ramp(signal: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    """Fade both ends so that an event never starts or stops with a click."""
    k = min(len(signal) // 2, int(seconds * sr))
    if k > 0:
        window = np.linspace(0.0, 1.0, k)
        signal[:k] *= window
        signal[-k:] *= window[::-1]
    return signal


def _normalize(signal: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(signal))) if len(signal) else 0.0
    return (signal / peak if peak > 0 else signal).astype(np.float32)


def _decaying(freq: float, decay: float, length: float, sr: int) -> np.ndarray:
    """A sinusoid with an exponential decay: the building block of clicks, thumps and strikes."""
    t = _time(length, sr)
    return np.sin(2 * np.pi * freq * t) * np.exp(-t / decay)


def _place(out: np.ndarray, grain: np.ndarray, at: float, sr: int) -> None:
    start = int(at * sr)
    if start >= len(out):
        return
    piece = grain[: len(out) - start]
    out[start : start + len(piece)] += piece


# --- one synthesis function per class ------------------------------------------------------------


def beep(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _time(seconds, sr)
    on, off = rng.uniform(0.08, 0.2), rng.uniform(0.08, 0.3)
    gate = ((t % (on + off)) < on).astype(float)
    gate = np.convolve(gate, np.ones(int(0.004 * sr)) / int(0.004 * sr), mode="same")  # soft edges
    return _normalize(_ramp(np.sin(2 * np.pi * rng.uniform(900, 1100) * t) * gate, sr))


def siren(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _time(seconds, sr)
    # A slow sinusoidal sweep between 600 and 1400 Hz (a "wail"), integrated into a phase.
    freq = 1000 + 400 * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(freq) / sr
    return _normalize(_ramp(np.sin(phase) + 0.3 * np.sin(2 * phase), sr))


def rain(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    n = int(round(seconds * sr))
    out = 0.25 * band_noise(rng, n, sr, 800, 6000)
    for at in rng.uniform(0, seconds, size=int(rng.uniform(20, 40) * seconds)):
        _place(out, 0.8 * _decaying(rng.uniform(2000, 5000), 0.002, 0.01, sr), at, sr)
    return _normalize(_ramp(out, sr, 0.1))


def tick_tock(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    out = np.zeros(int(round(seconds * sr)))
    period = rng.uniform(0.45, 0.55)
    tick, tock = _decaying(3200, 0.003, 0.02, sr), 0.8 * _decaying(2100, 0.004, 0.02, sr)
    for i, at in enumerate(np.arange(rng.uniform(0, 0.1), seconds, period)):
        _place(out, tick if i % 2 == 0 else tock, at, sr)
    return _normalize(out)


def idling(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _time(seconds, sr)
    f0 = rng.uniform(40, 55)
    hum = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k for k in (1, 2, 3) if k * f0 <= 150)
    firing = 1.0 + 0.5 * np.sin(2 * np.pi * rng.uniform(8, 12) * t)  # cylinder-firing amplitude modulation
    rumble = 0.3 * band_noise(rng, len(t), sr, 30, 150)
    return _normalize(_ramp(hum * firing + rumble, sr, 0.2))


def chirp(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    out = np.zeros(int(round(seconds * sr)))
    at = rng.uniform(0, 0.1)
    while at < seconds:
        length = rng.uniform(0.04, 0.08)
        t = _time(length, sr)
        low, high = rng.uniform(3000, 3500), rng.uniform(5500, 6000)
        phase = 2 * np.pi * (low * t + (high - low) * t**2 / (2 * length))  # linear upward sweep
        _place(out, np.sin(phase) * np.hanning(len(t)), at, sr)
        at += length + rng.uniform(0.05, 0.4)
    return _normalize(out)


def knock(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    out = np.zeros(int(round(seconds * sr)))
    at = rng.uniform(0, 0.05)
    while at < seconds:
        for _ in range(int(rng.integers(2, 5))):
            thump = _decaying(rng.uniform(80, 200), 0.03, 0.15, sr)
            thump[: int(0.005 * sr)] += 0.5 * rng.standard_normal(int(0.005 * sr))  # the knuckle's attack
            _place(out, thump, at, sr)
            at += rng.uniform(0.15, 0.3)
        at += rng.uniform(0.6, 1.5)
    return _normalize(out)


def church_bell(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    out = np.zeros(int(round(seconds * sr)))
    f0 = rng.uniform(300, 600)
    # Bell partials: hum, prime, minor third, fifth, nominal... (not integer multiples).
    partials = ((0.5, 0.6, 3.0), (1.0, 1.0, 2.0), (1.19, 0.5, 1.5), (1.5, 0.4, 1.2), (2.0, 0.5, 1.0), (2.6, 0.3, 0.6))
    strike = sum(amp * _decaying(f0 * ratio, decay, 3.0, sr) for ratio, amp, decay in partials)
    for at in np.arange(rng.uniform(0, 0.2), seconds, rng.uniform(1.5, 2.5)):
        _place(out, strike, at, sr)
    return _normalize(_ramp(out, sr, 0.05))


def whistle(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _time(seconds, sr)
    freq = rng.uniform(2200, 3000) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    tone = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    trill = 0.7 + 0.3 * np.sin(2 * np.pi * rng.uniform(20, 30) * t)  # the pea's rattle
    breath = 0.08 * band_noise(rng, len(t), sr, 1500, 4000)
    return _normalize(_ramp(tone * trill + breath, sr, 0.03))


def wind(rng: np.random.Generator, seconds: float, sr: int) -> np.ndarray:
    t = _time(seconds, sr)
    low = band_noise(rng, len(t), sr, 20, 500)
    swell = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 2 * np.pi))
    return _normalize(_ramp(low * swell**2, sr, 0.3))


def _classes(*items: SoundClass) -> dict[str, SoundClass]:
    return {item.key: item for item in items}


SOUNDS: dict[str, SoundClass] = _classes(
    SoundClass(
        "beep",
        "/m/02fs_r",
        "Beep, bleep",
        beep,
        (1.0, 4.0),
        (230, 200, 40),
        ("a device beeps", "an electronic beep repeats", "a high-pitched beeping sounds"),
        ("beep", "electronic", "alarm"),
        "smoke detector beeping",
    ),
    SoundClass(
        "siren",
        "/m/03kmc9",
        "Siren",
        siren,
        (3.0, 8.0),
        (200, 30, 30),
        ("a siren wails", "an emergency siren rises and falls", "a police siren blares"),
        ("siren", "emergency", "police"),
        "police car (siren)",
    ),
    SoundClass(
        "rain",
        "/m/06mb1",
        "Rain",
        rain,
        (4.0, 9.0),
        (40, 90, 200),
        ("rain falls steadily", "rain patters on a roof", "raindrops fall"),
        ("rain", "water", "weather"),
        "raining",
    ),
    SoundClass(
        "tick_tock",
        "/m/07qjznl",
        "Tick-tock",
        tick_tock,
        (2.0, 6.0),
        (120, 120, 130),
        ("a clock ticks", "a clock goes tick-tock", "a wall clock ticks steadily"),
        ("clock", "tick", "tock"),
        "clock ticking",
    ),
    SoundClass(
        "idling",
        "/m/07pb8fc",
        "Idling",
        idling,
        (3.0, 9.0),
        (90, 60, 30),
        ("an engine idles", "a vehicle engine rumbles at idle", "a motor hums at a low pitch"),
        ("engine", "idle", "car"),
        "engine idling",
    ),
    SoundClass(
        "chirp",
        "/m/07pggtn",
        "Chirp, tweet",
        chirp,
        (1.5, 5.0),
        (60, 180, 60),
        ("birds chirp", "a bird tweets", "small birds chirp rapidly"),
        ("bird", "chirp", "nature"),
        "bird chirping, tweeting",
    ),
    SoundClass(
        "knock",
        "/m/07r4wb8",
        "Knock",
        knock,
        (1.0, 3.0),
        (150, 90, 160),
        ("someone knocks on a door", "a door is knocked on", "knuckles rap on wood"),
        ("knock", "door", "wood"),
        "knocking on door",
    ),
    SoundClass(
        "church_bell",
        "/m/03w41f",
        "Church bell",
        church_bell,
        (3.0, 8.0),
        (210, 140, 40),
        ("a church bell rings", "a bell tolls", "bells ring out"),
        ("bell", "church", "ringing"),
        "church bell ringing",
    ),
    SoundClass(
        "whistle",
        "/m/0l156k",
        "Whistle",
        whistle,
        (0.8, 3.0),
        (230, 110, 170),
        ("a whistle blows", "a shrill whistle sounds", "someone blows a whistle"),
        ("whistle", "referee", "shrill"),
        "whistling",
    ),
    SoundClass(
        "wind",
        "/m/03m9d0z",
        "Wind",
        wind,
        (4.0, 9.0),
        (150, 200, 210),
        ("wind blows", "the wind gusts", "a strong wind howls"),
        ("wind", "storm", "outdoors"),
        "wind noise",
    ),
)
