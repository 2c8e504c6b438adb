from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.core.records import Clip, Label, RejectedRow
from pipelines.ingest.manifests.audioset import AudioSetSource, read
from pipelines.ingest.manifests.base import FORMATS

SEGMENTS = """\
# Segments csv created Sun Mar  5 10:54:31 2017
# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
# YTID, start_seconds, end_seconds, positive_labels
--PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
--aO5cdqSAg, 30.000, 40.000
--ZhevVpy1s, 50.000, 60.000, "/m/012xff"
--aaILOrkII, abc, 210.000, "/m/09x0r"
--cB2ZVjpnA, 30.000, 30.000, "/m/09x0r"
--ekDLDTUXA, 30.000, 40.000, "/m/09x0r,/m/zzzzz"
short, 30.000, 40.000, "/m/09x0r"
--U7joUcTCo, 0.000, 10.000, ""

--aE2O5G5WE, 0.000, 10.000, "/m/03fwl,/m/04rlf,/m/03fwl"
"""

STRONG = """\
segment_id\tstart_time_seconds\tend_time_seconds\tlabel
YxlGt805lTA_30000\t0.000\t2.140\t/m/09x0r
YxlGt805lTA_30000\t1.500\t9.000\t/m/0jbk
a_b_c_d_e_f_90000\t0.000\t10.000\t/m/04rlf
YxlGt805lTA_30000\t3.000\t4.000\t/m/09x0r
YxlGt805lTA_30000\t3.000
YxlGt805lTA_30000\tx\t4.000\t/m/09x0r
YxlGt805lTA_30000\t4.000\t4.000\t/m/09x0r
YxlGt805lTA_30000\t4.000\t5.000\t/m/zzzzz
YxlGt805lTA30000\t4.000\t5.000\t/m/09x0r
Yx.Gt805lTA_30000\t4.000\t5.000\t/m/09x0r
YxlGt805lTA_30000\t4.000\t5.000\t
"""


def load(tmp_path: Path, name: str, text: str, **keys) -> tuple[list[Clip], list[RejectedRow], Path]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    source = AudioSetSource.model_validate(
        {"name": "as", "format": "audioset", "manifest": name, **keys}, context={"base_dir": tmp_path}
    )
    records = list(read(source))
    clips = [record for record in records if isinstance(record, Clip)]
    rejected = [record for record in records if isinstance(record, RejectedRow)]
    assert len(clips) + len(rejected) == len(records)
    return clips, rejected, path


def test_segments_csv_clips(tmp_path):
    clips, _, path = load(tmp_path, "balanced_train_segments.csv", SEGMENTS)
    assert clips[0] == Clip(
        clip_id="yt_--PJHxphWEs_30000",
        source="as",
        format="audioset",
        source_id="--PJHxphWEs",
        media=None,
        start=30.0,
        end=40.0,
        labels=(Label("Speech", "/m/09x0r"), Label("Gush", "/t/dd00088")),
        split="train",
        manifest=str(path),
        line=4,
        rows=1,
    )
    assert [(clip.clip_id, clip.line) for clip in clips] == [
        ("yt_--PJHxphWEs_30000", 4),
        ("yt_--ZhevVpy1s_50000", 6),
        ("yt_--aE2O5G5WE_0", 13),
    ]
    # a repeated mid is one label
    assert clips[2].labels == (Label("Goat", "/m/03fwl"), Label("Music", "/m/04rlf"))


def test_segments_csv_rejections(tmp_path):
    _, rejected, path = load(tmp_path, "balanced_train_segments.csv", SEGMENTS)
    assert all(row.source == "as" and row.manifest == str(path) for row in rejected)
    assert [(row.line, row.reason) for row in rejected] == [
        (5, "expected 4 columns, found 3"),
        (7, "bad start_seconds 'abc' (expected a number of seconds)"),
        (8, "end 30 is not after start 30"),
        (9, "unknown AudioSet mid '/m/zzzzz'"),
        (10, "bad YouTube id 'short' (expected 11 characters of [A-Za-z0-9_-])"),
        (11, "empty label list"),
    ]


@pytest.mark.parametrize(
    ("name", "split", "expected"),
    [
        ("eval_segments.csv", None, "test"),
        ("unbalanced_train_segments.csv", None, "train"),
        ("eval_segments.csv", "valid", "valid"),
    ],
)
def test_split_from_file_name_unless_configured(tmp_path, name, split, expected):
    clips, _, _ = load(tmp_path, name, SEGMENTS, split=split)
    assert {clip.split for clip in clips} == {expected}


