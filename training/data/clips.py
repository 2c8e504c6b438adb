"""Where each training clip's audio lies in the corpus shards: the index the on-the-fly audio augmentations read.

Make-An-Audio §3.2.2 draws the events of dynamic reprogramming from "a database D of single-event
clips"; AudioLDM §3.3 eq. 8 mixes two clips' waveforms. Both need audio of clips other than the one
being read, and, when the LDM trains on pre-encoded latents (whose shards hold no audio), the clip's
own audio. `ClipIndex` is built once per run by one pass over the split's shards that reads the tar
headers and the small JSON members only (the audio is skipped by seeking past it): per clip the
shard, the byte range of its FLAC member and, for a clip with exactly one event (event_count 1 and
one label), that label. Audio is read (one ranged read) and decoded only when a clip is drawn.

Memory: numpy arrays, about 20 bytes per clip plus its key (≈ 60 MB for a 1M-clip corpus); labels are
stored once each. The index is cached in the run folder as <run>/augment/clips-<hash>.npz, `hash` the
sha256 of the split's shard list (its shards' urls, sample counts and sha256s): a second run or a resume
on the same shards reads it instead of scanning again; rewritten shards get a new index.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from pathlib import Path

import fsspec
import numpy as np

from pipelines.core.io import atomic_path
from pipelines.shard import contract
from training.data.stream import ShardInfo, split_index

log = logging.getLogger(__name__)
NO_LABEL = -1


class ClipIndex:
    """The audio of a split's clips by key, and D: the single-event clips with their label."""

    def __init__(
        self,
        urls: list[str],
        keys: np.ndarray,
        shard: np.ndarray,
        offset: np.ndarray,
        size: np.ndarray,
        label: np.ndarray,
        labels: list[str],
        storage_options: dict | None = None,
    ):
        order = np.argsort(keys, kind="stable")
        self.urls, self.labels, self.storage_options = list(urls), list(labels), dict(storage_options or {})
        self.keys, self.shard, self.offset = keys[order], shard[order], offset[order]
        self.size, self.label = size[order], label[order]
        self.events = np.flatnonzero(self.label != NO_LABEL)  # D, in key order

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, key: str) -> int | None:
        """The row of `key`, or None when the clip has no audio in the index."""
        target = key.encode()
        i = int(np.searchsorted(self.keys, target))
        return i if i < len(self.keys) and self.keys[i] == target else None

    def key(self, row: int) -> str:
        return self.keys[row].decode()

    def event_label(self, row: int) -> str | None:
        value = int(self.label[row])
        return None if value == NO_LABEL else self.labels[value]

    def audio(self, row: int) -> bytes:
        """The FLAC bytes of row `row`: one ranged read from its shard."""
        with fsspec.open(self.urls[int(self.shard[row])], "rb", **self.storage_options) as stream:
            stream.seek(int(self.offset[row]))
            data = stream.read(int(self.size[row]))
        if len(data) != int(self.size[row]):
            raise ValueError(f"{self.urls[int(self.shard[row])]}: {self.key(row)}.flac is cut short")
        return data

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as out:
            np.savez(
                out,
                keys=self.keys,
                shard=self.shard,
                offset=self.offset,
                size=self.size,
                label=self.label,
                urls=np.array(self.urls, dtype=object).astype(str),
                labels=np.array(self.labels, dtype=str),
            )

    @classmethod
    def load(cls, path: Path, storage_options: dict | None = None) -> ClipIndex:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                [str(u) for u in data["urls"]],
                data["keys"],
                data["shard"],
                data["offset"],
                data["size"],
                data["label"],
                [str(x) for x in data["labels"]],
                storage_options,
            )


def shards_hash(location: str, split: str, storage_options: dict | None = None) -> str:
    """sha256 of the split's shard list as its index records it (urls, sample counts, sha256s)."""
    _, index = split_index(location, split, storage_options)
    return hashlib.sha256(json.dumps(index["shardlist"], sort_keys=True).encode()).hexdigest()


def clip_index(data, split: str, run: Path) -> ClipIndex:
    """The split's ClipIndex from <run>/augment/clips-<hash16>.npz, built and saved there the first time."""
    from training.data.stream import list_shards

    digest = shards_hash(data.shards, split, data.storage_options)
    path = Path(run) / "augment" / f"clips-{split}-{digest[:16]}.npz"
    if path.is_file():
        log.info("clip index: %s (cached)", path)
        return ClipIndex.load(path, data.storage_options)
    index = build_clip_index(list_shards(data.shards, split, data.storage_options), data.storage_options)
    index.save(path)
    log.info("clip index: %d clips with audio, %d single-event clips (D) → %s", len(index), len(index.events), path)
    return index


def build_clip_index(shards: list[ShardInfo], storage_options: dict | None = None) -> ClipIndex:
    """One pass over the shards' tar headers and JSON members (audio skipped unread)."""
    keys: list[np.ndarray] = []  # per shard: numpy arrays, so that a 1M-clip corpus never holds 1M Python objects
    tables: list[np.ndarray] = []
    labels: dict[str, int] = {}
    for number, shard in enumerate(shards):
        metas: dict[str, dict] = {}
        audio: dict[str, tuple[int, int]] = {}
        try:
            with (
                fsspec.open(shard.url, "rb", **(storage_options or {})) as stream,
                tarfile.open(fileobj=stream, mode="r:") as tar,
            ):
                for info in tar:
                    if not info.isfile() or "." not in info.name:
                        continue
                    key, member = contract.split_name(info.name)
                    if member == contract.AUDIO:
                        audio[key] = (info.offset_data, info.size)
                    elif member == contract.JSON:
                        metas[key] = json.load(io.BytesIO(tar.extractfile(info).read()))
        except (OSError, tarfile.TarError, ValueError) as error:  # a damaged shard: the loader skips it too
            log.warning(
                "clip index: %s: %s: %s; its remaining clips have no audio for augmentation",
                shard.url,
                type(error).__name__,
                error,
            )
        rows = []
        for key, (offset, size) in audio.items():
            label = _single_label(metas.get(key) or {})
            rows.append((number, offset, size, NO_LABEL if label is None else labels.setdefault(label, len(labels))))
        if rows:
            keys.append(np.array([key.encode() for key in audio], dtype=bytes))
            tables.append(np.array(rows, dtype=np.int64))
    table = np.concatenate(tables) if tables else np.zeros((0, 4), np.int64)
    width = max((k.dtype.itemsize for k in keys), default=1)
    return ClipIndex(
        [s.url for s in shards],
        np.concatenate([k.astype(f"S{width}") for k in keys]) if keys else np.array([], dtype="S1"),
        table[:, 0].astype(np.int32),
        table[:, 1],
        table[:, 2],
        table[:, 3].astype(np.int32),
        list(labels),
        storage_options,
    )


def _single_label(meta: dict) -> str | None:
    """The label of a one-event clip (Make-An-Audio §3.2.2: D holds single-event clips), else None."""
    labels = [label.get("name") for label in meta.get("labels") or [] if label.get("name")]
    return labels[0] if meta.get("event_count") == 1 and len(labels) == 1 else None
