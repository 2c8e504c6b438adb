"""What the thread-independent mel costs: the fixed-order filter-bank projection against torch's GEMM.

The extractor's mel projection (`FilterBank.project`, pipelines/core/features/mel.py) sums each band's
non-zero weights in a fixed order, so the mel is the same bytes at any torch thread count; a dense
`basis @ magnitude` GEMM is faster but sums in an order that follows the thread count. For each
profile, on the magnitudes of N synthetic 10-s clips: CPU milliseconds per clip of the projection
and of the whole `mel()` (process time: robust to other processes on the machine), the GEMM's for
comparison, and whether each gives the same bytes at 1, 2 and 4 torch threads.

    python bench/mel_threads.py            # 20 clips, every profile
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import machine  # noqa: E402

from pipelines.core.features import PROFILES, MelExtractor, get_profile  # noqa: E402

THREADS = (1, 2, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    result = {
        "clips": args.clips,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": machine(),
        "profiles": {},
    }
    for name in PROFILES.names():
        extractor = MelExtractor(get_profile(name))
        p = extractor.profile
        clips = [(0.1 * rng.standard_normal(p.samples_needed)).astype(np.float32) for _ in range(args.clips)]
        magnitudes = [_magnitude(extractor, clip) for clip in clips]
        project = extractor.filters.project
        gemm = _gemm(extractor.basis)
        result["profiles"][name] = {
            "projection_ms": _cpu_ms(project, magnitudes),
            "gemm_ms": _cpu_ms(gemm, magnitudes, threads=1),
            "mel_ms": _cpu_ms(extractor.mel, clips),
            "projection_same_bytes_at_1_2_4_threads": _same_across_threads(project, magnitudes[0]),
            "gemm_same_bytes_at_1_2_4_threads": _same_across_threads(gemm, magnitudes[0]),
        }
    print(json.dumps(result, indent=1))


def _gemm(basis: torch.Tensor):
    """What the extractor did before: a dense torch GEMM of the basis and the magnitudes."""
    return lambda magnitude: (basis @ torch.from_numpy(magnitude)).numpy()


def _magnitude(extractor: MelExtractor, audio: np.ndarray) -> np.ndarray:
    p = extractor.profile
    padded = torch.from_numpy(np.pad(audio, p.pad, mode="reflect"))
    spec = torch.stft(padded, p.n_fft, p.hop_length, window=extractor.window, center=False, return_complex=True)
    return spec.abs().numpy()  # [n_freq, frames]


def _cpu_ms(step, inputs, threads: int = 1) -> float:
    torch.set_num_threads(threads)
    step(inputs[0])  # warm-up
    times = []
    for item in inputs:
        start = time.process_time()
        step(item)
        times.append((time.process_time() - start) * 1000)
    return round(float(np.median(times)), 3)


def _same_across_threads(step, item) -> bool:
    outputs = []
    for threads in THREADS:
        torch.set_num_threads(threads)
        outputs.append(np.asarray(step(item)).tobytes())
    torch.set_num_threads(1)
    return all(out == outputs[0] for out in outputs)


if __name__ == "__main__":
    main()
