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


@pytest.fixture(autouse=True, scope="session")
def _private_decode_cache(tmp_path_factory):
    """Decoded-image caches go to a folder of this session, not the user's home; the
    variable reaches the CLI processes tests start too."""
    import os

    from dream_cl.data.imagecache import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("decode-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before
