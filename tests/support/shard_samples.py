"""Sample builders for tests that need valid shard samples (tests/support is on pytest's pythonpath)."""

from __future__ import annotations

import hashlib
import io
import string

import numpy as np
import soundfile as sf
from PIL import Image

from pipelines.shard import contract
from pipelines.shard.contract import SampleMeta

# profile → (n_mels, frames, sample_rate, hop_length): small stand-ins for the real presets
PROFILES = {"audioldm": (64, 20, 16000, 160), "make-an-audio": (80, 12, 16000, 256)}
MEL_ONLY = {"clipsonic": (64, 20, 16000, 512)}  # declared by make_meta when given, not made by make_mels
ALL_CHARS_KEY = string.ascii_letters + string.digits + "_-"


def flac_bytes(seed: int = 0, seconds: float = 0.05, rate: int = 48000) -> bytes:
    noise = np.random.default_rng(seed).uniform(-0.5, 0.5, int(seconds * rate)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, noise, rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def jpeg_bytes(seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def make_mels(seed: int = 0, profiles: tuple[str, ...] = tuple(PROFILES)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {p: rng.standard_normal(PROFILES[p][:2]).astype(np.float16) for p in profiles}


def make_meta(
    key: str, *, mels: dict[str, np.ndarray], audio: bytes | None = None, frames: int = 0, **fields
) -> SampleMeta:
    declared = {
        p: {
            "member": contract.mel_member(p),
            "shape": list(m.shape),
            "dtype": "float16",
            "sample_rate": {**PROFILES, **MEL_ONLY}[p][2],
            "hop_length": {**PROFILES, **MEL_ONLY}[p][3],
            "n_mels": m.shape[0],
            "real_frames": m.shape[1] - 2,
        }
        for p, m in mels.items()
    }
    values = {
        "key": key,
        "source": "audioset",
        "format": "audioset_strong",
        "source_id": key[-11:],
        "segment": {"start": 30.0, "end": 40.0},
        "duration": 9.5,
        "audio_seconds": 10.0,
        "padded": True,
        "sample_rate": 48000,
        "labels": [{"mid": "/m/0bt9lr", "name": "Dog"}, {"mid": None, "name": "bark"}],
        "captions": [{"text": "A dog barks twice.", "origin": "audiocaps", "kind": "human"}],
        "event_count": 1,
        "split": "train",
        "licence": "CC BY 4.0",
        "meta": {"tags": ["dog", "bark"]},
        "mels": declared,
        "frames": [contract.frame_member(i) for i in range(frames)],
        "audio": {"member": "flac", "sha256": hashlib.sha256(audio).hexdigest(), "bytes": len(audio)}
        if audio
        else None,
        "tools": {"t2a": "0.1.0", "numpy": np.__version__},
    }
    return SampleMeta(**{**values, **fields})


def make_sample(
    key: str, seed: int = 0, *, audio: bool = True, frames: int = 2, **fields
) -> tuple[str, dict[str, bytes]]:
    """One valid sample (key, {member: bytes}) with random float16 mels, FLAC and JPEG frames."""
    mels = make_mels(seed)
    flac = flac_bytes(seed) if audio else None
    jpgs = [jpeg_bytes(seed * 10 + i) for i in range(frames)]
    meta = make_meta(key, mels=mels, audio=flac, frames=frames, **fields)
    return key, contract.build_sample(meta, mels, audio=flac, frames=jpgs)
