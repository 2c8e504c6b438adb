"""The annotation store: one folder per annotated clip, written whole or not at all, and the table.

    <output>/annotations/clips/<bb>/<clip_id>/annotation.json    the row (schema t2a.annotation/1), written last
    <output>/annotations/clips/<bb>/<clip_id>/clap_audio.npy     float32 [D]: CLAP audio embedding (windows pooled)
    <output>/annotations/clips/<bb>/<clip_id>/clip_image.npy     float32 [frames, D]: CLIP embedding of each frame
    <output>/annotations/clips/<bb>/<clip_id>/clip_image_mean.npy  float32 [D]: their mean, L2-normalised
    <output>/annotations/banks/<checksum>.npy|.json               the retrieval expert's caption bank, by checksum
    <output>/annotations/annotations.parquet                      every row of the last run, one per clip
    <output>/annotations/summary.json                             counts by status and selected expert

On an object store (`output: s3://…`) a folder is staged on local disk and uploaded with
annotation.json last (`pipelines.core.io.commit_folder`); a clip counts as annotated only once it is.

The layout mirrors the clip cache (`pipelines.ingest.cache`, same `<bb>` buckets) but lives beside it, so the
annotate stage never rewrites what the ingest stage produced (DVC keeps each stage's outputs apart).
A folder is built under `.staging/` and renamed into place; a re-annotated clip's old folder is moved
aside first. Rows whose `settings_hash` and `clip_digest` match the current run are skipped on a
re-run; failed rows are retried.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import atomic_path, commit_folder, remove_leftovers, write_json_atomic
from pipelines.core.npy import decode as decode_npy
from pipelines.core.npy import encode as encode_npy
from pipelines.core.records import check_clip_id
from pipelines.core.storage import ObjectPath, is_remote, local_staging, location
from pipelines.ingest.cache import CLIP_JSON, bucket

SCHEMA = "t2a.annotation/1"
ROW = "annotation.json"
TABLE = "annotations.parquet"
SUMMARY = "summary.json"
STATUSES = ("ok", "dropped", "failed")  # dropped: no caption qualified and the fallback is "drop"
ARRAYS = ("clap_audio", "clip_image", "clip_image_mean")

TABLE_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("selected_caption", pa.string()),
        ("selected_expert", pa.string()),
        ("selected_score", pa.float64()),
        ("label_text", pa.string()),
        ("label_score", pa.float64()),
        ("mbtg_text", pa.string()),
        ("chance_score", pa.float64()),  # another clip's caption scored against this clip's audio: the chance baseline
        (
            "candidates",
            pa.list_(pa.struct([("text", pa.string()), ("expert", pa.string()), ("clap_score", pa.float64())])),
        ),
        ("event_count", pa.int64()),
        ("windows", pa.int64()),
        ("frames", pa.int64()),
        ("clip_digest", pa.string()),
        ("settings_hash", pa.string()),
        ("provenance", pa.string()),
    ]
)


def clip_digest(entry_dir: Path) -> str:
    """What decides a clip's annotation besides the settings: its clip.json bytes (they hold every file's sha256)."""
    return hashlib.sha256((entry_dir / CLIP_JSON).read_bytes()).hexdigest()


class AnnotationStore:
    def __init__(self, output: str | Path | ObjectPath):
        self.root = location(output).absolute() / "annotations"
        self.clips = self.root / "clips"
        self.banks = self.root / "banks"
        self.staging_root = local_staging(self.clips)  # clips/.staging; a local temp folder for an object store

    def entry_dir(self, clip_id: str) -> Path:
        check_clip_id(clip_id)
        return self.clips / bucket(clip_id) / clip_id

    def read(self, clip_id: str) -> dict[str, Any] | None:
        path = self.entry_dir(clip_id) / ROW
        if not path.is_file():
            return None
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # unreadable: treated as not annotated, so the next run redoes it
        return row if isinstance(row, dict) and row.get("schema") == SCHEMA else None

    def is_done(self, clip_id: str, settings_hash: str, digest: str) -> dict[str, Any] | None:
        """The clip's row when it is current (same settings, same clip) and not a failure."""
        row = self.read(clip_id)
        if (
            row
            and row.get("settings_hash") == settings_hash
            and row.get("clip_digest") == digest
            and row["status"] != "failed"
        ):
            return row
        return None

    def arrays(self, clip_id: str, row: dict[str, Any]) -> dict[str, np.ndarray]:
        """The row's embeddings, each checked against the sha256 the row records."""
        folder = self.entry_dir(clip_id)
        arrays = {}
        for name, info in row.get("embeddings", {}).items():
            data = (folder / info["file"]).read_bytes()
            if hashlib.sha256(data).hexdigest() != info["sha256"]:
                raise ValueError(f"{folder / info['file']} does not match the sha256 in {ROW}")
            arrays[name] = decode_npy(data)
        return arrays

    def write(self, row: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        """Stage the arrays and the row (last), then swap the folder into place."""
        clip_id = row["clip_id"]
        check_clip_id(clip_id)
        staging = self.staging_root / f"{clip_id}.{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        embeddings = {}
        for name, array in sorted(arrays.items()):
            data = encode_npy(np.asarray(array, dtype=np.float32))
            (staging / f"{name}.npy").write_bytes(data)
            embeddings[name] = {
                "file": f"{name}.npy",
                "shape": list(array.shape),
                "dtype": "float32",
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        write_json_atomic(staging / ROW, {**row, "schema": SCHEMA, "embeddings": embeddings})
        # Re-annotated: the old folder is moved aside first; a retried bundle's twin that got there
        # first is as good as ours.
        commit_folder(staging, self.entry_dir(clip_id), marker=ROW, replace=True)

    def clean_staging(self) -> int:
        return remove_leftovers(self.staging_root)

    def write_table(self, clip_ids: Iterable[str]) -> dict[str, Any]:
        """annotations.parquet with the current row of each clip (sorted by id), and summary.json."""
        rows = [row for row in (self.read(c) for c in sorted(set(clip_ids))) if row]
        table = pa.Table.from_pylist([_table_row(row) for row in rows], schema=TABLE_SCHEMA)
        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.root / TABLE) as temp:
            pq.write_table(table, temp, row_group_size=8192)  # readers stream it batch by batch (t2a report)
        summary = summarize(rows)
        write_json_atomic(self.root / SUMMARY, summary)
        return summary


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    flat = {name: row.get(name) for name in TABLE_SCHEMA.names}
    flat["candidates"] = [{k: c.get(k) for k in ("text", "expert", "clap_score")} for c in row.get("candidates", [])]
    flat["provenance"] = json.dumps(row.get("provenance", {}), sort_keys=True)
    return flat


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
    experts: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for row in rows:
        if row.get("selected_expert"):
            experts[row["selected_expert"]] = experts.get(row["selected_expert"], 0) + 1
        if row["status"] != "ok" or str(row.get("reason") or "").startswith("fallback"):
            key = str(row.get("reason"))[:160]
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "clips": len(rows),
        "statuses": statuses,
        "selected_experts": dict(sorted(experts.items())),
        "reasons": dict(sorted(reasons.items(), key=lambda item: -item[1])),
    }


def read_table(output: str | Path | ObjectPath) -> pa.Table:
    path = AnnotationStore(output).root / TABLE
    if is_remote(path):
        with path.open("rb") as handle:
            return pq.read_table(handle)
    return pq.read_table(path)
