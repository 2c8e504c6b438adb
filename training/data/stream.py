"""The shard stream under training/data/loader.py: listing and opening shards, reading raw samples with
webdataset's tar stages, counting what is skipped, and `ShardStream`, the per-slot batch generator.

The guarantees (splitting, infinite stream, determinism, resume) are described in training/data/loader.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

import fsspec
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import default_collate
from webdataset.autodecode import Decoder, DecodingError

from pipelines.core.config import ConfigError
from pipelines.shard import contract
from pipelines.shard.contract import ContractError
from pipelines.shard.reader import decode_member

log = logging.getLogger(__name__)

Example = Callable[[dict, np.random.Generator], "dict | None"]
SampleFilter = Callable[[dict, int], bool]
BatchTransform = Callable[[list, np.random.Generator], list]
MAX_IDLE_EPOCHS = 100  # a slot that delivers nothing for this many epochs in a row is stuck (a filter keeps nothing)

try:  # fsspec's http filesystem raises aiohttp's errors for 5xx answers and dropped connections
    from aiohttp import ClientError as _ClientError

    _TRANSIENT: tuple[type[BaseException], ...] = (OSError, TimeoutError, _ClientError)
except ImportError:  # pragma: no cover - aiohttp comes with fsspec[http]
    _TRANSIENT = (OSError, TimeoutError)


@dataclass(frozen=True)
class ShardInfo:
    url: str  # absolute local path or URL
    nsamples: int


class LoaderError(RuntimeError):
    """Too many samples skipped: the message lists the counts by reason and what to do."""


# --- listing and opening shards -------------------------------------------------------------------


def list_shards(location: str, split: str, storage_options: dict | None = None) -> list[ShardInfo]:
    """The shards of `split`: `location` is a corpus folder/URL (holding <split>/index.json), the
    corpus index.json, or one split's index.json; shard urls are resolved against the index's folder."""
    url, index = split_index(location, split, storage_options)
    shards = [ShardInfo(_join(_parent(url), entry["url"]), int(entry["nsamples"])) for entry in index["shardlist"]]
    if not shards:
        raise ConfigError(f"{url} lists no shards: split {split!r} is empty; rebuild the corpus with samples in it")
    return shards


def split_index(location: str, split: str, storage_options: dict | None = None) -> tuple[str, dict[str, Any]]:
    """(url, parsed JSON) of the split's wids index, following the corpus index when given one."""
    location = str(location)
    if "://" not in location:
        location = os.path.abspath(os.path.expanduser(location))
    url = location if location.endswith(".json") else f"{location.rstrip('/')}/{split}/{contract.INDEX_NAME}"
    index = _read_index(url, split, storage_options)
    if "splits" in index and "wids_version" not in index:  # the corpus index: follow it to the split's
        entry = index["splits"].get(split)
        if not isinstance(entry, dict) or "index" not in entry:
            raise ConfigError(f"{url}: the corpus has no split {split!r} (it has {', '.join(sorted(index['splits']))})")
        url = _join(_parent(url), entry["index"])
        index = _read_index(url, split, storage_options)
    if index.get("wids_version") != 1 or not isinstance(index.get("shardlist"), list):
        raise ConfigError(f"{url} is not a split index written by `t2a shard` (no wids_version 1 / shardlist)")
    if index.get("split", split) != split:
        raise ConfigError(f"{url} is the index of split {index['split']!r}, not {split!r}: point data.shards at the corpus folder")
    return url, index


def _read_index(url: str, split: str, storage_options: dict | None) -> dict[str, Any]:
    try:
        with fsspec.open(url, "rb", **(storage_options or {})) as stream:
            data = stream.read()
    except FileNotFoundError:
        raise ConfigError(f"{url} not found: data.shards must name a corpus written by `t2a shard` "
                          f"(a folder or URL holding {split}/{contract.INDEX_NAME})") from None
    except _TRANSIENT as error:
        raise ConfigError(f"{url}: cannot read the shard index ({type(error).__name__}: {error}); check the URL and data.storage_options") from None
    try:
        index = contract.decode_json(data)
    except ContractError as error:
        raise ConfigError(f"{url}: not a shard index: {error}") from None
    if not isinstance(index, dict):
        raise ConfigError(f"{url}: not a shard index (a JSON object is expected)")
    return index


def _parent(url: str) -> str:
    return url.rsplit("/", 1)[0]


def _join(base: str, url: str) -> str:
    return url if "://" in url or url.startswith("/") else f"{base}/{url}"


