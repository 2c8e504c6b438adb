"""The Fréchet distance of `t2a evaluate` on 2048-d Cnn14 embeddings: the sample-space form (an N × M SVD,
used when N + M ≤ D) against the covariance form (D × D eigendecompositions), same inputs, same value.

    python bench/fd_cost.py --generated 24 --reference 36 --dim 2048
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.evaluate.metrics import embedding_fd, frechet_distance, gaussian_stats  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generated", type=int, default=24)
    parser.add_argument("--reference", type=int, default=36)
    parser.add_argument("--dim", type=int, default=2048)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.generated, args.dim))
    y = rng.normal(0.1, 1.1, size=(args.reference, args.dim))
    start = time.perf_counter()
    samples = embedding_fd(x, y)
    sample_s = time.perf_counter() - start
    start = time.perf_counter()
    covariance = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    covariance_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "shape": [args.generated, args.reference, args.dim],
                "sample_space_s": round(sample_s, 3),
                "covariance_s": round(covariance_s, 1),
                "relative_difference": abs(samples - covariance) / covariance,
            }
        )
    )


if __name__ == "__main__":
    main()
