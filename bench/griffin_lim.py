"""What Griffin-Lim's determinism costs: one item at a time on one intra-op thread (as `GriffinLim`
runs, training/models/vocoder.py) against the same iterations on the batch with torch's default
threads (what it did before, when an item's waveform depended on its batch and the thread count).

    python bench/griffin_lim.py    # 4 items of 1024 audioldm frames (10.24 s), 32 iterations
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _measure import machine  # noqa: E402

from training.models.vocoder import GriffinLim  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    mel = torch.randn(4, 1024, 64) - 4.0  # [B, T, n_mels], log-mel around -4 nats
    griffin_lim = GriffinLim("audioldm", iters=32)
    griffin_lim(mel[:1])  # warm-up (FFT plans)
    start = time.perf_counter()
    griffin_lim(mel)
    deterministic = time.perf_counter() - start
    start = time.perf_counter()
    with torch.no_grad():
        batched = [griffin_lim._invert(item) for item in mel]  # the same maths, default threads
    threaded = time.perf_counter() - start
    del batched
    print(json.dumps({
        "items": 4, "frames": 1024, "iters": 32, "torch_threads_default": torch.get_num_threads(),
        "one_thread_s": round(deterministic, 2), "default_threads_s": round(threaded, 2),
        "cost": round(deterministic / threaded, 2), "machine": machine(), "torch": torch.__version__,
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
