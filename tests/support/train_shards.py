"""Small valid shard splits for the training tests, written with the real shard writer and indexes.

    root = write_split(tmp_path)                      # root/train/shard-00000{0..3}.tar + index.json
    write_split(tmp_path, "valid", shards=1)          # another split beside it
    write_split(tmp_path, corrupt={1: "garbage"})     # shard 1 damaged after indexing
    write_split(tmp_path, latent=(8, 5, 16))          # latent shards ([2·C, H, W] float16 posteriors)

Samples vary in a known way: sample i of shard s has key `<split[:2]><seed>-<s>-<i>`, event_count
EVENTS[(s·per_shard + i) % len(EVENTS)] with as many labels, a human caption "clip <key>", a
`selected_caption` on even i, a unit-norm `clap_audio` [CLAP_DIM] and (by default) a short FLAC.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from shard_samples import PROFILES, flac_bytes, make_meta

from pipelines.shard import contract, index, writer
from pipelines.shard.contract import ContractError

EVENTS = (1, 2, 0, 1, 3, 1, 2)
LABELS = ("Dog", "Speech", "Siren", "Rain")
CLAP_DIM = 8
CORRUPTIONS = ("garbage", "truncate", "member", "unknown", "flip")


def sample_key(split: str, seed: int, shard: int, i: int) -> str:
    return f"{split[:2]}{seed}-{shard}-{i:02d}"


def write_split(
    root: Path,
    split: str = "train",
    shards: int = 4,
    per_shard: int = 6,
    profile_frames: Mapping[str, int] = {"audioldm": 20},
    seed: int = 0,
    corrupt: Mapping[int, str] | None = None,
    *,
    audio: bool = True,
    latent: tuple[int, int, int] | None = None,
) -> Path:
    """Write the split under `root/split` and the indexes; returns `root` (a corpus folder for data.shards).

    `corrupt` maps a shard number to one of CORRUPTIONS: "garbage" (random bytes), "truncate" (the
    first 60 % of the tar) and "flip" (64 bytes flipped inside the first sample's mel or latent, which
    still decodes: only its checksum tells) damage the file after indexing; "member" (one sample's mel or
    latent is not a .npy, its checksums recomputed to match) and "unknown" (one sample gains a `.pkl`
    member) write the shard that way.
    """
    root, corrupt = Path(root), dict(corrupt or {})
    unknown = sorted(set(corrupt.values()) - set(CORRUPTIONS))
    if unknown:
        raise ValueError(f"unknown corruption {unknown}; valid: {CORRUPTIONS}")
    stats = []
    for s in range(shards):
        rows = [_sample(split, seed, s, i, s * per_shard + i, profile_frames, audio, latent) for i in range(per_shard)]
        if corrupt.get(s) in ("member", "unknown"):
            key, members = rows[0]
            damaged = contract.LATENT if latent else contract.mel_member(next(iter(profile_frames)))
            if corrupt[s] == "member":  # written that way: its checksum matches, decoding refuses it
                meta = contract.SampleMeta.from_json(members[contract.JSON])
                rows[0] = (key, contract.seal(meta, {**members, damaged: b"not npy"}))
            else:
                rows[0] = (key, {**members, "pkl": b"\x80\x04N."})
        path = root / split / f"shard-{s:06d}.tar"
        check = contract.check_latent_sample if latent else contract.check_sample
        info = writer.write_shard(path, rows, check=_unchecked if s in corrupt else check)
        if corrupt.get(s) == "unknown":  # the stats only tally members the contract names
            info = dataclasses.replace(info, members=tuple(m for m in info.members if not m.endswith(".pkl")))
        stats.append(writer.write_stats(path, info, {"split": split}))
    _write_indexes(root, split, stats, list(profile_frames))
    for s, how in corrupt.items():
        path = root / split / f"shard-{s:06d}.tar"
        data = path.read_bytes()
        if how == "garbage":
            path.write_bytes(np.random.default_rng(seed + s).bytes(len(data)))
        elif how == "truncate":
            path.write_bytes(data[: int(len(data) * 0.6)])
        elif how == "flip":
            member = contract.LATENT if latent else contract.mel_member(next(iter(profile_frames)))
            flipped = bytearray(data)
            start = data.index(f"{sample_key(split, seed, s, 0)}.{member}".encode()) + 512 + 160  # past the npy header
            for k in range(64):
                flipped[start + k] ^= 0xFF
            path.write_bytes(bytes(flipped))
    return root


def _sample(split, seed, shard, i, n, profile_frames, audio, latent) -> tuple[str, dict[str, bytes]]:
    key = sample_key(split, seed, shard, i)
    rng = np.random.default_rng([seed, shard, i])
    mels = {p: rng.standard_normal((PROFILES[p][0], frames)).astype(np.float16) for p, frames in profile_frames.items()}
    clap = rng.standard_normal(CLAP_DIM).astype(np.float32)
    clap /= np.linalg.norm(clap)
    events = EVENTS[n % len(EVENTS)]
    flac = flac_bytes(seed * 1000 + n) if audio and not latent else None
    meta = make_meta(
        key,
        mels=mels,
        audio=flac,
        split=split,
        event_count=events,
        labels=[{"mid": None, "name": LABELS[(n + j) % len(LABELS)]} for j in range(events)],
        captions=[{"text": f"clip {key}", "origin": "audiocaps", "kind": "human"}],
        selected_caption=f"selected {key}" if i % 2 == 0 else None,
        embeddings={
            "clap_audio": {"member": "clap_audio.npy", "shape": [CLAP_DIM], "dtype": "float32", "model": "tiny"}
        },
    )
    arrays = {"clap_audio": clap}
    if latent is None:
        return key, contract.build_sample(meta, mels, audio=flac, arrays=arrays)
    posterior = rng.standard_normal(latent).astype(np.float16)
    members = {
        contract.embedding_member("clap_audio"): contract.encode_npy(clap),
        contract.LATENT: contract.encode_npy(posterior),
    }
    return key, contract.seal(meta, members)


def _write_indexes(root: Path, split: str, stats: list[dict], profiles: list[str]) -> None:
    """This split's index, and the corpus index over every split on disk whose shards are intact."""
    others = [
        writer.read_stats(p)
        for p in sorted(root.glob("*/shard-*.tar"))
        if p.parent.name != split and writer.stats_path(p).is_file()
    ]
    try:
        index.write_indexes(root, stats + others, "0" * 64, profiles)
    except ContractError:  # an earlier split was damaged on purpose: index this one alone
        index.write_indexes(root, stats, "0" * 64, profiles)


def _unchecked(members) -> list[str]:
    return []  # the shard is damaged on purpose
