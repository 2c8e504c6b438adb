"""The status table: one row per manifest record and outcome, a parquet file and a summary per run.

    <output>/status/<run_id>.parquet         every StatusRow of the run
    <output>/status/<run_id>.summary.json    counts by source × status × reason, run provenance (last)
    <output>/status/.<run_id>.parts/         the table's parts while the run writes them

On an object store (`output: s3://…`, `pipelines.core.storage`) the same files are written through
fsspec: each part and the joined table are built on local disk and uploaded as one object, the
summary last; the joining step finds its parts by their names (not by listing the store).

Every run covers every manifest row (finished clips appear as `cached`), so the newest run alone
describes the whole corpus. Failure reasons carry numbers and names; `reason_key` folds those out
so the summary counts kinds of failure, not individual messages.
"""

from __future__ import annotations

import functools
import re
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import atomic_path, read_parquet, write_json_atomic
from pipelines.core.records import STATUSES, StatusRow
from pipelines.core.redact import redact_text
from pipelines.core.storage import ObjectPath, is_remote, location

SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("manifest", pa.string()),
        ("line", pa.int64()),
        ("status", pa.string()),
        ("clip_id", pa.string()),
        ("source_id", pa.string()),
        ("reason", pa.string()),
        ("attempts", pa.int64()),
        ("bytes", pa.int64()),
        ("seconds", pa.float64()),
        ("rows", pa.int64()),
    ]
)
_FIELDS = tuple(f.name for f in fields(StatusRow))
FAILED = ("rejected_row", "failed_permanent", "failed_retryable")


def reason_key(reason: str, *ids: str | None) -> str:
    """A failure message with its particulars (ids, quoted values, numbers, URLs, paths) folded out."""
    for value in filter(None, ids):
        reason = reason.replace(value, "<id>")
    return _folded(reason)


