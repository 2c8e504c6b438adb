from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.core.records import Clip, Label, RejectedRow
from pipelines.ingest.manifests.base import FORMATS
from pipelines.ingest.manifests.vggsound import VGGSoundSource, read

VGGSOUND = """\
---g-f_I2yQ,1,people marching,test
--0PQM4-hqg,30,waterfall burbling,train
--56QUhyDQM,185,"playing tennis, table",train
--5OkAjCI7g,40
--8puiAGLhs,abc,dog barking,train
--96EN9NUQM,-5,dog barking,train
short,30,dog barking,train
--9O4XZ4Jyc,0,,train
--9a1a-lWVQ,0,dog barking,validation
--9lPsQVFGA,20.5,dog barking,
"""


def load(tmp_path: Path, text: str = VGGSOUND, **keys) -> tuple[list[Clip], list[RejectedRow], Path]:
    path = tmp_path / "vggsound.csv"
    path.write_text(text, encoding="utf-8")
    source = VGGSoundSource.model_validate(
        {"name": "vgg", "format": "vggsound", "manifest": "vggsound.csv", **keys}, context={"base_dir": tmp_path}
    )
    records = list(read(source))
    clips = [record for record in records if isinstance(record, Clip)]
    return clips, [record for record in records if isinstance(record, RejectedRow)], path


def test_clips(tmp_path):
    clips, _, path = load(tmp_path)
    assert clips[0] == Clip(
        clip_id="yt_---g-f_I2yQ_1000",
        source="vgg",
        format="vggsound",
        source_id="---g-f_I2yQ",
        media=None,
        start=1.0,
        end=11.0,
        labels=(Label("people marching"),),
        split="test",
        manifest=str(path),
        line=1,
    )
    assert [(clip.line, clip.labels[0].name, clip.split) for clip in clips[1:]] == [
        (2, "waterfall burbling", "train"),
        (3, "playing tennis, table", "train"),
        (10, "dog barking", None),
    ]
    assert (clips[3].start, clips[3].end) == (20.5, 30.5)


def test_rejections(tmp_path):
    _, rejected, path = load(tmp_path)
    assert all(row.source == "vgg" and row.manifest == str(path) for row in rejected)
    assert [(row.line, row.reason) for row in rejected] == [
        (4, "expected 4 columns, found 2"),
        (5, "bad start_seconds 'abc' (expected a number of seconds)"),
        (6, "negative start -5"),
        (7, "bad YouTube id 'short' (expected 11 characters of [A-Za-z0-9_-])"),
        (8, "empty label"),
        (9, "unknown split 'validation' (expected one of: test, train)"),
    ]


def test_configured_split_only_where_the_row_has_none(tmp_path):
    clips, _, _ = load(tmp_path, split="valid")
    assert [clip.split for clip in clips] == ["test", "train", "train", "valid"]


def test_limit(tmp_path):
    clips, rejected, _ = load(tmp_path, limit=3)
    assert [clip.line for clip in clips] == [1, 2, 3] and rejected == []
    assert FORMATS.get("vggsound").read is read


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "$(touch x)", "a;rm -rf ~"])
def test_unsafe_ids_are_rejected(tmp_path, bad_id):
    clips, rejected, _ = load(tmp_path, f'"{bad_id}",30,dog barking,train\n')
    assert clips == [] and [row.line for row in rejected] == [1]
    assert rejected[0].reason.startswith("bad YouTube id")


def test_missing_manifest_fails_validation(tmp_path):
    with pytest.raises(ValidationError, match="file not found"):
        VGGSoundSource.model_validate(
            {"name": "vgg", "format": "vggsound", "manifest": "vggsound.csv"}, context={"base_dir": tmp_path}
        )
