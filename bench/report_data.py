"""The report's data half on synthetic corpora: time and peak memory of `pipelines.report.data.collect`
for N annotation rows, to show the time is linear and the memory flat in N.

The synthetic output folder holds what the report reads: a status parquet (N ok rows over 4 sources,
plus 5 % failures), annotations.parquet (N rows: 90 % ok, 8 % dropped, 2 % failed; 5 candidates per
clip from 4 experts with scores around 0.3; captions drawn from a 3 000-word vocabulary, 10 %
repeated verbatim) and one clip.json per clip with 1–3 AudioSet labels. `collect` runs in its own
process (as `t2a report` would), measured by bench/_measure.py (wall time, peak RSS sampled every 0.1 s).

    python bench/report_data.py --rows 10000 --rows 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import machine, run_measured  # noqa: E402

from pipelines.annotate.store import TABLE_SCHEMA  # noqa: E402
from pipelines.core.io import dumps  # noqa: E402
from pipelines.core.ontology import load_ontology  # noqa: E402
from pipelines.ingest.cache import ClipCache  # noqa: E402
from pipelines.ingest.status import SCHEMA as STATUS_SCHEMA  # noqa: E402

SOURCES = ("audioset", "fsd50k", "freesound", "vggsound")
EXPERTS = ("captioning", "captioning", "retrieval", "label_text", "human")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="annotation rows (repeatable); default 10000 and 100000"
    )
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--collect", type=Path, help=argparse.SUPPRESS)  # the measured child process
    args = parser.parse_args()
    if args.collect:
        return _collect(args.collect)
    results = []
    for n in args.rows or [10000, 100000]:
        output = args.work / f"report-{n}"
        if not (output / "annotations" / "annotations.parquet").is_file():
            build(output, n)
        run = run_measured([sys.executable, str(Path(__file__).resolve()), "--collect", str(output)])
        results.append({"rows": n, **json.loads(run.pop("stdout")), **run})
    print(json.dumps({"machine": machine(), "runs": results}, indent=1))


def _collect(output: Path) -> None:
    from pipelines.report.data import collect

    started = time.perf_counter()
    report = collect(output, "bench", "hash", 0.3)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "collect_s": round(seconds, 2),
                "listening_rows": len(report["listening"]),
                "report_kb": round(len(json.dumps(report)) / 1024, 1),
            }
        )
    )


def build(output: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocabulary = ["".join(rng.choice(list("abcdefghiklmnoprstuw"), rng.integers(3, 9))) for _ in range(3000)]
    ontology = load_ontology()
    names = [(mid, ontology.name(mid)) for mid in sorted(ontology._concepts)[:300]]
    ids = [f"clip{i:07d}" for i in range(n)]
    sources = [SOURCES[i % len(SOURCES)] for i in range(n)]
    _write_status(output, ids, sources, rng)
    rows, entries = [], ClipCache(output)
    for clip_id, source in zip(ids, sources):
        labels = [names[j] for j in rng.choice(len(names), rng.integers(1, 4), replace=False)]
        rows.append(_row(clip_id, rng, vocabulary, labels))
        folder = entries.entry_dir(clip_id)
        folder.mkdir(parents=True, exist_ok=True)
        entry = {
            "schema": "t2a.clip/1",
            "clip_id": clip_id,
            "source": source,
            "frames": [],
            "labels": [{"mid": mid, "name": name} for mid, name in labels],
        }
        (folder / "clip.json").write_text(dumps(entry), encoding="utf-8")
    (output / "annotations").mkdir(parents=True, exist_ok=True)
    schema = (
        TABLE_SCHEMA
        if "chance_score" in TABLE_SCHEMA.names
        else TABLE_SCHEMA.append(pa.field("chance_score", pa.float64()))
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(
        table, output / "annotations" / "annotations.parquet", row_group_size=8192
    )  # as AnnotationStore writes it


def _caption(rng: np.random.Generator, vocabulary: list[str]) -> str:
    return " ".join(vocabulary[j] for j in rng.integers(0, len(vocabulary), rng.integers(4, 14)))


def _row(clip_id: str, rng: np.random.Generator, vocabulary: list[str], labels: list[tuple[str, str]]) -> dict:
    label_text = ", ".join(name for _, name in labels)
    candidates = [
        {
            "text": label_text if e == "label_text" else _caption(rng, vocabulary),
            "expert": e,
            "clap_score": float(np.clip(rng.normal(0.3, 0.15), -1, 1)),
        }
        for e in EXPERTS
    ]
    best = max(candidates, key=lambda c: c["clap_score"])
    draw = rng.random()
    status = "ok" if draw < 0.9 else "dropped" if draw < 0.98 else "failed"
    caption = ("a common repeated caption" if rng.random() < 0.1 else best["text"]) if status == "ok" else None
    return {
        "clip_id": clip_id,
        "status": status,
        "reason": "selected" if status == "ok" else f"{status}: best score 0.1 < threshold 0.3",
        "selected_caption": caption,
        "selected_expert": best["expert"] if caption else None,
        "selected_score": best["clap_score"] if caption else None,
        "label_text": label_text,
        "label_score": candidates[3]["clap_score"],
        "mbtg_text": None,
        "candidates": candidates if status != "failed" else [],
        "event_count": len(labels),
        "windows": 1,
        "frames": 0,
        "clip_digest": "d",
        "settings_hash": "s",
        "chance_score": float(rng.normal(0.05, 0.1)),
        "provenance": json.dumps({"selection": {"threshold": 0.3}}),
    }


def _write_status(output: Path, ids: list[str], sources: list[str], rng: np.random.Generator) -> None:
    rows = [
        {
            "source": s,
            "manifest": f"{s}.csv",
            "line": i,
            "status": "ok",
            "clip_id": c,
            "source_id": c,
            "reason": "",
            "attempts": 1,
            "bytes": 0,
            "seconds": 0.0,
            "rows": 1,
        }
        for i, (c, s) in enumerate(zip(ids, sources))
    ]
    rows += [
        {
            "source": SOURCES[i % 4],
            "manifest": "x.csv",
            "line": i,
            "status": "failed_permanent",
            "clip_id": f"gone{i}",
            "source_id": f"gone{i}",
            "reason": f"HTTP 404 for https://example.org/{i}",
            "attempts": 1,
            "bytes": 0,
            "seconds": 0.0,
            "rows": 1,
        }
        for i in range(len(ids) // 20)
    ]
    (output / "status").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.Table.from_pylist(rows, schema=STATUS_SCHEMA), output / "status" / "20260101T000000000000Z.parquet"
    )
    (output / "status" / "20260101T000000000000Z.summary.json").write_text(
        json.dumps({"run_id": "20260101T000000000000Z"})
    )


if __name__ == "__main__":
    main()
