"""MNIST and Fashion-MNIST from torchvision's raw layout, parsed from the idx files directly.

Layout: ``root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (and
``root/FashionMNIST/raw/...``). Reading the idx files ourselves needs no writes under ``root``
(torchvision's class would write ``processed`` files), so a read-only shared folder works.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import torch

from dream_cl.data._common import check_labels, malformed
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.spec import DatasetSpec, Options, Required

MNIST_CLASSES = (
    "0 - zero",
    "1 - one",
    "2 - two",
    "3 - three",
    "4 - four",
    "5 - five",
    "6 - six",
    "7 - seven",
    "8 - eight",
    "9 - nine",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IDX_UBYTE = 0x08


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Read an unsigned-byte idx file (plain or gzip) into a uint8 array of ``ndim`` dims.

    The array is allocated from the header and filled in place: one copy of the data only.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise malformed(path, "not an idx file (bad magic number)")
            if head[2] != _IDX_UBYTE:
                raise malformed(path, f"idx data type 0x{head[2]:02x} is not unsigned byte")
            if head[3] != ndim:
                raise malformed(path, f"idx file has {head[3]} dimensions, expected {ndim}")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise malformed(path, "truncated idx header")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            try:
                out = np.empty(dims, dtype=np.uint8)
            except (MemoryError, ValueError):
                raise malformed(path, f"header claims an impossible size {dims}") from None
            view = memoryview(out).cast("B")
            filled = 0
            while filled < len(view):
                n = f.readinto(view[filled:])
                if not n:
                    break
                filled += n
            if filled < len(view):
                raise malformed(path, f"truncated: {filled} of {len(view)} data bytes")
            if f.read(1):
                raise malformed(path, "longer than its header says")
    except (OSError, EOFError, zlib.error) as exc:
        raise malformed(path, exc) from None
    return out


def _file(raw: Path, stem: str) -> Path:
    """The plain file when present (as after torchvision's download), else the ``.gz``."""
    plain = raw / stem
    return plain if plain.is_file() else raw / f"{stem}.gz"


def _stems(train: bool) -> tuple[str, str]:
    prefix = "train" if train else "t10k"
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _locate(folder: str, root: Path, opts: Options) -> Path:
    return root / folder / "raw"


def _required(folder: str, root: Path, opts: Options, train: bool) -> Required:
    raw = root / folder / "raw"
    return tuple((raw / f"{s}.gz", raw / s) for s in _stems(train))


def _read(
    folder: str,
    name: str,
    classes: tuple[str, ...],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    root: Path,
    train: bool,
    opts: Options,
) -> DatasetSplit:
    raw = root / folder / "raw"
    img_stem, lab_stem = _stems(train)
    img_path, lab_path = _file(raw, img_stem), _file(raw, lab_stem)
    images = read_idx(img_path, 3)
    labels = read_idx(lab_path, 1)
    if images.shape[1:] != (28, 28):
        raise malformed(img_path, f"images are {images.shape[1]}x{images.shape[2]}, not 28x28")
    if images.shape[0] != labels.shape[0]:
        raise malformed(
            lab_path, f"{labels.shape[0]} labels for {images.shape[0]} images in {img_path.name}"
        )
    labels_t = torch.from_numpy(labels).to(torch.int64)
    check_labels(labels_t, len(classes), lab_path)
    info = DatasetInfo(name, 1, 28, classes, mean, std)
    return DatasetSplit.from_unsorted(torch.from_numpy(images).unsqueeze(1), labels_t, info)


def _download(cls_name: str, root: Path, train: bool) -> None:
    import torchvision

    getattr(torchvision.datasets, cls_name)(str(root), train=train, download=True)


def _how(folder: str) -> str:
    return (
        f"pass --download, or place torchvision's raw files (train-images-idx3-ubyte.gz, "
        f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; "
        f"gzipped or not) in <root>/{folder}/raw"
    )


MNIST = DatasetSpec(
    name="mnist",
    description="MNIST handwritten digits, 1x28x28, 10 classes, 60000/10000",
    how_to_get=_how("MNIST"),
    locate=partial(_locate, "MNIST"),
    required=partial(_required, "MNIST"),
    reader=partial(_read, "MNIST", "mnist", MNIST_CLASSES, (0.1307,), (0.3081,)),
    downloader=partial(_download, "MNIST"),
)

FASHION_MNIST = DatasetSpec(
    name="fashion_mnist",
    description="Fashion-MNIST clothing images, 1x28x28, 10 classes, 60000/10000",
    how_to_get=_how("FashionMNIST"),
    locate=partial(_locate, "FashionMNIST"),
    required=partial(_required, "FashionMNIST"),
    reader=partial(
        _read, "FashionMNIST", "fashion_mnist", FASHION_MNIST_CLASSES, (0.2861,), (0.3530,)
    ),
    downloader=partial(_download, "FashionMNIST"),
)
