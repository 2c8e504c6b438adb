"""Plumbing shared by the manifest readers: decoding, physical line numbers, rejections, `limit`.

Every reader turns a row into a clip or raises `BadRow` (or `records.InvalidId`) with the reason;
`Manifest.records` turns those into `RejectedRow`s so that one bad row never stops a source.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from pipelines.core.records import MAX_SECONDS, Clip, InvalidId, RejectedRow, youtube_clip_id
from pipelines.core.storage import location
from pipelines.ingest.manifests.base import Record, SourceBase

T = TypeVar("T")


class BadRow(ValueError):
    """A row that cannot become a clip; the message is the `RejectedRow` reason."""


@dataclass(frozen=True)
class Row:
    line: int  # 1-based physical line where the row starts (a quoted field may span lines)
    fields: list[str]
    columns: Mapping[str, int] = field(default_factory=dict)  # header name -> field index
    error: str = ""  # set when the row could not be decoded or parsed at all

    def __getitem__(self, column: str) -> str:
        return self.fields[self.columns[column]]

    def get(self, column: str) -> str:
        """The stripped field, or "" where the table has no such column."""
        index = self.columns.get(column)
        return "" if index is None else self.fields[index].strip()


HeaderCheck = Callable[[Row], Mapping[str, int]]


def open_text(path: Path, fallback_encoding: str | None = None) -> TextIO:
    """Open a manifest as text; `newline=""` lets the csv module see quoted line breaks.

    Without a fallback, bytes that are not UTF-8 survive as surrogates and the rows holding them
    are rejected one by one. With one, the whole file is decoded with it when it is not UTF-8
    (Clotho's metadata files are partly latin-1), so one odd byte does not lose a row.
    """
    if fallback_encoding is None:
        return location(path).open("r", encoding="utf-8-sig", errors="surrogateescape", newline="")
    data = location(path).read_bytes()  # a local path or an fsspec URL (s3://, gs://)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode(fallback_encoding)
    return io.StringIO(text, newline="")


@dataclass(frozen=True)
class Manifest:
    """One manifest file of a source: where its rows come from and where rejections point."""

    source: SourceBase
    path: Path
    format: str

    def rows(self, fallback_encoding: str | None = None, **csv_options: Any) -> Iterator[Row]:
        """Non-blank rows with the line each starts on. A csv error (a field over the csv module's
        limit, a NUL byte) is an error row for its line, and reading goes on after it."""
        with open_text(self.path, fallback_encoding) as stream:
            reader = csv.reader(stream, **csv_options)
            line = 1
            while True:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as error:
                    yield Row(line, [], error=f"unreadable CSV: {error}")
                    if reader.line_num < line:  # nothing consumed: the reader cannot go on
                        return
                    line = reader.line_num + 1
                    continue
                if any(value.strip() for value in fields):
                    yield Row(line, fields, error=_decode_error(fields))
                line = reader.line_num + 1

    def records(
        self,
        parse: Callable[[Row], T | None],
        *,
        header: HeaderCheck | None = None,
        width: int | None = None,
        rows: Iterable[Row] | None = None,
        **csv_options: Any,
    ) -> Iterator[T | RejectedRow]:
        """`parse(row)` for every row, a `RejectedRow` for each it refuses; None skips a row.

        With `header`, the first row is the header: `header(row)` maps column names to indices
        (or raises `BadRow`, which rejects the whole file at that line), and every row must have
        as many fields as the header. `width` is the field count of a headerless file.
        """
        rows = iter(rows if rows is not None else self.rows(**csv_options))
        columns: Mapping[str, int] = {}
        if header is not None:
            first = next(rows, None)
            if first is None:
                return
            try:
                if first.error:
                    raise BadRow(first.error)
                columns = header(first)
            except BadRow as error:
                yield self.reject(first.line, str(error))
                return
            width = len(first.fields)
        for row in rows:
            try:
                result = parse(_checked(row, columns, width))
            except (BadRow, InvalidId) as error:
                yield self.reject(row.line, str(error))
                continue
            except Exception as error:  # noqa: BLE001 - whatever one row does, the others still count
                yield self.reject(row.line, unreadable(error))
                continue
            if result is not None:
                yield result

    def grouped(
        self, groups: Iterable[list[T]], build: Callable[[list[T]], Clip], line: Callable[[T], int]
    ) -> Iterator[Record]:
        """`build(group)` for the rows that make one clip (AudioCaps captions, strong-label events);
        a group that cannot become a clip is rejected at its first line, the others go on."""
        for group in groups:
            try:
                yield build(group)
            except (BadRow, InvalidId) as error:
                yield self.reject(line(group[0]), str(error))
            except Exception as error:  # noqa: BLE001
                yield self.reject(line(group[0]), unreadable(error))

    def reject(self, line: int, reason: str) -> RejectedRow:
        return RejectedRow(self.source.name, str(self.path), line, reason)

    def clip(self, line: int, **fields: Any) -> Clip:
        return Clip(source=self.source.name, format=self.format, manifest=str(self.path), line=line, **fields)

    def youtube_clip(self, line: int, youtube_id: str, start: float, end: float, **fields: Any) -> Clip:
        """A segment of a YouTube video: the id rule of records.youtube_clip_id, media from the backend."""
        clip_id = youtube_clip_id(youtube_id, start)
        return self.clip(line, clip_id=clip_id, source_id=youtube_id, media=None, start=start, end=end, **fields)


def unreadable(error: Exception) -> str:
    """The reason for a row that broke a reader in a way no check foresaw."""
    return f"unreadable row ({type(error).__name__}: {str(error)[:200]})"


def _decode_error(fields: list[str]) -> str:
    for value in fields:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "not valid UTF-8 text"
    return ""


def _checked(row: Row, columns: Mapping[str, int], width: int | None) -> Row:
    if row.error:
        raise BadRow(row.error)
    if width is not None and len(row.fields) != width:
        raise BadRow(f"expected {width} columns, found {len(row.fields)}")
    return Row(row.line, row.fields, columns)


def require_columns(*required: str) -> HeaderCheck:
    """A header check: every `required` column must be present; extra columns are kept."""

    def check(row: Row) -> Mapping[str, int]:
        columns = header_index(row)
        missing = [name for name in required if name not in columns]
        if missing:
            raise BadRow(
                f"header lacks column(s) {', '.join(missing)} (found: {', '.join(columns)}); "
                f"is this the right file for this format?"
            )
        return columns

    return check


def header_index(row: Row) -> dict[str, int]:
    return {name.strip(): index for index, name in enumerate(row.fields)}


def take(records: Iterable[Record], limit: int | None) -> Iterator[Record]:
    """Stop after `limit` clips; rejected rows do not count."""
    clips = 0
    for record in records:
        yield record
        if isinstance(record, Clip):
            clips += 1
            if limit is not None and clips >= limit:
                return


def by_line(records: Iterable[Record]) -> list[Record]:
    """Grouping readers emit in manifest order, so `limit` cuts them where a streaming one would."""
    return sorted(records, key=lambda record: record.line)


# A plain ASCII decimal number: "30", "30.000", "-1.5", ".5", "1e-05" (what pandas writes for tiny
# floats). Python's float() also takes "1_0", "٣", " 3 " with odd spaces, "nan" and "infinity".
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def seconds(text: str, column: str) -> float:
    value = text.strip(" \t")
    try:
        number = float(value)
    except ValueError:
        raise BadRow(f"bad {column} {value!r} (expected a number of seconds)") from None
    if not _DECIMAL_RE.fullmatch(value) and math.isfinite(number):
        raise BadRow(f"bad {column} {value!r} (expected a plain ASCII decimal number of seconds, like 30.000)")
    if not math.isfinite(number):
        raise BadRow(f"bad {column} {value!r} (expected a finite number of seconds)")
    return number


def check_segment(start: float | None, end: float | None) -> None:
    if start is not None and start < 0:
        raise BadRow(f"negative start {start:g}")
    for name, value in (("start", start), ("end", end)):
        if value is not None and value > MAX_SECONDS:
            raise BadRow(f"{name} {value:g} s is past the longest media t2a reads ({MAX_SECONDS:g} s)")
    if end is not None and end <= (start or 0.0):
        raise BadRow(f"end {end:g} is not after start {start or 0.0:g}")


def label_list(text: str, separator: str = ",") -> list[str]:
    return [item.strip() for item in text.split(separator) if item.strip()]


def split_of(value: str, aliases: Mapping[str, str]) -> str:
    split = aliases.get(value.strip().lower())
    if split is None:
        valid = ", ".join(sorted(aliases))
        raise BadRow(f"unknown split {value.strip()!r} (expected one of: {valid})")
    return split


def split_from_name(path: Path, words: Sequence[tuple[str, str]]) -> str | None:
    """The split a public file name implies: the first (word, split) whose word is in the name."""
    name = path.name.lower()
    return next((split for word, split in words if word in name), None)
