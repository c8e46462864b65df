"""CIFAR-10 and CIFAR-100 from the official python-pickle layout; CIFAR-10 also from class
folders.

Layout: ``root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` and
``root/cifar-100-python/{train,test,meta}`` (fine labels), exactly what the official tarballs
(and torchvision's download) unpack to. CIFAR-10 is also read from the common class-folder
layout, ``train/<class>/*`` and ``test/<class>/*`` (PNG or JPEG, the ten CIFAR-10 class
names), as a folder ``root/cifar10-jpeg`` (or ``cifar10``, ``cifar-10``) or straight from
a tar file of it (``root/cifar10-jpeg.tar``, ...). The pickles come first when both are
there; decoded folders are cached (:mod:`dream_cl.data.imagecache`). We do not read through
torchvision's class: it md5-checks every file. Pickles can run arbitrary code, so they are read with
:class:`RestrictedUnpickler`, which only rebuilds numpy arrays and plain containers.
"""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dream_cl.data._common import check_labels, decode_images, decode_tar_members, malformed
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.spec import DatasetSpec, Options, Required
from dream_cl.errors import UserError

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
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

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


def cifar10_source(root: Path) -> tuple[str, Path] | None:
    """Which CIFAR-10 copy is under ``root``: ("pickles" | "folder" | "tar", path), the
    complete official pickles first; None when there is none."""
    pickles = root / CIFAR10_DIR
    if all((pickles / n).is_file() for n in (*_CIFAR10_TRAIN, "test_batch", "batches.meta")):
        return "pickles", pickles
    for name in CIFAR10_FOLDERS:
        if (root / name / "train").is_dir() and (root / name / "test").is_dir():
            return "folder", root / name
    for name in CIFAR10_FOLDERS:
        if (root / f"{name}.tar").is_file():
            return "tar", root / f"{name}.tar"
    return None


_SOURCE_WORDS = {
    "pickles": "official python pickles",
    "folder": "class folders (PNG/JPEG)",
    "tar": "a tar of class folders (PNG/JPEG)",
}


def _cifar10_locate(root: Path, opts: Options) -> Path:
    found = cifar10_source(root)
    return found[1] if found else root / CIFAR10_DIR


def _cifar10_describe(root: Path, opts: Options) -> str:
    found = cifar10_source(root)
    return _SOURCE_WORDS[found[0]] if found else ""


def _cifar10_required(root: Path, opts: Options, train: bool) -> Required:
    """Each official file, or any class-folder copy (a folder with train/ and test/, or a
    tar), satisfies the check; the pickle path is named when nothing is there."""
    names = (*_CIFAR10_TRAIN, "batches.meta") if train else ("test_batch", "batches.meta")
    split = "train" if train else "test"
    others = (
        *(root / f / split for f in CIFAR10_FOLDERS),
        *(root / f"{f}.tar" for f in CIFAR10_FOLDERS),
    )
    return tuple((root / CIFAR10_DIR / n, *others) for n in names)


def _folder_listing(names: list[str], where: str) -> tuple[list[str], list[int]]:
    """(relative file names, labels) of one split from ``<class>/<file>`` names, sorted by
    class (CIFAR-10's order) then file name; a missing class, an unknown folder or a file
    that is not an image is a one-line error naming it."""
    by_class: dict[str, list[str]] = {c: [] for c in CIFAR10_CLASSES}
    for name in names:
        parts = name.split("/")
        if any(part.startswith(".") for part in parts):
            continue  # hidden files (.DS_Store, ...)
        if len(parts) != 2 or parts[0] not in by_class:
            raise UserError(
                f"cifar10: {where}/{name} is not <class>/<image> with a CIFAR-10 class "
                f"({', '.join(CIFAR10_CLASSES)}); remove it"
            )
        if Path(parts[1]).suffix.lower() not in _IMAGE_SUFFIXES:
            raise UserError(f"cifar10: {where}/{name} is not a PNG or JPEG image; remove it")
        by_class[parts[0]].append(name)
    empty = [c for c, files in by_class.items() if not files]
    if empty:
        raise UserError(
            f"cifar10: no images in {where}/{empty[0]}; the class-folder layout needs a "
            "folder of images for each CIFAR-10 class under train/ and test/"
        )
    files, labels = [], []
    for label, c in enumerate(CIFAR10_CLASSES):
        chosen = sorted(by_class[c])
        files += chosen
        labels += [label] * len(chosen)
    return files, labels


