"""Reading shards: plain iteration, webdataset and wids pipelines, and `inspect_shard` for `t2a inspect`.

Nothing here unpickles. webdataset's default decoders do (`.pkl`, `.pyd`, `.pth` members), so the
pipelines below decode with `contract` codecs only and refuse members the contract does not name.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipelines.core.io import sha256_file
from pipelines.shard import contract
from pipelines.shard.contract import ContractError, Sample
from pipelines.shard.index import read_index
from pipelines.shard.writer import read_stats, stats_path

_HEADER = {
    "mtime": contract.MTIME,
    "mode": contract.MODE,
    "uid": 0,
    "gid": 0,
    "uname": "",
    "gname": "",
}  # writer.tar_info


def iter_members(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {member: bytes}) per sample in archive order; a malformed archive raises ContractError."""
    problems: list[str] = []
    for key, members in _samples(_entries(Path(path), problems, headers=False), problems):
        if problems:
            break
        yield key, members
    if problems:
        raise ContractError(f"{path}: {problems[0]}")


def iter_shard(path: Path) -> Iterator[Sample]:
    """Every sample of a shard, validated against the contract (JSON schema, shapes, checksums)."""
    for key, members in iter_members(path):
        yield contract.decode_sample({**members, "__key__": key})


# --- webdataset -----------------------------------------------------------------------------------


def decode_member(extension: str, data: bytes) -> Any:
    """A webdataset decoder handler (`.decode(decode_member, pre=[], post=[])`): contract codecs only."""
    member = extension.lstrip(".")
    kind = contract.member_kind(member)
    if kind is None:
        raise ContractError(f"unknown member {member!r}: not decoded")
    if kind == "json":
        return contract.decode_json(data)
    if kind in ("mel", "embedding", "latent", "tokens"):
        return contract.decode_npy(data)
    return data  # flac, jpg: bytes as stored


def webdataset_pipeline(
    urls: str | list[str],
    *,
    samples: bool = True,
    shardshuffle: int | bool = False,
    shuffle: int = 0,
    seed: int = 0,
    resampled: bool = False,
    handler: Callable[[Exception], bool] | None = None,
    empty_check: bool = True,
):
    """A `wds.WebDataset` over our shards, split by node (torch.distributed rank) and DataLoader worker.

    `samples=True` yields `contract.Sample`s (validated); `samples=False` yields webdataset dicts with
    the members decoded (json → dict, npy → ndarray, flac/jpg → bytes). `shuffle` is a sample buffer.
    """
    import webdataset as wds

    handler = handler or wds.reraise_exception
    dataset = wds.WebDataset(
        urls,
        shardshuffle=shardshuffle,
        seed=seed,
        resampled=resampled,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        handler=handler,
        empty_check=empty_check,
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle, seed=seed)
    if samples:
        return dataset.map(contract.decode_sample, handler=handler)
    return dataset.decode(decode_member, pre=[], post=[], handler=handler)  # no default (pickling) handlers


# --- wids -----------------------------------------------------------------------------------------


def open_wids(index_path: str | Path, *, cache_dir: str | Path | None = None, lru_size: int = 10):
    """A `wids.ShardListDataset` of one split's index.json, yielding `contract.Sample`s by index.

    A local index is read in place (wids puts a transient `<shard>.lock` beside the shard, so the
    folder must be writable); pass `cache_dir` for read-only folders or remote indexes (s3://, https://).
    """
    from wids import ShardListDataset
    from wids.wids import DefaultLocalname

    local = urlparse(str(index_path)).scheme in ("", "file")
    if local:
        spec = read_index(Path(urlparse(str(index_path)).path))
        if spec.get("wids_version") != 1:
            raise ContractError(
                f"{index_path} is not a wids index; open one split's index: <shards>/<split>/{contract.INDEX_NAME}"
            )
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        localname = DefaultLocalname(str(cache_dir))  # the whole url in the name: splits never collide
    elif local:
        localname = _in_place
    else:
        raise ContractError(f"{index_path} is remote: pass cache_dir for the downloaded shards")
    return ShardListDataset(str(index_path), localname=localname, lru_size=lru_size, transformations=[wids_sample])


def wids_sample(sample: dict[str, Any]) -> Sample:
    """A wids sample ({".json": stream, ..., "__key__": key}) → Sample."""
    members = {name[1:]: value for name, value in sample.items() if name.startswith(".")}
    return contract.decode_sample({**members, "__key__": sample["__key__"]})


def _in_place(url: str) -> str:
    return urlparse(url).path


# --- Hugging Face datasets ------------------------------------------------------------------------


