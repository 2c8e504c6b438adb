"""Per-clip cost of the shard job's mel path on one core: decode, resample, STFT + mel, float16 + .npy.

N synthetic 10-s 48 kHz mono 16-bit FLAC clips (noise, a chirp and tones at a random level) are
written to a temporary folder and read back as bytes, as the shard job reads the clip cache. With
`torch.set_num_threads(1)` (as each shard worker runs) every step is timed per clip; one JSON line
gives the medians in ms and the implied clips/s per core (1000 / median of the per-clip totals).

    python bench/mel_breakdown.py                    # audioldm, 100 clips
    python bench/mel_breakdown.py --clips 200 --all  # every profile; the decode is shared
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.core.features import PROFILES, RESAMPLE_QUALITY, MelExtractor, get_profile  # noqa: E402

RATE = 48_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile", default="audioldm", choices=PROFILES.names())
    parser.add_argument("--all", action="store_true", help="every profile, each clip decoded once")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = PROFILES.names() if args.all else [args.profile]
    extractors = {name: MelExtractor(get_profile(name)) for name in names}
    with tempfile.TemporaryDirectory(prefix="mel-bench-") as folder:
        paths = write_clips(Path(folder), args.clips, args.seconds)
        run_clip(paths[0].read_bytes(), extractors)  # warm-up: FFT plans, allocator, soxr
        timings = [run_clip(path.read_bytes(), extractors) for path in paths]
    print(json.dumps(summarise(timings, names, args)))


def write_clips(folder: Path, n: int, seconds: float) -> list[Path]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for i in range(n):
        f0 = rng.uniform(100, 2000)
        x = 0.1 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * (f0 + 500 * t) * t)
        x += 0.2 * np.sin(2 * np.pi * rng.uniform(200, 8000) * t)
        x *= rng.uniform(0.1, 1.0) / np.abs(x).max()
        paths.append(folder / f"clip_{i:04d}.flac")
        sf.write(paths[-1], x, RATE, subtype="PCM_16")
    return paths


def run_clip(flac: bytes, extractors: dict[str, MelExtractor]) -> dict[str, float]:
    """Milliseconds per step for one clip: decode once, then resample / mel / save per profile."""
    times = {}
    start = time.perf_counter()
    audio, rate = sf.read(io.BytesIO(flac), dtype="float32", always_2d=False)
    times["decode"] = time.perf_counter() - start
    for name, extractor in extractors.items():
        start = time.perf_counter()
        resampled = extractor.resample(audio, rate)
        after_resample = time.perf_counter()
        mel, _ = extractor.mel(resampled)
        after_mel = time.perf_counter()
        buffer = io.BytesIO()
        np.save(buffer, mel.astype(np.float16))
        buffer.getvalue()
        end = time.perf_counter()
        times[f"{name}.resample"] = after_resample - start
        times[f"{name}.mel"] = after_mel - after_resample
        times[f"{name}.f16_npy"] = end - after_mel
    return {step: seconds * 1000 for step, seconds in times.items()}


def summarise(timings: list[dict[str, float]], names: list[str], args: argparse.Namespace) -> dict:
    def median(values) -> float:
        return round(float(np.median(list(values))), 3)

    profiles = {}
    for name in names:
        steps = ("resample", "mel", "f16_npy")
        totals = [t["decode"] + sum(t[f"{name}.{s}"] for s in steps) for t in timings]
        profiles[name] = {f"{s}_ms": median(t[f"{name}.{s}"] for t in timings) for s in steps}
        profiles[name].update(total_ms=median(totals), clips_per_s_per_core=round(1000 / float(np.median(totals)), 1))
    result = {
        "clips": len(timings),
        "seconds": args.seconds,
        "input_rate": RATE,
        "torch_threads": torch.get_num_threads(),
        "resample_quality": RESAMPLE_QUALITY,
        "decode_ms": median(t["decode"] for t in timings),
        "profiles": profiles,
    }
    if len(names) > 1:
        all_totals = [sum(t.values()) for t in timings]
        per_s = round(1000 / float(np.median(all_totals)), 1)
        result["all_profiles"] = {"total_ms": median(all_totals), "clips_per_s_per_core": per_s}
    result.update(torch=torch.__version__, numpy=np.__version__, cpu=cpu_model(), cores=os.cpu_count())
    return result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


if __name__ == "__main__":
    main()
