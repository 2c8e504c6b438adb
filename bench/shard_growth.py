"""Shard growth (issue 16 §4): a corpus of N synthetic clips is sharded, then grows by 1 % and by one
clip; how many shards and bytes each re-run rewrites, and how long a no-op re-run takes.

Clips are cheap on purpose (1 s of tones in noise, 48 kHz mono FLAC, clip.json as ingest writes it):
the samples still hold the full `audioldm` mel (64 × 1024 float16) and the FLAC, so a shard of 1000
samples is ~140 MB. The job runs as its own process, exactly as `t2a shard` runs it (FnApiRunner,
default shard settings: 1000 samples per shard). A shard counts as rewritten when its inode changed
(the writer renames a new file into place) or it is new. For comparison, the layout of the previous
planner (every clip placed by the sha256 order of all ids, recomputed on every run) is computed for
the same clip sets: the shards whose members would change, and their share of the bytes.

    python bench/shard_growth.py --clips 10000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import job_command, machine, run_measured  # noqa: E402

from pipelines.core.io import write_json_atomic  # noqa: E402
from pipelines.ingest.cache import CLIP_SCHEMA, ClipCache  # noqa: E402

RATE, SECONDS = 48000, 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=10_000)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out" / "shard-growth")
    parser.add_argument("--keep", action="store_true", help="keep the cache and shards of an earlier run")
    args = parser.parse_args()
    if not args.keep:
        shutil.rmtree(args.work, ignore_errors=True)
    grown = args.clips + max(1, args.clips // 100)
    config = write_config(args.work)
    result: dict = {"clips": args.clips, "machine": machine(), "steps": {}}

    build_cache(args.work, args.clips)
    result["steps"]["first_build"] = step(config, args.work, {})
    before = snapshot(args.work)
    result["steps"]["no_op_rerun"] = step(config, args.work, before)
    build_cache(args.work, grown)
    result["steps"]["plus_1_percent"] = step(config, args.work, snapshot(args.work))
    build_cache(args.work, grown + 1)
    result["steps"]["plus_1_clip"] = step(config, args.work, snapshot(args.work))
    result["sha256_order_planner"] = {
        "plus_1_percent": resort_cost(args.clips, grown),
        "plus_1_clip": resort_cost(grown, grown + 1),
    }
    print(json.dumps(result, indent=1))


def step(config: Path, work: Path, before: dict[str, tuple[int, int]]) -> dict:
    measured = run_measured(job_command("shard", config, "bench", []))
    index = json.loads(measured.pop("stdout"))
    after = snapshot(work)
    rewritten = {name: size for name, (inode, size) in after.items() if before.get(name, (None, 0))[0] != inode}
    total = sum(size for _, size in after.values())
    return {
        **measured,
        "samples": index["totals"]["nsamples"],
        "shards": len(after),
        "shards_rewritten": len(rewritten),
        "bytes_total": total,
        "bytes_rewritten": sum(rewritten.values()),
        "bytes_rewritten_pct": round(100 * sum(rewritten.values()) / max(total, 1), 2),
    }


def snapshot(work: Path) -> dict[str, tuple[int, int]]:
    """Every shard tar: (inode, size)."""
    return {p.name: (p.stat().st_ino, p.stat().st_size) for p in sorted((work / "shards" / "train").glob("*.tar"))}


def resort_cost(before: int, after: int, per_shard: int = 1000) -> dict:
    """What the sha256-order planner rewrites going from `before` to `after` clips: every shard whose
    member list changes (samples are about the same size here, so bytes follow samples)."""

    def cut(n: int) -> list[tuple[str, ...]]:
        ordered = sorted(clip_id(i) for i in range(n))
        ordered.sort(key=lambda c: hashlib.sha256(c.encode()).hexdigest())
        return [tuple(sorted(ordered[i : i + per_shard])) for i in range(0, n, per_shard)]

    old, new = cut(before), cut(after)
    changed = [i for i, members in enumerate(new) if i >= len(old) or old[i] != members]
    samples = sum(len(new[i]) for i in changed)
    return {
        "shards": len(new),
        "shards_rewritten": len(changed),
        "bytes_rewritten_pct": round(100 * samples / after, 2),
    }


def clip_id(i: int) -> str:
    return f"grow_{i:07d}"


def write_config(work: Path) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "bench.csv"
    manifest.write_text("url\n")
    corpus = {
        "output": str(work),
        "shards": {"profiles": ["audioldm"]},
        "sources": [{"name": "bench", "format": "table", "manifest": str(manifest), "fetch": {"backend": "http"}}],
    }
    config = work / "bench.yaml"
    config.write_text(yaml.safe_dump({"corpora": {"bench": corpus}}))
    return config


def build_cache(work: Path, n: int) -> None:
    """Clips 0 … n-1 as ingest writes them (entries already there are kept)."""
    cache = ClipCache(work)
    cache.create()
    for i in range(n):
        name = clip_id(i)
        if cache.is_complete(name):
            continue
        staging = cache.staging(name)
        flac = _flac(i)
        (staging / "audio.flac").write_bytes(flac)
        write_json_atomic(staging / "clip.json", _entry(name, flac, i))
        cache.commit(staging, name)


def _flac(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * SECONDS)) / RATE
    tones = sum(0.1 * np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 4000, 3))
    audio = (tones + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _entry(name: str, flac: bytes, i: int) -> dict:
    return {
        "schema": CLIP_SCHEMA,
        "clip_id": name,
        "source": "bench",
        "format": "table",
        "source_id": name,
        "media_url": f"http://bench/{name}.wav",
        "manifest": {"file": "bench.csv", "line": i + 2, "rows": 1},
        "segment": {"start": 0.0, "end": SECONDS},
        "duration": SECONDS,
        "audio_seconds": SECONDS,
        "padded": False,
        "input_duration": SECONDS,
        "sample_rate": RATE,
        "channels": 1,
        "frames": [],
        "labels": [{"mid": "/m/03kmc9", "name": "Siren"}],
        "captions": [{"text": "a siren", "origin": "table", "kind": "human"}],
        "split": "train",
        "licence": None,
        "meta": {},
        "files": {"audio.flac": {"sha256": hashlib.sha256(flac).hexdigest(), "bytes": len(flac)}},
        "fetched_bytes": 0,
        "read_bytes": len(flac),
        "attempts": 1,
        "tools": {"t2a": "bench"},
        "created": "2026-01-01T00:00:00+00:00",
    }


if __name__ == "__main__":
    main()
