"""report.data.collect on the hand-made fixture (tests/support/report_fixture.py): every figure
below was computed by hand from the rows written there."""

from __future__ import annotations

import hashlib
import json

import pytest
from report_fixture import ANNOTATIONS, CONFIG_HASH, RUN_ID, THRESHOLD, build_report_fixture

from pipelines.core.ontology import load_ontology
from pipelines.report.data import ReportError, collect
from pipelines.report.listening import WORST
from pipelines.report.text import ClassNames, artefacts, mentions, near_key

OK_SCORES = [0.5, 0.6, 0.05, 0.45, 0.35, 0.31, 0.32, 0.33, 0.34]  # a1 a2 a3 b1 b2 b3 b7 b8 b9


def sha(clip_id: str) -> str:
    return hashlib.sha256(clip_id.encode()).hexdigest()


def rate_at(scores: dict, threshold: float) -> float:
    acceptance = scores["acceptance"]
    return acceptance["rate"][[round(t, 2) for t in acceptance["thresholds"]].index(threshold)]


def test_shape_and_provenance(report):
    assert report["schema"] == "t2a.report/1" and report["corpus"] == "demo"
    assert report["generated_from"] == {"annotations_rows": 11, "status_run": RUN_ID, "shards_index": True}
    assert list(report["sources"]) == ["alpha", "beta"]
    prov = report["provenance"]
    assert prov["config_hash"] == CONFIG_HASH and prov["config_file"] == "/cfg/datasets.yaml"
    assert prov["ingest"]["manifests"] == ["manifests/alpha.csv", "manifests/beta.csv"]
    assert prov["ingest"]["tools"] == {"ffmpeg": "7.1"} and prov["ingest"]["started"].startswith("2026-01-01")
    assert set(prov["annotate"]["models"]) == {"clap", "captioning"}
    assert prov["annotate"]["selection"] == {
        "threshold": 0.3,
        "above_label_text": False,
        "fallback": "label_text",
        "keep_human": True,
    }
    assert prov["annotate"]["bank_checksum"] == "bank1"
    assert prov["shards"] == {"profiles": ["audioldm"], "config_hash": CONFIG_HASH}
    json.dumps(report, allow_nan=False)  # no NaN anywhere


def test_availability_counts_the_latest_run(report):
    totals = report["totals"]["availability"]
    assert totals["rows"] == 17
    assert totals["by_status"] == {
        "ok": 9,
        "cached": 2,
        "duplicate": 2,
        "excluded": 1,
        "rejected_row": 1,
        "failed_permanent": 1,
        "failed_retryable": 1,
    }
    assert totals["top_reasons"][0] == {
        "status": "duplicate",
        "reason": "duplicate of <id> kept from alpha line N",
        "rows": 2,
    }
    assert {"status": "failed_permanent", "reason": "HTTP N for <url>", "rows": 1} in totals["top_reasons"]
    assert report["sources"]["alpha"]["availability"]["rows"] == 8
    assert report["sources"]["beta"]["availability"]["by_status"]["excluded"] == 1


def test_annotation_statuses(report):
    annotations = report["totals"]["annotations"]
    assert annotations["clips"] == 11 and annotations["fallback"] == 1
    assert annotations["by_status"] == {"ok": 9, "dropped": 1, "failed": 1}
    reasons = {(r["status"], r["reason"]) for r in annotations["top_reasons"]}
    assert ("ok", "fallback:label_text: best score N < threshold N") in reasons
    assert ("failed", "could not read <path>: truncated") in reasons
    assert report["sources"]["alpha"]["annotations"]["by_status"] == {"ok": 3, "dropped": 1, "failed": 0}


def test_scores(report):
    scores = report["totals"]["scores"]
    assert scores["selected"]["n"] == 9
    assert scores["selected"]["mean"] == pytest.approx(sum(OK_SCORES) / 9, abs=1e-6)
    assert scores["selected"]["min"] == 0.05 and scores["selected"]["max"] == 0.6
    assert scores["win_rate"] == pytest.approx(
        {"captioning": 6 / 9, "human": 1 / 9, "label_text": 1 / 9, "retrieval": 1 / 9}, abs=1e-6
    )
    assert scores["human"] == scores["by_expert"]["human"] and scores["human"]["mean"] == 0.6
    assert scores["chance"]["n"] == 5 and scores["chance"]["mean"] == pytest.approx(0.13, abs=1e-6)
    assert scores["margin_over_label"]["n"] == 6 and scores["margin_over_label"]["mean"] == pytest.approx(
        1.07 / 6, abs=1e-6
    )
    assert scores["margin_over_chance"]["mean"] == pytest.approx(0.314, abs=1e-6)
    assert scores["table5"] == pytest.approx(
        {"label_text": 0.2, "captioning": 2.35 / 9, "retrieval": 0.375, "selected": 3.25 / 9}, abs=1e-6
    )
    beta = report["sources"]["beta"]["scores"]
    assert beta["win_rate"] == pytest.approx({"captioning": 5 / 6, "retrieval": 1 / 6}, abs=1e-6)
    assert beta["table5"]["retrieval"] == 0.35 and beta["human"]["n"] == 0 and beta["human"]["mean"] is None


