"""A generic table of media: CSV (or TSV) or parquet, picked by the file extension.

Columns (renamed through `columns:` for tables with other headers): `url` and/or `id`, and
optionally `start`, `end`, `labels`, `caption`, `split`, `licence` (or `license`). A row with a
URL is fetched from it; a row with only an id is fetched through the backend's template. `url` may
also be a local path (`/data/sounds/dog bark.wav`, or relative to the local backend's `root`) or a
`file://` URL: the `local` backend with a `root` reads those, confined to that folder.
Parquet rows are numbered as the table's CSV export would be: header line 1, first row line 2.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from pipelines.core.config import InputFile
from pipelines.core.ontology import Ontology, OntologyFile, load_ontology
from pipelines.core.records import Caption, Clip, Label, keyed_clip_id, url_clip_id
from pipelines.core.redact import redact_url
from pipelines.ingest.fetch.configs import secret_params
from pipelines.ingest.manifests._csv import (
    BadRow,
    Manifest,
    Row,
    check_segment,
    header_index,
    label_list,
    seconds,
    split_of,
    take,
)
from pipelines.ingest.manifests.base import Record, SourceBase, register_format

FORMAT = "table"
COLUMNS = ("url", "id", "start", "end", "labels", "caption", "split", "licence")
URL_SCHEMES = ("http", "https", "s3", "gs")  # what the http backend (with fsspec) can fetch
LOCAL_SCHEMES = ("", "file")  # a path, or a file:// URL: the local backend with a root
SPLITS = {
    "train": "train",
    "valid": "valid",
    "val": "valid",
    "validation": "valid",
    "test": "test",
    "eval": "test",
    "evaluation": "test",
}
PARQUET_SUFFIXES = (".parquet", ".pq")
_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_MID_RE = re.compile(r"^/[mt]/")


class TableSource(SourceBase):
    format: Literal["table"]
    manifest: InputFile
    ontology: OntologyFile | None = None  # resolves labels written as mids; None: packaged copy
    columns: dict[str, str] = {}  # our column name -> the table's
    label_separator: str = Field(";", min_length=1)

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(columns) - set(COLUMNS))
        if unknown:
            raise ValueError(f"unknown column(s) {', '.join(unknown)}; valid: {', '.join(COLUMNS)}")
        return columns


@register_format(FORMAT, TableSource)
def read(source: TableSource) -> Iterator[Record]:
    manifest = Manifest(source, source.manifest, FORMAT)
    suffix = source.manifest.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        rows = _parquet_rows(source.manifest, source.label_separator)
    else:
        rows = manifest.rows(delimiter="\t" if suffix == ".tsv" else ",")
    parse = functools.partial(_clip, manifest=manifest, source=source, ontology=load_ontology(source.ontology))
    return take(manifest.records(parse, header=functools.partial(_header, source=source), rows=rows), source.limit)


def _header(row: Row, source: TableSource) -> Mapping[str, int]:
    found = header_index(row)
    names = ", ".join(found)
    index: dict[str, int] = {}
    for ours in COLUMNS:
        theirs = source.columns.get(ours, ours)
        if ours in source.columns and theirs not in found:
            raise BadRow(f"column {theirs!r} (mapped from {ours!r}) is not in the table (found: {names})")
        if theirs not in found and ours == "licence":
            theirs = "license"
        if theirs in found:
            index[ours] = found[theirs]
    if "url" not in index and "id" not in index:
        raise BadRow(
            f"table has neither a 'url' nor an 'id' column (found: {names}); "
            f"map your column names with the source's `columns:`"
        )
    return index


def _clip(row: Row, manifest: Manifest, source: TableSource, ontology: Ontology) -> Clip:
    url, key = row.get("url"), row.get("id")
    if not url and not key:
        raise BadRow("row has neither a url nor an id")
    start = seconds(row.get("start"), "start") if row.get("start") else None
    end = seconds(row.get("end"), "end") if row.get("end") else None
    check_segment(start, end)
    if url:
        _check_url(url)
        # The id and the recorded identity carry no credentials (a signed URL's signature changes
        # with every export of the table; the media does not).
        shown = redact_url(url, secret_params(source.fetch))
        identity: dict[str, Any] = {"clip_id": url_clip_id(shown, start, end), "media": url, "source_id": shown}
    elif _KEY_RE.fullmatch(key):
        identity = {"clip_id": keyed_clip_id(source.name, key), "media": None, "source_id": key}
    else:
        raise BadRow(f"bad id {key!r} (expected [A-Za-z0-9_-]+)")
    caption = row.get("caption")
    labels = dict.fromkeys(label_list(row.get("labels"), source.label_separator))
    return manifest.clip(
        row.line,
        **identity,
        start=start,
        end=end,
        labels=tuple(_label(text, ontology) for text in labels),
        captions=(Caption(text=caption, origin=FORMAT),) if caption else (),
        split=split_of(row.get("split"), SPLITS) if row.get("split") else source.split,
        licence=row.get("licence") or None,
        meta={"id": key} if url and key else {},
    )


def _check_url(url: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise BadRow(f"bad URL {url!r} (control characters)")
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise BadRow(f"bad URL {url!r} ({error})") from None
    scheme = parts.scheme.lower()
    if scheme in LOCAL_SCHEMES or (len(scheme) == 1 and url[1:3] in (":/", ":\\")):
        if scheme == "file" and parts.netloc not in ("", "localhost"):
            raise BadRow(f"bad file URL {url!r} (it names another host, {parts.netloc!r})")
        return  # a local path: the local backend confines it to its root
    if scheme not in URL_SCHEMES:
        raise BadRow(
            f"unsupported URL scheme {parts.scheme!r} in {url!r} (expected {', '.join(URL_SCHEMES)}, file or a path)"
        )
    if not parts.netloc:
        raise BadRow(f"bad URL {url!r} (expected scheme://host/path)")


def _label(text: str, ontology: Ontology) -> Label:
    if _MID_RE.match(text):
        if text not in ontology:
            raise BadRow(f"unknown AudioSet mid {text!r}")
        return Label(name=ontology.name(text), mid=text)
    return Label(name=text)


def _parquet_rows(path: Path, separator: str) -> Iterator[Row]:
    """The parquet file as text rows, so CSV and parquet tables share every check."""
    import pyarrow  # only parquet tables need it
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (pyarrow.ArrowException, OSError) as error:
        yield Row(1, [], error=f"unreadable parquet file: {error}")
        return
    yield Row(1, list(table.schema_arrow.names))
    line = 1
    try:
        for batch in table.iter_batches():
            for values in zip(*(column.to_pylist() for column in batch.columns)):
                line += 1
                yield Row(line, [_text(value, separator) for value in values])
    except (pyarrow.ArrowException, OSError) as error:
        yield Row(line + 1, [], error=f"unreadable parquet file: {error}")


def _text(value: Any, separator: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):  # a list column of labels
        return separator.join(str(item) for item in value)
    return str(value)
