"""CIFAR-10 and CIFAR-100 from the official python-pickle layout, or from class folders.

Layout: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` and
``root/cifar-100-python/{train,test,meta}`` (fine labels), exactly what the official tarballs
(and torchvision's download) unpack to. Both are also read from the common class-folder
layout (:mod:`dream_cl.data.classfolders`): ``train/<class>/*`` and ``test/<class>/*`` (PNG or
JPEG, the dataset's class names) as a folder ``root/cifar10-jpeg`` (or ``cifar10``,
``cifar-10``; ``cifar100-jpeg``, ``cifar100``, ``cifar-100``) or straight from a tar of it
(``root/cifar10-jpeg.tar``, ...). The pickles come first when both are there. We do not read
through torchvision's class: it md5-checks every file. Pickles can run arbitrary code, so they
are read with :class:`RestrictedUnpickler`, which only rebuilds numpy arrays and plain
containers.
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
from dream_cl.data.classfolders import ClassFolders, WithFolders
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


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
# CIFAR-100's own statistics, which VICO's DC/DSA/DM normalise with (IDC/DREAM do not)
CIFAR100_OWN_MEAN = (0.5071, 0.4866, 0.4409)
CIFAR100_OWN_STD = (0.2673, 0.2564, 0.2762)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_FOLDERS = ("cifar10-jpeg", "cifar10", "cifar-10")
"""Names under the data root searched for the class-folder layout, as a folder or NAME.tar."""

_read_cifar10_pickles = partial(
    _read,
    CIFAR10_DIR,
    "cifar10",
    _CIFAR10_TRAIN,
    "test_batch",
    "batches.meta",
    "label_names",
    "labels",
    CIFAR10_MEAN,
    CIFAR10_STD,
)


CIFAR100_FOLDERS = ("cifar100-jpeg", "cifar100", "cifar-100")
# CIFAR-100's fine classes in label order, as its meta file lists them
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip


def _complete(folder: str, names: tuple[str, ...], root: Path) -> bool:
    return all((root / folder / n).is_file() for n in names)


_C10 = WithFolders(
    ClassFolders("cifar10", CIFAR10_FOLDERS, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD),
    CIFAR10_DIR,
    partial(_complete, CIFAR10_DIR, (*_CIFAR10_TRAIN, "test_batch", "batches.meta")),
    partial(_required, CIFAR10_DIR, _CIFAR10_TRAIN, "test_batch", "batches.meta"),
    _read_cifar10_pickles,
    "official python pickles",
)
_read_cifar100_pickles = partial(
    _read,
    CIFAR100_DIR,
    "cifar100",
    ("train",),
    "test",
    "meta",
    "fine_label_names",
    "fine_labels",
    # IDC/DREAM normalise CIFAR-100 with CIFAR-10's statistics (MEANS['cifar100'] =
    # MEANS['cifar']); VICO's DC/DSA/DM use CIFAR-100's own. DREAM is the reference.
    CIFAR10_MEAN,
    CIFAR10_STD,
)
_C100 = WithFolders(
    ClassFolders("cifar100", CIFAR100_FOLDERS, CIFAR100_CLASSES, CIFAR10_MEAN, CIFAR10_STD),
    CIFAR100_DIR,
    partial(_complete, CIFAR100_DIR, ("train", "test", "meta")),
    partial(_required, CIFAR100_DIR, ("train",), "test", "meta"),
    _read_cifar100_pickles,
    "official python pickles",
)


def cifar10_source(root: Path) -> tuple[str, Path] | None:
    """Which CIFAR-10 copy is under ``root``: ("pickles" | "folder" | "tar", path), the
    complete official pickles first; None when there is none."""
    found = _C10.source(root)
    if found is not None and found[0] == "official":
        return "pickles", found[1]
    return found


def _folders_how(folders: tuple[str, ...]) -> str:
    return (
        f"or put class folders at <root>/{folders[0]}/{{train,test}}/<class>/ (or their tar at "
        f"<root>/{folders[0]}.tar)"
    )


CIFAR10 = DatasetSpec(
    name="cifar10",
    description="CIFAR-10 natural images, 3x32x32, 10 classes, 50000/10000",
    how_to_get=(
        "pass --download, or unpack the official python version (cifar-10-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html) so that <root>/{CIFAR10_DIR} exists, "
        + _folders_how(CIFAR10_FOLDERS)
    ),
    locate=_C10.locate,
    required=_C10.required,
    reader=_C10.read,
    downloader=partial(_download, "CIFAR10"),
    pair_reader=_C10.pair,
    describe=_C10.describe,
)

CIFAR100 = DatasetSpec(
    name="cifar100",
    description="CIFAR-100 natural images, 3x32x32, 100 fine classes, 50000/10000",
    how_to_get=(
        "pass --download, or unpack the official python version (cifar-100-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html) so that <root>/{CIFAR100_DIR} exists, "
        + _folders_how(CIFAR100_FOLDERS)
    ),
    locate=_C100.locate,
    required=_C100.required,
    reader=_C100.read,
    downloader=partial(_download, "CIFAR100"),
    pair_reader=_C100.pair,
    describe=_C100.describe,
)
