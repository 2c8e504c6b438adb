"""The report's expert-distillation section (Make-An-Audio §3.2.1, App. A) on a constructed annotation table:
every number below is worked out by hand from the rows written here."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.annotate.store import TABLE_SCHEMA
from pipelines.report.data import collect
from pipelines.report.distillation import counterfactual_selection, judge_key, judge_keys, without_keep_human

SELECTION = {"threshold": 0.2, "above_label_text": False, "fallback": "label_text", "keep_human": True}
BY_LABELS = {"retrieval": {"query": "labels", "judge": False}, "selection": SELECTION}
BY_JUDGE = {"retrieval": {"query": "audio", "judge": True}, "selection": SELECTION}
UNRECORDED = {"retrieval": {"top_k": 3}, "selection": SELECTION}


def row(clip_id, status, expert, score, label, candidates, provenance=BY_LABELS):
    caption = next((t for t, e, s in candidates if e == expert), None) if expert else None
    return {
        "clip_id": clip_id,
        "status": status,
        "reason": "selected" if status == "ok" else "dropped: no label",
        "selected_caption": caption,
        "selected_expert": expert,
        "selected_score": score,
        "label_text": label[0],
        "label_score": label[1],
        "mbtg_text": None,
        "chance_score": None,
        "candidates": [{"text": t, "expert": e, "clap_score": s} for t, e, s in candidates],
        "event_count": 1,
        "windows": 1,
        "frames": 0,
        "clip_digest": "d",
        "settings_hash": "s",
        "provenance": json.dumps(provenance),
    }


ROWS = [
    # c1: retrieval by labels; captioning wins 0.5 to 0.4
    row(
        "c1",
        "ok",
        "captioning",
        0.5,
        ("Dog", 0.2),
        [
            ("a dog barks", "captioning", 0.5),
            ("a dog", "captioning", 0.3),
            ("dogs", "retrieval", 0.4),
            ("Dog", "label_text", 0.2),
        ],
    ),
    # c2: ranked by the judge; retrieval wins 0.6 to 0.35
    row(
        "c2",
        "ok",
        "retrieval",
        0.6,
        ("Rain", 0.3),
        [
            ("rain on a roof", "retrieval", 0.6),
            ("wind", "retrieval", 0.1),
            ("rain", "captioning", 0.35),
            ("Rain", "label_text", 0.3),
        ],
        BY_JUDGE,
    ),
    # c3: ranked by the judge; human kept at 0.25; captioning and retrieval tie at 0.45 (captioning wins the tie),
    # and with keep_human off captioning replaces the human caption
    row(
        "c3",
        "ok",
        "human",
        0.25,
        ("Car", 0.1),
        [
            ("a car passes", "human", 0.25),
            ("a car", "retrieval", 0.45),
            ("an engine", "captioning", 0.45),
            ("Car", "label_text", 0.1),
        ],
        BY_JUDGE,
    ),
    # c4: human 0.7 beats the label text 0.6: kept either way
    row(
        "c4",
        "ok",
        "human",
        0.7,
        ("Bell", 0.6),
        [("a bell rings", "human", 0.7), ("a bell", "captioning", 0.2), ("Bell", "label_text", 0.6)],
    ),
    # c5: human 0.1 is best but under the threshold 0.2: with keep_human off the label text falls back in
    row(
        "c5",
        "ok",
        "human",
        0.1,
        ("Speech", 0.0),
        [("someone talks", "human", 0.1), ("talking", "captioning", 0.05), ("Speech", "label_text", 0.0)],
    ),
    # c6: dropped, ranking not recorded; retrieval wins 0.2 to 0.1
    row(
        "c6", "dropped", None, None, (None, None), [("hum", "captioning", 0.1), ("buzz", "retrieval", 0.2)], UNRECORDED
    ),
    # c7: failed, no candidates: counted nowhere
    row("c7", "failed", None, None, (None, None), [], {}),
    # c8: human 0.3 ties retrieval 0.3: the human caption wins the tie, so it is not replaced
    row(
        "c8",
        "ok",
        "human",
        0.3,
        ("Bird", 0.1),
        [("birds sing", "human", 0.3), ("a bird", "retrieval", 0.3), ("Bird", "label_text", 0.1)],
    ),
]


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distillation")
    (folder / "annotations").mkdir()
    pq.write_table(pa.Table.from_pylist(ROWS, schema=TABLE_SCHEMA), folder / "annotations" / "annotations.parquet")
    return folder


@pytest.fixture(scope="module")
def distillation(output):
    return collect(output, "demo", "c0ffee", 0.9)["totals"]["distillation"]


def test_retrieval_against_captioning(distillation):
    retrieval = distillation["retrieval"]
    assert retrieval["clips"] == 4  # c1 c2 c3 c6
    assert retrieval["wins"] == {"captioning": 2, "retrieval": 2}
    assert retrieval["win_rate"] == {"captioning": 0.5, "retrieval": 0.5}
    assert retrieval["selected"] == {"captioning": 1, "dropped": 1, "human": 1, "retrieval": 1}
    assert retrieval["candidates"] == {"captioning": 5, "retrieval": 5}
    assert retrieval["mean"] == pytest.approx({"captioning": 1.7 / 5, "retrieval": 1.75 / 5}, abs=1e-6)
    assert retrieval["table5"] == pytest.approx(
        {"label_text": 0.2, "captioning": 1.4 / 4, "retrieval": 1.65 / 4, "both_select": 1.75 / 4}, abs=1e-6
    )


def test_retrieval_split_by_whether_the_judge_ranked(distillation):
    groups = distillation["retrieval"]["by_judge"]
    assert set(groups) == {"judge", "not_judge", "unknown"}
    judge = groups["judge"]
    assert judge["clips"] == 2 and judge["wins"] == {"captioning": 1, "retrieval": 1}
    assert judge["mean"] == pytest.approx({"captioning": 0.4, "retrieval": 1.15 / 3}, abs=1e-6)
    assert judge["table5"] == pytest.approx(
        {"label_text": 0.2, "captioning": 0.4, "retrieval": 0.525, "both_select": 0.525}, abs=1e-6
    )
    assert groups["not_judge"]["clips"] == 1 and groups["not_judge"]["wins"] == {"captioning": 1, "retrieval": 0}
    assert groups["unknown"]["wins"] == {"captioning": 0, "retrieval": 1}
    assert groups["unknown"]["selected"] == {"dropped": 1}


def test_keep_human_counterfactual(distillation):
    kept = distillation["keep_human"]
    assert kept["clips"] == 4  # c3 c4 c5 c8
    assert kept["human"]["mean"] == pytest.approx(1.35 / 4, abs=1e-6)
    assert kept["best_other"]["mean"] == pytest.approx(1.4 / 4, abs=1e-6)
    assert kept["margin"]["mean"] == pytest.approx(-0.05 / 4, abs=1e-6) and kept["margin"]["min"] == -0.2
    assert kept["replaced"] == 2 and kept["replaced_rate"] == 0.5
    assert kept["replaced_by"] == {"captioning": 1, "label_text": 1}


def test_streamed_in_batches_of_two_gives_the_same_figures(output, distillation):
    assert collect(output, "demo", "c0ffee", 0.9, batch_rows=2)["totals"]["distillation"] == distillation


def test_the_recorded_rule_decides_the_counterfactual():
    c5 = ROWS[4]
    assert without_keep_human(c5, counterfactual_selection(SELECTION, 0.9)) == "label_text"
    assert without_keep_human(c5, counterfactual_selection({"threshold": 0.0}, 0.9)) == "human"
    assert without_keep_human(c5, counterfactual_selection({"threshold": 0.2, "fallback": "drop"}, 0.9)) == "dropped"
    # no recorded selection: the threshold given to the report applies
    assert without_keep_human(c5, counterfactual_selection(None, 0.05)) == "human"
    assert without_keep_human(ROWS[0], counterfactual_selection(SELECTION, 0.9)) is None  # no human caption
    assert counterfactual_selection({**SELECTION, "from_a_newer_t2a": 1}, 0.9).keep_human is False
    unknown = counterfactual_selection({**SELECTION, "fallback": "a-newer-fallback"}, 0.25)
    assert (unknown.threshold, unknown.fallback, unknown.keep_human) == (0.25, "label_text", False)


def test_judge_key_from_provenance():
    assert judge_key(BY_JUDGE) == "judge" and judge_key(BY_LABELS) == "not_judge"
    assert judge_key({"retrieval": {"query": "audio"}}) == "judge"  # rows that record the query only
    assert judge_key(UNRECORDED) == "unknown" and judge_key(None) == "unknown"
    texts = [json.dumps(BY_JUDGE), None, json.dumps(BY_LABELS), "not json", json.dumps(BY_JUDGE)]
    assert judge_keys(pa.array(texts, pa.string())) == ["judge", "unknown", "not_judge", "unknown", "judge"]
