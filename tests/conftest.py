"""Shared test configuration: the test tiers and where the real datasets are.

Two tiers. ``python -m pytest -q`` runs the fast one (pyproject's ``addopts`` leaves out
``slow``); ``python -m pytest -q -m ""`` runs everything, ``-m slow`` only the second tier:
tests that start subprocesses or torchrun jobs, read the real datasets or take over ~10 s.

The real datasets (MNIST, FashionMNIST, ``cifar10-jpeg.tar``) are read from
:data:`SHARED_DATA`: ``$DREAM_CL_TEST_DATA``, else ``../shared/data`` beside the checkout;
tests that need them skip, saying so, when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

TEST_DATA_ENV = "DREAM_CL_TEST_DATA"
SHARED_DATA = Path(
    os.environ.get(TEST_DATA_ENV)
    or os.environ.get("DREAM_CL_SHARED_DATA")  # the variable's earlier name
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)
"""The read-only real datasets; never written by a test."""


def needs_real_data(*parts: str) -> pytest.MarkDecorator:
    """Skip unless ``SHARED_DATA/parts...`` exists (e.g. ``needs_real_data("MNIST")``)."""
    path = SHARED_DATA.joinpath(*parts)
    return pytest.mark.skipif(
        not path.exists(),
        reason=f"real data not found: {path} (set {TEST_DATA_ENV} to the data root)",
    )


@pytest.fixture
def shared_data() -> Path:
    """:data:`SHARED_DATA`, or a skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found: {SHARED_DATA} (set {TEST_DATA_ENV} to the data root)")
    return SHARED_DATA


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