@functools.lru_cache(maxsize=65_536)
def _folded(reason: str) -> str:
    """Most failures of a run share a few messages once their ids are out: folded once each."""
    text = re.sub(r"(?:https?|s3|gs)://\S+", "<url>", reason)
    text = re.sub(r"(?<![A-Za-z])/[^\s:;,]+", "<path>", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\d+(?:\.\d+)?", "N", text)
    text = re.sub(r"0x[0-9a-f]+|@ \S+", "", text)
    return re.sub(r"\s+", " ", text).strip()[:160]


def status_dict(row: StatusRow) -> dict[str, Any]:
    """A row as written: the worker redacted its texts with the source's own list; the defaults
    once more here, for every row, whoever made it."""
    record = {name: getattr(row, name) for name in _FIELDS}  # flat: no deep copy (dataclasses.asdict)
    for key in ("reason", "source_id", "manifest"):
        if record[key]:
            record[key] = redact_text(record[key])
    return record


def status_path(output: Path | ObjectPath, run_id: str) -> Path | ObjectPath:
    return output / "status" / f"{run_id}.parquet"


def summary_path(output: Path | ObjectPath, run_id: str) -> Path | ObjectPath:
    return output / "status" / f"{run_id}.summary.json"


def latest_run(output: Path | ObjectPath) -> str | None:
    runs = sorted(p.name.removesuffix(".summary.json") for p in (output / "status").glob("*.summary.json"))
    return runs[-1] if runs else None


class CountStatuses(beam.CombineFn):
    """(source, status, reason key) → manifest rows; small however large the corpus."""

    def create_accumulator(self) -> Counter:
        return Counter()

    def add_input(self, counts: Counter, row: StatusRow) -> Counter:
        reason = reason_key(row.reason, row.clip_id, row.source_id) if row.status != "ok" else ""
        counts[(row.source, row.status, reason)] += row.rows
        return counts

    def merge_accumulators(self, accumulators: Iterable[Counter]) -> Counter:
        total: Counter = Counter()
        for counts in accumulators:
            total.update(counts)
        return total

    def extract_output(self, counts: Counter) -> list[tuple[str, str, str, int]]:
        return sorted((source, status, reason, n) for (source, status, reason), n in counts.items())


def build_summary(counts: list[tuple[str, str, str, int]], run: dict[str, Any]) -> dict[str, Any]:
    """Counts by source and status, the reasons, and `warnings`: a configured source that gave no
    row at all (an empty manifest, a search with no results) is said here, not left out silently."""
    by_source: dict[str, dict[str, int]] = {}
    totals = {status: 0 for status in STATUSES}
    for source, status, _, n in counts:
        by_source.setdefault(source, {s: 0 for s in STATUSES})[status] += n
        totals[status] += n
    reasons = [
        {"source": source, "status": status, "reason": reason, "rows": n}
        for source, status, reason, n in counts
        if status not in ("ok", "cached")
    ]
    warnings = list(run.get("warnings", []))  # the job's own (a different ffmpeg), then these
    for source in run.get("sources", []):
        if source not in by_source:
            by_source[source] = {s: 0 for s in STATUSES}
            warnings.append(f"source {source}: no rows read (an empty manifest?)")
    return {
        **run,
        "totals": totals,
        "rows": sum(totals.values()),
        "by_source": dict(sorted(by_source.items())),
        "reasons": reasons,
        "warnings": warnings,
    }


def status_table(rows: list[StatusRow]) -> pa.Table:
    return pa.Table.from_pylist([status_dict(row) for row in rows], schema=SCHEMA)


def parts_folder(output: Path | ObjectPath, run_id: str) -> Path | ObjectPath:
    return output / "status" / f".{run_id}.parts"


class WriteStatusPart(beam.DoFn):
    """A list of StatusRows → one part file of the run's status table (atomically, hidden) and
    (None, (path, counts)) for `FinishStatus`. On an object store the part is built locally and
    uploaded as one object."""

    def __init__(self, folder: Path | ObjectPath):
        self.folder = folder

    def process(self, rows: list[StatusRow]) -> Iterator[tuple[None, tuple[str, Counter]]]:
        counts = CountStatuses()
        accumulator = counts.create_accumulator()
        if not rows:  # `WriteStatus`'s own empty list: no file, only a part for the last step to join
            yield None, ("", accumulator)
            return
        for row in rows:
            accumulator = counts.add_input(accumulator, row)
        path = self.folder / f"{uuid.uuid4().hex}.parquet"
        with atomic_path(path) as temp:
            pq.write_table(status_table(rows), temp)
        yield None, (str(path), accumulator)


def finish_status(
    item: tuple[None, Iterable[tuple[str, Counter]]], output: Path | ObjectPath, run: dict[str, Any]
) -> dict:
    """All parts → `<run_id>.parquet` (streamed part by part, in a stable order) and the summary,
    written last: a run whose summary exists has its whole status table. The parts are the ones
    the writers reported (a retried bundle's orphan part is never read), then removed."""
    parts = sorted(item[1])
    counts = CountStatuses()
    files = [path for path, _ in parts if path]
    if not files:  # no manifest row at all
        return write_empty_status(output, run)
    table_path = status_path(output, run["run_id"])
    with atomic_path(table_path) as temp, pq.ParquetWriter(temp, SCHEMA) as writer:
        for path in files:
            writer.write_table(read_parquet(location(path), schema=SCHEMA))
    summary = _write_summary(counts.extract_output(counts.merge_accumulators(c for _, c in parts)), output, run)
    parts_dir = parts_folder(output, run["run_id"])
    if is_remote(parts_dir):
        parts_dir.rmtree()
    else:
        shutil.rmtree(parts_dir, ignore_errors=True)
    return summary


def write_empty_status(output: Path | ObjectPath, run: dict[str, Any]) -> dict[str, Any]:
    """The status of a run that read no manifest row at all (no batch reached the writer)."""
    with atomic_path(status_path(output, run["run_id"])) as temp:
        pq.write_table(SCHEMA.empty_table(), temp)
    return _write_summary([], output, run)


class WriteStatus(beam.PTransform):
    """Lists of StatusRows → `<run_id>.parquet` and `<run_id>.summary.json`: a part file per list,
    then one step that joins them and writes the summary. No Beam file sink (whose finalization
    reads the written files through side inputs) and no global combine with a default: the last
    step depends on everything else through its main input, so a runner that computes only the
    graph's last leaf (Beam's DaskRunner) still computes all of it, once. One empty list joins the
    batches, so the last step runs (and writes the summary, on the workers) even when no manifest
    row was read: a launcher that cannot see the summary is then sure the workers wrote elsewhere."""

    def __init__(self, output: Path | ObjectPath, run: dict[str, Any]):
        super().__init__()
        self.output = location(output)
        self.run = run

    def expand(self, batches):
        write = WriteStatusPart(parts_folder(self.output, self.run["run_id"]))
        parts = batches | "WriteStatusParts" >> beam.ParDo(write)
        no_rows = batches.pipeline | "NoRows" >> beam.Create([[]]) | "NoRowsPart" >> beam.ParDo(write)
        return (
            (parts, no_rows)  # flattened after the parts are written: only (path, counts) pass through it
            | "WithNoRows" >> beam.Flatten()
            | "GatherStatusParts" >> beam.GroupByKey()
            | "FinishStatus" >> beam.Map(finish_status, self.output, self.run)
        )


def _write_summary(
    counts: list[tuple[str, str, str, int]], output: Path | ObjectPath, run: dict[str, Any]
) -> dict[str, Any]:
    summary = build_summary(counts, run)
    write_json_atomic(summary_path(output, run["run_id"]), summary)
    return summary
