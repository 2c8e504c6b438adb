"""Which clips go into which shard: deterministic, capped by sample count and bytes, and sticky.

A first build orders a split's clips by sha256(clip id): an order that mixes sources and formats (a
shard is a fair sample of the corpus) yet depends only on the ids, never on processing order. The
ordered list is cut greedily: a shard closes before it would exceed `max_samples` or `max_bytes`.
Sizes are estimated before any mel is computed, on the high side (tar headers, padding, the JSON),
so a written shard never exceeds `max_bytes`.

Later builds keep every clip where the committed shards put it (`previous`: the `clip_ids` their
stats record, same shard settings): a clip that is gone leaves its shard, a clip that no longer
fits (its sample grew) moves out, the clips are never reshuffled. New clips, in sha256 order, first
fill the shards that are rewritten anyway (a member left or moved out), then the last shard, then
new shards at the lowest free numbers. Adding 1 % more clips therefore rewrites about 1 % of the
bytes (docs/BENCHMARKS.md, "Shard growth") instead of every shard after the first insertion, as a
pure sha256 order would: no layout that depends on the clip set alone can group the new clips,
since it cannot tell them from the old. The layout is a function of (committed layout, clip set),
the same on every runner; with nothing committed it is the first-build layout above.

Each planned shard carries a digest of its members' content and of the shard settings; a re-run
skips a complete shard whose stats record the same digest and rewrites any other.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pipelines.core.records import ClipRecord

TAR_BLOCK = 512
# Entry fields that describe how a run went rather than what the clip is: they never change a sample.
RUN_FIELDS = ("created", "attempts", "fetched_bytes", "read_bytes")


@dataclass(frozen=True)
class PlanItem:
    split: str
    order: str  # sha256(clip id)
    clip_id: str
    size: int  # estimated bytes of the sample inside a tar
    digest: str  # sha256 of the entry's content (clip.json without run fields)


@dataclass(frozen=True)
class ShardPlan:
    split: str
    index: int
    clip_ids: tuple[str, ...]
    digest: str

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}"


def plan_item(
    entry: ClipRecord,
    split: str,
    mel_bytes: int,
    n_mels: int,
    audio: bool,
    frames: bool,
    annotation: tuple[str, int] | None = None,
) -> PlanItem:
    """The planning record of one cache entry; `mel_bytes` is the size of all configured mels;
    `annotation` is the (sha256, estimated bytes) of the clip's annotation row, when it has one."""
    files = entry.files
    content = {key: value for key, value in entry.to_json_dict().items() if key not in RUN_FIELDS}
    text = json.dumps(content, sort_keys=True)
    members = [mel_bytes, len(text.encode()) + 1024 + 512 * n_mels]
    if audio:
        members.append(files["audio.flac"].bytes)
    if frames:
        members += [item.bytes for name, item in files.items() if name.startswith("frame_")]
    if annotation:
        members.append(annotation[1])
        text += annotation[0]
    size = sum(member_size(n) for n in members) + (len(members) + n_mels) * 2 * TAR_BLOCK  # + PAX headers
    digest = hashlib.sha256(text.encode()).hexdigest()
    order = hashlib.sha256(entry.clip_id.encode()).hexdigest()
    return PlanItem(split, order, entry.clip_id, size, digest)


def member_size(n: int) -> int:
    """A tar member's footprint: one header block plus the data padded to whole blocks."""
    return TAR_BLOCK + -(-n // TAR_BLOCK) * TAR_BLOCK


EMPTY_TAR = 2 * 10 * TAR_BLOCK  # the end-of-archive blocks, rounded up to tar's 10 KiB records


def plan_shards(
    split: str,
    items: Iterable[PlanItem],
    max_samples: int,
    max_bytes: int,
    settings: str,
    previous: Mapping[int, Sequence[str]] | None = None,
) -> list[ShardPlan]:
    """Cut the split's clips into shards; `settings` hashes the shard config; `previous` maps the
    number of each committed shard (written with the same settings) to its clip ids."""
    by_id = {item.clip_id: item for item in items}
    kept: dict[int, list[PlanItem]] = {}
    open_: list[int] = []  # shards that take new clips: rewritten anyway, or the last one
    placed: set[str] = set()
    for index in sorted(previous or {}):
        was = [clip_id for clip_id in dict.fromkeys(previous[index]) if clip_id not in placed]
        members = _fit(sorted((by_id[c] for c in was if c in by_id), key=_order), max_samples, max_bytes)
        if not members:
            continue
        kept[index] = members
        placed.update(item.clip_id for item in members)
        if len(members) != len(previous[index]):
            open_.append(index)
    if kept and max(kept) not in open_:
        open_.append(max(kept))
    new = deque(sorted((item for item in by_id.values() if item.clip_id not in placed), key=_order))
    for index in sorted(open_):
        members = kept[index]
        size = EMPTY_TAR + sum(item.size for item in members)
        while new and len(members) < max_samples and size + new[0].size <= max_bytes:
            size += new[0].size
            members.append(new.popleft())
    free = (index for index in range(len(kept) + len(new) + 1) if index not in kept)
    current: list[PlanItem] = []
    size = EMPTY_TAR
    for item in new:
        if current and (len(current) == max_samples or size + item.size > max_bytes):
            kept[next(free)] = current
            current, size = [], EMPTY_TAR
        current.append(item)
        size += item.size
    if current:
        kept[next(free)] = current
    return [_plan(split, index, kept[index], settings) for index in sorted(kept)]


def _order(item: PlanItem) -> tuple[str, str]:
    return item.order, item.clip_id


def _fit(items: list[PlanItem], max_samples: int, max_bytes: int) -> list[PlanItem]:
    """The longest prefix (in sha256 order) of a committed shard's clips within both caps."""
    size = EMPTY_TAR
    for n, item in enumerate(items[:max_samples]):
        size += item.size
        if n and size > max_bytes:
            return items[:n]
    return items[:max_samples]


def _plan(split: str, index: int, items: list[PlanItem], settings: str) -> ShardPlan:
    ordered = sorted(items, key=_order)
    digest = hashlib.sha256("\n".join([settings, *(f"{i.clip_id} {i.digest}" for i in ordered)]).encode()).hexdigest()
    return ShardPlan(split, index, tuple(item.clip_id for item in ordered), digest)
