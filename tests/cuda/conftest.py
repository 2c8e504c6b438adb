"""The CUDA paths, run on a GPU by bench/gpu_check.sh (`pytest -m cuda tests/cuda`); on_device.py
(tests/support/) says which device and when they skip."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _deterministic_kernels():
    """cuDNN's deterministic algorithms: a resumed run and a re-sampled seed must give the same numbers."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before
