"""Writing files and folders so that a reader never sees half of one, and digests of what was written.

Every output of t2a (clip cache entries, annotations, shards, checkpoints, exported models, sample
WAVs) is written through these helpers:

    with atomic_path(path) as temp:      # a temporary name beside `path`; renamed onto it on success,
        write_something(temp)            # removed on failure: `path` is the old file or the new one
    write_json_atomic(path, payload)     # deterministic JSON (sorted keys), atomically
    with staged_folder(target) as temp:  # a folder built beside `target`, then swapped in
        model.save_pretrained(temp)
    commit_folder(staging, target, marker="clip.json")   # a staged folder renamed into place; a
                                                         # retried bundle that lost the race is fine

A killed process leaves only dot-named temporaries (`.<name>.tmp-<random>`), which
`remove_leftovers` clears for folders a stage owns.

Each helper takes an `ObjectPath` (`pipelines.core.storage`: s3://, gs://, any fsspec URL) as well.
An object store has no rename, so there a file is built locally and uploaded as one object (a PUT
is all or nothing), and a folder is uploaded member by member with its marker last: readers that
look for the marker never see half an entry, and a re-run overwrites a half-uploaded one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines.core.storage import ObjectPath, UnsupportedStorage, is_remote


def temp_name(path: Path, kind: str = "tmp") -> Path:
    """A hidden sibling of `path` that no other writer picks: `.<name>.<kind>-<random>`."""
    return path.with_name(f".{path.name}.{kind}-{uuid.uuid4().hex[:12]}")


@contextmanager
def atomic_path(path: str | os.PathLike | ObjectPath, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside `path`, renamed onto it when the block succeeds, removed when it fails.

    The caller writes the file (or hands the path to a library). With `fsync`, the folder is synced
    after the rename, so the new name survives a power cut (the caller syncs the file's own bytes).
    For an ObjectPath the temporary is a local file, uploaded as one object when the block succeeds.
    """
    if is_remote(path):
        with tempfile.TemporaryDirectory(prefix="t2a-upload-") as folder:
            temp = Path(folder) / path.name
            yield temp
            path.upload(temp)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(path)
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    if fsync:
        fsync_folder(path.parent)


def write_bytes_atomic(path: str | os.PathLike | ObjectPath, data: bytes) -> None:
    if is_remote(path):
        path.write_bytes(data)  # one PUT: the object appears whole or not at all
        return
    with atomic_path(path) as temp:
        temp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def read_parquet(path: str | os.PathLike | ObjectPath, **kwargs: Any) -> Any:
    """A parquet file as a pyarrow Table, from local disk or an ObjectPath (read through fsspec)."""
    import pyarrow.parquet as pq

    if is_remote(path):
        with path.open("rb") as handle:
            return pq.read_table(handle, **kwargs)
    return pq.read_table(path, **kwargs)


def dumps(payload: Any) -> str:
    """Deterministic JSON: sorted keys, fixed separators, UTF-8 kept readable."""
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, indent=1) + "\n"


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    write_text_atomic(path, dumps(payload))


def fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_folder(staging: Path, target: Path, *, marker: str | None = None, replace: bool = False) -> bool:
    """Rename a completely written `staging` folder to `target`.

    replace=False: the first writer wins. If `target` already holds `marker` (a retried bundle's twin
    committed it), `staging` is dropped and False returned.
    replace=True: an existing `target` is first renamed aside, so a crash leaves one of the two
    complete folders, never a mix; the old one is then deleted. A twin that commits between the two
    renames wins as above.

    An ObjectPath `target` (object stores have no rename): replace=False keeps a committed twin as
    above; otherwise the old entry is deleted (marker first), every member is uploaded, `marker`
    last, and `staging` is removed.
    """
    if is_remote(target):
        return _upload_folder(staging, target, marker=marker, replace=replace)
    target.parent.mkdir(parents=True, exist_ok=True)
    if replace and target.exists():
        old = temp_name(target, "old")
        try:
            os.rename(target, old)
        except FileNotFoundError:  # a twin moved it aside first
            pass
        else:
            shutil.rmtree(old, ignore_errors=True)
    try:
        os.rename(staging, target)
    except OSError:
        if marker is None or not (target / marker).is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True


