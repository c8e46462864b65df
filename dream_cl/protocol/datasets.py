"""Dataset facts the official rules branch on (IDC ``misc/reproduce.py``, VICO ``main.py``)."""

from __future__ import annotations

DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"
"""The DSA paper's full augmentation (VICO ``main.py``'s DSA strategy): DSA's and
DM's matching, and the evaluation augmentation IDC's rules start from."""

NO_FLIP = frozenset({"mnist", "svhn", "digits"})
"""Digits and house numbers are not mirror-symmetric (a flipped '3' is not a '3'): IDC's
evaluation rules drop ``flip`` for MNIST and SVHN; dream-cl does the same for the embedded
8x8 digits set and in the continual-learning augmentation (IDC's is for CIFAR-100 only)."""


def dataset_key(dataset: str) -> str:
    """Dataset names compare without case, '-' or '_' (as the data registry does)."""
    return dataset.lower().replace("-", "").replace("_", "")


def without_flip(ops: list[str], dataset: str) -> list[str]:
    """``ops`` minus ``flip`` for the datasets in :data:`NO_FLIP`."""
    return [op for op in ops if op != "flip"] if dataset_key(dataset) in NO_FLIP else ops
