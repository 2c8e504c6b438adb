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


# --- growth: the committed layout is kept (issue 16 §4) -------------------------------------------


def layout(plans) -> dict[int, tuple[str, ...]]:
    return {p.index: p.clip_ids for p in plans}


def check(plans, items, max_samples: int, max_bytes: int) -> None:
    """Every clip exactly once, both caps kept."""
    sizes = {i.clip_id: i.size for i in items}
    placed = [c for p in plans for c in p.clip_ids]
    assert sorted(placed) == sorted(sizes)
    for p in plans:
        assert len(p.clip_ids) <= max_samples
        assert len(p.clip_ids) == 1 or sum(sizes[c] for c in p.clip_ids) + 10 * 1024 <= max_bytes


def test_without_a_committed_layout_the_plan_is_the_sha256_cut():
    items = [item(i) for i in range(2500)]
    ordered = [i.clip_id for i in sorted(items, key=lambda i: (i.order, i.clip_id))]
    plans = plan_shards("train", items, 1000, 10**9, "s", previous={})
    assert [p.clip_ids for p in plans] == [tuple(ordered[:1000]), tuple(ordered[1000:2000]), tuple(ordered[2000:])]


def test_new_clips_fill_the_last_shard_then_new_ones_and_leave_the_others_alone():
    first = plan_shards("train", [item(i) for i in range(2500)], 1000, 10**9, "s")
    grown_items = [item(i) for i in range(2500 + 600)]
    grown = plan_shards("train", grown_items, 1000, 10**9, "s", previous=layout(first))
    check(grown, grown_items, 1000, 10**9)
    assert grown[:2] == first[:2]  # same members, same digest: skipped by the job
    assert set(first[2].clip_ids) < set(grown[2].clip_ids) and len(grown[2].clip_ids) == 1000
    assert [p.index for p in grown] == [0, 1, 2, 3] and len(grown[3].clip_ids) == 100
    added = set(grown[2].clip_ids) - set(first[2].clip_ids)
    assert added | set(grown[3].clip_ids) == {f"clip_{i}" for i in range(2500, 3100)} and len(added) == 500


def test_a_shard_that_lost_clips_takes_the_new_ones_first_and_an_emptied_number_is_reused():
    first = plan_shards("train", [item(i) for i in range(3000)], 1000, 10**9, "s")
    gone = set(first[0].clip_ids[:10]) | set(first[1].clip_ids)
    items = [item(i) for i in range(3020) if f"clip_{i}" not in gone]
    grown = plan_shards("train", items, 1000, 10**9, "s", previous=layout(first))
    check(grown, items, 1000, 10**9)
    new = {f"clip_{i}" for i in range(3000, 3020)}
    new_in_order = [i.clip_id for i in sorted((item(i) for i in range(3000, 3020)), key=lambda i: (i.order, i.clip_id))]
    by_index = layout(grown)
    assert sorted(by_index) == [0, 1, 2]
    assert by_index[2] == first[2].clip_ids  # untouched: same members (and digest), not rewritten
    assert set(by_index[0]) == set(first[0].clip_ids[10:]) | set(new_in_order[:10])  # refilled first
    assert set(by_index[1]) == new - set(new_in_order[:10])  # the emptied number holds the rest


def test_a_committed_shard_whose_samples_grew_past_the_byte_cap_sheds_clips_deterministically():
    items = [item(i, size=100_000) for i in range(40)]
    first = plan_shards("train", items, 1000, 2_000_000, "s")
    bigger = [item(i, size=150_000 if i % 2 else 100_000) for i in range(40)]
    grown = plan_shards("train", bigger, 1000, 2_000_000, "s", previous=layout(first))
    check(grown, bigger, 1000, 2_000_000)
    again = plan_shards("train", random.Random(3).sample(bigger, 40), 1000, 2_000_000, "s", previous=layout(first))
    assert grown == again


def test_a_grown_plan_is_the_same_in_any_order_and_survives_random_edits():
    rng = random.Random(7)
    ids = list(range(300))
    plans = plan_shards("train", [item(i, size=rng.randrange(10_000, 400_000)) for i in ids], 40, 3_000_000, "s")
    sizes = {i: rng.randrange(10_000, 400_000) for i in range(1000)}
    for step in range(20):
        ids = [i for i in ids if rng.random() > 0.03] + list(
            range(300 + 20 * step, 300 + 20 * step + rng.randrange(30))
        )
        items = [item(i, size=sizes[i]) for i in ids]
        grown = plan_shards("train", items, 40, 3_000_000, "s", previous=layout(plans))
        check(grown, items, 40, 3_000_000)
        assert grown == plan_shards("train", rng.sample(items, len(items)), 40, 3_000_000, "s", layout(plans))
        plans = grown
