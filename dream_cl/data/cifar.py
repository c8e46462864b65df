"""CIFAR-10 and CIFAR-100 from the official python-pickle layout.

Layout: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` and
``root/cifar-100-python/{train,test,meta}`` (fine labels), exactly what the official tarballs
(and torchvision's download) unpack to. We do not read through torchvision's class: it
md5-checks every file. Pickles can run arbitrary code, so they are read with
:class:`RestrictedUnpickler`, which only rebuilds numpy arrays and plain containers.
"""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dream_cl.data._common import check_labels, malformed
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.spec import DatasetSpec, Options, Required

# (module, name) pairs the CIFAR pickles reference; numpy 2 moved numpy.core to numpy._core.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Python 3 writes bytes this way under pickle protocol < 3; it only encodes a string.
        ("_codecs", "encode"),
    }
)
_SAFE_BUILTINS = frozenset({"list", "dict", "tuple", "set", "frozenset", "bytearray"})

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
_CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and builtin containers, and nothing else.

    Any other global (``os.system``, ``subprocess.Popen``, ``builtins.eval``, ...) raises
    :class:`pickle.UnpicklingError` before it could be called.
    """

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            if module.startswith("numpy.core."):
                module = "numpy._core." + module[len("numpy.core.") :]
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return super().find_class("builtins", name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def load_pickle(path: Path) -> dict[str, Any]:
    """Read one CIFAR pickle as a dict with ``str`` keys; unreadable or unsafe -> UserError."""
    try:
        with open(path, "rb") as f:
            obj = RestrictedUnpickler(f, encoding="latin1").load()
    except (
        pickle.UnpicklingError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        ImportError,
    ) as exc:
        raise malformed(path, exc) from None
    if not isinstance(obj, dict):
        raise malformed(path, f"expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _field(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise malformed(path, f"no '{key}' entry")
    return d[key]


def _names(path: Path, key: str) -> tuple[str, ...]:
    names = _field(load_pickle(path), key, path)
    try:
        return tuple(n.decode("latin1") if isinstance(n, bytes) else str(n) for n in names)
    except TypeError as exc:
        raise malformed(path, exc) from None


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_pickle(path)
    data = np.asarray(_field(d, "data", path))
    labels = np.asarray(_field(d, label_key, path))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise malformed(path, f"'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0] or labels.dtype.kind not in "iu":
        raise malformed(path, f"'{label_key}' does not give one integer label per image")
    return data, labels.astype(np.int64)


def _read(
    folder: str,
    name: str,
    train_files: tuple[str, ...],
    test_file: str,
    meta_file: str,
    names_key: str,
    label_key: str,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    root: Path,
    train: bool,
    opts: Options,
) -> DatasetSplit:
    base = root / folder
    classes = _names(base / meta_file, names_key)
    parts = [_batch(base / f, label_key) for f in (train_files if train else (test_file,))]
    data = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    del parts
    check_labels(labels, len(classes), base / (train_files[0] if train else test_file))
    images = torch.from_numpy(data).view(-1, 3, 32, 32)
    info = DatasetInfo(name, 3, 32, classes, mean, std)
    return DatasetSplit.from_unsorted(images, labels, info)


def _locate(folder: str, root: Path, opts: Options) -> Path:
    return root / folder


def _required(
    folder: str,
    files: tuple[str, ...],
    test_file: str,
    meta_file: str,
    root: Path,
    opts: Options,
    train: bool,
) -> Required:
    names = (*files, meta_file) if train else (test_file, meta_file)
    return tuple((root / folder / n,) for n in names)


def _download(cls_name: str, root: Path, train: bool) -> None:
    import torchvision

    getattr(torchvision.datasets, cls_name)(str(root), train=train, download=True)


CIFAR10 = DatasetSpec(
    name="cifar10",
    description="CIFAR-10 natural images, 3x32x32, 10 classes, 50000/10000",
    how_to_get=(
        "pass --download, or unpack the official python version (cifar-10-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html) so that <root>/{CIFAR10_DIR} exists"
    ),
    locate=partial(_locate, CIFAR10_DIR),
    required=partial(_required, CIFAR10_DIR, _CIFAR10_TRAIN, "test_batch", "batches.meta"),
    reader=partial(
        _read,
        CIFAR10_DIR,
        "cifar10",
        _CIFAR10_TRAIN,
        "test_batch",
        "batches.meta",
        "label_names",
        "labels",
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
    ),
    downloader=partial(_download, "CIFAR10"),
)

CIFAR100 = DatasetSpec(
    name="cifar100",
    description="CIFAR-100 natural images, 3x32x32, 100 fine classes, 50000/10000",
    how_to_get=(
        "pass --download, or unpack the official python version (cifar-100-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html) so that <root>/{CIFAR100_DIR} exists"
    ),
    locate=partial(_locate, CIFAR100_DIR),
    required=partial(_required, CIFAR100_DIR, ("train",), "test", "meta"),
    reader=partial(
        _read,
        CIFAR100_DIR,
        "cifar100",
        ("train",),
        "test",
        "meta",
        "fine_label_names",
        "fine_labels",
        (0.5071, 0.4866, 0.4409),
        (0.2673, 0.2564, 0.2762),
    ),
    downloader=partial(_download, "CIFAR100"),
)
