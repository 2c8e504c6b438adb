"""Manifest records partitioned through files, not through the runner's shuffle.

Ingest must bring every record of a clip id together (duplicates meet, `job.collapse_duplicates`),
so its records are partitioned by a hash of the id. Shuffling them as one Beam element each costs a
coder round trip per manifest row, and a runner with an in-memory shuffle (the FnApiRunner, the
portable runner's embedded job server) holds every record until the shuffle ends: memory grew with
the manifest (2.9 GB at a million rows). Here the reader keeps a bounded buffer of records, and
every `FLUSH_RECORDS` it writes them as one spill file, ordered by partition; what goes through the
runner's shuffle is one small `SpillRef` per (file, partition). A partition's worker reads its
slices back. A worker's memory is then the buffer and one partition, and the shuffle carries one
reference per (flush, partition): (rows / FLUSH_RECORDS) × (rows / 512), about 31,000 tuples of ~40
bytes at a million rows, 120,000 at AudioSet's two million. That count grows with the square of the
manifest, so at tens of millions of rows a larger FLUSH_RECORDS (or fewer batches) keeps it small.

    <output>/.spill/<run_id>/<uuid>.records      one file per flush: pickled lists, one per partition

Files are written whole (locally renamed into place, on an object store one PUT) under names no
retry reuses, so a bundle the runner retries leaves at most an unread orphan; the launcher removes
the run's folder when the job ends and every earlier run's at the start of the next. The files are
written and read only by the job's own workers, inside the corpus's output (the same trust as the
runner's shuffle, which pickles the same records).
"""

from __future__ import annotations

import pickle
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipelines.core.io import write_bytes_atomic
from pipelines.core.storage import ObjectPath, is_remote, location

SPILL = ".spill"
FLUSH_RECORDS = 65_536  # records buffered by a reader before they are written (~90 MB of Clips at most, ~1.4 KB each)


SpillRef = tuple[str, int, int, int]
"""(file name in the run's spill folder, offset, length, records): one partition's slice of one
spill file. A plain tuple of primitives: Beam's FastPrimitivesCoder encodes it in ~40 bytes, where
a dataclass would be pickled, class name and all, per element."""


def spill_folder(output: str | Path | ObjectPath, run_id: str) -> Path | ObjectPath:
    return location(output) / SPILL / run_id


class SpillWriter:
    """Buffers (partition, record) pairs and writes them, FLUSH_RECORDS at a time, as one file
    ordered by partition; `add` and `close` return the SpillRefs of what was written."""

    def __init__(self, folder: Path | ObjectPath, flush_records: int | None = None):
        self.folder = folder
        self.flush_records = flush_records or FLUSH_RECORDS
        self.buffer: dict[int, list[Any]] = {}
        self.buffered = 0

    def add(self, partition: int, record: Any) -> list[tuple[int, SpillRef]]:
        self.buffer.setdefault(partition, []).append(record)
        self.buffered += 1
        return self.flush() if self.buffered >= self.flush_records else []

    def close(self) -> list[tuple[int, SpillRef]]:
        return self.flush()

    def flush(self) -> list[tuple[int, SpillRef]]:
        if not self.buffered:
            return []
        name = f"{uuid.uuid4().hex}.records"
        chunks, refs, offset = [], [], 0
        for partition in sorted(self.buffer):
            records = self.buffer[partition]
            data = pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL)
            chunks.append(data)
            refs.append((partition, (name, offset, len(data), len(records))))
            offset += len(data)
        write_bytes_atomic(self.folder / name, b"".join(chunks))
        self.buffer, self.buffered = {}, 0
        return refs


def read_spilled(folder: Path | ObjectPath, refs: Iterable[SpillRef]) -> Iterator[Any]:
    """The records of a partition's slices in `folder`, in the order of the (sorted) refs: one
    file open each."""
    for name, offset, length, _ in sorted(refs):
        with (folder / name).open("rb") as handle:
            handle.seek(offset)
            data = handle.read(length)
        if len(data) != length:
            raise OSError(f"spill file {folder / name} is shorter than the job wrote it (removed while the job ran?)")
        yield from pickle.loads(data)


def remove_spill(output: str | Path | ObjectPath, run_id: str | None = None) -> int:
    """Remove one run's spill folder, or (run_id None) every run's: call before a run starts, or
    after it ended. Returns the folders removed."""
    root = location(output) / SPILL
    if run_id is not None:
        folders = [root / run_id]
    elif is_remote(root):
        folders = list(root.iterdir())
    else:
        folders = [path for path in root.iterdir() if path.is_dir()] if root.is_dir() else []
    removed = 0
    for folder in folders:
        if is_remote(folder):
            folder.rmtree()
            removed += 1
        elif folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    if not is_remote(root) and root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    return removed
