"""A tiny shard corpus for trainer tests: train/valid splits, audioldm mels, CLAP embeddings, captions.

The mels are smooth (a few random low-frequency patterns per clip, like a real log-mel's structure)
so that a tiny VAE and LDM can learn them in tens of steps.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
from shard_samples import make_meta

from pipelines.shard import contract, index, writer

CAPTIONS = ("a dog barks", "rain falls on a roof", "a car passes by", "a bell rings twice", "people talk in a room")
LABELS = ("Dog", "Rain", "Car", "Bell", "Speech")  # each caption's label (clip_frames corpora)
N_MELS = 64


def smooth_mel(rng: np.random.Generator, frames: int, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, frames] log-mel-like: a sum of a few separable low-frequency waves around -5 (ln units)."""
    t = np.linspace(0, 1, frames)[None, :]
    f = np.linspace(0, 1, n_mels)[:, None]
    mel = np.full((n_mels, frames), -5.0)
    for _ in range(3):
        a, b, phase = rng.uniform(0.5, 3, 3)
        mel += rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * (a * f + b * t) + phase)
    return mel.astype(np.float16)


def build_train_corpus(
    root: Path,
    *,
    splits: dict[str, tuple[int, int]] | None = None,
    frames: int = 32,
    dim: int = 32,
    seed: int = 0,
    profiles: tuple[str, ...] = ("audioldm",),
    profile: str | None = None,
    clip_frames: int = 0,
    frameless_every: int = 0,
) -> Path:
    """root/index.json + root/<split>/shard-NNNNNN.tar; splits: name → (shards, samples per shard);
    one smooth mel per profile (its own mel count; `profile`: one profile, as `profiles=(profile,)`).

    `clip_frames` > 0: each clip also carries that many CLIP frame embeddings (clip_image) and their
    normalised mean (clip_image_mean), each frame its clip's caption direction plus noise, so a
    condition on them is learnable. `frameless_every` k > 0: every k-th clip of a split has labels but no
    frame embeddings (an audio-only clip beside the videos, as in AudioSet + FSD50K corpora)."""
    if profile is not None:
        profiles = (profile,)
    splits = splits or {"train": (4, 6), "valid": (1, 4)}
    rng = np.random.default_rng(seed)
    stats = []
    for split, (shards, per_shard) in splits.items():
        for s in range(shards):
            samples = [
                _sample(
                    f"{split}-{s:02d}-{i:03d}",
                    split,
                    rng,
                    frames,
                    dim,
                    s * per_shard + i,
                    profiles,
                    clip_frames,
                    with_frames=not (frameless_every and (s * per_shard + i) % frameless_every == frameless_every - 1),
                )
                for i in range(per_shard)
            ]
            path = Path(root) / split / f"shard-{s:06d}.tar"
            info = writer.write_shard(path, samples)
            stats.append(writer.write_stats(path, info, {"split": split}))
    index.write_indexes(Path(root), stats, "0" * 64, list(profiles))
    return Path(root)


def tone_flac(rng: np.random.Generator, seconds: float = 0.5, rate: int = 48000) -> bytes:
    """Two steady sines (a vocoder can learn them in a few steps), 16-bit FLAC."""
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(0.2 * np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 2000, 2))
    buffer = io.BytesIO()
    sf.write(buffer, wave.astype(np.float32), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _sample(
    key: str,
    split: str,
    rng: np.random.Generator,
    frames: int,
    dim: int,
    n: int,
    profiles=("audioldm",),
    clip_frames: int = 0,
    with_frames: bool = True,
) -> tuple[str, dict[str, bytes]]:
    from pipelines.core.features import get_profile

    mels = {name: smooth_mel(rng, frames, get_profile(name).n_mels) for name in profiles}
    flac = tone_flac(rng)
    embedding = rng.standard_normal(dim).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    caption = CAPTIONS[n % len(CAPTIONS)]
    arrays = {"clap_audio": embedding}
    if clip_frames and with_frames:
        direction = np.random.default_rng(1000 + n % len(CAPTIONS)).standard_normal(dim)
        frames_ = direction + 0.3 * rng.standard_normal((clip_frames, dim))
        frames_ /= np.linalg.norm(frames_, axis=-1, keepdims=True)
        mean = frames_.mean(axis=0)
        arrays["clip_image"] = frames_.astype(np.float32)
        arrays["clip_image_mean"] = (mean / np.linalg.norm(mean)).astype(np.float32)
    labels = {"labels": [{"mid": None, "name": LABELS[n % len(CAPTIONS)]}]} if clip_frames else {}
    described = {
        name: {"member": f"{name}.npy", "shape": list(array.shape), "dtype": "float32", "model": "test"}
        for name, array in arrays.items()
    }
    meta = make_meta(
        key,
        mels=mels,
        audio=flac,
        split=split,
        selected_caption=caption,
        selected_expert="human",
        event_count=1 + n % 2,
        embeddings=described,
        **labels,
    )
    return key, contract.build_sample(meta, mels, audio=flac, arrays=arrays)
