"""The `quality:` policy applied to one clip's row of quality.parquet: why it stays out, or None."""

from __future__ import annotations

from typing import Any

from pipelines.qc.config import QualityConfig


def quality_reason(row: dict[str, Any] | None, config: QualityConfig) -> str | None:
    """The first rule the clip fails, as a sentence naming the measure, its value and the limit."""
    if not config.drops():
        return None
    if row is None:
        return "quality: no measures for this clip (run `t2a qc` after ingest and annotate)"
    if row.get("status") != "ok":
        return f"quality: not measured: {row.get('reason')}"
    checks = (
        ("bandwidth_hz", config.min_bandwidth_hz, "<", "min_bandwidth_hz", "{:.0f} Hz"),
        ("clipping", config.max_clipping, ">", "max_clipping", "{:.4f}"),
        ("loudness_lufs", config.min_loudness_lufs, "<", "min_loudness_lufs", "{:.1f} LUFS"),
        ("loudness_lufs", config.max_loudness_lufs, ">", "max_loudness_lufs", "{:.1f} LUFS"),
        ("silence", config.max_silence, ">", "max_silence", "{:.3f}"),
        ("dc_offset", config.max_dc_offset, ">", "max_dc_offset", "{:.4f}"),
        ("speech", config.max_speech, ">", "max_speech", "{:.3f}"),
    )
    for measure, limit, direction, key, fmt in checks:
        if limit is None:
            continue
        value = row.get(measure)
        if measure == "loudness_lufs" and value is None and direction == "<":
            return f"quality: loudness not measurable (silent or under 0.4 s) < {key} {limit:g}"
        if value is None:
            continue
        if measure == "dc_offset":
            value = abs(value)
        if (value < limit) if direction == "<" else (value > limit):
            return f"quality: {measure} {fmt.format(value)} {direction} {key} {limit:g}"
    if config.drop_leaked and row.get("leaked_of"):
        return f"quality: evaluation leakage: near-duplicate of {row['leaked_of']} (cosine {row.get('leak_score'):.4f})"
    keeper = row.get("duplicate_of")
    if config.drop_near_duplicates and keeper and keeper != row["clip_id"]:
        return f"quality: near-duplicate of {keeper} (kept; group of {row.get('duplicate_group_size')})"
    return None
