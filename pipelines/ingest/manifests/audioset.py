"""AudioSet: the segments CSVs (weak labels) and the strong-label TSVs.

Segments (balanced_train_segments.csv, unbalanced_train_segments.csv, eval_segments.csv): three
`#` comment lines, then `YTID, start_seconds, end_seconds, "mid,mid"` with comma+space separators.
Strong labels (audioset_{train,eval}_strong.tsv, Hershey et al. 2021): a header, then one event per
row, `<YTID>_<segment start ms>\\t<start>\\t<end>\\t<mid>` with times inside the 10-s segment;
the rows of one segment become one clip.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.core.config import InputFile
from pipelines.core.ontology import Ontology, OntologyFile, load_ontology
from pipelines.core.records import Clip, Label, RejectedRow, youtube_clip_id
from pipelines.ingest.manifests._csv import (
    BadRow,
    Manifest,
    Row,
    by_line,
    check_segment,
    label_list,
    open_text,
    require_columns,
    seconds,
    split_from_name,
    take,
)
from pipelines.ingest.manifests.base import Record, SourceBase, register_format

FORMAT = "audioset"
SEGMENT_SECONDS = 10.0  # every AudioSet segment is 10 s long (Gemmeke et al. 2017, §3)
STRONG_COLUMNS = ("segment_id", "start_time_seconds", "end_time_seconds", "label")
_SEGMENT_ID_RE = re.compile(r"(.{11})_([0-9]{1,12})")  # YouTube ids may hold "_": split at char 11


class AudioSetSource(SourceBase):
    format: Literal["audioset"]
    manifest: InputFile
    ontology: OntologyFile | None = None  # None: the packaged AudioSet ontology


@register_format(FORMAT, AudioSetSource)
def read(source: AudioSetSource) -> Iterator[Record]:
    manifest = Manifest(source, source.manifest, FORMAT)
    ontology = load_ontology(source.ontology)
    # The public files carry no split column; eval_segments.csv and audioset_eval_strong.tsv are test.
    split = source.split or split_from_name(source.manifest, [("eval", "test")]) or "train"
    if _is_strong(source.manifest):
        return take(_strong_records(manifest, ontology, split), source.limit)
    return take(_segment_records(manifest, ontology, split), source.limit)


def _is_strong(path: Path) -> bool:
    """Whether the first line that is not a comment is the strong-label TSV header."""
    with open_text(path) as stream:
        for line in stream:
            text = line.strip()
            if text and not text.startswith("#"):
                return text.split("\t")[0].strip() == STRONG_COLUMNS[0]
    return False


# --- segments CSV ---------------------------------------------------------------------------------


def _segment_records(manifest: Manifest, ontology: Ontology, split: str) -> Iterator[Record]:
    rows = manifest.rows(skipinitialspace=True)
    rows = (row for row in rows if row.error or not row.fields[0].lstrip().startswith("#"))
    parse = functools.partial(_segment_clip, manifest=manifest, ontology=ontology, split=split)
    return manifest.records(parse, rows=rows, width=4)


def _segment_clip(row: Row, manifest: Manifest, ontology: Ontology, split: str) -> Clip:
    youtube_id, start_text, end_text, mids = (value.strip() for value in row.fields)
    start = seconds(start_text, "start_seconds")
    end = seconds(end_text, "end_seconds")
    check_segment(start, end)
    return manifest.youtube_clip(
        row.line,
        youtube_id,
        start,
        end,
        labels=_labels(label_list(mids), ontology),
        split=split,
    )


def _labels(mids: list[str], ontology: Ontology) -> tuple[Label, ...]:
    if not mids:
        raise BadRow("empty label list")
    for mid in mids:
        _check_mid(mid, ontology)
    return tuple(Label(name=ontology.name(mid), mid=mid) for mid in dict.fromkeys(mids))


def _check_mid(mid: str, ontology: Ontology) -> None:
    if mid not in ontology:
        raise BadRow(f"unknown AudioSet mid {mid!r}")


# --- strong-label TSV -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Event:
    line: int
    segment_id: str
    youtube_id: str
    offset: float  # segment start in the video, seconds
    mid: str
    start: float  # event times relative to the segment start
    end: float


def _strong_records(manifest: Manifest, ontology: Ontology, split: str) -> Iterator[Record]:
    segments: dict[str, list[_Event]] = {}
    rejected: list[RejectedRow] = []
    events = manifest.records(
        functools.partial(_event, ontology=ontology),
        header=require_columns(*STRONG_COLUMNS),
        delimiter="\t",
        quoting=csv.QUOTE_NONE,
    )
    for item in events:
        if isinstance(item, RejectedRow):
            rejected.append(item)
        else:
            segments.setdefault(item.segment_id, []).append(item)
    build = functools.partial(_strong_clip, manifest, ontology=ontology, split=split)
    clips = manifest.grouped(segments.values(), build, line=lambda event: event.line)
    yield from by_line([*clips, *rejected])


def _event(row: Row, ontology: Ontology) -> _Event:
    segment_id = row["segment_id"].strip()
    match = _SEGMENT_ID_RE.fullmatch(segment_id)
    if not match:
        raise BadRow(f"bad segment_id {segment_id!r} (expected <11-character YouTube id>_<start ms>)")
    youtube_id, offset = match[1], int(match[2]) / 1000
    youtube_clip_id(youtube_id, offset)
    start = seconds(row["start_time_seconds"], "start_time_seconds")
    end = seconds(row["end_time_seconds"], "end_time_seconds")
    check_segment(start, end)
    mid = row["label"].strip()
    if not mid:
        raise BadRow("empty label list")
    _check_mid(mid, ontology)
    return _Event(row.line, segment_id, youtube_id, offset, mid, start, end)


def _strong_clip(manifest: Manifest, events: list[_Event], ontology: Ontology, split: str) -> Clip:
    first = events[0]
    mids = dict.fromkeys(event.mid for event in events)
    return manifest.youtube_clip(
        first.line,
        first.youtube_id,
        first.offset,
        first.offset + SEGMENT_SECONDS,
        labels=tuple(Label(name=ontology.name(mid), mid=mid) for mid in mids),
        split=split,
        meta={"events": [{"mid": e.mid, "name": ontology.name(e.mid), "start": e.start, "end": e.end} for e in events]},
        rows=len(events),
    )
