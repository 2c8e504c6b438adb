"""Shard assignment: deterministic, independent of input order, within both caps."""

from __future__ import annotations

import random

from records import clip_record

from pipelines.shard.plan import PlanItem, member_size, plan_item, plan_shards


def item(i: int, size: int = 10_000, split: str = "train") -> PlanItem:
    return PlanItem(split, f"{hash(('o', i)) & 0xFFFFFFFF:08x}", f"clip_{i}", size, f"d{i}")


def test_same_items_in_any_order_give_the_same_plan():
    items = [item(i) for i in range(2500)]
    shuffled = random.Random(1).sample(items, len(items))
    assert plan_shards("train", items, 1000, 10**9, "s") == plan_shards("train", shuffled, 1000, 10**9, "s")


def test_count_cap():
    plans = plan_shards("train", [item(i) for i in range(2500)], 1000, 10**9, "s")
    assert [len(p.clip_ids) for p in plans] == [1000, 1000, 500]
    assert [p.name for p in plans] == ["shard-000000", "shard-000001", "shard-000002"]
    assert len({c for p in plans for c in p.clip_ids}) == 2500


def test_byte_cap_is_never_exceeded():
    items = [item(i, size=300_000 + 1000 * (i % 7)) for i in range(100)]
    plans = plan_shards("train", items, 1000, 2_000_000, "s")
    sizes = {i.clip_id: i.size for i in items}
    assert all(sum(sizes[c] for c in p.clip_ids) + 10 * 1024 <= 2_000_000 for p in plans)
    assert len(plans) > 10


def test_digest_follows_content_and_settings():
    base = plan_shards("train", [item(i) for i in range(10)], 1000, 10**9, "s")[0]
    changed = [item(i) for i in range(10)]
    changed[3] = PlanItem("train", changed[3].order, "clip_3", 10_000, "other")
    assert plan_shards("train", changed, 1000, 10**9, "s")[0].digest != base.digest
    assert plan_shards("train", [item(i) for i in range(10)], 1000, 10**9, "t")[0].digest != base.digest


def test_plan_item_ignores_how_the_run_went():
    files = {"audio.flac": {"bytes": 5000, "sha256": "a" * 64}, "frame_00.jpg": {"bytes": 700, "sha256": "b" * 64}}
    first = plan_item(
        clip_record("yt_a_0", files=files, created="2026-01-01", read_bytes=1), "train", 131_200, 1, True, True
    )
    again = plan_item(
        clip_record("yt_a_0", files=files, created="2026-02-02T10:00:00+00:00", read_bytes=123456789),
        "train",
        131_200,
        1,
        True,
        True,
    )
    assert first.digest == again.digest and first.size == again.size
    assert first.size >= member_size(5000) + member_size(700) + member_size(131_200)
