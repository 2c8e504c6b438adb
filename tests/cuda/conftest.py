"""The CUDA paths, run on a GPU by bench/gpu_check.sh (`pytest -m cuda tests/cuda`); on_device.py
(tests/support/) says which device and when they skip."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _exact_kernels():
    """cuDNN's deterministic algorithms (a resumed run and a re-sampled seed must give the same numbers)
    and no TF32 for float32 convolutions (device figures compared with the CPU's to float32 rounding)."""
    cudnn = torch.backends.cudnn
    before = cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32 = True, False, False
    yield
    cudnn.deterministic, cudnn.benchmark, cudnn.allow_tf32 = before
