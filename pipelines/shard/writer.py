"""The deterministic, atomic shard writer, and the per-shard stats that mark a shard complete.

    write_shard(path, samples)  →  <split>/.shard-000000.tar.tmp-<random>  →  rename to shard-000000.tar
    write_stats(path, info, …)  →  shard-000000.stats.json (written last: the commit marker); the tar's mtime
                                   set to the stats file's, which `is_committed` trusts instead of re-hashing

Byte-determinism: every member gets the header settings of `contract` (mtime MTIME, uid/gid 0, empty
uname/gname, mode 0644, type regular file) in plain POSIX ustar (no PAX or GNU records, which would
carry lengths or times of their own), members are sorted by (key, member name), and the payloads are
deterministic encodings (contract.encode_npy/encode_json). The header then depends only on the name
and size, and tarfile pads the archive to whole 10 KiB records the same way every time.

`tarfile`, not `webdataset.TarWriter`: TarWriter (1.0.2) accepts a `format` argument but never
passes it to tarfile (so an over-long name silently becomes a PAX record that wids misreads), stamps
time.time() unless given mtime, and writes samples in call order; we need the exact ustar header,
the sort and the name checks, which are a dozen lines with tarfile itself.

Samples are spooled to an anonymous temporary file as they arrive and the tar is written from it in
key order: memory stays at one sample, whatever the order of the input.

On an object store (`s3://…`: `pipelines.core.storage`) the tar is built in a local temporary file
and uploaded as one object after the old stats are deleted; the stats object, uploaded after it,
is the commit marker there too.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pipelines.core.io import atomic_path, sha256_file, write_json_atomic
from pipelines.core.storage import ObjectPath, is_remote, location
from pipelines.shard import contract
from pipelines.shard.contract import ContractError


@dataclass(frozen=True)
class ShardInfo:
    path: Path | ObjectPath
    samples: int
    bytes: int
    sha256: str
    members: tuple[str, ...]  # tar member names in archive order
    sources: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)  # label name → samples carrying it
    events: dict[str, int] = field(default_factory=dict)  # event_count → samples
    duration: float = 0.0  # true seconds of audio, summed


def tar_info(name: str, size: int) -> tarfile.TarInfo:
    """The one header every member gets, apart from its name and size."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = contract.MTIME
    info.mode = contract.MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write_shard(
    path: Path | ObjectPath,
    samples: Iterable[tuple[str, Mapping[str, bytes]]],
    check: Callable[[Mapping[str, Any]], list[str]] = contract.check_sample,
) -> ShardInfo:
    """Write `(key, {member: bytes})` samples as one shard; nothing appears at `path` unless it all worked.

    Every sample is checked against the contract (`check`: contract.check_sample, or
    contract.check_latent_sample for latent shards); a duplicate key, a bad key,
    an unknown member, a JSON not matching the schema, or a second split in one shard is an error.
    """
    path = location(path)
    if path.suffix != ".tar":
        raise ContractError(f"shard file name must end in .tar: {path}")
    with atomic_path(path, fsync=True) as tmp:
        spool_dir = tmp.parent if is_remote(path) else path.parent
        with tempfile.TemporaryFile(dir=spool_dir, prefix=f".{path.stem}.spool-") as spool:
            index, tally = _spool(samples, spool, check)
            with tmp.open("xb") as out:
                hashing = _HashingWriter(out)
                members = _write_tar(hashing, spool, index)
                out.flush()
                os.fsync(out.fileno())
        stats_path(path).unlink(missing_ok=True)  # an old commit marker never outlives its shard
    return ShardInfo(path, len(index), hashing.size, hashing.digest.hexdigest(), members, **tally.result())


_Index = dict[str, list[tuple[str, int, int]]]  # key → [(member, offset in spool, size)]


def _spool(
    samples: Iterable[tuple[str, Mapping[str, bytes]]],
    spool: IO[bytes],
    check: Callable[[Mapping[str, Any]], list[str]],
) -> tuple[_Index, _Tally]:
    index: _Index = {}
    tally = _Tally()
    for key, members in samples:
        contract.check_key(key)
        if key in index:
            raise ContractError(f"duplicate sample key {key!r} in one shard")
        problems = check({**members, "__key__": key})
        if problems:
            raise ContractError(f"sample {key}: {'; '.join(problems)}")
        tally.add(contract.SampleMeta.from_json(members[contract.JSON]))
        entries = []
        for member in sorted(members):
            data = bytes(members[member])
            entries.append((member, spool.tell(), len(data)))
            spool.write(data)
        index[key] = entries
    return index, tally


def _write_tar(out: _HashingWriter, spool: IO[bytes], index: _Index) -> tuple[str, ...]:
    names = []
    # "w|" streams through `out` (only .write is needed) and pads the end to whole records.
    with tarfile.open(fileobj=out, mode="w|", format=contract.TAR_FORMAT) as tar:  # type: ignore[call-overload]
        for key in sorted(index):  # (key, member) order keeps a sample contiguous: "a.x" < "a-b.x" would not
            for member, offset, size in index[key]:
                name = contract.member_name(key, member)
                spool.seek(offset)
                tar.addfile(tar_info(name, size), spool)
                names.append(name)
    return tuple(names)


