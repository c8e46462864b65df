"""Write tiny datasets in the official on-disk formats, for tests (no downloads needed).

Every writer puts the files where ``dream_cl.data`` expects them for data root ``root`` and
returns the dataset's folder (``spec.expected_path(root)``). Pixel content is a known function
of (label, index within class), see :func:`fake_image` / :func:`fake_color`, so tests can check
that a pixel round-trips. Files list the images interleaved across classes (class order
reversed), so loaders must sort by label while keeping each class's file order.
"""

from __future__ import annotations

import functools
import gzip
import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

CIFAR10_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def fake_image(label: int, index: int, channels: int, size: int) -> np.ndarray:
    """A deterministic uint8 (C, H, W) image for image ``index`` of class ``label``."""
    c = np.arange(channels).reshape(-1, 1, 1)
    h = np.arange(size).reshape(1, -1, 1)
    w = np.arange(size).reshape(1, 1, -1)
    return ((label * 31 + index * 7 + c * 50 + h * 3 + w) % 256).astype(np.uint8)


def fake_color(label: int, index: int) -> tuple[int, int, int]:
    """A solid RGB colour for lossy formats (JPEG keeps a flat colour to within +-2)."""
    return ((40 + label * 50) % 256, (20 + index * 40) % 256, (200 + label * 13 + index) % 256)


def interleaved(num_classes: int, per_class: int) -> list[tuple[int, int]]:
    """(label, index) pairs in file order: round-robin over classes in reverse order."""
    return [(c, i) for i in range(per_class) for c in reversed(range(num_classes))]


