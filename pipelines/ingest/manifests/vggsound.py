"""VGGSound (Chen et al. 2020): `vggsound.csv`, no header, `youtube_id,start_seconds,label,split`.

Every clip is the 10 s of the video from `start_seconds` on, with one free-text class label.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Literal

from pipelines.core.config import InputFile
from pipelines.core.records import Clip, Label, youtube_clip_id
from pipelines.ingest.manifests._csv import BadRow, Manifest, Row, check_segment, seconds, split_of, take
from pipelines.ingest.manifests.base import Record, SourceBase, register_format

FORMAT = "vggsound"
CLIP_SECONDS = 10.0  # VGGSound clips are 10 s (Chen et al. 2020, §3)
SPLITS = {"train": "train", "test": "test"}


class VGGSoundSource(SourceBase):
    format: Literal["vggsound"]
    manifest: InputFile


@register_format(FORMAT, VGGSoundSource)
def read(source: VGGSoundSource) -> Iterator[Record]:
    manifest = Manifest(source, source.manifest, FORMAT)
    parse = functools.partial(_clip, manifest=manifest, default_split=source.split)
    return take(manifest.records(parse, width=4), source.limit)


def _clip(row: Row, manifest: Manifest, default_split: str | None) -> Clip:
    youtube_id, start_text, label, split = (value.strip() for value in row.fields)
    start = seconds(start_text, "start_seconds")
    check_segment(start, None)
    youtube_clip_id(youtube_id, start)  # a bad id rejects the row before its label is looked at
    if not label:
        raise BadRow("empty label")
    return manifest.youtube_clip(
        row.line,
        youtube_id,
        start,
        start + CLIP_SECONDS,
        labels=(Label(name=label),),
        split=split_of(split, SPLITS) if split else default_split,
    )
