"""Where outputs live: a local folder, or any fsspec URL (s3://, gs://, …), behind one pathlib-like type.

    location("data/demo")          → pathlib.Path (local disk: atomic renames, as always)
    location("s3://t2a/corpus")    → ObjectPath   (fsspec; `/`, name, parent, read/write, glob, …)
    location("ftp2://x")           → UnsupportedStorage: "unknown storage scheme 'ftp2://' …"
    location("gs://b/x") without gcsfs → UnsupportedStorage: "… needs gcsfs: pip install 't2a[gs]'"

`ObjectPath` implements the part of `pathlib.Path` the stages use, so a store written against
Path works on an object store too. What differs is how things become visible: an object store
has no rename, so `pipelines.core.io` writes a remote file as one object (a PUT is all or
nothing) and a remote folder member by member with its commit marker LAST (clip.json,
annotation.json, a shard's stats.json); readers count an entry as present only when its marker
is, and a re-run overwrites a half-uploaded entry whole. Files being built (a staged clip entry, a
tar) are built on local disk first (`local_staging`), then uploaded.

Credentials come from the environment the driver and workers run in (AWS_* variables, instance
roles, GOOGLE_APPLICATION_CREDENTIALS…), never from the config, so no output can carry them.
An ObjectPath has no `__fspath__`: handing one to a function that only knows local paths is a
TypeError, never a local folder called `s3:`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import fsspec

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
# The extra that brings each common driver (pyproject.toml's optional dependencies).
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs"}


class UnsupportedStorage(ValueError):
    """A URL whose scheme fsspec does not know, or whose driver is not installed: the message says what to do."""


def is_url(value: str | os.PathLike | ObjectPath) -> bool:
    return isinstance(value, ObjectPath) or bool(_URL.match(str(value)))


def check_scheme(protocol: str) -> None:
    """Raise UnsupportedStorage unless fsspec has an importable driver for `protocol`."""
    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as error:
        extra = EXTRAS.get(protocol)
        hint = f"pip install 't2a[{extra}]'" if extra else str(error)
        raise UnsupportedStorage(f"{protocol}:// storage needs a driver that is not installed: {hint}") from None
    except ValueError:
        raise UnsupportedStorage(
            f"unknown storage scheme {protocol + '://'!r}: use a local path, s3://, gs:// or another fsspec URL"
        ) from None


def location(value: str | os.PathLike | ObjectPath) -> Path | ObjectPath:
    """A local Path, or an ObjectPath for a URL (file:// is local disk). Raises UnsupportedStorage."""
    if isinstance(value, ObjectPath | Path):
        return value
    match = _URL.match(str(value))
    if not match:
        return Path(value)
    protocol, rest = match.group(1).lower(), match.group(2)
    if protocol in ("file", "local"):
        return Path("/" + rest.lstrip("/"))
    check_scheme(protocol)
    return ObjectPath(protocol, rest.rstrip("/"))


def is_remote(value: Any) -> bool:
    return isinstance(value, ObjectPath)


def local_staging(root: Path | ObjectPath, name: str = ".staging") -> Path:
    """Where entries for `root` are built before they become visible: `root/<name>` on local disk
    (renamed into place), a folder under the machine's temp dir for an object store (uploaded)."""
    if isinstance(root, Path):
        return root / name
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"t2a-staging-{digest}" / name.lstrip(".")


@dataclass(frozen=True)
class _Stat:
    st_size: int
    st_mtime: float


@dataclass(frozen=True)
class ObjectPath:
    """A path on an fsspec filesystem: `protocol://key`. Pickles as its URL (the filesystem is made
    again where it is used: Beam ships these to workers)."""

    protocol: str
    key: str  # bucket/prefix/name, no leading or trailing slash

    # --- naming ------------------------------------------------------------------------------
    def __str__(self) -> str:
        return f"{self.protocol}://{self.key}"

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __truediv__(self, other: str | os.PathLike) -> ObjectPath:
        part = str(other).strip("/")
        return ObjectPath(self.protocol, f"{self.key}/{part}" if part else self.key)

    def __lt__(self, other: ObjectPath) -> bool:
        return str(self) < str(other)

    @property
    def _pure(self) -> PurePosixPath:
        return PurePosixPath(self.key)

    @property
    def name(self) -> str:
        return self._pure.name

    @property
    def stem(self) -> str:
        return self._pure.stem

    @property
    def suffix(self) -> str:
        return self._pure.suffix

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.protocol, str(self._pure.parent))

    @property
    def parts(self) -> tuple[str, ...]:
        return self._pure.parts

    def with_name(self, name: str) -> ObjectPath:
        return ObjectPath(self.protocol, str(self._pure.with_name(name)))

    def with_suffix(self, suffix: str) -> ObjectPath:
        return ObjectPath(self.protocol, str(self._pure.with_suffix(suffix)))

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        return self._pure.relative_to(other._pure)

    def is_absolute(self) -> bool:
        return True

    def absolute(self) -> ObjectPath:
        return self

    def expanduser(self) -> ObjectPath:
        return self

    def as_posix(self) -> str:
        return str(self)

    # --- the filesystem ----------------------------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """fsspec's instance for the protocol (its own cache makes this cheap); never kept on the
        path, so a path made earlier follows the current configuration, and pickles as its URL."""
        return fsspec.filesystem(self.protocol)

    def _fresh(self) -> fsspec.AbstractFileSystem:
        """The filesystem with its cached listings of this path and its parents dropped: other
        workers write under the same prefix, and s3fs answers `info` (which `cat_file` asks for
        the size) from a cached listing of the parent when it has one: an object written after that
        listing would be "not found"."""
        fs = self.fs
        fs.invalidate_cache(self.key)
        return fs

    # --- queries -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self._fresh().exists(self.key)

    def is_file(self) -> bool:
        return self._fresh().isfile(self.key)

    def is_dir(self) -> bool:
        return self._fresh().isdir(self.key)

    def stat(self) -> _Stat:
        try:
            info = self._fresh().info(self.key)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such object: {self}") from None
        modified = info.get("LastModified") or info.get("mtime") or info.get("updated") or 0
        mtime = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or 0)
        return _Stat(st_size=int(info.get("size") or 0), st_mtime=mtime)

    def iterdir(self) -> Iterator[ObjectPath]:
        try:
            names = self._fresh().ls(self.key, detail=False)
        except FileNotFoundError:
            return iter(())
        children = sorted({str(name).rstrip("/") for name in names} - {self.key})
        return iter([ObjectPath(self.protocol, name) for name in children])

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        found = self._fresh().glob(f"{self.key}/{pattern}")
        return iter([ObjectPath(self.protocol, str(name).rstrip("/")) for name in sorted(found)])

    def find(self) -> list[ObjectPath]:
        """Every object under this prefix, sorted, from one recursive listing (paginated by the
        store): no request per sub-folder, which a `glob` through `*/` levels costs on S3."""
        try:
            found = self._fresh().find(self.key)
        except FileNotFoundError:
            return []
        return [ObjectPath(self.protocol, str(name).strip("/")) for name in sorted(found)]  # memory:// says "/k"

    # --- reading and writing -----------------------------------------------------------------
    def open(self, mode: str = "r", **kwargs: Any) -> IO[Any]:
        if "b" not in mode:
            kwargs.setdefault("encoding", "utf-8")
        return self._fresh().open(self.key, mode, **kwargs)

    def read_bytes(self) -> bytes:
        try:
            return self._fresh().cat_file(self.key)
        except FileNotFoundError:
            raise FileNotFoundError(f"no such object: {self}") from None

    def read_text(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.read_bytes().decode(encoding, errors)

    def write_bytes(self, data: bytes) -> int:
        """One PUT: the object appears whole or not at all."""
        self._fresh().pipe_file(self.key, bytes(data))
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def upload(self, local: str | os.PathLike) -> None:
        """A local file as this object (one PUT, or a multipart upload completed as a whole)."""
        self._fresh().put_file(os.fspath(local), self.key)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Object stores have no folders; other fsspec filesystems (file://, memory://) get one."""
        if self.protocol not in ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"):
            self.fs.makedirs(self.key, exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self._fresh().rm_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Every object under this prefix."""
        try:
            self._fresh().rm(self.key, recursive=True)
        except FileNotFoundError:
            pass
        self.fs.invalidate_cache(self.key)


def open_input(path: str | os.PathLike | ObjectPath, mode: str = "r", **kwargs: Any) -> IO[Any]:
    """Open a local path or an ObjectPath (a manifest, an exclusion list) the same way."""
    return location(path).open(mode, **kwargs)


def same_location(a: Any, b: Any) -> bool:
    return str(a) == str(b)
