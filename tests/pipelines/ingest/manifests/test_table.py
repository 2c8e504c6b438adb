from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from pipelines.core.licences import licence_id
from pipelines.core.records import Caption, Clip, Label, RejectedRow, url_clip_id
from pipelines.ingest.manifests.table import TableSource, read

TABLE = """\
url,id,start,end,labels,caption,split,license
https://example.org/a.wav,,,,dog;/m/09x0r;dog,"A dog barks, then a man speaks",train,CC-BY-4.0
s3://bucket/b.flac,,1.5,4,,,val,
,item_7,,,,,,
https://example.org/c.wav,c7,0,10,,,,
ftp://example.org/d.wav,,,,,,,
,,,,dog,,,
https://example.org/e.wav,,x,,,,,
https://example.org/e.wav,,5,5,,,,
https://example.org/e.wav,,-1,,,,,
https://example.org/e.wav,,,,/m/zzzzz,,,
,bad id!,,,,,,
https://example.org/e.wav,,,,,,holdout,
https://example.org/e.wav,,,
"""

REJECTED = [
    (6, "unsupported URL scheme 'ftp' in 'ftp://example.org/d.wav' (expected http, https, s3, gs, file or a path)"),
    (7, "row has neither a url nor an id"),
    (8, "bad start 'x' (expected a number of seconds)"),
    (9, "end 5 is not after start 5"),
    (10, "negative start -1"),
    (11, "unknown AudioSet mid '/m/zzzzz'"),
    (12, "bad id 'bad id!' (expected [A-Za-z0-9_-]+)"),
    (13, "unknown split 'holdout' (expected one of: eval, evaluation, test, train, val, valid, validation)"),
    (14, "expected 8 columns, found 4"),
]


def load(tmp_path: Path, name: str = "clips.csv", text: str | None = TABLE, **keys):
    if text is not None:
        (tmp_path / name).write_text(text, encoding="utf-8")
    source = TableSource.model_validate(
        {"name": "tbl", "format": "table", "manifest": name, **keys}, context={"base_dir": tmp_path}
    )
    records = list(read(source))
    clips = [record for record in records if isinstance(record, Clip)]
    return clips, [record for record in records if isinstance(record, RejectedRow)]


def test_csv_clips(tmp_path):
    clips, _ = load(tmp_path)
    url = "https://example.org/a.wav"
    assert clips[0] == Clip(
        clip_id=url_clip_id(url, None, None),
        source="tbl",
        format="table",
        source_id=url,
        media=url,
        labels=(Label("dog"), Label("Speech", "/m/09x0r")),
        captions=(Caption("A dog barks, then a man speaks", "table"),),
        split="train",
        licence="CC-BY-4.0",
        manifest=str(tmp_path / "clips.csv"),
        line=2,
    )
    s3, keyed, both = clips[1:]
    assert licence_id(s3.licence) == "LicenseRef-Unknown"
    assert (s3.clip_id, s3.media, s3.start, s3.end, s3.split, s3.licence, s3.captions) == (
        url_clip_id("s3://bucket/b.flac", 1.5, 4.0),
        "s3://bucket/b.flac",
        1.5,
        4.0,
        "valid",
        None,
        (),
    )
    assert (keyed.clip_id, keyed.source_id, keyed.media, keyed.line) == ("tbl_item_7", "item_7", None, 4)
    assert (both.source_id, both.meta, both.line) == ("https://example.org/c.wav", {"id": "c7"}, 5)
    assert both.clip_id != url_clip_id("https://example.org/c.wav")  # the segment is part of the id


def test_csv_rejections(tmp_path):
    _, rejected = load(tmp_path)
    assert {(row.source, row.manifest) for row in rejected} == {("tbl", str(tmp_path / "clips.csv"))}
    assert [(row.line, row.reason) for row in rejected] == REJECTED


def test_parquet_table(tmp_path):
    table = pa.table(
        {
            "url": ["https://example.org/a.wav", None, "gs://bucket/x.mp4", "file:///etc/passwd"],
            "id": [None, "k1", None, None],
            "start": [0.0, None, 2.0, None],
            "end": [5.0, None, 1.0, None],
            "labels": [["dog", "/m/09x0r"], [], None, None],
            "caption": ["A dog barks", None, None, None],
        }
    )
    pq.write_table(table, tmp_path / "clips.parquet")
    clips, rejected = load(tmp_path, "clips.parquet", None, split="train")
    first, keyed, local = clips
    assert (local.media, local.line) == ("file:///etc/passwd", 5)  # a path: the local backend confines it
    assert (first.clip_id, first.start, first.end, first.line, first.split) == (
        url_clip_id("https://example.org/a.wav", 0.0, 5.0),
        0.0,
        5.0,
        2,
        "train",
    )
    assert first.labels == (Label("dog"), Label("Speech", "/m/09x0r"))
    assert first.captions == (Caption("A dog barks", "table"),)
    assert (keyed.clip_id, keyed.labels, keyed.line) == ("tbl_k1", (), 3)
    assert [(row.line, row.reason) for row in rejected] == [
        (4, "end 1 is not after start 2"),
    ]


