"""A small corpus output folder for the report's tests, written by hand so every figure can be
computed by hand (tests/pipelines/report/test_data.py does).

    build_report_fixture(output, chance=True) -> Path    # the output folder, ready for report.data.collect

Two sources. alpha: a1, a2 (ok), a3 (ok, label-text fallback), a4 (dropped), plus a failed fetch, a
rejected manifest row and a duplicate row in the status. beta: b1 (same caption as a1), b2 (a
near-duplicate of it), b3 (placeholder artefacts, no labels), b7, b8, b9 (more artefacts: a
probability and "labels"; an apology, [MASK] and <slot>; an empty caption), b6 (annotation failed),
plus an excluded and a retryable-failed row. a1 and b1 have audio and frames in the clip cache; the others
only clip.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from records import clip_record
from shard_samples import flac_bytes, jpeg_bytes

from pipelines.annotate.store import TABLE_SCHEMA
from pipelines.core.io import write_json_atomic
from pipelines.ingest.cache import ClipCache
from pipelines.ingest.status import SCHEMA as STATUS_SCHEMA

RUN_ID = "20260101T000000000000Z"
CONFIG_HASH = "c0ffee"
THRESHOLD = 0.3
DOG, BARK, CAT, RAIN, SPEECH, MUSIC = "/m/0bt9lr", "/m/05tny_", "/m/01yrx", "/m/06mb1", "/m/09x0r", "/m/04rlf"
PROVENANCE = {
    "clap": {"model": "tiny-clap", "sha256": "aa"},
    "captioning": {"model": "tiny-captioner", "sha256": "bb"},
    "selection": {"threshold": THRESHOLD, "above_label_text": False, "fallback": "label_text", "keep_human": True},
    "prompts": {"mask_token": "[MASK]", "mask_counts": [1, 2]},
    "seeds": {"mbtg": "sha256(clip_id)", "captioning": None},
    "retrieval": {"k": 2},
    "tools": {"t2a": "0.1"},
    "bank_checksum": "bank1",
}

# (clip_id, source, status, reason, manifest rows): the latest ingest run
STATUS = [
    ("a1", "alpha", "ok", "", 1),
    ("a2", "alpha", "ok", "", 1),
    ("a3", "alpha", "cached", "", 1),
    ("a4", "alpha", "ok", "", 1),
    ("a5", "alpha", "failed_permanent", "HTTP 404 for https://example.org/a5.wav", 1),
    (None, "alpha", "rejected_row", "bad start time 'x' on line 7", 1),
    ("a1", "alpha", "duplicate", "duplicate of a1 kept from alpha line 1", 2),
    ("b1", "beta", "ok", "", 1),
    ("b2", "beta", "ok", "", 1),
    ("b3", "beta", "cached", "", 1),
    ("b6", "beta", "ok", "", 1),
    ("b4", "beta", "excluded", "in exclusion list bad.txt", 1),
    ("b5", "beta", "failed_retryable", "timeout after 30 s", 1),
    ("b7", "beta", "ok", "", 1),
    ("b8", "beta", "ok", "", 1),
    ("b9", "beta", "ok", "", 1),
]

LABELS = {
    "a1": [(DOG, "Dog")],
    "a2": [(RAIN, "Rain")],
    "a3": [(SPEECH, "Speech"), (MUSIC, "Music")],
    "a4": [],
    "b1": [(CAT, "Cat")],
    "b2": [(DOG, "Dog")],
    "b3": [],
    "b6": [],
    "b7": [(MUSIC, "Music")],
    "b8": [],
    "b9": [],
}
SOURCES = {clip: ("alpha" if clip.startswith("a") else "beta") for clip in LABELS}
WITH_MEDIA = ("a1", "b1")


def _cand(text: str, expert: str, score: float | None) -> dict:
    return {"text": text, "expert": expert, "clap_score": score}


def _row(
    clip_id: str,
    status: str,
    reason: str,
    caption: str | None,
    expert: str | None,
    score: float | None,
    label: tuple[str | None, float | None],
    chance: float | None,
    candidates: list[dict],
    events: int | None,
) -> dict:
    return {
        "clip_id": clip_id,
        "status": status,
        "reason": reason,
        "selected_caption": caption,
        "selected_expert": expert,
        "selected_score": score,
        "label_text": label[0],
        "label_score": label[1],
        "mbtg_text": None,
        "candidates": candidates,
        "event_count": events,
        "windows": 1,
        "frames": 2 if clip_id in WITH_MEDIA else 0,
        "clip_digest": "d",
        "settings_hash": "s",
        "chance_score": chance,
        "provenance": json.dumps({} if status == "failed" else PROVENANCE),
    }


ANNOTATIONS = [
    _row(
        "a1",
        "ok",
        "selected",
        "A dog barks loudly.",
        "captioning",
        0.5,
        ("Dog", 0.3),
        0.1,
        [
            _cand("A dog barks loudly.", "captioning", 0.5),
            _cand("a dog is barking", "retrieval", 0.4),
            _cand("Dog", "label_text", 0.3),
        ],
        1,
    ),
    _row(
        "a2",
        "ok",
        "selected",
        "Rain falls on a roof",
        "human",
        0.6,
        ("Rain", 0.2),
        0.0,
        [
            _cand("Rain falls on a roof", "human", 0.6),
            _cand("The sound of 0.87 probability", "captioning", 0.1),
            _cand("Rain", "label_text", 0.2),
        ],
        1,
    ),
    _row(
        "a3",
        "ok",
        "fallback:label_text: best score 0.05 < threshold 0.3",
        "Speech and music",
        "label_text",
        0.05,
        ("Speech and music", 0.05),
        None,
        [_cand("Sorry, I cannot describe this", "captioning", -0.1), _cand("Speech and music", "label_text", 0.05)],
        2,
    ),
    _row(
        "a4",
        "dropped",
        "dropped: best score 0.1 < threshold 0.3; no label_text fallback (the clip has no labels)",
        None,
        None,
        None,
        (None, None),
        None,
        [_cand("a [MASK] sound", "captioning", 0.1)],
        0,
    ),
    _row(
        "b1",
        "ok",
        "selected",
        "A dog barks loudly.",
        "captioning",
        0.45,
        ("Cat", 0.25),
        0.2,
        [_cand("A dog barks loudly.", "captioning", 0.45), _cand("Cat", "label_text", 0.25)],
        1,
    ),
    _row(
        "b2",
        "ok",
        "selected",
        "dog barks loudly!",
        "retrieval",
        0.35,
        ("Dog", 0.3),
        0.3,
        [_cand("dog barks loudly!", "retrieval", 0.35), _cand("Dog", "label_text", 0.3)],
        1,
    ),
    _row(
        "b3",
        "ok",
        "selected",
        "X & {noun} at 5 pm",
        "captioning",
        0.31,
        (None, None),
        None,
        [_cand("X & {noun} at 5 pm", "captioning", 0.31)],
        0,
    ),
    _row(
        "b7",
        "ok",
        "selected",
        "The 0.87 probability of labels",
        "captioning",
        0.32,
        ("Music", 0.1),
        0.05,
        [_cand("The 0.87 probability of labels", "captioning", 0.32), _cand("Music", "label_text", 0.1)],
        1,
    ),
    _row(
        "b8",
        "ok",
        "selected",
        "Sorry, a [MASK] <sound>",
        "captioning",
        0.33,
        (None, None),
        None,
        [_cand("Sorry, a [MASK] <sound>", "captioning", 0.33)],
        0,
    ),
    _row("b9", "ok", "selected", "  ", "captioning", 0.34, (None, None), None, [_cand("  ", "captioning", 0.34)], 0),
    _row(
        "b6",
        "failed",
        "could not read /data/clips/b6/audio.flac: truncated",
        None,
        None,
        None,
        (None, None),
        None,
        [],
        None,
    ),
]


def with_chance(schema: pa.Schema) -> pa.Schema:
    """The table schema with a chance_score column (annotations.py gains it; older tables lack it)."""
    return schema if "chance_score" in schema.names else schema.append(pa.field("chance_score", pa.float64()))


def without_chance(schema: pa.Schema) -> pa.Schema:
    return schema.remove(schema.get_field_index("chance_score")) if "chance_score" in schema.names else schema


def build_report_fixture(output: Path, chance: bool = True) -> Path:
    """Write the fixture's status, annotations, clip cache and config files under `output`."""
    output = Path(output)
    _write_status(output)
    rows = [dict(row) for row in ANNOTATIONS]
    schema = with_chance(TABLE_SCHEMA) if chance else without_chance(TABLE_SCHEMA)
    if not chance:
        for row in rows:
            row.pop("chance_score")
    (output / "annotations").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), output / "annotations" / "annotations.parquet")
    _write_cache(output)
    for stage in ("ingest", "annotate"):
        write_json_atomic(
            output / f"{stage}.config.json",
            {"corpus": "demo", "config_file": "/cfg/datasets.yaml", "config_hash": CONFIG_HASH, "resolved": {}},
        )
    write_json_atomic(
        output / "shards" / "index.json", {"config_hash": CONFIG_HASH, "profiles": ["audioldm"], "splits": {}}
    )
    return output


