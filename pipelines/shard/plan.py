"""Which clips go into which shard: deterministic, capped by sample count and bytes.

Within a split, clips are ordered by sha256(clip id): an order that mixes sources and formats (a
shard is a fair sample of the corpus) yet depends only on the ids, never on processing order. The
ordered list is cut greedily: a shard closes before it would exceed `max_samples` or `max_bytes`.
Sizes are estimated before any mel is computed, on the high side (tar headers, padding, the JSON),
so a written shard never exceeds `max_bytes`.

Each planned shard carries a digest of its members' content and of the shard settings; a re-run
skips a complete shard whose stats record the same digest and rewrites any other.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
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


def plan_shards(
    split: str, items: Iterable[PlanItem], max_samples: int, max_bytes: int, settings: str
) -> list[ShardPlan]:
    """Cut the split's clips, in sha256 order, into shards; `settings` hashes the shard config."""
    ordered = sorted(items, key=lambda item: (item.order, item.clip_id))
    plans: list[ShardPlan] = []
    current: list[PlanItem] = []
    size = 2 * 10 * TAR_BLOCK  # the end-of-archive blocks, rounded up to tar's 10 KiB records
    for item in ordered:
        if current and (len(current) == max_samples or size + item.size > max_bytes):
            plans.append(_plan(split, len(plans), current, settings))
            current, size = [], 2 * 10 * TAR_BLOCK
        current.append(item)
        size += item.size
    if current:
        plans.append(_plan(split, len(plans), current, settings))
    return plans


def _plan(split: str, index: int, items: list[PlanItem], settings: str) -> ShardPlan:
    digest = hashlib.sha256("\n".join([settings, *(f"{i.clip_id} {i.digest}" for i in items)]).encode()).hexdigest()
    return ShardPlan(split, index, tuple(item.clip_id for item in items), digest)