def _split_from(images: torch.Tensor, labels: list[int]) -> DatasetSplit:
    info = DatasetInfo("cifar10", 3, 32, CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD)
    return DatasetSplit(images, torch.tensor(labels, dtype=torch.int64), info)


def _read_cifar10_folder(base: Path, train: bool) -> DatasetSplit:
    split = base / ("train" if train else "test")
    names = []
    for sub in sorted(split.iterdir()):
        if sub.name.startswith("."):
            continue
        if not sub.is_dir():
            raise UserError(f"cifar10: {sub} is not a class folder; remove it")
        names += [f"{sub.name}/{f.name}" for f in sorted(sub.iterdir()) if f.is_file()]
    files, labels = _folder_listing(names, str(split))
    images = decode_images([split / f for f in files], 32, downloadable=False)
    return _split_from(images, labels)


def _tar_listing(archive: Path) -> dict[str, dict[str, str]]:
    """Per split (``train``/``test``): image name relative to the split folder -> member."""
    import tarfile

    splits: dict[str, dict[str, str]] = {"train": {}, "test": {}}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                parts = info.name.split("/")
                for i, part in enumerate(parts[:-2]):
                    if part in splits:
                        splits[part]["/".join(parts[i + 1 :])] = info.name
                        break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise malformed(archive, exc, downloadable=False) from None
    return splits


def _read_cifar10_tar(
    archive: Path, splits: dict[str, dict[str, str]], train: bool
) -> DatasetSplit:
    key = "train" if train else "test"
    members = splits[key]
    if not members:
        raise malformed(archive, f"no {key}/<class>/<image> members", downloadable=False)
    files, labels = _folder_listing(list(members), f"{archive}:{key}")
    images = decode_tar_members(archive, [members[f] for f in files], 32)
    return _split_from(images, labels)


def _cifar10_read(root: Path, train: bool, opts: Options) -> DatasetSplit:
    kind, path = cifar10_source(root) or ("pickles", root / CIFAR10_DIR)
    if kind == "pickles":
        return _read_cifar10_pickles(root, train, opts)
    if kind == "folder":
        return _read_cifar10_folder(path, train)
    return _read_cifar10_tar(path, _tar_listing(path), train)


def _cifar10_pair(root: Path, opts: Options) -> tuple[DatasetSplit, DatasetSplit]:
    kind, path = cifar10_source(root) or ("pickles", root / CIFAR10_DIR)
    if kind != "tar":
        return _cifar10_read(root, True, opts), _cifar10_read(root, False, opts)
    splits = _tar_listing(path)  # one pass over the archive for both splits
    return _read_cifar10_tar(path, splits, True), _read_cifar10_tar(path, splits, False)


CIFAR10 = DatasetSpec(
    name="cifar10",
    description="CIFAR-10 natural images, 3x32x32, 10 classes, 50000/10000",
    how_to_get=(
        "pass --download, or unpack the official python version (cifar-10-python.tar.gz from "
        f"https://www.cs.toronto.edu/~kriz/cifar.html) so that <root>/{CIFAR10_DIR} exists, "
        f"or put class folders at <root>/{CIFAR10_FOLDERS[0]}/{{train,test}}/<class>/ (or "
        f"their tar at <root>/{CIFAR10_FOLDERS[0]}.tar)"
    ),
    locate=_cifar10_locate,
    required=_cifar10_required,
    reader=_cifar10_read,
    downloader=partial(_download, "CIFAR10"),
    pair_reader=_cifar10_pair,
    describe=_cifar10_describe,
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
        # IDC/DREAM normalise CIFAR-100 with CIFAR-10's statistics (MEANS['cifar100'] =
        # MEANS['cifar']); VICO's DC/DSA/DM use CIFAR-100's own. DREAM is the reference.
        CIFAR10_MEAN,
        CIFAR10_STD,
    ),
    downloader=partial(_download, "CIFAR100"),
)
