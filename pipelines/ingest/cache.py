"""The clip cache: one folder per clip id, written whole or not at all.

    <output>/clips/<bb>/<clip_id>/audio.flac, frame_NN.jpg, clip.json
    <output>/clips/.staging/<clip_id>.<random>/     entries being written
    <output>/failures/<run_id>-<part>.parquet       failures recorded by one bundle (a table, see below)

`<bb>` is the first two hex digits of sha256(clip_id): 256 buckets keep folders listable at
millions of clips. An entry is built in the staging folder, `clip.json` is written last, and the
folder is renamed into place, so a killed job never leaves half an entry, and a bundle retried by
the runner finds the entry done (or loses the rename race harmlessly).

Failures are rows of a table, not a file per clip: a bundle writes the failures it recorded as one
parquet file (`FAILURE_SCHEMA`), atomically; files are read in name order and a clip's newest row
wins; a run starts by folding all files (and the per-clip JSON files of older versions,
`failures/<bb>/<clip_id>.json`) into one, leaving out clips that have an entry by now. A worker reads
the table once (`Failures.load`), and the set of finished clips once (`ClipCache.done_ids`): a
re-run costs no file system call per manifest row.

`output` may be an object store (`s3://…`, `gs://…`: `pipelines.core.storage`). Entries are then
staged on the worker's local disk and uploaded file by file, clip.json last: an entry is complete
exactly when its clip.json exists, which is all a reader (`is_complete`, `entries`, `done_ids`) looks at, and a
killed upload is redone whole by the next run. Failure files are built locally and uploaded as one
object each; `done_ids` costs one recursive listing per bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import atomic_path, commit_folder, read_parquet, remove_leftovers, write_json_atomic
from pipelines.core.records import CLIP_SCHEMA, ClipRecord, check_clip_id
from pipelines.core.storage import ObjectPath, is_remote, local_staging, location

CLIP_JSON = "clip.json"
__all__ = ["CLIP_JSON", "CLIP_SCHEMA", "FAILURE_SCHEMA", "ClipCache", "CorruptEntry", "Failures", "bucket"]

FAILURE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("reason", pa.string()),
        ("retryable", pa.bool_()),
        ("attempts", pa.int64()),
        ("time", pa.string()),
        # digest of the source's fetch settings the failure happened under (fetch.configs.fetch_digest):
        # a failure is final only for the settings that produced it; null in migrated old records
        ("fetch", pa.string()),
    ]
)


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

    def done_ids(self) -> set[str]:
        """Ids of the committed entries, from one listing per bucket folder (no call per clip). On
        local disk an entry folder only ever appears by the rename of a complete staged one; on an
        object store an entry counts only once its clip.json is there."""
        if is_remote(self.clips):
            return {clip_id for name in self._remote_buckets() for clip_id in self.bucket_entries(name)}
        found: set[str] = set()
        if not self.clips.exists():
            return found
        with os.scandir(self.clips) as buckets:
            for bucket_dir in buckets:
                if len(bucket_dir.name) == 2 and bucket_dir.is_dir():
                    with os.scandir(bucket_dir.path) as names:
                        found.update(entry.name for entry in names if not entry.name.startswith("."))
        return found

    def _remote_buckets(self) -> list[str]:
        return sorted(p.name for p in self.clips.iterdir() if len(p.name) == 2 and not p.name.startswith("."))

    def bucket_entries(self, name: str) -> list[str]:
        """Clip ids of the complete entries of one `<bb>` bucket (on an object store: one recursive
        listing of the bucket, its clip.json markers)."""
        folder = self.clips / name
        if is_remote(folder):
            found = (obj.relative_to(folder).parts for obj in folder.find())
            return sorted(parts[0] for parts in found if len(parts) == 2 and parts[1] == CLIP_JSON)
        if not folder.is_dir():
            return []
        return sorted(entry.name for entry in folder.iterdir() if (entry / CLIP_JSON).is_file())

    def entries(self) -> Iterator[str]:
        """Clip ids of the complete entries, in a stable order."""
        if is_remote(self.clips):  # a listing per bucket, not a request per entry; the marker decides
            for name in self._remote_buckets():
                yield from self.bucket_entries(name)
            return
        if not self.clips.exists():
            return
        for bucket_dir in sorted(p for p in self.clips.iterdir() if len(p.name) == 2):
            for entry in sorted(bucket_dir.iterdir()):
                if (entry / CLIP_JSON).is_file():
                    yield entry.name


def bucket(clip_id: str) -> str:
    return hashlib.sha256(clip_id.encode()).hexdigest()[:2]


class Failures:
    """The failure table of a clip cache: `<output>/failures/*.parquet`, one file per writer. On an
    object store each file is built locally and uploaded as one object (visible whole or not at
    all), and the files are found by one listing."""

    def __init__(self, output: str | Path | ObjectPath):
        self.folder = location(output).absolute() / "failures"

    def files(self) -> list[Path | ObjectPath]:
        if is_remote(self.folder):
            return sorted(self.folder.glob("*.parquet"))
        return sorted(self.folder.glob("*.parquet")) if self.folder.exists() else []

    def write(self, rows: list[dict[str, Any]] | pa.Table, prefix: str) -> Path | ObjectPath | None:
        """One parquet file of failure rows, visible only once complete; None for no rows."""
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=FAILURE_SCHEMA)
        if not table.num_rows:
            return None
        path = self.folder / f"{prefix}-{uuid.uuid4().hex[:12]}.parquet"
        with atomic_path(path) as temp:
            pq.write_table(table, temp)
        return path

    def read(self) -> pa.Table:
        """Every row of every file, oldest file first (a clip's last row is its newest failure)."""
        tables = [read_parquet(path, schema=FAILURE_SCHEMA) for path in self.files()]
        return pa.concat_tables(tables) if tables else FAILURE_SCHEMA.empty_table()

    def load(self) -> FailureIndex:
        return FailureIndex(self.read())

    def compact(self, prefix: str, done: Iterable[str] = ()) -> int:
        """Fold every file, and the JSON files of older versions, into one file `<prefix>-…`: a
        clip's newest row, none for clips in `done`. The new file is complete before any old one
        goes, so a crash leaves rows twice (the newest still wins), never none. Files merged."""
        files, legacy, done = self.files(), self._legacy_files(), set(done)
        if not legacy and len(files) <= 1:
            ids = read_parquet(files[0], columns=["clip_id"]).column("clip_id").to_pylist() if files else []
            if done.isdisjoint(ids):
                return 0  # already one file of failures still open
        index = FailureIndex(pa.concat_tables([_legacy_table(legacy), self.read()]))
        keep = sorted(i for clip_id, i in index.rows.items() if clip_id not in done)
        self.write(index.table.take(pa.array(keep, pa.int64())), prefix)
        for path in [*files, *legacy]:
            path.unlink(missing_ok=True)
        for folder in {path.parent for path in legacy if not is_remote(path)}:  # object stores have no folders
            try:
                folder.rmdir()
            except OSError:
                pass
        return len(files) + len(legacy)

    def _legacy_files(self) -> list[Path | ObjectPath]:
        if is_remote(self.folder):
            return sorted(self.folder.glob("??/*.json"))
        return sorted(self.folder.glob("??/*.json")) if self.folder.exists() else []


class FailureIndex:
    """Clip id → its newest failure; built once per worker, looked up per clip in memory. The
    small columns are Python lists and the texts stay Arrow arrays (one scalar each per lookup):
    a lookup costs ~2 µs, where seven Arrow scalars cost ~13."""

    def __init__(self, table: pa.Table):
        self.table = table.combine_chunks()
        column = self.table.column
        self.rows = {clip_id: i for i, clip_id in enumerate(column("clip_id").to_pylist())}
        self.retryable = column("retryable").to_pylist()
        self.attempts = column("attempts").to_pylist()
        fetch = column("fetch").combine_chunks().dictionary_encode()
        self.fetch_values = fetch.dictionary.to_pylist()  # a few distinct fetch settings
        self.fetch = fetch.indices.to_pylist()
        self.texts = {name: column(name).combine_chunks() for name in ("source", "reason", "time")}

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, clip_id: str) -> dict[str, Any] | None:
        i = self.rows.get(clip_id)
        if i is None:
            return None
        fetch = self.fetch[i]
        return {
            "clip_id": clip_id,
            **{name: array[i].as_py() for name, array in self.texts.items()},
            "retryable": self.retryable[i],
            "attempts": self.attempts[i],
            "fetch": None if fetch is None else self.fetch_values[fetch],
        }


def _legacy_table(paths: list[Path | ObjectPath]) -> pa.Table:
    """Per-clip failure JSON files of earlier versions, as rows (their fetch digest unknown)."""
    rows = []
    for path in paths:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # unreadable: the clip is simply tried again
        rows.append({name: record.get(name) for name in FAILURE_SCHEMA.names} | {"clip_id": path.stem})
    rows.sort(key=lambda row: row["time"] or "")
    return pa.Table.from_pylist(rows, schema=FAILURE_SCHEMA)
