"""The review's statistics: sample size from a margin, allocation, Wilson intervals, weighting back."""

from __future__ import annotations

import pytest

from pipelines.review.design import allocate, origin, sample_size, stratified_sample
from pipelines.review.estimate import estimate, wilson


def test_sample_size_for_a_margin_with_the_finite_population_correction():
    assert sample_size(10**9, 0.05) == 385  # 1.96² · 0.25 / 0.05² = 384.1
    assert sample_size(1000, 0.05) == 278
    assert sample_size(20, 0.05) == 20
    with pytest.raises(ValueError):
        sample_size(100, 0)


def test_allocation_is_proportional_with_a_floor_and_never_above_a_stratum():
    assert allocate({"a": 900, "b": 90, "c": 10}, 100, 2) == {"a": 90, "b": 9, "c": 2}
    assert allocate({"a": 1, "b": 50}, 10, 2) == {"a": 1, "b": 10}


def test_wilson_interval_matches_the_textbook_values():
    low, high = wilson(8, 10)  # p = 0.8, n = 10: (0.4902, 0.9433)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 0) == (None, None)


def test_the_estimate_is_weighted_back_to_the_corpus():
    strata = {"s/human": {"population": 900, "sample_size": 10}, "s/expert": {"population": 100, "sample_size": 10}}
    design = [{"clip_id": f"h{i}", "stratum": "s/human"} for i in range(10)]
    design += [{"clip_id": f"e{i}", "stratum": "s/expert"} for i in range(10)]
    judged = {f"h{i}": {"judgment": "correct"} for i in range(10)}
    judged |= {f"e{i}": {"judgment": "wrong" if i < 8 else "partly"} for i in range(10)}
    result = estimate(judged, design, strata)
    assert result["strata"]["s/human"]["precision"] == 1.0 and result["strata"]["s/expert"]["precision"] == 0.0
    overall = result["overall"]
    assert overall["precision"] == pytest.approx(0.9)  # not the sample's 0.5
    assert overall["lenient"] == pytest.approx(0.9 + 0.1 * 0.2)
    assert overall["n_effective"] == pytest.approx(1000**2 / (900**2 / 10 + 100**2 / 10))
    assert overall["ci_low"] < 0.9 < overall["ci_high"] and overall["coverage"] == 1.0


def test_stratified_sample_is_deterministic_and_covers_every_stratum():
    clips = [
        {"clip_id": f"c{i:03d}", "source": "a" if i % 4 else "b", "origin": origin("human" if i % 3 else "captioning")}
        for i in range(400)
    ]
    chosen, strata = stratified_sample(clips, 0.1)
    again, _ = stratified_sample(list(reversed(clips)), 0.1)
    assert [c["clip_id"] for c in chosen] == [c["clip_id"] for c in again]
    assert len(chosen) == sum(s["sample_size"] for s in strata.values()) == sample_size(400, 0.1) + 0
    assert set(strata) == {"a/human", "a/expert", "b/human", "b/expert"}
    assert {c["stratum"] for c in chosen} == set(strata)
    assert stratified_sample(clips, 0.1, seed=1)[0] != chosen
