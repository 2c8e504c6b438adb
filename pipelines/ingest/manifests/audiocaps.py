"""AudioCaps (Kim et al. 2019): `train.csv`, `val.csv`, `test.csv` with the header
`audiocap_id,youtube_id,start_time,caption`.

Each row is one caption of the 10 s of a YouTube video from `start_time` on; val and test give
every clip five rows, so rows with the same video and start become one clip with all captions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from pipelines.core.config import InputFile
from pipelines.core.records import Caption, Clip, RejectedRow, youtube_clip_id
from pipelines.ingest.manifests._csv import (
    BadRow,
    Manifest,
    Row,
    by_line,
    check_segment,
    require_columns,
    seconds,
    split_from_name,
    take,
)
from pipelines.ingest.manifests.base import Record, SourceBase, register_format

FORMAT = "audiocaps"
CLIP_SECONDS = 10.0  # AudioCaps captions AudioSet's 10-s segments (Kim et al. 2019, §3)
COLUMNS = ("audiocap_id", "youtube_id", "start_time", "caption")
SPLIT_WORDS = [("train", "train"), ("val", "valid"), ("test", "test")]


class AudioCapsSource(SourceBase):
    format: Literal["audiocaps"]
    manifest: InputFile


@dataclass(frozen=True)
class _Caption:
    line: int
    audiocap_id: str
    youtube_id: str
    start: float
    text: str


@register_format(FORMAT, AudioCapsSource)
def read(source: AudioCapsSource) -> Iterator[Record]:
    return take(_records(source), source.limit)


def _records(source: AudioCapsSource) -> Iterator[Record]:
    manifest = Manifest(source, source.manifest, FORMAT)
    split = source.split or split_from_name(source.manifest, SPLIT_WORDS)
    clips: dict[tuple[str, float], list[_Caption]] = {}
    rejected: list[RejectedRow] = []
    for item in manifest.records(_caption, header=require_columns(*COLUMNS)):
        if isinstance(item, RejectedRow):
            rejected.append(item)
        else:
            clips.setdefault((item.youtube_id, item.start), []).append(item)
    grouped = manifest.grouped(clips.values(), lambda captions: _clip(manifest, captions, split), lambda c: c.line)
    yield from by_line([*grouped, *rejected])


def _caption(row: Row) -> _Caption:
    youtube_id = row["youtube_id"].strip()
    start = seconds(row["start_time"], "start_time")
    check_segment(start, None)
    youtube_clip_id(youtube_id, start)
    text = row["caption"].strip()
    if not text:
        raise BadRow("empty caption")
    return _Caption(row.line, row["audiocap_id"].strip(), youtube_id, start, text)


def _clip(manifest: Manifest, captions: list[_Caption], split: str | None) -> Clip:
    first = captions[0]
    return manifest.youtube_clip(
        first.line,
        first.youtube_id,
        first.start,
        first.start + CLIP_SECONDS,
        captions=tuple(Caption(text=c.text, origin=FORMAT) for c in captions),
        split=split,
        meta={"audiocap_ids": [c.audiocap_id for c in captions]},
        rows=len(captions),
    )
