"""FSD50K (Fonseca et al. 2022): `dev.csv` (`fname,labels,mids,split`) or `eval.csv`
(`fname,labels,mids`) with the 200-class `vocabulary.csv` (`index,label,mid`, no header).

`fname` is the Freesound sound id. Labels are checked against the vocabulary, so a row whose
labels and mids disagree is rejected rather than silently mislabelled.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pipelines.core.config import InputFile
from pipelines.core.ontology import Ontology, OntologyFile, load_ontology
from pipelines.core.records import Caption, Clip, Label, RejectedRow, freesound_clip_id
from pipelines.core.storage import location
from pipelines.ingest.manifests._csv import (
    BadRow,
    Manifest,
    Row,
    label_list,
    require_columns,
    split_of,
    take,
)
from pipelines.ingest.manifests.base import Record, SourceBase, register_format

FORMAT = "fsd50k"
SPLITS = {"train": "train", "val": "valid"}  # dev.csv's split column


class FSD50KSource(SourceBase):
    format: Literal["fsd50k"]
    manifest: InputFile
    vocabulary: InputFile
    clips_info: InputFile | None = None  # {dev,eval}_clips_info_FSD50K.json
    ontology: OntologyFile | None = None  # names the labels; None: the packaged ontology


@register_format(FORMAT, FSD50KSource)
def read(source: FSD50KSource) -> Iterator[Record]:
    return take(_records(source), source.limit)


def _records(source: FSD50KSource) -> Iterator[Record]:
    vocabulary: dict[str, str] = {}
    for item in _vocabulary(source):
        if isinstance(item, RejectedRow):
            yield item
        else:
            vocabulary.setdefault(*item)
    info = _clips_info(source)
    if isinstance(info, RejectedRow):
        yield info
        return
    manifest = Manifest(source, source.manifest, FORMAT)
    parse = functools.partial(
        _clip,
        manifest=manifest,
        vocabulary=vocabulary,
        ontology=load_ontology(source.ontology),
        info=info,
        default_split=source.split or "test",  # only eval.csv lacks the split column
    )
    yield from manifest.records(parse, header=require_columns("fname", "labels", "mids"))


def _vocabulary(source: FSD50KSource) -> Iterator[tuple[str, str] | RejectedRow]:
    def entry(row: Row) -> tuple[str, str]:
        _, label, mid = (value.strip() for value in row.fields)
        if not label or not mid:
            raise BadRow("vocabulary entry lacks a label or a mid")
        return mid, label

    return Manifest(source, source.vocabulary, FORMAT).records(entry, width=3)


def _clips_info(source: FSD50KSource) -> Mapping[str, Any] | RejectedRow:
    if source.clips_info is None:
        return {}
    path = source.clips_info
    try:
        info = json.loads(location(path).read_text("utf-8"))
    except json.JSONDecodeError as error:
        return RejectedRow(source.name, str(path), error.lineno, f"clips info is not valid JSON ({error.msg})")
    except UnicodeDecodeError:
        return RejectedRow(source.name, str(path), 1, "clips info is not valid UTF-8 text")
    if not isinstance(info, dict):
        return RejectedRow(source.name, str(path), 1, "clips info is not a JSON object {fname: {...}}")
    return info


def _clip(
    row: Row,
    manifest: Manifest,
    vocabulary: Mapping[str, str],
    ontology: Ontology,
    info: Mapping[str, Any],
    default_split: str,
) -> Clip:
    fname = row["fname"].strip()
    clip_id = freesound_clip_id(fname)
    labels, mids = label_list(row["labels"]), label_list(row["mids"])
    if not mids and not labels:
        raise BadRow("empty label list")
    if len(labels) != len(mids):
        raise BadRow(f"{len(labels)} labels but {len(mids)} mids")
    split = split_of(row["split"], SPLITS) if "split" in row.columns else default_split
    return manifest.clip(
        row.line,
        clip_id=clip_id,
        source_id=fname,
        media=None,
        labels=tuple(_label(label, mid, vocabulary, ontology) for label, mid in zip(labels, mids)),
        split=split,
        **_info_fields(fname, info.get(fname)),
    )


def _label(label: str, mid: str, vocabulary: Mapping[str, str], ontology: Ontology) -> Label:
    if mid not in vocabulary:
        raise BadRow(f"mid {mid!r} is not in the vocabulary")
    if vocabulary[mid] != label:
        raise BadRow(f"label {label!r} does not match the vocabulary label {vocabulary[mid]!r} of mid {mid!r}")
    # Vocabulary labels are slugs ("Electric_guitar"); the ontology has the display names.
    name = ontology.name(mid) if mid in ontology else label.replace("_", " ")
    return Label(name=name, mid=mid)


def _info_fields(fname: str, entry: Any) -> dict[str, Any]:
    """Clip fields from the uploader's Freesound metadata, when the clips info has the sound."""
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise BadRow(f"clips info entry for {fname} is not a JSON object")
    title = str(entry.get("title") or "").strip()
    description = str(entry.get("description") or "").strip()
    text = description or title
    tags = entry.get("tags") or []
    if isinstance(tags, str):  # a hand-made info file may give "a b c"
        tags = tags.split()
    return {
        "meta": {
            "title": title,
            "description": description,
            "tags": [str(tag) for tag in tags],
            "uploader": str(entry.get("uploader") or ""),
        },
        "licence": str(entry.get("license") or "") or None,
        "captions": (Caption(text=text, origin=FORMAT, kind="source_text"),) if text else (),
    }
