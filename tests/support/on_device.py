"""The device the `cuda`-marked tests (tests/cuda/) run on: T2A_TEST_DEVICE, "cuda" unless set.

Without a CUDA GPU they are skipped; `bench/gpu_check.sh --cpu-dry-run` sets T2A_TEST_DEVICE=cpu to
run the same steps on the CPU (bf16 autocast there is real too)."""

from __future__ import annotations

import os

import pytest
import torch

DEVICE = os.environ.get("T2A_TEST_DEVICE", "cuda")

# pytestmark of every module in tests/cuda/
MARKS = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(),
        reason="no CUDA GPU here: bench/gpu_check.sh runs these on one",
    ),
]