def open_shard(url: str, *, retries: int = 3, storage_options: dict | None = None, backoff: float = 0.5) -> BinaryIO:
    """An open binary stream of one shard (local path or any fsspec URL); failures are retried with
    exponential backoff (`backoff`·2^attempt seconds), except a local file that is not there.
    (fsspec's http filesystem reports any failed request, a 503 too, as FileNotFoundError.)"""
    options = dict(storage_options or {})
    for attempt in range(retries + 1):
        fs = None
        try:
            fs, path = fsspec.core.url_to_fs(url, **options)
            return fs.open(path, "rb", **_stream_options(fs, options))
        except _TRANSIENT as error:
            if attempt == retries or (isinstance(error, FileNotFoundError) and _protocols(fs) & {"file", "local"}):
                raise
            delay = backoff * 2**attempt
            log.warning("%s: %s: %s; retry %d of %d in %.1f s", url, type(error).__name__, error, attempt + 1, retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _stream_options(fs, options: Mapping[str, Any]) -> dict[str, Any]:
    """Shards are read front to back: over http(s) that is one streamed GET (block_size 0) rather than
    range requests, which simple static servers (http.server) do not answer."""
    return {"block_size": 0} if "http" in _protocols(fs) and "block_size" not in options else {}


def _protocols(fs) -> set[str]:
    if fs is None:
        return {"file"}  # the URL itself was not understood: retrying will not help
    return set(fs.protocol) if isinstance(fs.protocol, (tuple, list)) else {fs.protocol}


# --- counting skipped samples ---------------------------------------------------------------------


class Tally:
    """One slot's skipped samples by reason and delivered count; past the rate it raises LoaderError."""

    def __init__(self, slot: int, errors: Mapping[str, int] | None = None, delivered: int = 0, *,
                 max_error_rate: float = 0.05, min_samples_for_rate: int = 50):
        self.slot, self.errors, self.delivered = slot, Counter(errors or {}), int(delivered)
        self.max_error_rate, self.min_samples_for_rate = max_error_rate, min_samples_for_rate
        self.muted = False  # while a resumed slot replays samples its restored counts already hold

    def skip(self, reason: str, count: int, detail: str) -> None:
        if self.muted:
            return
        self.errors[reason] += count
        log.warning("slot %d: skipped %d sample(s), %s: %s", self.slot, count, reason, detail)
        self.check()

    def deliver(self) -> None:
        if not self.muted:
            self.delivered += 1
            self.check()

    def check(self) -> None:
        skipped = sum(self.errors.values())
        read = skipped + self.delivered
        if read >= self.min_samples_for_rate and skipped > self.max_error_rate * read:
            reasons = ", ".join(f"{reason} ×{n}" for reason, n in self.errors.most_common())
            raise LoaderError(
                f"slot {self.slot}: {skipped} of {read} samples skipped ({skipped / read:.1%} > data.max_error_rate "
                f"{self.max_error_rate:.1%}): {reasons}. Check the shards named in the log with `t2a inspect <shard>` and "
                "rebuild the broken ones with `t2a shard`, or raise data.max_error_rate to train on the rest"
            )


# --- raw samples ----------------------------------------------------------------------------------


def read_samples(shards: Iterable[ShardInfo], tally: Tally, *, wants: Callable[[str], bool] | None = None, retries: int = 3,
                 storage_options: dict | None = None) -> Iterator[dict]:
    """Raw webdataset samples ({"__key__", "__url__", member: bytes}) of the shards, in order.

    `wants(member)` picks the members to keep (tar streams skip the others unread); members the
    contract does not name are always kept, so that decoding refuses them.
    """
    select = None if wants is None else _selector(wants)
    for shard in shards:
        yield from _shard_samples(shard, tally, select, retries, storage_options)


def _selector(wants: Callable[[str], bool]) -> Callable[[str], bool]:
    def select(name: str) -> bool:
        member = name.partition(".")[2]
        return contract.member_kind(member) is None or wants(member)

    return select


def _shard_samples(shard: ShardInfo, tally: Tally, select, retries: int, storage_options: dict | None) -> Iterator[dict]:
    """One shard's samples; a damaged shard ends there, and its unread samples are counted as skipped.

    The sample being read when a shard breaks is dropped too (it may be incomplete): a sample is only
    passed on once the next one has started or the shard ended cleanly.
    """
    failures: list[BaseException] = []

    def stop(error: BaseException) -> bool:  # webdataset's handler: note the damage, stop this shard
        failures.append(error)
        return False

    try:
        stream = open_shard(shard.url, retries=retries, storage_options=storage_options)
    except (*_TRANSIENT, ValueError) as error:
        tally.skip(f"shard: {type(error).__name__}", max(shard.nsamples, 1), f"{shard.url}: {error}")
        return
    read, held = 0, None
    try:
        files = wds.tariterators.tar_file_expander([{"url": shard.url, "stream": stream}], handler=stop, select_files=select)
        for sample in wds.tariterators.group_by_keys(files, handler=stop):
            if held is not None:
                read += 1
                yield held
            held = sample
    finally:
        stream.close()
    if failures:
        error = failures[0]
        tally.skip(f"shard: {type(error).__name__}", max(shard.nsamples - read, 1), f"{shard.url}: {error}")
    elif held is not None and read + 1 < shard.nsamples:
        # A tar cut at a block boundary ends "cleanly" for tarfile: only the index's count tells.
        # The last sample read may be cut short too: it is dropped with the missing ones.
        tally.skip("shard: truncated", shard.nsamples - read, f"{shard.url}: {read + 1} of {shard.nsamples} samples")
    elif held is not None:
        yield held


_DECODER = Decoder([decode_member], pre=[], post=[])  # contract codecs only: no pickle, unknown members refused


def decode(raw: dict) -> dict:
    """A raw sample with its members decoded (json → dict, npy → ndarray, flac/jpg → bytes)."""
    if contract.JSON not in raw:
        raise ContractError(f"sample {raw.get('__key__')!r} has no {contract.JSON} member")
    return _DECODER(raw)


def sample_rng(*parts: int | str) -> np.random.Generator:
    """A generator seeded from (seed, epoch, slot, key or position): never from torch's worker seed."""
    return np.random.default_rng([_seed_part(p) for p in parts])


def _seed_part(part: int | str) -> int:
    if isinstance(part, str):
        return int.from_bytes(hashlib.blake2b(part.encode(), digest_size=8).digest(), "little")
    return int(part)


class SampleProcessor:
    """raw sample → verified → decoded → filtered → example (or None), with every failure counted
    by reason. Verified: each member read against the checksum its JSON records (pipelines/shard/
    contract.py `seal`); a corrupt sample is skipped as "checksum" like a truncated shard's samples,
    never handed to the trainer. `verify=False` only for measuring what the check costs (bench/)."""

    def __init__(self, example: Example, sample_filter: SampleFilter | None, seed: int, tally: Tally, verify: bool = True):
        self.example, self.sample_filter, self.seed, self.tally = example, sample_filter, seed, tally
        self.verify = verify
        size = int(getattr(example, "recent", 0))
        self.recent: deque | None = deque(maxlen=size) if size else None

    @property
    def wants(self) -> Callable[[str], bool] | None:
        return getattr(self.example, "wants", None)

    def new_epoch(self) -> None:
        if self.recent is not None:
            self.recent.clear()  # the reservoir is the epoch's own: a resumed epoch rebuilds it exactly

    def pass_over(self, raw: dict) -> None:
        """A sample replayed on resume: only remembered, never decoded."""
        if self.recent is not None:
            self.recent.append(raw)

    def __call__(self, raw: dict, epoch: int, slot: int) -> dict | None:
        key = raw.get("__key__", "?")
        recent = tuple(self.recent) if self.recent is not None else None
        self.pass_over(raw)  # remembered whatever becomes of it, exactly as on a replay
        problems = contract.checksum_problems(raw) if self.verify else []
        if problems:
            self.tally.skip("checksum", 1, f"{raw.get('__url__')} {key}: {'; '.join(problems)}")
            return None
        try:
            sample = decode(raw)
        except (DecodingError, ContractError) as error:
            cause = error.__cause__ or error
            self.tally.skip(f"decode: {type(cause).__name__}", 1, f"{raw.get('__url__')} {key}: {cause}")
            return None
        if recent is not None:
            sample["__recent__"] = recent
        try:
            if self.sample_filter is not None and not self.sample_filter(sample, epoch):
                return None
            example = self.example(sample, sample_rng(self.seed, epoch, slot, key))
        except Exception as error:  # one bad sample is counted and skipped, never fatal (docs/ARCHITECTURE.md, "Rules")
            self.tally.skip(f"example: {type(error).__name__}", 1, f"{raw.get('__url__')} {key}: {error}")
            return None
        if example is not None:
            self.tally.deliver()
        return example


def collate(examples: list[dict]) -> dict:
    """Examples → a batch: arrays of one shape stacked into a tensor; anything else (str, int, None,
    arrays of differing shapes) as a list, with arrays turned into tensors."""
    if not examples:
        raise ValueError("collate: no examples")
    keys = list(dict.fromkeys(key for example in examples for key in example))
    return {key: _column([example.get(key) for example in examples]) for key in keys}


def _column(values: list[Any]) -> Any:
    if all(isinstance(v, (np.ndarray, torch.Tensor)) for v in values):
        tensors = [torch.as_tensor(v) for v in values]
        if all(t.shape == tensors[0].shape for t in tensors):
            return default_collate(tensors)  # in a DataLoader worker it stacks straight into shared memory
        return tensors
    return [torch.as_tensor(v) if isinstance(v, np.ndarray) else v for v in values]
