"""The report's provenance block: what built the corpus, read from what each stage saved beside its outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pipelines.ingest.job import read_summary

MODELS = ("clap", "clip", "captioning")
SELECTION = ("threshold", "above_label_text", "fallback", "keep_human")


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def annotate_provenance(parquet: pq.ParquetFile, batch_rows: int) -> dict[str, Any]:
    """The provenance every annotation row records (models, selection, prompts, seeds, tools): the
    first row that has one, preferring an ok row (a failure's row lacks the bank checksum)."""
    fallback: dict[str, Any] = {}
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=["status", "provenance"]):
        for status, text in zip(batch.column("status").to_pylist(), batch.column("provenance").to_pylist()):
            payload = json.loads(text) if text else {}
            if payload and status == "ok":
                return payload
            fallback = fallback or payload
    return fallback


def shards_index(output: Path) -> dict[str, Any] | None:
    return read_json(output / "shards" / "index.json")


def provenance(
    output: Path, config_hash: str, run_id: str | None, manifests: list[str], annotate: dict[str, Any], threshold: float
) -> dict[str, Any]:
    configs = [read_json(output / f"{stage}.config.json") or {} for stage in ("ingest", "annotate")]
    summary = read_summary(output, run_id) if run_id else {}
    config_file = next((c["config_file"] for c in configs if c.get("config_file")), summary.get("config_file"))
    selection = annotate.get("selection") or {}
    shards = shards_index(output)
    return {
        "config_hash": config_hash,
        "config_file": config_file,
        "ingest": {
            "run_id": run_id,
            "started": summary.get("started"),
            "tools": summary.get("tools") or {},
            "manifests": manifests,
        },
        "annotate": {
            "models": {name: annotate[name] for name in MODELS if annotate.get(name)},
            "selection": {key: selection.get(key, threshold if key == "threshold" else None) for key in SELECTION},
            **{key: annotate.get(key) or {} for key in ("prompts", "seeds", "retrieval", "tools")},
            "bank_checksum": annotate.get("bank_checksum"),
        },
        "shards": {"profiles": shards.get("profiles", []), "config_hash": shards.get("config_hash")}
        if shards
        else None,
        "augmentation": augmentation(),
    }


def augmentation() -> dict[str, Any]:
    """The online augmentations the trainer's loader applies to this corpus (pipelines/prompts):
    dynamic reprogramming (Make-An-Audio App. F), mixup (AudioLDM §3.3), curriculum (Diffsound Alg. 3)."""
    from pipelines.annotate.prompts.reprogram import ADJECTIVES, NOUNS, QUANTIFIERS, TEMPLATES, VERBS

    return {
        "reprogramming": {
            "templates": len(TEMPLATES),
            "events_per_clip": [0, 1, 2],
            "verbs": list(VERBS),
            "adjectives": list(ADJECTIVES),
            "nouns": list(NOUNS),
            "quantifiers": list(QUANTIFIERS),
            "event_database": "clips with event_count == 1 (composition.single_event)",
        },
        "mixup": {"lambda": "Beta(5, 5)"},
        "curriculum": {"single_event_epochs": "n", "multi_event_epochs": "2n"},
    }


def clean(value: Any) -> Any:
    """JSON-ready: keys sorted, floats rounded to 6 decimals, NaN and infinities as null, numpy as Python."""
    if isinstance(value, dict):
        return {str(key): clean(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6) + 0.0 if math.isfinite(value) else None  # + 0.0: no "-0.0"
    return value