def _upload_folder(staging: Path, target: ObjectPath, *, marker: str | None, replace: bool) -> bool:
    try:
        if marker is not None and not replace and (target / marker).is_file():
            return False  # a retried bundle's twin committed it first
        if replace:
            if marker is not None:
                (target / marker).unlink(missing_ok=True)  # from now on the old entry is absent, not half-new
            target.rmtree()
        files = sorted(p for p in Path(staging).rglob("*") if p.is_file())
        last = [p for p in files if marker is not None and p.relative_to(staging).as_posix() == marker]
        for file in [p for p in files if p not in last] + last:  # the marker is the last object written
            (target / file.relative_to(staging).as_posix()).upload(file)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A folder path beside `target` for the block to fill (not created: libraries' `save_pretrained`
    create their own); swapped in for `target` when the block succeeds, deleted when it fails."""
    if is_remote(target):
        with tempfile.TemporaryDirectory(prefix="t2a-stage-") as folder:
            temp = Path(folder) / target.name
            yield temp
            commit_folder(temp, target, replace=True)
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_name(target)
    try:
        yield temp
        commit_folder(temp, target, replace=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def remove_leftovers(staging_root: Path) -> int:
    """Delete every entry under a staging root (what a killed run left half-written); how many."""
    if not staging_root.exists():
        return 0
    leftovers = list(staging_root.iterdir())
    for path in leftovers:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(leftovers)


# --- digests ---------------------------------------------------------------------------------------

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()


def sha256_file(path: str | os.PathLike | ObjectPath) -> str:
    """sha256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with (
        path.open("rb") if is_remote(path) else open(path, "rb") as handle
    ):  # follows symlinks: hub cache snapshots link to blobs
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file; of a folder, sha256 over its files' sorted `relative path \\0 sha256 \\n` lines.

    Names starting with "." are left out at any depth (the `.cache` folder hub downloads leave
    behind, and this module's temporaries). Each file's digest is memoised per (path, mtime, size):
    a model folder is hashed once per process, and a file replaced in place is hashed again. Model
    provenance (CLAP, CLIP, captioners, PANNs) is recorded with this one function, so the same
    folder always gets the same digest, whoever records it.
    """
    path = Path(path)
    if path.is_file():
        return _memoised_sha256(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}")
    digest = hashlib.sha256()
    for file in _visible_files(path):
        digest.update(f"{file.relative_to(path).as_posix()}\0{_memoised_sha256(file)}\n".encode())
    return digest.hexdigest()


def _visible_files(folder: Path) -> list[Path]:
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(root) / name for name in names if not name.startswith(".")]
    return sorted(found, key=lambda file: file.relative_to(folder).as_posix())


def _memoised_sha256(file: Path) -> str:
    stat = file.stat()
    key = (str(file.absolute()), stat.st_mtime_ns, stat.st_size)
    with _SHA_LOCK:
        if key in _SHA_CACHE:
            return _SHA_CACHE[key]
    value = sha256_file(file)
    with _SHA_LOCK:
        _SHA_CACHE[key] = value
    return value


# --- the machine's own faults ----------------------------------------------------------------------

# A full disk, a spent quota, a read-only mount: not a property of the clip, shard or checkpoint
# being written, so never recorded as that item's failure. The run stops with one message.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
STORAGE_MESSAGES = ("No space left on device", "Disk quota exceeded", "Read-only file system")


class StorageFull(RuntimeError):
    """Output storage refused a write (ENOSPC, EDQUOT, EROFS); the message says what to do."""

    MARK = "output storage refused a write"

    def __init__(self, where: str | os.PathLike, problem: str):
        self.where, self.problem = str(where), problem
        super().__init__(
            f"{self.MARK} under {where}: {problem}. Free space (or make it writable) and run the same "
            "command again: finished work is kept and the run goes on where it stopped"
        )


def storage_problem(error: BaseException | str) -> str | None:
    """ "No space left on device" (or the quota / read-only twin) when `error` is one, else None;
    also finds it in the text of a tool's error (ffmpeg, yt-dlp) or a wrapped exception."""
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        return os.strerror(error.errno)
    text = str(error)
    return next((message for message in STORAGE_MESSAGES if message in text), None)


def prepare_output(folder: str | os.PathLike, what: str = "output") -> Path:
    """Create `folder` (and parents) and check that a file can be written in it, before a job
    starts: an `output` that is a file, or a folder t2a may not write, is one clear ConfigError
    rather than a traceback minutes into the run; a full disk is `StorageFull`."""
    from pipelines.core.config import ConfigError  # config imports nothing of io; keep io light

    if is_remote(folder):
        return _prepare_remote(folder, what, ConfigError)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{what} {folder} is a file, not a folder: point {what} at a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = temp_name(folder / "write-test")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        problem = storage_problem(error)
        if problem:
            raise StorageFull(folder, problem) from None
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"cannot write to {what} {folder}: {reason} ({error.filename or folder})") from None
    return folder


def _prepare_remote(folder: ObjectPath, what: str, config_error: type[Exception]) -> ObjectPath:
    """Write and delete one small object: a missing bucket, no credentials or no driver is one
    clear ConfigError before the job starts, not a failure per clip."""
    probe = folder / f".write-test-{uuid.uuid4().hex[:12]}"
    try:
        probe.write_bytes(b"")
        probe.unlink(missing_ok=True)
    except UnsupportedStorage as error:
        raise config_error(f"{what} {folder}: {error}") from None
    except Exception as error:  # botocore / google-auth errors: no bucket, no credentials, access denied
        reason = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
        raise config_error(f"cannot write to {what} {folder}: {type(error).__name__}: {reason}") from None
    return folder


def find_storage_full(error: BaseException, where: str | os.PathLike) -> StorageFull | None:
    """A `StorageFull` for an error that is one, however a runner wrapped it (Beam re-raises a
    worker's exception as text inside its own); None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, StorageFull):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    problem = storage_problem(error)
    return StorageFull(where, problem) if problem else None