def _write_status(output: Path) -> None:
    rows = [
        {
            "source": source,
            "manifest": f"manifests/{source}.csv",
            "line": i + 1,
            "status": status,
            "clip_id": clip,
            "source_id": clip,
            "reason": reason,
            "attempts": 1,
            "bytes": 0,
            "seconds": 0.0,
            "rows": n,
        }
        for i, (clip, source, status, reason, n) in enumerate(STATUS)
    ]
    (output / "status").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=STATUS_SCHEMA), output / "status" / f"{RUN_ID}.parquet")
    # an older run: the report must read only the latest
    pq.write_table(
        pa.Table.from_pylist(rows[:1], schema=STATUS_SCHEMA), output / "status" / "20250101T000000000000Z.parquet"
    )
    write_json_atomic(output / "status" / "20250101T000000000000Z.summary.json", {"run_id": "20250101T000000000000Z"})
    write_json_atomic(
        output / "status" / f"{RUN_ID}.summary.json",
        {
            "run_id": RUN_ID,
            "started": "2026-01-01T00:00:00+00:00",
            "tools": {"ffmpeg": "7.1"},
            "config_file": "/cfg/datasets.yaml",
        },
    )


def _write_cache(output: Path) -> None:
    cache = ClipCache(output)
    for i, (clip_id, labels) in enumerate(LABELS.items()):
        folder = cache.entry_dir(clip_id)
        folder.mkdir(parents=True, exist_ok=True)
        frames = []
        if clip_id in WITH_MEDIA:
            (folder / "audio.flac").write_bytes(flac_bytes(i))
            for n in range(2):
                (folder / f"frame_{n:02d}.jpg").write_bytes(jpeg_bytes(10 * i + n))
                frames.append({"file": f"frame_{n:02d}.jpg", "time": float(n)})
        entry = clip_record(
            clip_id, source=SOURCES[clip_id], frames=frames, labels=[{"mid": mid, "name": name} for mid, name in labels]
        )
        write_json_atomic(folder / "clip.json", entry.to_json_dict())
