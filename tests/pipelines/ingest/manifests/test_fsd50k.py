from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.core.licences import licence_id
from pipelines.core.records import Caption, Clip, Label, RejectedRow
from pipelines.ingest.manifests.fsd50k import FSD50KSource, read

VOCABULARY = """\
0,Electric_guitar,/m/02sgy
1,Guitar,/m/0342h
2,Accelerating_and_revving_and_vroom,/m/07q2z82
3,Made_up_class,/m/0zzzz1
4,broken
"""

DEV = """\
fname,labels,mids,split
64760,"Electric_guitar,Guitar","/m/02sgy,/m/0342h",train
16399,Accelerating_and_revving_and_vroom,/m/07q2z82,val
16400,Made_up_class,/m/0zzzz1,train
abc,Guitar,/m/0342h,train
0,Guitar,/m/0342h,train
16401,"Electric_guitar,Guitar",/m/02sgy,train
16402,Guitar,/m/02sgy,train
16403,Bell,/m/0395lw,train
16404,Guitar,/m/0342h,test
16405,Guitar,/m/0342h
16406,"","",train
"""

EVAL = """\
fname,labels,mids
37199,Guitar,/m/0342h
"""

CLIPS_INFO = {
    "64760": {
        "title": "guitar riff.wav",
        "description": "A riff on my guitar, recorded with a phone.",
        "tags": ["guitar", "riff"],
        "license": "http://creativecommons.org/licenses/by/3.0/",
        "uploader": "someone",
    },
    "16399": {
        "title": "car revving",
        "description": "",
        "tags": [],
        "license": "http://creativecommons.org/publicdomain/zero/1.0/",
        "uploader": "driver",
    },
    "16400": {"title": "", "description": "", "tags": [], "license": "", "uploader": ""},
}


def load(tmp_path: Path, manifest: str = DEV, name: str = "dev.csv", **keys):
    (tmp_path / name).write_text(manifest, encoding="utf-8")
    (tmp_path / "vocabulary.csv").write_text(VOCABULARY, encoding="utf-8")
    source = FSD50KSource.model_validate(
        {"name": "fsd", "format": "fsd50k", "manifest": name, "vocabulary": "vocabulary.csv", **keys},
        context={"base_dir": tmp_path},
    )
    records = list(read(source))
    clips = [record for record in records if isinstance(record, Clip)]
    return clips, [record for record in records if isinstance(record, RejectedRow)]


def test_dev_clips(tmp_path):
    clips, _ = load(tmp_path)
    assert clips[0] == Clip(
        clip_id="fs_64760",
        source="fsd",
        format="fsd50k",
        source_id="64760",
        media=None,
        labels=(Label("Electric guitar", "/m/02sgy"), Label("Guitar", "/m/0342h")),
        split="train",
        manifest=str(tmp_path / "dev.csv"),
        line=2,
    )
    assert clips[0].meta == {} and clips[0].licence is None and clips[0].captions == ()
    # the ontology's display name where it has the mid, else the vocabulary label with spaces
    assert [(clip.line, clip.labels, clip.split) for clip in clips[1:]] == [
        (3, (Label("Accelerating, revving, vroom", "/m/07q2z82"),), "valid"),
        (4, (Label("Made up class", "/m/0zzzz1"),), "train"),
    ]


def test_rejections(tmp_path):
    _, rejected = load(tmp_path)
    vocabulary, manifest = rejected[0], rejected[1:]
    assert vocabulary == RejectedRow("fsd", str(tmp_path / "vocabulary.csv"), 5, "expected 3 columns, found 2")
    assert {row.manifest for row in manifest} == {str(tmp_path / "dev.csv")}
    assert [(row.line, row.reason) for row in manifest] == [
        (5, "bad Freesound id 'abc' (expected a positive integer)"),
        (6, "bad Freesound id '0' (expected a positive integer)"),
        (7, "2 labels but 1 mids"),
        (8, "label 'Guitar' does not match the vocabulary label 'Electric_guitar' of mid '/m/02sgy'"),
        (9, "mid '/m/0395lw' is not in the vocabulary"),
        (10, "unknown split 'test' (expected one of: train, val)"),
        (11, "expected 4 columns, found 3"),
        (12, "empty label list"),
    ]


def test_eval_csv_is_test(tmp_path):
    clips, rejected = load(tmp_path, EVAL, "eval.csv")
    assert rejected[1:] == []
    assert [(clip.clip_id, clip.split, clip.line) for clip in clips] == [("fs_37199", "test", 2)]
    clips, _ = load(tmp_path, EVAL, "eval.csv", split="valid")
    assert clips[0].split == "valid"


def test_clips_info_gives_meta_licence_and_source_text(tmp_path):
    (tmp_path / "dev_clips_info_FSD50K.json").write_text(json.dumps(CLIPS_INFO), encoding="utf-8")
    clips, _ = load(tmp_path, clips_info="dev_clips_info_FSD50K.json")
    riff, car, blank = clips
    assert riff.meta == {
        "title": "guitar riff.wav",
        "description": "A riff on my guitar, recorded with a phone.",
        "tags": ["guitar", "riff"],
        "uploader": "someone",
    }
    assert riff.licence == "http://creativecommons.org/licenses/by/3.0/"
    assert licence_id(riff.licence) == "CC-BY-3.0" and licence_id(blank.licence) == "LicenseRef-Unknown"
    assert riff.captions == (Caption("A riff on my guitar, recorded with a phone.", "fsd50k", "source_text"),)
    assert car.captions == (Caption("car revving", "fsd50k", "source_text"),)
    assert blank.captions == () and blank.licence is None


def test_unreadable_clips_info_is_one_rejection(tmp_path):
    (tmp_path / "info.json").write_text('{"64760": {\n  "title": }', encoding="utf-8")
    clips, rejected = load(tmp_path, clips_info="info.json")
    assert clips == []
    assert [(row.manifest, row.line, row.reason) for row in rejected[1:]] == [
        (str(tmp_path / "info.json"), 2, "clips info is not valid JSON (Expecting value)")
    ]


def test_limit(tmp_path):
    clips, rejected = load(tmp_path, limit=2)
    assert [clip.line for clip in clips] == [2, 3]
    assert [row.line for row in rejected] == [5]  # the vocabulary's, read before any clip


@pytest.mark.parametrize("bad_id", ["../../etc/passwd", "$(touch x)", "a;rm -rf ~"])
def test_unsafe_ids_are_rejected(tmp_path, bad_id):
    clips, rejected = load(tmp_path, f'fname,labels,mids\n"{bad_id}",Guitar,/m/0342h\n', "eval.csv")
    assert clips == []
    assert [(row.line, row.reason) for row in rejected[1:]] == [
        (2, f"bad Freesound id {bad_id!r} (expected a positive integer)")
    ]


@pytest.mark.parametrize("missing", ["manifest", "vocabulary", "clips_info"])
def test_missing_files_fail_validation(tmp_path, missing):
    for name in ("dev.csv", "vocabulary.csv", "info.json"):
        (tmp_path / name).write_text("", encoding="utf-8")
    keys = {"manifest": "dev.csv", "vocabulary": "vocabulary.csv", "clips_info": "info.json", missing: "nope"}
    with pytest.raises(ValidationError, match=f"{missing}\n.*file not found"):
        FSD50KSource.model_validate({"name": "fsd", "format": "fsd50k", **keys}, context={"base_dir": tmp_path})
