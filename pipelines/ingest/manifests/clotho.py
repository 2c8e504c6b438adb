"""Clotho (Drossos et al. 2020): `clotho_captions_<split>.csv`
(`file_name,caption_1,...,caption_5`) and optionally `clotho_metadata_<split>.csv`
(`file_name,keywords,sound_id,sound_link,start_end_samples,manufacturer,license`).

Clips are whole audio files named by their Freesound-derived file names, which contain spaces.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pipelines.core.config import InputFile
from pipelines.core.records import Caption, Clip, RejectedRow, name_clip_id
from pipelines.ingest.manifests._csv import (
    BadRow,
    Manifest,
    Row,
    label_list,
    require_columns,
    split_from_name,
    take,
)
from pipelines.ingest.manifests.base import Record, SourceBase, register_format

FORMAT = "clotho"
CAPTION_COLUMNS = tuple(f"caption_{number}" for number in range(1, 6))
METADATA_COLUMNS = ("file_name", "keywords", "sound_id", "sound_link", "start_end_samples", "manufacturer", "license")
SPLIT_WORDS = [("development", "train"), ("validation", "valid"), ("evaluation", "test")]
# Released Clotho names have none of these; a name with them is a crafted row, not a sound.
SHELL_CHARACTERS = frozenset("$`;|<>")
# Clotho's metadata files are not all valid UTF-8; decoding the whole file as latin-1 then keeps
# every row (a few names come out mojibake rather than the file failing).
FALLBACK_ENCODING = "latin-1"


class ClothoSource(SourceBase):
    format: Literal["clotho"]
    manifest: InputFile
    metadata: InputFile | None = None


@register_format(FORMAT, ClothoSource)
def read(source: ClothoSource) -> Iterator[Record]:
    return take(_records(source), source.limit)


def _records(source: ClothoSource) -> Iterator[Record]:
    metadata: dict[str, dict[str, str]] = {}
    if source.metadata is not None:
        for item in _metadata(source):
            if isinstance(item, RejectedRow):
                yield item
            else:
                metadata.setdefault(item["file_name"], item)
    manifest = Manifest(source, source.manifest, FORMAT)
    split = source.split or split_from_name(source.manifest, SPLIT_WORDS)
    parse = functools.partial(_clip, manifest=manifest, metadata=metadata, split=split)
    yield from manifest.records(
        parse, header=require_columns("file_name", *CAPTION_COLUMNS), fallback_encoding=FALLBACK_ENCODING
    )


def _metadata(source: ClothoSource) -> Iterator[dict[str, str] | RejectedRow]:
    def entry(row: Row) -> dict[str, str]:
        return {column: row[column] if column == "file_name" else row.get(column) for column in METADATA_COLUMNS}

    return Manifest(source, source.metadata, FORMAT).records(
        entry, header=require_columns(*METADATA_COLUMNS), fallback_encoding=FALLBACK_ENCODING
    )


def _clip(row: Row, manifest: Manifest, metadata: Mapping[str, dict[str, str]], split: str | None) -> Clip:
    name = row["file_name"]
    clip_id = name_clip_id(FORMAT, name)
    if SHELL_CHARACTERS.intersection(name):
        shell = "".join(sorted(SHELL_CHARACTERS))
        raise BadRow(f"bad file name {name!r} (shell metacharacters {shell} are not allowed)")
    texts = [row.get(column) for column in CAPTION_COLUMNS]
    if not any(texts):
        raise BadRow("no captions")
    return manifest.clip(
        row.line,
        clip_id=clip_id,
        source_id=name,
        media=None,
        captions=tuple(Caption(text=text, origin=FORMAT) for text in texts if text),
        split=split,
        **_metadata_fields(metadata.get(name)),
    )


def _metadata_fields(entry: Mapping[str, str] | None) -> dict[str, Any]:
    if entry is None:
        return {}
    return {
        "meta": {
            "keywords": label_list(entry["keywords"], ";"),
            "sound_id": entry["sound_id"],
            "sound_link": entry["sound_link"],
            "uploader": entry["manufacturer"],
            "start_end_samples": entry["start_end_samples"],
        },
        "licence": entry["license"] or None,
    }
