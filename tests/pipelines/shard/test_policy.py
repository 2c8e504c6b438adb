"""The shard stage's policies: licences, audio quality, reviewers' overrides — each clip kept out
with its reason in left_out.json, the attribution of the rest beside the shards, the review in the
sample JSON."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from audit_corpus import build_audit_corpus, clip_ids, set_corpus_keys

from pipelines.core.config import ConfigError
from pipelines.datasets import load_corpus
from pipelines.qc import job as qc
from pipelines.shard import job as shard
from pipelines.shard.overrides import caption_hash, write_overrides
from pipelines.shard.policy import read_left_out
from pipelines.shard.reader import iter_shard


def samples(output) -> dict:
    return {s.key: s.meta for tar in sorted((output / "shards").rglob("*.tar")) for s in iter_shard(tar)}


@pytest.fixture()
def corpus(tmp_path):
    return build_audit_corpus(tmp_path)


def test_licence_policy_keeps_out_what_it_does_not_allow_and_attributes_the_rest(tmp_path, corpus):
    set_corpus_keys(corpus, licences={"allow": ["CC0-1.0", "CC-BY"]})
    shard.run(load_corpus(corpus, "audit"))
    kept = samples(tmp_path / "out")
    nc = {c for i, c in enumerate(clip_ids()) if i % 3 == 2}  # CC-BY-NC-4.0
    assert set(kept) == set(clip_ids()) - nc
    assert {m.licence_id for m in kept.values()} == {"CC0-1.0", "CC-BY-4.0"}
    left = read_left_out(tmp_path / "out" / "shards")
    assert left["by_stage"] == {"licence": len(nc)}
    assert {c["clip_id"] for c in left["clips"]} == nc
    assert all("CC-BY-NC-4.0 is not allowed" in c["reason"] for c in left["clips"])
    table = pq.read_table(tmp_path / "out" / "shards" / "attribution.parquet").to_pylist()
    assert [r["clip_id"] for r in table] == sorted(kept)
    assert table[0] | {} == {
        "clip_id": "aud_00",
        "source": "alpha",
        "split": "train",
        "title": "tone 0.wav",
        "author": "user0",
        "url": "http://127.0.0.1/aud_00.wav",
        "licence": "CC0-1.0",
        "licence_raw": "http://creativecommons.org/publicdomain/zero/1.0/",
    }
    markdown = (tmp_path / "out" / "shards" / "ATTRIBUTION.md").read_text()
    assert "## CC-BY-4.0" in markdown and "| aud_01 | tone 1.wav | user1 |" in markdown and "NC" not in markdown


def test_quality_policy_needs_qc_then_drops_with_reasons(tmp_path, corpus):
    set_corpus_keys(corpus, quality={"min_bandwidth_hz": 8000, "drop_near_duplicates": True})
    with pytest.raises(ConfigError, match="run `t2a qc` first"):
        shard.run(load_corpus(corpus, "audit"))
    qc.run(load_corpus(corpus, "audit"))
    shard.run(load_corpus(corpus, "audit"))
    kept = samples(tmp_path / "out")
    reasons = {c["clip_id"]: c["reason"] for c in read_left_out(tmp_path / "out" / "shards")["clips"]}
    assert set(reasons) == {"aud_01", "aud_03"} and set(kept) == set(clip_ids()) - set(reasons)
    assert reasons["aud_01"].startswith("quality: near-duplicate of aud_00")
    assert reasons["aud_03"].startswith("quality: bandwidth_hz") and "< min_bandwidth_hz 8000" in reasons["aud_03"]


def test_overrides_replace_reselect_or_drop_and_the_sample_records_the_review(tmp_path, corpus):
    shard.run(load_corpus(corpus, "audit"))
    before = samples(tmp_path / "out")
    assert before["aud_02"].review is None
    stamp = "2026-01-01T00:00:00Z"
    write_overrides(
        tmp_path / "out",
        {
            # typed: replaced, origin human-review
            "aud_00": {
                "judgment": "partly",
                "caption_sha256": caption_hash(before["aud_00"].selected_caption),
                "caption": "rain on a tin roof",
                "reviewer": "ann",
                "time": stamp,
            },
            # wrong: the next candidate above the threshold (retrieval, 0.45)
            "aud_02": {
                "judgment": "wrong",
                "caption_sha256": caption_hash(before["aud_02"].selected_caption),
                "caption": None,
                "reviewer": "ann",
                "time": stamp,
            },
            # wrong, but about a caption the clip no longer has: nothing happens
            "aud_05": {
                "judgment": "wrong",
                "caption_sha256": caption_hash("an older caption"),
                "caption": None,
                "reviewer": "ann",
                "time": stamp,
            },
        },
    )
    text = (tmp_path / "datasets.yaml").read_text().replace("threshold: 0.3", "threshold: 0.5")
    (tmp_path / "datasets.yaml").write_text(text)  # now nothing but the rejected caption clears it…
    shard.run(load_corpus(corpus, "audit"))
    after = samples(tmp_path / "out")
    assert (
        after["aud_00"].selected_caption == "rain on a tin roof" and after["aud_00"].selected_expert == "human-review"
    )
    assert after["aud_00"].captions[-1].origin == "human-review"
    assert after["aud_00"].review.action == "replaced" and after["aud_00"].review.reviewer == "ann"
    # …so the rejected clip falls back to its label text, as the selection policy says
    assert after["aud_02"].selected_caption == "Tone 2" and after["aud_02"].selected_expert == "label_text"
    assert (
        after["aud_02"].review.action == "reselected"
        and after["aud_02"].review.original_caption == before["aud_02"].selected_caption
    )
    assert after["aud_05"] == before["aud_05"]
    assert after["aud_07"] == before["aud_07"]
