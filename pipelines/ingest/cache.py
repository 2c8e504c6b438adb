"""The clip cache: one folder per clip id, written whole or not at all.

    <output>/clips/<bb>/<clip_id>/audio.flac, frame_NN.jpg, clip.json
    <output>/clips/.staging/<clip_id>.<random>/     entries being written
    <output>/failures/<bb>/<clip_id>.json           the last failure of a clip that has no entry

`<bb>` is the first two hex digits of sha256(clip_id): 256 buckets keep folders listable at
millions of clips. An entry is built in the staging folder, `clip.json` is written last, and the
folder is renamed into place, so a killed job never leaves half an entry, and a bundle retried by
the runner finds the entry done (or loses the rename race harmlessly).

`output` may be an object store (`s3://…`, `gs://…`: `pipelines.core.storage`). Entries are then
staged on the worker's local disk and uploaded file by file, clip.json last: an entry is complete
exactly when its clip.json exists, which is all a reader (`is_complete`, `entries`) looks at, and a
killed upload is redone whole by the next run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipelines.core.io import commit_folder, remove_leftovers, write_json_atomic
from pipelines.core.records import CLIP_SCHEMA, ClipRecord, check_clip_id
from pipelines.core.storage import ObjectPath, is_remote, local_staging, location

CLIP_JSON = "clip.json"
__all__ = ["CLIP_JSON", "CLIP_SCHEMA", "ClipCache", "CorruptEntry", "bucket"]


class CorruptEntry(ValueError):
    """A cache entry whose clip.json or files do not check out; the clip is a failure, not a crash."""


class ClipCache:
    def __init__(self, output: str | Path | ObjectPath):
        self.root = location(output).absolute()
        self.clips = self.root / "clips"
        self.failures = self.root / "failures"
        self.staging_root = local_staging(self.clips)  # clips/.staging; a local temp folder for an object store

    def create(self) -> None:
        for folder in (self.clips, self.failures, self.root / "status"):
            folder.mkdir(parents=True, exist_ok=True)

    def entry_dir(self, clip_id: str) -> Path:
        check_clip_id(clip_id)  # ids are [A-Za-z0-9_-]+: no separators, no "..", nothing outside the root
        return self.clips / bucket(clip_id) / clip_id

    def is_complete(self, clip_id: str) -> bool:
        return (self.entry_dir(clip_id) / CLIP_JSON).is_file()

    def read_entry(self, clip_id: str) -> ClipRecord:
        """The entry's clip.json, validated (`CorruptEntry` when it is not a t2a.clip/1 record)."""
        try:
            return ClipRecord.from_json_dict(json.loads((self.entry_dir(clip_id) / CLIP_JSON).read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
            raise CorruptEntry(f"{clip_id}: {error}") from None

    def read_file(self, entry: ClipRecord, name: str) -> bytes:
        """One file of an entry (audio.flac, frame_NN.jpg), checked against the sha256 clip.json
        records for it: a corrupt or swapped file is a `CorruptEntry`, never silently used."""
        listed = entry.files.get(name)
        if listed is None:
            raise CorruptEntry(f"{entry.clip_id}: clip.json lists no file {name!r}")
        data = (self.entry_dir(entry.clip_id) / name).read_bytes()
        if hashlib.sha256(data).hexdigest() != listed.sha256:
            raise CorruptEntry(f"{name} does not match the sha256 in clip.json (corrupt cache entry)")
        return data

    def write_entry(self, staging: Path, record: ClipRecord) -> None:
        """clip.json into a staged entry: the last file written, the entry's commit marker."""
        write_json_atomic(staging / CLIP_JSON, record.to_json_dict())

    def staging(self, clip_id: str) -> Path:
        check_clip_id(clip_id)
        path = self.staging_root / f"{clip_id}.{uuid.uuid4().hex}"  # always local disk: ffmpeg writes here
        path.mkdir(parents=True)
        return path

    def commit(self, staging: Path, clip_id: str) -> bool:
        """Move a staged entry into place; False when another worker's entry got there first."""
        return commit_folder(staging, self.entry_dir(clip_id), marker=CLIP_JSON)

    def clean_staging(self) -> int:
        """Remove entries a killed run left half-written; call before workers start."""
        return remove_leftovers(self.staging_root)

    def failure_path(self, clip_id: str) -> Path:
        check_clip_id(clip_id)
        return self.failures / bucket(clip_id) / f"{clip_id}.json"

    def read_failure(self, clip_id: str) -> dict[str, Any] | None:
        path = self.failure_path(clip_id)
        return json.loads(path.read_text()) if path.is_file() else None

    def record_failure(self, clip_id: str, failure: dict[str, Any]) -> None:
        write_json_atomic(self.failure_path(clip_id), failure)

    def clear_failure(self, clip_id: str) -> None:
        self.failure_path(clip_id).unlink(missing_ok=True)

    def bucket_entries(self, name: str) -> list[str]:
        """Clip ids of the complete entries of one `<bb>` bucket (on an object store: one listing)."""
        folder = self.clips / name
        if is_remote(folder):
            return sorted(marker.parent.name for marker in folder.glob(f"*/{CLIP_JSON}"))
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if (entry / CLIP_JSON).is_file())

    def entries(self) -> Iterator[str]:
        """Clip ids of the complete entries, in a stable order."""
        if is_remote(self.clips):  # one listing, not a request per entry; the marker decides
            markers = self.clips.glob(f"*/*/{CLIP_JSON}")
            found = sorted((m.parent.parent.name, m.parent.name) for m in markers if len(m.parent.parent.name) == 2)
            yield from (clip_id for _, clip_id in found)
            return
        if not self.clips.exists():
            return
        for bucket_dir in sorted(p for p in self.clips.iterdir() if len(p.name) == 2):
            for entry in sorted(bucket_dir.iterdir()):
                if (entry / CLIP_JSON).is_file():
                    yield entry.name


def bucket(clip_id: str) -> str:
    return hashlib.sha256(clip_id.encode()).hexdigest()[:2]
