"""Sound events on a timeline: planning where they go, mixing them, and describing them in words.

An `Event` is what the ground truth records (class, start, end) plus what the mixer needs to
render it again identically (gain, pan and its own seed), so a file's audio depends only on its
events and never on the order in which files are generated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from demo.sounds import SOUNDS, SoundClass, band_noise

NOISE_LEVEL = 0.004  # RMS of the background noise under every clip: audible in silences, no more
_HEADROOM = 0.9  # peak of a mix after normalization: no clipping in any codec


@dataclass(frozen=True)
class Event:
    key: str  # a `SOUNDS` key
    start: float  # seconds, millisecond precision
    end: float
    gain: float = 0.5  # linear amplitude of the peak-normalized signal
    pan: float = 0.0  # -1 (left) .. 1 (right)
    seed: int = 0

    @property
    def sound(self) -> SoundClass:
        return SOUNDS[self.key]

    def truth(self) -> dict[str, Any]:
        return {"mid": self.sound.mid, "name": self.sound.name, "start": self.start, "end": self.end}


def plan_events(
    rng: np.random.Generator, start: float, end: float, n: int | None = None, keys: Sequence[str] | None = None
) -> list[Event]:
    """1-3 events of distinct classes inside [start, end]: one after another, or overlapping."""
    n = n if n is not None else int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    keys = list(keys) if keys is not None else [str(k) for k in rng.choice(list(SOUNDS), size=n, replace=False)]
    span = end - start
    overlap = len(keys) > 1 and rng.random() < 0.5
    slot = span if overlap else span / len(keys)
    events = []
    for i, key in enumerate(keys):
        low, high = SOUNDS[key].durations
        length = min(rng.uniform(low, high), slot if overlap else 0.9 * slot)
        slot_start = start if overlap else start + i * slot
        at = slot_start + rng.uniform(0, max(0.0, slot - length))
        events.append(
            Event(
                key=key,
                start=round(at, 3),
                end=round(min(at + length, end), 3),
                gain=round(float(rng.uniform(0.3, 0.8)), 3),
                pan=round(float(rng.uniform(-0.7, 0.7)), 3),
                seed=int(rng.integers(2**31)),
            )
        )
    return sorted(events, key=lambda e: (e.start, e.key))


def clip_events(events: Sequence[Event], start: float, end: float) -> list[Event]:
    """The events audible in [start, end], cut to it and shifted so that `start` becomes 0."""
    inside = [e for e in events if e.start < end and e.end > start]
    return [
        replace(e, start=round(max(e.start, start) - start, 3), end=round(min(e.end, end) - start, 3)) for e in inside
    ]


def render(events: Sequence[Event], seconds: float, sr: int, channels: int, noise_seed: int) -> np.ndarray:
    """The mix as float32 (samples, channels): events, panned in stereo, over quiet background noise."""
    n = int(round(seconds * sr))
    out = np.zeros((n, channels))
    for event in events:
        first = int(round(event.start * sr))
        if first >= n:
            continue
        signal = event.sound.synth(np.random.default_rng(event.seed), event.end - event.start, sr) * event.gain
        signal = signal[: n - first]
        out[first : first + len(signal)] += signal[:, None] * _pan_gains(event.pan, channels)
    noise = band_noise(np.random.default_rng(noise_seed), n, sr, 40, min(8000, sr / 2 - 1)) if n else np.zeros(0)
    out += NOISE_LEVEL * noise[:, None]
    peak = float(np.max(np.abs(out))) if n else 0.0
    if peak > _HEADROOM:
        out *= _HEADROOM / peak
    return out.astype(np.float32)


def _pan_gains(pan: float, channels: int) -> np.ndarray:
    if channels == 1:
        return np.ones(1)
    # Constant-power panning, scaled so that a centred source keeps its mono level in each channel.
    theta = (pan + 1) * np.pi / 4
    return np.array([np.cos(theta), np.sin(theta)]) * np.sqrt(2)


# --- captions ------------------------------------------------------------------------------------

_ONE = ("{a}", "{a} in the distance", "{a} nearby", "{a} several times", "{a} over faint background noise")
_THEN = ("{a}, then {b}", "{a} before {b}", "{a} and then {b}", "first {a}, after that {b}")
_WHILE = ("{a} while {b}", "{a} as {b}", "{a} and {b} at the same time", "{a}; meanwhile {b}")
_THREE = ("{a}, {b} and {c}", "{a} while {b}, and {c}", "{a}, then {b}, and finally {c}")


def captions(rng: np.random.Generator, events: Sequence[Event], n: int, period: bool = False) -> list[str]:
    """`n` different captions for the same events, written the way annotators vary their wording."""
    found: list[str] = []
    for _ in range(200):  # a bounded search: small vocabularies can run out of distinct sentences
        text = _caption(rng, events, period)
        if text not in found:
            found.append(text)
        if len(found) == n:
            return found
    return found + [f"{found[0]} (take {i + 1})" for i in range(len(found), n)]


def _caption(rng: np.random.Generator, events: Sequence[Event], period: bool) -> str:
    ordered = sorted(events, key=lambda e: e.start)
    phrases = [str(rng.choice(e.sound.phrases)) for e in ordered]
    if not phrases:
        text = str(rng.choice(["quiet background noise", "a faint hiss with nothing else"]))
    elif len(phrases) == 1:
        text = str(rng.choice(_ONE)).format(a=phrases[0])
    elif len(phrases) == 2:
        sequential = ordered[1].start >= ordered[0].end
        text = str(rng.choice(_THEN if sequential else _WHILE)).format(a=phrases[0], b=phrases[1])
    else:
        text = str(rng.choice(_THREE)).format(a=phrases[0], b=phrases[1], c=phrases[2])
    text = text[0].upper() + text[1:]
    return text + "." if period else text
