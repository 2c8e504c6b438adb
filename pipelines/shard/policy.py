"""What the shard stage keeps out, and what it writes beside the shards about what it kept.

A cached clip stays out of the shards, with a recorded reason, when
  - its annotation failed or dropped it (an annotated corpus), or its clip.json does not read;
  - its licence id is not in the corpus's `licences.allow` (pipelines.core.licences);
  - it fails the corpus's `quality:` policy (pipelines.qc.policy, on `t2a qc`'s table);
  - a reviewer judged its caption wrong and nothing else qualifies (pipelines.shard.overrides).

    <root>/left_out.json        every clip kept out and why (schema t2a.left-out/1), sorted by id
    <root>/attribution.parquet  title, author, URL and licence of every clip in the shards
    <root>/ATTRIBUTION.md       the same for people, by licence: what CC-BY asks of a redistributor
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.core.io import atomic_path, write_json_atomic

LEFT_OUT = "left_out.json"
LEFT_OUT_SCHEMA = "t2a.left-out/1"
ATTRIBUTION_TABLE = "attribution.parquet"
ATTRIBUTION_MD = "ATTRIBUTION.md"
STAGES = ("clip", "annotation", "licence", "quality", "review")
ATTRIBUTION_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("title", pa.string()),
        ("author", pa.string()),
        ("url", pa.string()),
        ("licence", pa.string()),
        ("licence_raw", pa.string()),
    ]
)


def left_out(clip_id: str, stage: str, reason: str, **extra: Any) -> dict[str, Any]:
    assert stage in STAGES, stage
    return {"clip_id": clip_id, "stage": stage, "reason": reason, **extra}


def write_left_out(failures: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    ordered = sorted(failures, key=lambda f: f["clip_id"])
    payload = {
        "schema": LEFT_OUT_SCHEMA,
        "by_stage": dict(sorted(Counter(f["stage"] for f in ordered).items())),
        "clips": ordered,
    }
    write_json_atomic(root / LEFT_OUT, payload)
    return payload


def read_left_out(root: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads((root / LEFT_OUT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and payload.get("schema") == LEFT_OUT_SCHEMA else None


def write_attribution(rows: list[dict[str, Any]], stats: list[dict[str, Any]], root: Path) -> int:
    """The attribution of the clips the shards hold: planned ones less those whose sample failed."""
    failed = {f["clip_id"] for s in stats for f in s.get("failures", [])}
    kept = sorted((r for r in rows if r["clip_id"] not in failed), key=lambda r: r["clip_id"])
    table = pa.Table.from_pylist([{k: r.get(k) for k in ATTRIBUTION_SCHEMA.names} for r in kept], ATTRIBUTION_SCHEMA)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(root / ATTRIBUTION_TABLE) as temp:
        pq.write_table(table, temp)
    with atomic_path(root / ATTRIBUTION_MD) as temp:
        temp.write_text(_markdown(kept), encoding="utf-8")
    return len(kept)


def _markdown(rows: list[dict[str, Any]]) -> str:
    counts = Counter(r["licence"] for r in rows)
    lines = [
        "# Attribution",
        "",
        f"The {len(rows)} clips in these shards, by licence (ids: docs/configuration.md, `licences`). "
        "Each row names the work, its author, where it came from and its licence, as CC-BY asks.",
        "",
        *(f"- {licence}: {n} clip(s)" for licence, n in sorted(counts.items())),
    ]
    for licence in sorted(counts):
        lines += [
            "",
            f"## {licence}",
            "",
            "| clip | title | author | source | licence as given |",
            "|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["licence"] == licence):
            cells = [r["clip_id"], r.get("title"), r.get("author"), r.get("url"), r.get("licence_raw")]
            lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _md(value: Any) -> str:
    text = " ".join(str(value or "—").split())
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
