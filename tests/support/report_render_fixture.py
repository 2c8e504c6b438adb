"""A hand-built report.json (schema t2a.report/1) and the tiny clip cache its listening rows point at.

The values are set by hand, not computed by pipelines.report.data, so the rendering tests do
not depend on the collecting half; `stats()` builds STATS the way the schema describes them.
Names and captions carry markup on purpose: the page must escape them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from pipelines.report.text import ARTEFACT_KINDS

XSS = "<script>alert(1)</script>"
SOURCES = ("alpha", 'beta <&> "q"')  # a source name with markup: escaped, and a safe slug
SCORE_EDGES = [round(-1 + i * 0.05, 6) for i in range(41)]
EXPERTS = ("captioning", "human", "label_text", "retrieval", "source_text")
TABLE5 = {"label_text": 0.1234, "captioning": 0.2345, "retrieval": None, "selected": 0.3456}


def distillation(clips: int) -> dict:
    """report.distillation of a scope (pipelines/report/distillation.py), set by hand."""
    group = lambda n, wins: {  # noqa: E731
        "clips": n,
        "wins": {"captioning": wins, "retrieval": n - wins},
        "win_rate": {"captioning": round(wins / n, 6), "retrieval": round((n - wins) / n, 6)},
        "selected": {"captioning": wins, "retrieval": n - wins},
        "candidates": {"captioning": 2 * n, "retrieval": 3 * n},
        "mean": {"captioning": 0.3111, "retrieval": 0.4222},
        "table5": {"label_text": 0.1234, "captioning": 0.3333, "retrieval": 0.4444, "both_select": 0.5555},
    }
    return {
        "retrieval": {**group(clips, 3), "by_judge": {"judge": group(clips - 2, 1), "not_judge": group(2, 2)}},
        "keep_human": {
            "clips": 4,
            "human": stats([0.2, 0.3, 0.4, 0.5]),
            "best_other": stats([0.3, 0.3, 0.3, 0.6]),
            "margin": stats([-0.1, 0.0, 0.1, -0.1], [round(-2 + i * 0.1, 6) for i in range(41)]),
            "replaced": 2,
            "replaced_rate": 0.5,
            "replaced_by": {"captioning": 1, "label_text": 1},
        },
    }


def stats(values, edges=SCORE_EDGES) -> dict:
    v = np.asarray(values, dtype=float)
    counts = np.histogram(np.clip(v, edges[0], edges[-1]), bins=edges)[0] if v.size else np.zeros(len(edges) - 1)
    r = (lambda x: round(float(x), 6)) if v.size else (lambda x: None)
    return {
        "n": int(v.size),
        "mean": r(v.mean()) if v.size else None,
        "std": r(v.std()) if v.size else None,
        "min": r(v.min()) if v.size else None,
        "max": r(v.max()) if v.size else None,
        **{f"p{q}": (r(np.percentile(v, q)) if v.size else None) for q in (10, 50, 90)},
        "histogram": {"edges": list(edges), "counts": [int(c) for c in counts]},
    }


def section(seed: int, clips: int) -> dict:
    rng = np.random.default_rng(seed)
    scores = {e: rng.uniform(-0.2, 0.7, clips).round(6) for e in EXPERTS}
    selected = rng.uniform(0.2, 0.8, clips).round(6)
    thresholds = [round(-1 + i * 0.05, 6) for i in range(41)]
    length_edges = [float(x) for x in range(0, 41)]
    return {
        "availability": {
            "rows": clips + 3,
            "by_status": {
                "ok": clips - 1,
                "cached": 1,
                "duplicate": 1,
                "excluded": 0,
                "rejected_row": 1,
                "failed_permanent": 1,
                "failed_retryable": 0,
            },
            "top_reasons": [{"status": "failed_permanent", "reason": "video unavailable", "rows": 1}],
        },
        "annotations": {
            "clips": clips,
            "by_status": {"ok": clips - 2, "dropped": 1, "failed": 1},
            "fallback": 1,
            "top_reasons": [{"status": "failed", "reason": "decode error", "rows": 1}],
        },
        "scores": {
            "by_expert": {e: stats(v) for e, v in scores.items()},
            "selected": stats(selected),
            "human": stats(scores["human"]),
            "chance": stats(scores["retrieval"] - 0.3),
            "margin_over_label": stats(selected - scores["label_text"]),
            "margin_over_chance": stats([]),
            "acceptance": {
                "thresholds": thresholds,
                "rate": [round(min(1.0, max(0.0, 0.5 - t)), 6) for t in thresholds],
                "configured": 0.25,
            },
            "win_rate": {"captioning": 0.5, "retrieval": 0.25, "label_text": 0.25},
            "table5": dict(TABLE5),
        },
        "labels": {
            "clips_with_labels": clips,
            "mentions_label": 3,
            "mention_rate": round(3 / clips, 6),
            "names_unlabelled_class": 1,
            "unlabelled_class_rate": round(1 / clips, 6),
            "examples": [
                {"clip_id": "yt_abc-000", "caption": f"a dog barks {XSS}", "labels": ["Cat"], "named": ["Dog"]}
            ],
        },
        "text": {
            "captions": clips,
            "length_words": stats(rng.integers(3, 20, clips), length_edges),
            "vocabulary": 77,
            "distinct_1": 0.61,
            "distinct_2": 0.83,
            "exact_duplicate_rate": 0.05,
            "near_duplicate_rate": 0.1,
            "most_repeated": [{"text": "a man speaks", "count": 3}],
        },
        "artefacts": {
            k: {
                "count": 1 if k == "mask_token" else 0,
                "rate": round(1 / clips, 6) if k == "mask_token" else 0.0,
                "examples": [{"clip_id": "fs_123", "caption": "a [MASK] rings"}] if k == "mask_token" else [],
            }
            for k in ARTEFACT_KINDS
        },
        "composition": {"single_event": clips - 4, "multi_event": 3, "no_labels": 1},
        "distillation": distillation(clips),
    }


def write_clip(cache: Path, clip_id: str, frames: int, seconds: float = 1.5, seed: int = 0) -> dict:
    """A clip-cache entry: mono 48 kHz FLAC (a chirp in noise) and `frames` 224x224 JPEGs."""
    entry = cache / "clips" / clip_id[:2] / clip_id
    entry.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(48_000 * seconds)) / 48_000
    rng = np.random.default_rng(seed)
    audio = 0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t) + 0.02 * rng.standard_normal(t.size)
    sf.write(entry / "audio.flac", audio.astype(np.float32), 48_000, format="FLAC")
    paths = []
    for i in range(frames):
        ramp = np.linspace(0, 255, 224, dtype=np.uint8)
        rgb = np.stack(
            [np.tile(ramp, (224, 1)), np.tile(ramp[:, None], (1, 224)), np.full((224, 224), 40 * i, np.uint8)], -1
        )
        Image.fromarray(rgb).save(entry / f"frame_{i:02d}.jpg", quality=85)
        paths.append(str(entry / f"frame_{i:02d}.jpg"))
    return {"audio": str(entry / "audio.flac"), "frames": paths}


def listening_row(clip_id: str, source: str, files: dict, caption: str, flags: list[str]) -> dict:
    candidates = [
        {"text": caption, "expert": "captioning", "clap_score": 0.512345},
        {"text": "a sound of cat", "expert": "label_text", "clap_score": 0.1},
        {"text": caption, "expert": "retrieval", "clap_score": 0.2},  # same text, other expert: not highlighted
    ]
    return {
        "clip_id": clip_id,
        "source": source,
        "stratum": f"{source}/q0",
        "selected_caption": caption,
        "selected_expert": "captioning",
        "selected_score": 0.512345,
        "label_text": "a sound of cat",
        "labels": ["Cat", "Meow"],
        "candidates": candidates,
        "event_count": 2,
        "flags": flags,
        **files,
    }


def build_report(root: Path, missing_audio: bool = False) -> dict:
    """The report dict; its clip cache is written under root/cache (absolute paths in the rows)."""
    cache = root / "cache"
    rows = [
        listening_row(
            "yt_abc-000", SOURCES[0], write_clip(cache, "yt_abc-000", 2, seed=1), f"a cat {XSS} meows", ["lowest_score"]
        ),
        listening_row(
            "fs_123",
            SOURCES[1],
            write_clip(cache, "fs_123", 0, seconds=0.7, seed=2),
            "a bell & a [MASK] ring",
            ["longest", "duplicated"],
        ),
    ]
    if missing_audio:
        rows.append(
            listening_row(
                "gone_1", SOURCES[0], {"audio": str(cache / "nowhere" / "audio.flac"), "frames": []}, "lost clip", []
            )
        )
    sources = {name: section(i + 1, 12 + i) for i, name in enumerate(SOURCES)}
    provenance = {
        "config_hash": "c0ffee",
        "config_file": "datasets.yaml",
        "ingest": {
            "run_id": "run-1",
            "started": "2025-01-01T00:00:00Z",
            "tools": {"ffmpeg": "6.0"},
            "manifests": ["m.csv"],
        },
        "annotate": {
            "models": {"clap": {"model": "clap-tiny", "sha256": "ab" * 32}},
            "bank_checksum": None,
            "selection": {"threshold": 0.25, "above_label_text": True, "fallback": "label_text"},
            "prompts": {"reprogramming": {"n": [0, 1, 2]}},
            "seeds": {"selection": 7},
            "retrieval": {},
            "tools": {},
        },
        "shards": None,
    }
    return {
        "schema": "t2a.report/1",
        "corpus": "demo <b>",
        "generated_from": {"annotations_rows": 25, "status_run": "run-1", "shards_index": False},
        "provenance": provenance,
        "totals": section(0, 25),
        "sources": sources,
        "listening": rows,
    }
