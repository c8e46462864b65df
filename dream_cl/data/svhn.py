"""SVHN (cropped digits) from the official MATLAB files, in torchvision's layout.

Layout: ``root/train_32x32.mat`` and ``root/test_32x32.mat`` directly in the data root, which is
where torchvision's ``SVHN(root, download=True)`` puts them, so downloading and placing the
files by hand agree. ``X`` is (32, 32, 3, N) uint8; ``y`` uses 10 for the digit 0, mapped to 0.
The ``extra`` split is not used. SVHN is also read from class folders ``0``..``9``
(:mod:`dream_cl.data.classfolders`): ``root/svhn-jpeg/{train,test}/<digit>/*`` (or ``svhn``),
or its tar ``root/svhn-jpeg.tar``; the MATLAB files come first when both are there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dream_cl.data._common import malformed
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.classfolders import ClassFolders, WithFolders
from dream_cl.data.spec import DatasetSpec, Options, Required

SVHN_CLASSES = tuple(str(d) for d in range(10))
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)


def svhn_file(root: Path, train: bool) -> Path:
    return root / ("train_32x32.mat" if train else "test_32x32.mat")


def _read(root: Path, train: bool, opts: Options) -> DatasetSplit:
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = svhn_file(root, train)
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except (MatReadError, ValueError, OSError, TypeError, NotImplementedError, EOFError) as exc:
        raise malformed(path, exc) from None
    if "X" not in mat or "y" not in mat:
        raise malformed(path, "variables 'X' and 'y' not found")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise malformed(path, f"'X' has shape {x.shape}, expected (32, 32, 3, N)")
    if x.dtype != np.uint8:
        raise malformed(path, f"'X' is {x.dtype}, expected uint8")
    if y.shape[0] != x.shape[3]:
        raise malformed(path, f"{y.shape[0]} labels for {x.shape[3]} images")
    if y.size and (y.dtype.kind not in "iuf" or not np.all(np.equal(np.mod(y, 1), 0))):
        raise malformed(path, "'y' labels are not integers")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise malformed(path, f"labels outside 1..10 (found {y.min():g}..{y.max():g})")
    labels = torch.from_numpy(y.astype(np.int64) % 10)  # SVHN stores digit 0 as label 10
    del mat
    # (H, W, C, N) -> (N, C, H, W) as torchvision does, written straight into label order in
    # chunks, so peak memory is the file's array plus one output array.
    order = torch.sort(labels, stable=True).indices.numpy()
    out = np.empty((x.shape[3], 3, 32, 32), dtype=np.uint8)
    for start in range(0, out.shape[0], 8192):
        idx = order[start : start + 8192]
        out[start : start + idx.shape[0]] = x[..., idx].transpose(3, 2, 0, 1)
    del x
    labels = labels[torch.from_numpy(order)]
    info = DatasetInfo("svhn", 3, 32, SVHN_CLASSES, SVHN_MEAN, SVHN_STD)
    return DatasetSplit(torch.from_numpy(out), labels, info)


def _required(root: Path, opts: Options, train: bool) -> Required:
    return ((svhn_file(root, train),),)


SVHN_FOLDERS = ("svhn-jpeg", "svhn")
_FOLDERS = WithFolders(
    ClassFolders("svhn", SVHN_FOLDERS, SVHN_CLASSES, SVHN_MEAN, SVHN_STD),
    lambda root: root,  # the .mat files lie directly in the data root
    lambda root: svhn_file(root, True).is_file() and svhn_file(root, False).is_file(),
    _required,
    _read,
    "official MATLAB files",
)


def _download(root: Path, train: bool) -> None:
    import torchvision

    torchvision.datasets.SVHN(str(root), split="train" if train else "test", download=True)


SVHN = DatasetSpec(
    name="svhn",
    description="SVHN street-view house-number digits, 3x32x32, 10 classes, 73257/26032",
    how_to_get=(
        "pass --download, or place train_32x32.mat and test_32x32.mat (from "
        "http://ufldl.stanford.edu/housenumbers/) directly in <root>, or put class folders "
        f"at <root>/{SVHN_FOLDERS[0]}/{{train,test}}/<digit>/ (or their tar at "
        f"<root>/{SVHN_FOLDERS[0]}.tar)"
    ),
    locate=_FOLDERS.locate,
    required=_FOLDERS.required,
    reader=_FOLDERS.read,
    downloader=_download,
    pair_reader=_FOLDERS.pair,
    describe=_FOLDERS.describe,
)