# -- MNIST / Fashion-MNIST -------------------------------------------------------------------
def _write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def write_mnist(
    root: Path,
    per_class_train: int = 3,
    per_class_test: int = 2,
    *,
    folder: str = "MNIST",
    gz: bool = True,
) -> Path:
    """torchvision raw layout ``root/<folder>/raw/*-ubyte[.gz]``, 1x28x28, 10 classes."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, per_class in (("train", per_class_train), ("t10k", per_class_test)):
        order = interleaved(10, per_class)
        images = np.stack([fake_image(c, i, 1, 28)[0] for c, i in order])
        labels = np.array([c for c, _ in order], dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return raw


def write_fashion_mnist(root: Path, per_class_train: int = 3, per_class_test: int = 2) -> Path:
    return write_mnist(root, per_class_train, per_class_test, folder="FashionMNIST")


# -- CIFAR -----------------------------------------------------------------------------------
def _dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the official files are protocol-2 pickles


def _cifar_rows(num_classes: int, per_class: int) -> tuple[np.ndarray, list[int]]:
    order = interleaved(num_classes, per_class)
    data = np.stack([fake_image(c, i, 3, 32).reshape(-1) for c, i in order])
    return data, [c for c, _ in order]


def write_cifar10(root: Path, per_class_train: int = 3, per_class_test: int = 2) -> Path:
    """Official ``cifar-10-batches-py``: 5 train batches (in order), test batch, meta."""
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    data, labels = _cifar_rows(10, per_class_train)
    chunks = np.array_split(np.arange(len(labels)), 5)
    for b, idx in enumerate(chunks, start=1):
        _dump(
            base / f"data_batch_{b}",
            {
                "batch_label": f"training batch {b} of 5",
                "labels": [labels[i] for i in idx],
                "data": data[idx],
                "filenames": [f"img_{i}.png" for i in idx],
            },
        )
    data, labels = _cifar_rows(10, per_class_test)
    _dump(
        base / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": labels,
            "data": data,
            "filenames": [f"t_{i}.png" for i in range(len(labels))],
        },
    )
    _dump(
        base / "batches.meta",
        {"num_cases_per_batch": 10000, "label_names": list(CIFAR10_NAMES), "num_vis": 3072},
    )
    return base


def write_cifar100(
    root: Path, per_class_train: int = 2, per_class_test: int = 1, num_classes: int = 100
) -> Path:
    """Official ``cifar-100-python``: ``train``, ``test`` (fine + coarse labels), ``meta``."""
    base = Path(root) / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    for fname, per_class in (("train", per_class_train), ("test", per_class_test)):
        data, labels = _cifar_rows(num_classes, per_class)
        _dump(
            base / fname,
            {
                "filenames": [f"{fname}_{i}.png" for i in range(len(labels))],
                "batch_label": f"{fname} batch",
                "fine_labels": labels,
                "coarse_labels": [c // 5 for c in labels],
                "data": data,
            },
        )
    _dump(
        base / "meta",
        {
            "fine_label_names": [f"fine_{c:02d}" for c in range(num_classes)],
            "coarse_label_names": [f"coarse_{c}" for c in range(max(1, num_classes // 5))],
        },
    )
    return base


# -- SVHN ------------------------------------------------------------------------------------
def write_svhn(root: Path, per_class_train: int = 3, per_class_test: int = 2) -> Path:
    """``root/{train,test}_32x32.mat`` with X (32, 32, 3, N) and y (N, 1), 10 meaning digit 0."""
    import scipy.io

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    splits = (("train_32x32.mat", per_class_train), ("test_32x32.mat", per_class_test))
    for fname, per_class in splits:
        order = interleaved(10, per_class)
        x = np.stack([fake_image(c, i, 3, 32).transpose(1, 2, 0) for c, i in order], axis=3)
        y = np.array([[c if c != 0 else 10] for c, _ in order], dtype=np.uint8)
        scipy.io.savemat(str(root / fname), {"X": x, "y": y})
    return root


# -- TinyImageNet ----------------------------------------------------------------------------
def tiny_wnids(num_classes: int) -> list[str]:
    """Wnids as listed in wnids.txt (deliberately not sorted)."""
    return [f"n{(97 - 13 * k) % 100:02d}{k:06d}" for k in range(num_classes)]


def write_tinyimagenet(
    root: Path, num_classes: int = 3, per_class_train: int = 2, per_class_test: int = 2
) -> Path:
    """``root/tiny-imagenet-200`` with wnids/words, train/<wnid>/images, val annotations.

    Class ``c`` of the loaded dataset is ``sorted(tiny_wnids(n))[c]``; its name in words.txt is
    ``f"thing{c}, synonym"``. Image ``i`` of class ``c`` is a solid :func:`fake_color` (c, i).
    """
    from PIL import Image

    base = Path(root) / "tiny-imagenet-200"
    wnids = tiny_wnids(num_classes)
    ranked = sorted(wnids)
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    words = ["n99999999\tunused entry, other\n"]  # words.txt lists far more wnids than used
    words += [f"{w}\tthing{ranked.index(w)}, synonym\n" for w in wnids]
    (base / "words.txt").write_text("".join(words))
    for w in wnids:
        c = ranked.index(w)
        img_dir = base / "train" / w / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        for i in range(per_class_train):
            Image.new("RGB", (64, 64), fake_color(c, i)).save(img_dir / f"{w}_{i}.JPEG", quality=95)
        (base / "train" / w / f"{w}_boxes.txt").write_text("")
    lines = []
    for k, (c, i) in enumerate(interleaved(num_classes, per_class_test)):
        name = f"val_{k}.JPEG"
        image = Image.new("RGB", (64, 64), fake_color(c, i))
        image.save(base / "val" / "images" / name, quality=95)
        lines.append(f"{name}\t{ranked[c]}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    return base


# -- image folder ----------------------------------------------------------------------------
def write_image_folder(
    root: Path,
    classes: Sequence[str] = ("cat", "dog", "fish"),
    per_class: int = 5,
    size: int = 12,
    *,
    split_dirs: bool = False,
    per_class_test: int = 2,
    ext: str = ".png",
) -> Path:
    """``root/<class>/<k>.png`` (or ``root/{train,test}/<class>/...`` with ``split_dirs``).

    Image ``k`` of the i-th class (in ``sorted(classes)``) is :func:`fake_image` (i, k, 3,
    size) saved losslessly as PNG, so loading at ``image_size=size`` gives it back exactly.
    """
    from PIL import Image

    root = Path(root)
    ranked = sorted(classes)
    parts = [("train", per_class), ("test", per_class_test)] if split_dirs else [("", per_class)]
    for sub, count in parts:
        for name in classes:
            folder = root / sub / name if sub else root / name
            folder.mkdir(parents=True, exist_ok=True)
            c = ranked.index(name)
            for k in range(count):
                arr = fake_image(c, k if sub != "test" else 100 + k, 3, size).transpose(1, 2, 0)
                Image.fromarray(np.ascontiguousarray(arr), "RGB").save(folder / f"{k:03d}{ext}")
    return root


def shared_data_root() -> Path:
    """The read-only real data: ``conftest.SHARED_DATA`` (``$DREAM_CL_TEST_DATA``, else
    ``../shared/data`` beside the checkout); tests that need it skip when it is absent."""
    from conftest import SHARED_DATA

    return SHARED_DATA


# the distillation engine at a size that takes about a second per step on 2 cores
TINY_DISTILL = {
    "iterations": 2,
    "inner_loop": 2,
    "interval": 1,
    "checkpoint_every": 1,
    "width": 8,
    "n_clusters": 8,
    "batch_real": 8,
    "n_data": 32,
}


@functools.lru_cache(maxsize=4)
def tiny_digits(num_classes: int = 3, per_class: int = 30):
    """The first ``per_class`` scikit-learn digits of classes 0..num_classes-1 (8x8, uint8)."""
    from sklearn.datasets import load_digits

    from dream_cl.data.base import DatasetInfo, DatasetSplit

    d = load_digits()
    x = torch.tensor((d.images * 255 / 16).round(), dtype=torch.uint8).unsqueeze(1)
    y = torch.tensor(d.target)
    names = tuple(str(c) for c in range(num_classes))
    info = DatasetInfo("digits", 1, 8, names, (0.3,), (0.4,))
    parts = [x[y == c][:per_class] for c in range(num_classes)]
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    return DatasetSplit(torch.cat(parts), labels, info)


def tiny_distill_config(framework: str = "idc", ipc: int = 2, **overrides):
    """A few seconds at most on 2 cores, every mechanism still exercised."""
    from dream_cl.distill.config import resolve_config
    from dream_cl.protocol.frameworks import LOOP_REAL, LOOP_SYNTHETIC, framework_rules

    values = {
        "device": "cpu",
        "iterations": 2,
        "width": 8,
        "n_clusters": 6,
        "batch_real": 6,
        "interval": 2,
    }
    # each framework gets only the settings its loop reads (another is refused)
    unused = framework_rules(framework).unused
    values |= {k: v for k, v in {"n_data": 12, "batch_syn_max": 8}.items() if k not in unused}
    if framework_rules(framework).loop == LOOP_REAL:
        values["inner_loop"] = 3
        values["factor"] = 2  # exercise multi-formation (the digits preset uses factor 1)
    if framework_rules(framework).loop == LOOP_SYNTHETIC:
        values.update(inner_loop=2, net_epochs_syn=1)
    values.update(overrides)
    return resolve_config(
        "digits", ipc, framework=framework, preset="cpu", image_size=8, overrides=values
    )
