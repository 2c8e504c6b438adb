"""The verdict block and the quality, licence and audit figures behind it, on a built corpus that has
been through qc, a licence policy, the shard stage and a review."""

from __future__ import annotations

import pytest
from audit_corpus import build_audit_corpus, clip_ids, set_corpus_keys

from pipelines.datasets import load_corpus
from pipelines.qc import job as qc
from pipelines.report.data import collect
from pipelines.report.render import render
from pipelines.review.session import Review
from pipelines.shard import job as shard


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    root = tmp_path_factory.mktemp("audited")
    config = build_audit_corpus(root)
    set_corpus_keys(config, licences={"allow": ["CC0-1.0", "CC-BY"]}, quality={"max_clipping": 0.5})
    corpus = load_corpus(config, "audit")
    qc.run(corpus)
    shard.run(corpus)
    review = Review(root / "out", "audit", corpus.config_hash, margin=0.1)
    for i, clip in enumerate(review.sample()[:8]):
        review.judge(clip["clip_id"], clip["caption_sha256"], "wrong" if i == 0 else "correct", "ann")
    review.sign("ann")
    return root, corpus


def test_verdict_answers_each_question_with_a_number_and_a_sentence(audited):
    root, corpus = audited
    report = collect(root / "out", "audit", corpus.config_hash, 0.3, quality=corpus.config.quality)
    verdict = {item["key"]: item for item in report["verdict"]}
    assert list(verdict) == ["clips", "origins", "above_threshold", "margin", "auditor", "licences", "quality"]
    assert verdict["clips"]["value"] == 16
    human = sum(1 for i in range(16) if i % 3 == 0)
    label = sum(1 for i in range(16) if i % 3 == 1)
    assert verdict["origins"]["value"] == f"{human} / {label} / {16 - human - label}"
    assert verdict["above_threshold"]["value"] == "100.0%"
    assert verdict["margin"]["value"] == "+0.500"  # 0.6 selected − 0.1 chance on every clip
    overall = report["review"]["overall"]
    assert verdict["auditor"]["value"] == f"{100 * overall['precision']:.1f}%" and 0.5 < overall["precision"] < 1
    assert "Signed by ann" in verdict["auditor"]["sentence"] and "Wilson" in verdict["auditor"]["sentence"]
    assert all(item["sentence"].endswith(".") for item in report["verdict"])
    assert report["review"]["overall"]["judged"] == 8 and report["review"]["signatures"][0]["reviewer"] == "ann"


def test_licence_mix_and_what_the_policy_removed(audited):
    root, corpus = audited
    report = collect(root / "out", "audit", corpus.config_hash, 0.3, quality=corpus.config.quality)
    nc = sum(1 for i in range(16) if i % 3 == 2)
    assert report["licences"]["mix"] == {"CC-BY-4.0": 5, "CC0-1.0": 6, "CC-BY-NC-4.0": nc}
    assert report["licences"]["removed_by_policy"] == {"CC-BY-NC-4.0": nc}
    sentence = {item["key"]: item for item in report["verdict"]}["licences"]["sentence"]
    # the largest licence first, not the alphabetical first (report.json sorts keys)
    assert sentence.startswith(f"Selected clips by licence: CC0-1.0 6, CC-BY-4.0 5, CC-BY-NC-4.0 {nc}.")


def test_quality_measures_flags_and_duplicates(audited):
    root, corpus = audited
    report = collect(root / "out", "audit", corpus.config_hash, 0.3, quality=corpus.config.quality)
    q = report["quality"]
    assert q["clips"] == 16 and q["measures"]["bandwidth_hz"]["n"] == 16
    assert q["flags"]["bandwidth_hz"]["count"] == 1 and q["flags"]["bandwidth_hz"]["examples"] == ["aud_03"]
    assert q["flags"]["clipping"]["limit"] == 0.5 and q["flags"]["clipping"]["count"] == 0
    assert q["near_duplicates"]["examples"] == ["aud_01"] and q["leaked"]["count"] == 0
    assert q["flagged_clips"] == 2  # aud_03's bandwidth, aud_01 a near-duplicate: each clip once
    flags = {item["key"]: item for item in report["verdict"]}["quality"]
    assert flags["value"] == 2 and flags["sentence"].startswith("2 of 16 clips flagged.")
    assert sorted(clip_ids())[0] == "aud_00"


def test_the_page_opens_with_the_verdict_and_keeps_provenance_last_and_collapsed(audited, tmp_path):
    root, corpus = audited
    report = collect(root / "out", "audit", corpus.config_hash, 0.3, quality=corpus.config.quality)
    html = render(report, tmp_path / "report").read_text()
    sections = [part.split('"')[0] for part in html.split('<section id="')[1:]]
    assert sections[:2] == ["verdict", "worst"] and sections[-1] == "provenance"
    provenance = html.split('<section id="provenance">')[1]
    assert "<details><summary>models, checksums" in provenance[:200]
    assert html.count('data-key="') == 7 and "assets/plots/quality/bandwidth_hz.svg" in html
    assert (tmp_path / "report" / "assets" / "plots" / "quality" / "loudness_lufs.svg").is_file()
