"""A clip cache written directly (no ingest, no ffmpeg): short FLAC clips with clip.json records as
ingest writes them, and a corpus config over it, for shard-job tests that need many or growing clips."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from records import clip_record
from shard_samples import flac_bytes

from pipelines.ingest.cache import ClipCache


def add_clips(output: Path, clip_ids: list[str], seconds: float = 0.05) -> None:
    """Cache entries for `clip_ids` (entries already there are kept as they are)."""
    cache = ClipCache(output)
    cache.create()
    for clip_id in clip_ids:
        if cache.is_complete(clip_id):
            continue
        flac = flac_bytes(int(hashlib.sha256(clip_id.encode()).hexdigest()[:8], 16), seconds)
        staging = cache.staging(clip_id)
        (staging / "audio.flac").write_bytes(flac)
        files = {"audio.flac": {"sha256": hashlib.sha256(flac).hexdigest(), "bytes": len(flac)}}
        record = clip_record(
            clip_id, source="synth", duration=seconds, audio_seconds=seconds, files=files, split="train"
        )
        cache.write_entry(staging, record)
        cache.commit(staging, clip_id)


def write_config(root: Path, output: Path, max_samples: int) -> Path:
    """datasets.yaml with one corpus `synth` over the cache at `output`."""
    manifest = root / "synth.csv"
    manifest.write_text("url\n")
    corpus = {
        "output": str(output),
        "shards": {"profiles": ["audioldm"], "max_samples": max_samples, "frames": False},
        "sources": [{"name": "synth", "format": "table", "manifest": str(manifest), "fetch": {"backend": "http"}}],
    }
    config = root / "datasets.yaml"
    config.write_text(yaml.safe_dump({"corpora": {"synth": corpus}}))
    return config
