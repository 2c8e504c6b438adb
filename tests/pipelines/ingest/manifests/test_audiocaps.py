from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.core.records import Caption, Clip, RejectedRow
from pipelines.ingest.manifests.audiocaps import AudioCapsSource, read

VAL = """\
audiocap_id,youtube_id,start_time,caption
97151,vfY_TJq7n_U,130,"Rustling occurs, ducks quack and water splashes"
108945,tdWhHV3X25Q,60,A man speaks as a vehicle engine idles
97152,vfY_TJq7n_U,130,Ducks quack and water splashes
97153,vfY_TJq7n_U,130.0,"A man says ""hello"" as ducks
quack"
97154,vfY_TJq7n_U,130,Water splashes and ducks quack
97155,vfY_TJq7n_U,130,Ducks quacking
97156,short,30,A dog barks
97157,tdWhHV3X25Q,abc,A dog barks
97158,tdWhHV3X25Q,-1,A dog barks
97159,tdWhHV3X25Q,70,
97160,tdWhHV3X25Q,70
108946,tdWhHV3X25Q,60,A vehicle engine idles as a man speaks
"""


def load(tmp_path: Path, text: str = VAL, name: str = "val.csv", **keys):
    (tmp_path / name).write_text(text, encoding="utf-8")
    source = AudioCapsSource.model_validate(
        {"name": "ac", "format": "audiocaps", "manifest": name, **keys}, context={"base_dir": tmp_path}
    )
    records = list(read(source))
    clips = [record for record in records if isinstance(record, Clip)]
    return clips, [record for record in records if isinstance(record, RejectedRow)], records


def test_rows_of_one_clip_become_one_clip_with_all_captions(tmp_path):
    clips, _, _ = load(tmp_path)
    ducks, engine = clips
    assert ducks == Clip(
        clip_id="yt_vfY_TJq7n_U_130000",
        source="ac",
        format="audiocaps",
        source_id="vfY_TJq7n_U",
        media=None,
        start=130.0,
        end=140.0,
        captions=(
            Caption("Rustling occurs, ducks quack and water splashes", "audiocaps"),
            Caption("Ducks quack and water splashes", "audiocaps"),
            Caption('A man says "hello" as ducks\nquack', "audiocaps"),
            Caption("Water splashes and ducks quack", "audiocaps"),
            Caption("Ducks quacking", "audiocaps"),
        ),
        split="valid",
        manifest=str(tmp_path / "val.csv"),
        line=2,
        rows=5,
    )
    assert ducks.meta == {"audiocap_ids": ["97151", "97152", "97153", "97154", "97155"]}
    assert (engine.clip_id, engine.line, engine.rows, engine.meta["audiocap_ids"]) == (
        "yt_tdWhHV3X25Q_60000",
        3,
        2,
        ["108945", "108946"],
    )


def test_rejections_keep_physical_lines_after_a_multiline_caption(tmp_path):
    _, rejected, records = load(tmp_path)
    assert [(row.line, row.reason) for row in rejected] == [
        (9, "bad YouTube id 'short' (expected 11 characters of [A-Za-z0-9_-])"),
        (10, "bad start_time 'abc' (expected a number of seconds)"),
        (11, "negative start -1"),
        (12, "empty caption"),
        (13, "expected 4 columns, found 3"),
    ]
    assert [record.line for record in records] == [2, 3, 9, 10, 11, 12, 13]


@pytest.mark.parametrize(
    ("name", "split", "expected"),
    [("train.csv", None, "train"), ("test.csv", None, "test"), ("val.csv", "test", "test")],
)
def test_split_from_file_name_unless_configured(tmp_path, name, split, expected):
    clips, _, _ = load(tmp_path, name=name, split=split)
    assert {clip.split for clip in clips} == {expected}


def test_limit_in_manifest_order(tmp_path):
    _, _, records = load(tmp_path, limit=1)
    assert [(type(record).__name__, record.line) for record in records] == [("Clip", 2)]


def test_wrong_header_is_one_rejection(tmp_path):
    clips, rejected, _ = load(tmp_path, "youtube_id,start_time,caption\nvfY_TJq7n_U,130,Ducks\n")
    assert clips == []
    assert [(row.line, row.reason.split(" (")[0]) for row in rejected] == [(1, "header lacks column(s) audiocap_id")]


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "$(touch x)", "a;rm -rf ~"])
def test_unsafe_ids_are_rejected(tmp_path, bad_id):
    clips, rejected, _ = load(tmp_path, f'audiocap_id,youtube_id,start_time,caption\n1,"{bad_id}",30,A dog\n')
    assert clips == [] and [row.line for row in rejected] == [2]
    assert rejected[0].reason.startswith("bad YouTube id")


def test_missing_manifest_fails_validation(tmp_path):
    with pytest.raises(ValidationError, match="file not found"):
        AudioCapsSource.model_validate(
            {"name": "ac", "format": "audiocaps", "manifest": "val.csv"}, context={"base_dir": tmp_path}
        )