def test_acceptance_curve(report):
    scores = report["totals"]["scores"]
    assert len(scores["acceptance"]["thresholds"]) == 41 and scores["acceptance"]["configured"] == THRESHOLD
    # best candidate of the 10 annotated clips: .5 .6 .05 .1 .45 .35 .31 .32 .33 .34
    expected = {-1.0: 1.0, 0.0: 1.0, 0.1: 0.9, 0.3: 0.8, 0.35: 0.4, 0.5: 0.2, 0.65: 0.0, 1.0: 0.0}
    assert {t: rate_at(scores, t) for t in expected} == expected


def test_histograms(report):
    selected = report["totals"]["scores"]["selected"]["histogram"]
    assert len(selected["edges"]) == 41 and selected["edges"][0] == -1.0 and selected["edges"][-1] == 1.0
    # bin i is [-1 + 0.05 i, -1 + 0.05 (i + 1)): a3 in 21, b3 b7 b8 b9 in 26, b2 (0.35) in 27, b1 29, a1 30, a2 32
    assert {i: n for i, n in enumerate(selected["counts"]) if n} == {21: 1, 26: 4, 27: 1, 29: 1, 30: 1, 32: 1}
    lengths = report["totals"]["text"]["length_words"]
    assert lengths["n"] == 9 and lengths["min"] == 0 and lengths["max"] == 6 and lengths["p50"] == 4.0
    assert lengths["mean"] == pytest.approx(34 / 9, abs=1e-6) and sum(lengths["histogram"]["counts"]) == 9


def test_labels(report):
    labels = report["totals"]["labels"]
    assert labels["clips_with_labels"] == 6 and labels["mentions_label"] == 4
    assert labels["mention_rate"] == pytest.approx(4 / 6, abs=1e-6)
    # b1 is labelled Cat and its caption says "barks": Bark is a class it lacks. a1 says the same
    # but is labelled Dog, Bark's parent: not counted.
    assert labels["names_unlabelled_class"] == 1
    assert labels["examples"] == [
        {"clip_id": "b1", "caption": "A dog barks loudly.", "labels": ["Cat"], "named": ["Bark"]}
    ]


def test_text(report):
    text = report["totals"]["text"]
    assert text["captions"] == 9 and text["vocabulary"] == 25
    assert text["distinct_1"] == pytest.approx(25 / 34, abs=1e-6) and text["distinct_2"] == pytest.approx(
        21 / 26, abs=1e-6
    )
    assert text["exact_duplicate_rate"] == pytest.approx(1 / 9, abs=1e-6)
    assert text["near_duplicate_rate"] == pytest.approx(2 / 9, abs=1e-6)
    assert text["most_repeated"] == [{"text": "A dog barks loudly.", "count": 2}]
    beta = report["sources"]["beta"]["text"]  # a1's twin is in alpha: beta has no exact duplicate
    assert beta["exact_duplicate_rate"] == 0.0 and beta["near_duplicate_rate"] == pytest.approx(1 / 6, abs=1e-6)
    assert beta["most_repeated"] == []


def test_artefacts_and_composition(report):
    found = report["totals"]["artefacts"]
    counts = {kind: found[kind]["count"] for kind in found}
    assert counts == {
        "digits": 2,
        "probability": 1,
        "label_word": 1,
        "apology": 1,
        "mask_token": 1,
        "template_placeholder": 2,
        "empty": 1,
    }
    assert found["template_placeholder"]["rate"] == pytest.approx(2 / 9, abs=1e-6)
    assert {e["clip_id"] for e in found["template_placeholder"]["examples"]} == {"b3", "b8"}
    assert found["empty"]["examples"] == [{"clip_id": "b9", "caption": "  "}]
    assert report["totals"]["composition"] == {"single_event": 5, "multi_event": 1, "no_labels": 3}