def hf_features(profiles: list[str], *, audio: bool = False, frames: int = 0, embeddings: Sequence[str] = ()):
    """`datasets.Features` for `load_dataset("webdataset", ..., features=...)`.

    Without them, datasets infers the JSON's structure from the first 5 samples and fails on a later
    sample whose `meta` or `labels` look different (`Json()` keeps the JSON whole), and it types
    `flac` as `Audio`, which needs torchcodec even to store bytes: here the FLAC stays bytes
    (`Value("binary")`; decode with soundfile). Frames decode with Pillow. A sample without a
    member (no video: no frames, no `clip_image`) gets None in that column.
    """
    from datasets import Features, Image, Json, List, Value

    features: dict[str, Any] = {contract.JSON: Json()}
    features.update({contract.mel_member(p): List(List(Value(contract.MEL_DTYPE))) for p in profiles})
    if audio:
        features[contract.AUDIO] = Value("binary")
    features.update({contract.frame_member(i): Image() for i in range(frames)})
    vector, matrix = List(Value("float32")), List(List(Value("float32")))
    shapes = {"clap_audio": vector, "clip_image": matrix, "clip_image_mean": vector}  # [dim], [frames, dim], [dim]
    features.update({contract.embedding_member(name): shapes[name] for name in embeddings})
    return Features({**features, "__key__": Value("string"), "__url__": Value("string")})


# --- inspect --------------------------------------------------------------------------------------


def inspect_shard(path: Path) -> dict[str, Any]:
    """A summary of one shard and every contract problem found in it (`t2a inspect`)."""
    path = Path(path)
    problems: list[str] = []
    kinds: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    profiles: dict[str, list[int]] = {}
    keys: list[str] = []
    members = 0
    for key, sample in _samples(_entries(path, problems), problems):
        keys.append(key)
        members += len(sample)
        kinds.update(contract.member_kind(m) or "unknown" for m in sample)
        found = contract.check_sample({**sample, "__key__": key})
        problems += [f"{key}: {p}" for p in found]
        if not found:
            meta = contract.SampleMeta.from_json(sample[contract.JSON])
            sources[meta.source] += 1
            splits[meta.split] += 1
            profiles.update({p: mel.shape for p, mel in meta.mels.items()})
    if len(splits) > 1:
        problems.append(f"samples of several splits in one shard: {dict(splits)}")
    size = path.stat().st_size if path.is_file() else 0
    digest = sha256_file(path) if path.is_file() else None
    stats_ok = _check_stats(path, size, digest, len(keys), problems)
    return {
        "path": str(path),
        "bytes": size,
        "sha256": digest,
        "samples": len(keys),
        "members": members,
        "keys": {"first": keys[0], "last": keys[-1]} if keys else None,
        "member_kinds": dict(sorted(kinds.items())),
        "sources": dict(sorted(sources.items())),
        "splits": dict(sorted(splits.items())),
        "profiles": dict(sorted(profiles.items())),
        "complete": stats_ok,
        "problems": problems,
    }


def _check_stats(path: Path, size: int, digest: str | None, samples: int, problems: list[str]) -> bool:
    if not stats_path(path).is_file():
        problems.append(f"no {stats_path(path).name}: the shard was never committed (or not by t2a)")
        return False
    try:
        stats = read_stats(path)
    except ContractError as error:
        problems.append(f"{stats_path(path).name}: {error}")
        return False
    found = {"bytes": size, "sha256": digest, "samples": samples}
    wrong = [
        f"{name} {stats.get(name)!r} in stats, {value!r} in the tar"
        for name, value in found.items()
        if stats.get(name) != value
    ]
    problems += [f"stats mismatch: {w}" for w in wrong]
    return not wrong


def _entries(path: Path, problems: list[str], headers: bool = True) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular member; damage (and header departures) go to `problems`."""
    try:
        with tarfile.open(path, "r|") as tar:
            for info in tar:
                if not info.isreg():
                    problems.append(f"{info.name}: not a regular file")
                    continue
                wrong = [f"{k} {getattr(info, k)!r} (not {v!r})" for k, v in _HEADER.items() if getattr(info, k) != v]
                if headers and wrong:
                    problems.append(f"{info.name}: header departs from the contract: {', '.join(wrong)}")
                data = tar.extractfile(info).read()  # type: ignore[union-attr]
                yield info.name, data
    except (tarfile.TarError, EOFError, OSError) as error:
        problems.append(f"unreadable tar: {type(error).__name__}: {error}")


def _samples(entries: Iterator[tuple[str, bytes]], problems: list[str]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Group members into samples; keys must be valid, contiguous and in (key, member) order."""
    seen: set[str] = set()
    key, members, last = None, {}, ("", "")
    for name, data in entries:
        try:
            current, member = contract.split_name(name)
            contract.member_name(current, member)  # key rule and length
        except ContractError as error:
            problems.append(str(error))
            continue
        if (current, member) < last:
            problems.append(f"{name}: out of order (members are sorted by key, then member name)")
        last = (current, member)
        if current != key:
            if key is not None:
                yield key, members
            if current in seen:
                problems.append(f"key {current!r} appears again after other keys")
            seen.add(current)
            key, members = current, {}
        if member in members:
            problems.append(f"{name}: duplicate member")
        members[member] = data
    if key is not None:
        yield key, members