def test_strong_labels_group_rows_of_a_segment(tmp_path):
    clips, _, path = load(tmp_path, "audioset_eval_strong.tsv", STRONG)
    assert clips[0] == Clip(
        clip_id="yt_YxlGt805lTA_30000",
        source="as",
        format="audioset",
        source_id="YxlGt805lTA",
        media=None,
        start=30.0,
        end=40.0,
        labels=(Label("Speech", "/m/09x0r"), Label("Animal", "/m/0jbk")),
        split="test",
        manifest=str(path),
        line=2,
        rows=3,
    )
    assert clips[0].meta["events"] == [
        {"mid": "/m/09x0r", "name": "Speech", "start": 0.0, "end": 2.14},
        {"mid": "/m/0jbk", "name": "Animal", "start": 1.5, "end": 9.0},
        {"mid": "/m/09x0r", "name": "Speech", "start": 3.0, "end": 4.0},
    ]
    # a YouTube id holding underscores: the id is the first 11 characters
    assert (clips[1].clip_id, clips[1].source_id, clips[1].start, clips[1].end) == (
        "yt_a_b_c_d_e_f_90000",
        "a_b_c_d_e_f",
        90.0,
        100.0,
    )
    assert (clips[1].line, clips[1].rows) == (4, 1)
    assert len(clips) == 2


def test_strong_labels_rejections(tmp_path):
    _, rejected, _ = load(tmp_path, "audioset_train_strong.tsv", STRONG)
    assert [(row.line, row.reason) for row in rejected] == [
        (6, "expected 4 columns, found 2"),
        (7, "bad start_time_seconds 'x' (expected a number of seconds)"),
        (8, "end 4 is not after start 4"),
        (9, "unknown AudioSet mid '/m/zzzzz'"),
        (10, "bad segment_id 'YxlGt805lTA30000' (expected <11-character YouTube id>_<start ms>)"),
        (11, "bad YouTube id 'Yx.Gt805lTA' (expected 11 characters of [A-Za-z0-9_-])"),
        (12, "empty label list"),
    ]


def test_strong_labels_with_a_wrong_header_is_one_rejection(tmp_path):
    text = "segment_id\tstart\tend\tlabel\nYxlGt805lTA_30000\t0.0\t1.0\t/m/09x0r\n"
    clips, rejected, _ = load(tmp_path, "audioset_train_strong.tsv", text)
    assert clips == []
    assert [(row.line, row.reason.split(" (")[0]) for row in rejected] == [
        (1, "header lacks column(s) start_time_seconds, end_time_seconds")
    ]


def test_limit_counts_clips_not_rejections(tmp_path):
    (tmp_path / "balanced_train_segments.csv").write_text(SEGMENTS, encoding="utf-8")
    source = AudioSetSource.model_validate(
        {"name": "as", "format": "audioset", "manifest": "balanced_train_segments.csv", "limit": 2},
        context={"base_dir": tmp_path},
    )
    records = list(FORMATS.get("audioset").read(source))
    assert [type(record).__name__ for record in records] == ["Clip", "RejectedRow", "Clip"]
    strong = tmp_path / "audioset_eval_strong.tsv"
    strong.write_text(STRONG, encoding="utf-8")
    source = source.model_copy(update={"manifest": strong, "limit": 1})
    assert [record.line for record in read(source)] == [2]


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "$(touch x)", "a;rm -rf ~"])
def test_unsafe_ids_are_rejected(tmp_path, bad_id):
    segments = f'{bad_id}, 30.000, 40.000, "/m/09x0r"\n'
    clips, rejected, _ = load(tmp_path, "eval_segments.csv", segments)
    assert clips == [] and [row.line for row in rejected] == [1]
    strong = f"segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n{bad_id}_30000\t0\t1\t/m/09x0r\n"
    clips, rejected, _ = load(tmp_path, "audioset_eval_strong.tsv", strong)
    assert clips == [] and [row.line for row in rejected] == [2]
    assert not (tmp_path / "x").exists()


def test_missing_manifest_fails_validation(tmp_path):
    with pytest.raises(ValidationError, match="file not found"):
        AudioSetSource.model_validate(
            {"name": "as", "format": "audioset", "manifest": "nope.csv"}, context={"base_dir": tmp_path}
        )


def test_custom_ontology_names_labels(tmp_path):
    (tmp_path / "o.json").write_text('[{"id": "/m/09x0r", "name": "Talk", "child_ids": []}]', encoding="utf-8")
    clips, rejected, _ = load(tmp_path, "eval_segments.csv", SEGMENTS, ontology="o.json")
    assert [clip.labels for clip in clips] == []
    assert "unknown AudioSet mid '/t/dd00088'" in [row.reason for row in rejected]
    clips, _, _ = load(tmp_path, "eval_segments.csv", '--PJHxphWEs, 30, 40, "/m/09x0r"\n', ontology="o.json")
    assert clips[0].labels == (Label("Talk", "/m/09x0r"),)