class _Tally:
    def __init__(self) -> None:
        self.sources: Counter[str] = Counter()
        self.splits: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.duration = 0.0

    def add(self, meta: contract.SampleMeta) -> None:
        if self.splits and meta.split not in self.splits:
            held = next(iter(self.splits))
            raise ContractError(
                f"sample {meta.key} is {meta.split!r}, the shard holds {held!r}: splits never share a shard"
            )
        self.sources[meta.source] += 1
        self.splits[meta.split] += 1
        self.labels.update({label.name for label in meta.labels})
        self.events[str(meta.event_count)] += 1
        self.duration += meta.duration

    def result(self) -> dict[str, Any]:
        counts = {name: dict(sorted(getattr(self, name).items())) for name in ("sources", "splits", "labels", "events")}
        return {**counts, "duration": round(self.duration, 3)}


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, out: IO[bytes]):
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)


def remove_stale_temps(folder: Path | ObjectPath) -> int:
    """Remove the temporary files of writers that were killed; call before writers start. (An object
    store has none: its temporaries are local files, its uploads all or nothing.)"""
    if is_remote(folder):
        return 0
    patterns = (".*.tar.tmp-*", f".*{contract.STATS_SUFFIX}.*")  # ours, and write_json_atomic's
    stale = [p for pattern in patterns for p in Path(folder).glob(pattern) if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


# --- stats: the commit marker ---------------------------------------------------------------------


def stats_path(shard: Path | ObjectPath) -> Path | ObjectPath:
    shard = location(shard)
    return shard.with_name(contract.stats_name(shard.name))


def shard_stats(info: ShardInfo, extra: Mapping[str, Any]) -> dict[str, Any]:
    """The stats record of a written shard; `extra` adds the caller's fields (plan digest, failures)."""
    splits = list(info.splits)
    split = extra.get("split", splits[0] if len(splits) == 1 else None)
    if splits and splits != [split]:
        raise ContractError(f"{info.path.name}: stats say split {split!r} but the samples are {splits}")
    members = "".join(f"{name}\n" for name in info.members).encode()
    stats = {
        "schema": contract.STATS_SCHEMA,
        "shard": info.path.name,
        "split": split,
        "samples": info.samples,
        "bytes": info.bytes,
        "sha256": info.sha256,
        "members": len(info.members),
        "members_sha256": hashlib.sha256(members).hexdigest(),
        "member_kinds": dict(
            sorted(Counter(contract.member_kind(contract.split_name(n)[1]) for n in info.members).items())
        ),
        "keys": {"first": _key(info.members[0]), "last": _key(info.members[-1])} if info.members else None,
        "sources": info.sources,
        "splits": info.splits,
        "labels": info.labels,
        "events": info.events,
        "duration": info.duration,
        "failures": sorted(extra.get("failures", []), key=lambda f: (f.get("clip_id", ""), f.get("reason", ""))),
    }
    clashes = sorted(set(extra) & set(stats) - {"split", "failures"})
    if clashes:
        raise ContractError(f"extra stats fields {clashes} would overwrite computed ones")
    return {**{k: v for k, v in extra.items() if k not in stats}, **stats}


def write_stats(path: Path, info: ShardInfo, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write `<shard>.stats.json` (atomically, last): from then on the shard counts as complete."""
    path = location(path)
    if path.stat().st_size != info.bytes:
        raise ContractError(f"{path} is {path.stat().st_size} bytes, not the {info.bytes} just written")
    stats = shard_stats(info, extra or {})
    write_json_atomic(stats_path(path), stats)
    stamp(path)
    return stats


def read_stats(path: Path) -> dict[str, Any]:
    return contract.decode_json(stats_path(path).read_bytes())


def stamp(path: Path) -> None:
    """Set a committed shard's mtime to its stats file's: any later write to the tar changes its
    mtime, so equal mtimes (and the size) tell `is_committed` the tar is the one its stats describe.
    Both stay real times, so tools that compare size and mtime (rsync, `aws s3 sync`) see rewrites.
    An object store cannot set a time: there the upload order stamps it (`is_committed`)."""
    if is_remote(path):
        return
    marker = stats_path(path).stat().st_mtime_ns
    os.utime(path, ns=(marker, marker))


def is_committed(path: Path) -> bool:
    """`is_complete` without re-reading an untouched shard: its stats exist, its size matches them, and
    its mtime still equals the stats file's (`stamp`, when the stats were written), which any write to
    the tar since would have changed; a shard whose mtime differs (copied without times, touched,
    killed between the stats and the stamp) is hashed, and stamped again when it matches. What
    this cannot see (bytes changed in place with the mtime set back) the loader's per-member xxh3
    checksums still catch.

    On an object store (no settable mtime) the stats object is uploaded after its tar, so a tar no
    newer than its stats is the one they describe; a tar uploaded since is newer, and is hashed."""
    path = location(path)
    try:
        stats = read_stats(path)
        status = path.stat()
        if stats.get("schema") != contract.STATS_SCHEMA or status.st_size != stats["bytes"]:
            return False
        if is_remote(path):
            if status.st_mtime <= stats_path(path).stat().st_mtime:
                return True
        elif status.st_mtime_ns == stats_path(path).stat().st_mtime_ns:
            return True
        if sha256_file(path) != stats["sha256"]:
            return False
    except (OSError, KeyError, TypeError, ContractError):
        return False
    try:
        stamp(path)
    except OSError:  # a read-only copy: hashed again next time, still correct
        pass
    return True


def is_complete(path: Path, verify: bool = True) -> bool:
    """Stats exist and the tar's size (and, with `verify`, sha256) match them."""
    path = location(path)
    try:
        stats = read_stats(path)
        if stats.get("schema") != contract.STATS_SCHEMA or path.stat().st_size != stats["bytes"]:
            return False
        return not verify or sha256_file(path) == stats["sha256"]
    except (OSError, KeyError, TypeError, ContractError):
        return False


def _key(name: str) -> str:
    return contract.split_name(name)[0]
