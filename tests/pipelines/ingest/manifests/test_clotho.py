from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.core.licences import licence_id
from pipelines.core.records import Caption, Clip, RejectedRow, name_clip_id
from pipelines.ingest.manifests.clotho import ClothoSource, read

CAPTIONS = """\
file_name,caption_1,caption_2,caption_3,caption_4,caption_5
Distorted AM Radio noise.wav,A radio dial is turned,"Static, then a voice",Noise from an old radio,A radio is tuned,Static changes pitch
Water Boiling (1).wav,Water boils in a pot,Bubbles rise,,Water bubbling,Boiling water
Café ambience.wav,People talk,Cups clink,A busy cafe,Chatter,Spoons stir
.hidden.wav,a,b,c,d,e
Empty.wav,,,,,
Short.wav,a,b
"""

METADATA = """\
file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license
Distorted AM Radio noise.wav,noise;radio;am;distorted,40658,https://freesound.org/people/Kyster/sounds/40658,"[0, 661500]",Kyster,http://creativecommons.org/licenses/by/3.0/
Café ambience.wav,cafe; people ;,12345,https://freesound.org/people/Renée/sounds/12345,"[0, 100]",Renée,http://creativecommons.org/publicdomain/zero/1.0/
broken row
"""


def load(tmp_path: Path, name: str = "clotho_captions_development.csv", text: str = CAPTIONS, **keys):
    (tmp_path / name).write_text(text, encoding="utf-8")
    source = ClothoSource.model_validate(
        {"name": "clotho", "format": "clotho", "manifest": name, **keys}, context={"base_dir": tmp_path}
    )
    records = list(read(source))
    clips = [record for record in records if isinstance(record, Clip)]
    return clips, [record for record in records if isinstance(record, RejectedRow)]


def test_clips_named_with_spaces(tmp_path):
    clips, _ = load(tmp_path)
    radio, water, cafe = clips
    assert radio == Clip(
        clip_id=name_clip_id("clotho", "Distorted AM Radio noise.wav"),
        source="clotho",
        format="clotho",
        source_id="Distorted AM Radio noise.wav",
        media=None,
        captions=tuple(
            Caption(text, "clotho")
            for text in (
                "A radio dial is turned",
                "Static, then a voice",
                "Noise from an old radio",
                "A radio is tuned",
                "Static changes pitch",
            )
        ),
        split="train",
        manifest=str(tmp_path / "clotho_captions_development.csv"),
        line=2,
    )
    assert radio.clip_id.startswith("clotho_Distorted-AM-Radio-noise_")
    assert (water.source_id, len(water.captions), water.line) == ("Water Boiling (1).wav", 4, 3)
    assert (cafe.source_id, cafe.meta, cafe.licence) == ("Café ambience.wav", {}, None)


def test_rejections(tmp_path):
    _, rejected = load(tmp_path)
    assert [(row.line, row.reason) for row in rejected] == [
        (5, "bad file name '.hidden.wav' (starts with a dot: a hidden file or a parent folder)"),
        (6, "no captions"),
        (7, "expected 6 columns, found 3"),
    ]


def test_metadata_in_latin1_joins_by_file_name(tmp_path):
    (tmp_path / "clotho_metadata_development.csv").write_bytes(METADATA.encode("latin-1"))
    clips, rejected = load(tmp_path, metadata="clotho_metadata_development.csv")
    radio, water, cafe = clips
    assert radio.meta == {
        "keywords": ["noise", "radio", "am", "distorted"],
        "sound_id": "40658",
        "sound_link": "https://freesound.org/people/Kyster/sounds/40658",
        "uploader": "Kyster",
        "start_end_samples": "[0, 661500]",
    }
    assert radio.licence == "http://creativecommons.org/licenses/by/3.0/"
    assert licence_id(radio.licence) == "CC-BY-3.0" and licence_id(water.licence) == "LicenseRef-Unknown"
    assert water.meta == {} and water.licence is None
    assert (cafe.meta["keywords"], cafe.meta["uploader"]) == (["cafe", "people"], "Renée")
    assert rejected[0] == RejectedRow(
        "clotho", str(tmp_path / "clotho_metadata_development.csv"), 4, "expected 7 columns, found 1"
    )


@pytest.mark.parametrize(
    ("name", "split", "expected"),
    [
        ("clotho_captions_validation.csv", None, "valid"),
        ("clotho_captions_evaluation.csv", None, "test"),
        ("clotho_captions_development.csv", "valid", "valid"),
    ],
)
def test_split_from_file_name_unless_configured(tmp_path, name, split, expected):
    clips, _ = load(tmp_path, name, split=split)
    assert {clip.split for clip in clips} == {expected}


def test_limit(tmp_path):
    clips, rejected = load(tmp_path, limit=2)
    assert [clip.line for clip in clips] == [2, 3] and rejected == []


@pytest.mark.parametrize("bad_name", ["../../etc/passwd", "$(touch x)", "a;rm -rf ~", "a\tb.wav"])
def test_unsafe_names_are_rejected(tmp_path, bad_name):
    header = CAPTIONS.splitlines()[0]
    clips, rejected = load(tmp_path, text=f'{header}\n"{bad_name}",a,b,c,d,e\n')
    assert clips == [] and [row.line for row in rejected] == [2]
    assert rejected[0].reason.startswith(f"bad file name {bad_name!r}")


@pytest.mark.parametrize("missing", ["manifest", "metadata"])
def test_missing_files_fail_validation(tmp_path, missing):
    (tmp_path / "captions.csv").write_text("", encoding="utf-8")
    (tmp_path / "metadata.csv").write_text("", encoding="utf-8")
    keys = {"manifest": "captions.csv", "metadata": "metadata.csv", missing: "nope.csv"}
    with pytest.raises(ValidationError, match="file not found"):
        ClothoSource.model_validate({"name": "clotho", "format": "clotho", **keys}, context={"base_dir": tmp_path})