@pytest.mark.parametrize(
    ("caption", "kinds"),
    [
        ("A dog barks", []),
        ("87% sure", ["digits", "probability"]),
        ("with confidence", ["probability"]),
        ("I can't say", ["apology"]),
        ("Xylophone and X-ray", []),
        ("Dogs & cats", ["template_placeholder"]),
        ("a <noun> {verb}", ["template_placeholder"]),
        ("[MASK] dog", ["mask_token"]),
        ("", ["empty"]),
    ],
)
def test_artefact_patterns(caption, kinds):
    assert artefacts(caption, "[MASK]") == kinds


def test_label_matching_rules():
    assert mentions("Two dogs bark", ["Dog"]) and mentions("a HONKING car", ["Vehicle horn, car horn, honking"])
    assert not mentions("hotdog stand", ["Dog"])  # whole words only
    assert near_key("A Dog, barks!") == near_key("dog barks") == "dog barks"


def test_unlabelled_classes_skip_the_labels_family():
    ontology = load_ontology()
    names = ClassNames(ontology, sorted(ontology._concepts))
    caption = "Dogs bark near a car horn, then heavy rain and a hi-hat"
    assert names.terms(caption) == ["dogs", "bark", "car horn", "rain", "hi-hat"]
    # labelled Dog: "dogs" is its own name, Bark its child; the rest are other classes
    named = names.unlabelled(caption, [{"mid": "/m/0bt9lr", "name": "Dog"}])
    assert named == ["Vehicle horn, car horn, honking", "Rain", "Hi-hat"]
    bark = [{"mid": "/m/05tny_", "name": "Bark"}]
    assert names.unlabelled("an animal barks", bark) == []  # Animal is an ancestor of Bark
    assert names.unlabelled("a cat meows", bark) == ["Meow"]  # "cat" is under MIN_CHARS


def test_listening_sample(report_output):
    report = collect(report_output, "demo", CONFIG_HASH, THRESHOLD, listening_per_stratum=1, quantiles=2)
    rows = {row["clip_id"]: row for row in report["listening"]}
    # quantile edges from the 0.001 histograms: alpha 0.5005 (scores .05 .5 .6), beta 0.331 (.31 … .45)
    strata = {
        "alpha/q1": ["a1", "a3"],
        "alpha/q2": ["a2"],
        "beta/q1": ["b3", "b7", "b8"],
        "beta/q2": ["b1", "b2", "b9"],
    }
    sampled = {min(ids, key=sha) for ids in strata.values()}
    ok = [r for r in ANNOTATIONS if r["status"] == "ok"]
    by_score = sorted(ok, key=lambda r: (r["selected_score"], sha(r["clip_id"])))
    with_chance = [r for r in ok if r["chance_score"] is not None]
    by_margin = sorted(with_chance, key=lambda r: (r["selected_score"] - r["chance_score"], sha(r["clip_id"])))
    worst = {r["clip_id"] for r in by_score[:WORST]} | {r["clip_id"] for r in by_margin[:WORST]}
    flagged = worst | {"b3", "b7", "a2", min(["a1", "b1"], key=sha)}  # the worst, 3 longest, most duplicated
    assert set(rows) == sampled | flagged
    for stratum, ids in strata.items():
        assert all(rows[c]["stratum"] == stratum for c in ids if c in rows)
    assert "lowest_score" in rows["a3"]["flags"] and "longest" in rows["b7"]["flags"]
    assert all({"lowest_score", "lowest_margin"} & set(rows[c]["flags"]) for c in worst)
    assert "duplicated" in rows[min(["a1", "b1"], key=sha)]["flags"]
    a1 = rows.get("a1") or rows["b1"]
    assert a1["audio"].endswith("audio.flac") and len(a1["frames"]) == 2
    assert all(path.endswith(".jpg") for path in a1["frames"])
    assert rows["a3"]["labels"] == ["Speech", "Music"] and rows["a3"]["candidates"][0]["expert"] == "captioning"
    again = collect(report_output, "demo", CONFIG_HASH, THRESHOLD, listening_per_stratum=1, quantiles=2)
    assert again["listening"] == report["listening"]


def test_batches_of_two_give_the_same_report(report_output, report):
    assert collect(report_output, "demo", CONFIG_HASH, THRESHOLD, batch_rows=2) == report


def test_without_chance_column(tmp_path):
    report = collect(build_report_fixture(tmp_path, chance=False), "demo", CONFIG_HASH, THRESHOLD)
    assert (
        report["totals"]["scores"]["chance"]["n"] == 0
        and report["totals"]["scores"]["margin_over_chance"]["mean"] is None
    )


def test_missing_annotations_is_one_clear_error(tmp_path):
    with pytest.raises(ReportError, match="run `t2a annotate`"):
        collect(tmp_path, "demo", CONFIG_HASH, THRESHOLD)
