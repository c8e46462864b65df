"""scikit-learn's embedded 8x8 handwritten digits: always available, loads in milliseconds.

1797 images, 1x8x8, 10 classes. The data ships inside scikit-learn, so quick runs and tests
need no download. Values 0..16 become uint8 via ``round(v * 255 / 16)``. There is no official
split: a stratified one is drawn per class with ``test_fraction`` (default 0.2) and
``split_seed`` (default 0), and mean/std are computed on the resulting train split.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch

from dream_cl.data._common import channel_mean_std, stratified_split
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.spec import DatasetSpec, Options, Required
from dream_cl.errors import UserError

DIGITS_CLASSES = tuple(str(d) for d in range(10))
_OPTIONS = MappingProxyType({"test_fraction": 0.2, "split_seed": 0})


def check_test_fraction(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise UserError(f"option test_fraction={value} must be in [0, 1)")
    return value


def digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 images as uint8 (N, 1, 8, 8) and their labels, in scikit-learn's order."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(bunch.target.astype(np.int64))


def _pair(root: Path, opts: Options) -> tuple[DatasetSplit, DatasetSplit]:
    fraction = check_test_fraction(float(opts["test_fraction"]))
    images, labels = digits_arrays()
    train_idx, test_idx = stratified_split(labels, 10, fraction, int(opts["split_seed"]))
    mean, std = channel_mean_std(images[train_idx])
    info = DatasetInfo("digits", 1, 8, DIGITS_CLASSES, mean, std)
    return (
        DatasetSplit.from_unsorted(images[train_idx], labels[train_idx], info),
        DatasetSplit.from_unsorted(images[test_idx], labels[test_idx], info),
    )


def _read(root: Path, train: bool, opts: Options) -> DatasetSplit:
    return _pair(root, opts)[0 if train else 1]


def _locate(root: Path, opts: Options) -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"


def _required(root: Path, opts: Options, train: bool) -> Required:
    return ()


DIGITS = DatasetSpec(
    name="digits",
    description="scikit-learn 8x8 digits, 1x8x8, 10 classes, 1797 images (stratified split)",
    how_to_get="it ships with scikit-learn; reinstall scikit-learn",
    locate=_locate,
    required=_required,
    reader=_read,
    pair_reader=_pair,
    options=_OPTIONS,
)
