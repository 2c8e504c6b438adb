"""A valid clip.json record with test defaults: `clip_record(clip_id="fs_1", labels=[...])`."""

from __future__ import annotations

from typing import Any

from pipelines.core.records import ClipRecord

_DEFAULTS: dict[str, Any] = {
    "source": "test",
    "format": "table",
    "media_url": None,
    "manifest": {"file": "m.csv", "line": 2, "rows": 1},
    "segment": {"start": None, "end": None},
    "duration": 10.0,
    "audio_seconds": 10.0,
    "padded": False,
    "sample_rate": 48000,
    "files": {},
}


def clip_record(clip_id: str = "x_1", **fields: Any) -> ClipRecord:
    """Fields as clip.json holds them (dicts and lists are validated into the record's models)."""
    return ClipRecord.model_validate({"clip_id": clip_id, "source_id": clip_id, **_DEFAULTS, **fields})
