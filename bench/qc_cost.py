"""What `t2a qc` costs: the per-clip measures, and the exact near-duplicate search at 10k and 100k.

Per clip: CPU milliseconds of each measure on synthetic 10-s 48-kHz clips (process time: robust to
other processes on the machine), Silero VAD included. Search: wall seconds of
`pipelines.qc.duplicates.near_pairs` (exact, blocked upper triangle, float32 BLAS) over N random
512-d unit vectors (CLAP's dimension) with 1% planted near-duplicate pairs, and its peak extra memory
(one BLOCK×BLOCK tile); the planted pairs must all be found.

    python bench/qc_cost.py                      # 20 clips; 10k and 100k embeddings
    python bench/qc_cost.py --sizes 10000        # the search at 10k only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import machine  # noqa: E402

from pipelines.qc import duplicates, measures  # noqa: E402
from pipelines.qc.vad import SpeechDetector  # noqa: E402

RATE = 48000


def clip(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(10 * RATE) / RATE
    return (0.2 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def per_clip(n: int) -> dict:
    detector = SpeechDetector()
    parts = {
        "bandwidth": lambda x: measures.bandwidth(x.astype(np.float64), RATE),
        "clipping": lambda x: measures.clipping(x.astype(np.float64)),
        "loudness": lambda x: measures.loudness(x.astype(np.float64), RATE),
        "silence": lambda x: measures.silence(x.astype(np.float64), RATE),
        "speech (Silero VAD)": lambda x: detector(x, RATE),
        "all (measure())": lambda x: measures.measure(x, RATE, detector),
    }
    clips = [clip(i) for i in range(n)]
    result = {}
    for name, fn in parts.items():
        fn(clips[0])  # warm-up
        start = time.process_time()
        for x in clips:
            fn(x)
        result[name] = round(1000 * (time.process_time() - start) / n, 2)
    return result


def search(n: int, dim: int = 512) -> dict:
    rng = np.random.default_rng(0)
    x = duplicates.normalise(rng.standard_normal((n, dim)).astype(np.float32))
    planted = n // 100
    x[n - planted :] = duplicates.normalise(
        x[:planted] + (0.05 / np.sqrt(dim)) * rng.standard_normal((planted, dim)).astype(np.float32)
    )
    start = time.perf_counter()
    pairs = duplicates.near_pairs(x, 0.98)
    seconds = time.perf_counter() - start
    found = {(a, b) for a, b, _ in pairs}
    assert all((i, n - planted + i) in found for i in range(planted)), "a planted pair was missed"
    return {
        "embeddings": n,
        "dim": dim,
        "seconds": round(seconds, 2),
        "pairs_found": len(pairs),
        "planted": planted,
        "tile_mib": round(duplicates.BLOCK**2 * 4 / 2**20, 1),
        "per_clip_ms": round(1000 * seconds / n, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    args = parser.parse_args()
    result = {"machine": machine(), "per_clip_cpu_ms_10s_clip": per_clip(args.clips)}
    result["search"] = [search(n) for n in args.sizes]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
