"""The quality store: one JSON per measured clip, and the table the shard stage and the report read.

    <output>/quality/clips/<bb>/<clip_id>.json   the clip's measures (schema t2a.quality/1), atomically
    <output>/quality/quality.parquet             every clip: measures, near-duplicate group, leakage
    <output>/quality/summary.json                the search's settings and counts

A clip's JSON records the clip.json digest and MEASURES_VERSION it was measured with; a re-run
measures only clips whose entry or the measures' definitions changed. The near-duplicate search
runs over the whole corpus on every run (it is cheap next to annotate; bench/qc_cost.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import atomic_path, write_json_atomic
from pipelines.core.records import check_clip_id
from pipelines.core.storage import is_remote, location
from pipelines.ingest.cache import bucket
from pipelines.qc.measures import MEASURES

SCHEMA = "t2a.quality/1"
FOLDER = "quality"
TABLE = "quality.parquet"
SUMMARY = "summary.json"

TABLE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),  # ok | failed
        ("reason", pa.string()),
        ("duration", pa.float64()),
        *((name, pa.float64()) for name in MEASURES),
        ("duplicate_of", pa.string()),  # the group's keeper (itself for the keeper); null: no near-duplicate
        ("duplicate_group_size", pa.int64()),
        ("leaked_of", pa.string()),  # the reference clip it duplicates; null: none
        ("leak_score", pa.float64()),
    ]
)


class QualityStore:
    def __init__(self, output: str | Path):
        self.root = location(output).absolute() / FOLDER  # a local folder or an object store (s3://…)
        self.clips = self.root / "clips"

    def path(self, clip_id: str) -> Path:
        check_clip_id(clip_id)
        return self.clips / bucket(clip_id) / f"{clip_id}.json"

    def read(self, clip_id: str) -> dict[str, Any] | None:
        try:
            row = json.loads(self.path(clip_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return row if isinstance(row, dict) and row.get("schema") == SCHEMA else None

    def write(self, row: dict[str, Any]) -> None:
        write_json_atomic(self.path(row["clip_id"]), {**row, "schema": SCHEMA})

    def write_table(self, rows: Iterable[dict[str, Any]], summary: dict[str, Any]) -> None:
        ordered = sorted(rows, key=lambda row: row["clip_id"])
        table = pa.Table.from_pylist([{k: r.get(k) for k in TABLE_SCHEMA.names} for r in ordered], schema=TABLE_SCHEMA)
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / TABLE) as temp:
            pq.write_table(table, temp, row_group_size=8192)
        write_json_atomic(self.root / SUMMARY, summary)


def read_quality(output: str | Path) -> dict[str, dict[str, Any]] | None:
    """clip id → its row of quality.parquet; None when `t2a qc` has not run."""
    path = QualityStore(output).root / TABLE
    if not path.is_file():
        return None
    if is_remote(path):
        with path.open("rb") as handle:
            return {row["clip_id"]: row for row in pq.read_table(handle).to_pylist()}
    return {row["clip_id"]: row for row in pq.read_table(path).to_pylist()}


def read_summary(output: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads((QualityStore(output).root / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
