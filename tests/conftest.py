"""Shared test configuration."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Every test works on tiny tensors: one intra-op thread is faster for them and cannot
    oversubscribe a shared 2-core machine (OpenMP spin-waits measured 0.1 s vs 10 s per tiny
    distillation run, and 33 vs 237 ms per ConvNet step, under contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