def test_unreadable_parquet_is_one_rejection(tmp_path):
    (tmp_path / "clips.parquet").write_bytes(b"not parquet at all")
    clips, rejected = load(tmp_path, "clips.parquet", None)
    assert clips == [] and [row.line for row in rejected] == [1]
    assert rejected[0].reason.startswith("unreadable parquet file")


def test_columns_map_other_headers(tmp_path):
    text = "video,begin,finish,tags,text\nhttps://example.org/a.wav,1,3,dog|cat,Two animals\n"
    columns = {"url": "video", "start": "begin", "end": "finish", "labels": "tags", "caption": "text"}
    clips, rejected = load(tmp_path, text=text, columns=columns, label_separator="|")
    assert rejected == []
    assert (clips[0].start, clips[0].end, clips[0].labels, clips[0].captions) == (
        1.0,
        3.0,
        (Label("dog"), Label("cat")),
        (Caption("Two animals", "table"),),
    )


def test_header_without_url_or_id_is_one_rejection_at_line_1(tmp_path):
    clips, rejected = load(tmp_path, text="link,caption\nhttps://example.org/a.wav,x\nhttps://b/c,y\n")
    assert clips == []
    assert [(row.line, row.reason) for row in rejected] == [
        (
            1,
            "table has neither a 'url' nor an 'id' column (found: link, caption); "
            "map your column names with the source's `columns:`",
        )
    ]
    _, rejected = load(tmp_path, text="url,when\nhttps://a/b,1\n", columns={"start": "begin"})
    assert [(row.line, row.reason) for row in rejected] == [
        (1, "column 'begin' (mapped from 'start') is not in the table (found: url, when)")
    ]


def test_row_that_is_not_utf8_is_rejected_alone(tmp_path):
    path = tmp_path / "clips.csv"
    path.write_bytes(b"url,caption\nhttps://a.org/1.wav,caf\xe9\nhttps://a.org/2.wav,ok\n")
    clips, rejected = load(tmp_path, text=None)
    assert [clip.line for clip in clips] == [3]
    assert [(row.line, row.reason) for row in rejected] == [(2, "not valid UTF-8 text")]


def test_limit(tmp_path):
    clips, rejected = load(tmp_path, limit=3)
    assert [clip.line for clip in clips] == [2, 3, 4] and rejected == []


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "$(touch x)", "a;rm -rf ~"])
def test_unsafe_ids_are_rejected(tmp_path, bad_id):
    clips, rejected = load(tmp_path, text=f'id\n"{bad_id}"\n')
    assert clips == [] and [(row.line, row.reason) for row in rejected] == [
        (2, f"bad id {bad_id!r} (expected [A-Za-z0-9_-]+)")
    ]
    # In the url column it is a path, which only the local backend reads, inside its root
    # (tests/pipelines/ingest/test_faults.py: hostile paths).
    clips, rejected = load(tmp_path, text=f'url\n"{bad_id}"\n')
    assert rejected == [] and clips[0].media == bad_id


def test_config_errors(tmp_path):
    with pytest.raises(ValidationError, match="file not found"):
        TableSource.model_validate(
            {"name": "tbl", "format": "table", "manifest": "nope.csv"}, context={"base_dir": tmp_path}
        )
    (tmp_path / "clips.csv").write_text(TABLE, encoding="utf-8")
    with pytest.raises(ValidationError, match="unknown column.*video"):
        TableSource.model_validate(
            {"name": "tbl", "format": "table", "manifest": "clips.csv", "columns": {"video": "url"}},
            context={"base_dir": tmp_path},
        )


def test_csv_error_ends_the_file_with_one_rejection(tmp_path):
    huge = "x" * 200_000  # past the csv module's field size limit
    clips, rejected = load(tmp_path, text=f"url,caption\nhttps://a.org/1.wav,ok\nhttps://a.org/2.wav,{huge}\n")
    assert [clip.line for clip in clips] == [2]
    assert [row.line for row in rejected] == [3]
    assert rejected[0].reason.startswith("unreadable CSV: field larger than field limit")
