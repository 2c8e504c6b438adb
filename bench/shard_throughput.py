"""Clip cache → shards throughput for the `audioldm` profile: clips/s per core, peak memory, and a
breakdown per clip (FLAC decode, resample, STFT/mel, sample encoding, tar write).

The cache holds N synthetic 10-s clips (48 kHz mono 16-bit FLAC: tones over noise, so they compress
like field recordings rather than silence) with clip.json records as ingest writes them. The job
runs as its own process, exactly as `t2a shard` runs it: once with one worker (one core: the job
sets torch to one thread), once with two worker processes; the job's start-up (imports, Beam graph)
is measured on an empty cache and subtracted for the per-core rate.

    python bench/shard_throughput.py --clips 400
    python bench/shard_throughput.py --clips 2000
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import job_command, machine, run_measured  # noqa: E402

from pipelines.core.io import write_json_atomic  # noqa: E402
from pipelines.ingest.cache import CLIP_SCHEMA, ClipCache  # noqa: E402

RATE, SECONDS = 48000, 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=400)
    parser.add_argument("--max-samples", type=int, default=100, help="per shard (the default config says 1000)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    cache = build_cache(args.work / f"shard-cache-{args.clips}", args.clips)
    empty = build_cache(args.work / "shard-cache-0", 0)
    empty_run = run_job(empty, [], args.max_samples)
    startup, startup_cpu = empty_run["wall_s"], empty_run["cpu_s"]
    result = {
        "clips": args.clips,
        "max_samples": args.max_samples,
        "profile": "audioldm",
        "startup_s": startup,
        "startup_cpu_s": startup_cpu,
        "machine": machine(),
    }
    for label, beam_args in (
        ("one_worker", []),
        ("two_workers", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]),
    ):
        shutil.rmtree(cache / "shards", ignore_errors=True)
        run = run_job(cache, beam_args, args.max_samples)
        run["clips_per_s"] = round(args.clips / run["wall_s"], 1)
        run["clips_per_s_after_startup"] = round(args.clips / max(run["wall_s"] - startup, 1e-6), 1)
        run["clips_per_cpu_s_after_startup"] = round(args.clips / max(run["cpu_s"] - startup_cpu, 1e-6), 1)
        result[label] = run
    result["breakdown_ms"] = breakdown(cache, min(args.clips, 100))
    print(json.dumps(result))


def build_cache(root: Path, n: int) -> Path:
    """N clip entries as ingest writes them; kept between runs (generation is the slow part)."""
    cache = ClipCache(root)
    cache.create()
    for i in range(n):
        clip_id = f"bench_{i:06d}"
        if cache.is_complete(clip_id):
            continue
        staging = cache.staging(clip_id)
        flac = _flac(i)
        (staging / "audio.flac").write_bytes(flac)
        write_json_atomic(staging / "clip.json", _entry(clip_id, flac, i))
        cache.commit(staging, clip_id)
    return root


def _flac(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(RATE * SECONDS)) / RATE
    tones = sum(0.1 * np.sin(2 * np.pi * f * t) for f in rng.uniform(200, 4000, 3))
    audio = (tones + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _entry(clip_id: str, flac: bytes, i: int) -> dict:
    return {
        "schema": CLIP_SCHEMA,
        "clip_id": clip_id,
        "source": "bench",
        "format": "table",
        "source_id": clip_id,
        "media_url": f"http://bench/{clip_id}.wav",
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


def run_job(cache: Path, beam_args: list[str], max_samples: int) -> dict:
    config = cache / "bench.yaml"
    corpus = {
        "output": str(cache),
        "shards": {"profiles": ["audioldm"], "max_samples": max_samples},
        "sources": [{"name": "bench", "format": "table", "manifest": str(config), "fetch": {"backend": "http"}}],
    }
    config.write_text(yaml.safe_dump({"corpora": {"bench": corpus}}))
    measured = run_measured(job_command("shard", config, "bench", beam_args))
    index = json.loads(measured.pop("stdout"))
    measured["shards"], measured["samples"] = index["totals"]["shards"], index["totals"]["nsamples"]
    return measured


def breakdown(cache: Path, n: int) -> dict[str, float]:
    """Median milliseconds per clip of each step, in this process, one torch thread: the mel path
    step by step, then the job's whole per-sample work (hash check, decode, mel, JSON, contract
    checks) and the tar write of the prepared samples."""
    import torch

    from pipelines.core.features import MelExtractor, get_profile
    from pipelines.datasets import load_corpus
    from pipelines.shard.job import WriteShards, settings_hash
    from pipelines.shard.writer import write_shard

    torch.set_num_threads(1)
    extractor = MelExtractor(get_profile("audioldm"))
    store = ClipCache(cache)
    clip_ids = sorted(store.entries())[:n]
    times: dict[str, list[float]] = {k: [] for k in ("flac_decode", "resample", "stft_mel", "npy_encode", "sample")}
    for clip_id in clip_ids:
        flac = (store.entry_dir(clip_id) / "audio.flac").read_bytes()
        audio = _timed(times["flac_decode"], lambda flac=flac: sf.read(io.BytesIO(flac), dtype="float32")[0])
        low = _timed(times["resample"], lambda audio=audio: extractor.resample(audio, RATE))
        mel, _ = _timed(times["stft_mel"], lambda low=low: extractor.mel(low))
        _timed(times["npy_encode"], lambda mel=mel: _npy(mel))
    corpus = load_corpus(cache / "bench.yaml", "bench")
    job = WriteShards(corpus, settings_hash(corpus.config.shards))
    job.setup()
    prepared = [(clip_id, _timed(times["sample"], lambda c=clip_id: job._sample(c, "train"))) for clip_id in clip_ids]
    started = time.perf_counter()
    write_shard(cache / "breakdown" / "shard.tar", prepared)
    medians = {k: round(float(np.median(v)), 2) for k, v in times.items() if v}
    medians["tar_write"] = round((time.perf_counter() - started) * 1000 / max(len(clip_ids), 1), 2)
    medians["per_clip_total"] = round(medians["sample"] + medians["tar_write"], 2)
    medians["clips_per_s_per_core"] = round(1000 / medians["per_clip_total"], 1)
    return medians


def _npy(mel: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, mel.astype(np.float16), allow_pickle=False)
    return buffer.getvalue()


def _timed(bucket: list[float], step):  # noqa: ANN001, ANN202
    started = time.perf_counter()
    value = step()
    bucket.append((time.perf_counter() - started) * 1000)
    return value


if __name__ == "__main__":
    main()
