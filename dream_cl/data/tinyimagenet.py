"""Tiny ImageNet (200 classes, 3x64x64) from the folder that ``tiny-imagenet-200.zip`` unpacks to.

Layout: ``root/tiny-imagenet-200/`` with ``wnids.txt``, ``words.txt``,
``train/<wnid>/images/*.JPEG`` and ``val/val_annotations.txt`` + ``val/images/*.JPEG``. The
labelled ``val`` set is the test split (the official ``test`` images have no labels).

Class order is the **sorted** list of the wnids in ``wnids.txt``: the order torchvision's
``ImageFolder`` gives ``train/``, which is what the DREAM/IDC code trains with. Class names are
the first synonym in ``words.txt`` (the wnid itself when ``words.txt`` lacks it). There is no
automatic download.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dream_cl.data._common import decode_images, list_images, malformed
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.spec import DatasetSpec, Options, Required
from dream_cl.errors import UserError

TINY_DIR = "tiny-imagenet-200"
# DREAM (and VICO's DC/DSA/DM) normalise TinyImageNet with the ImageNet statistics
TINY_MEAN = (0.485, 0.456, 0.406)
TINY_STD = (0.229, 0.224, 0.225)
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
_HOW = (
    f"torchvision cannot download it: fetch {TINY_URL} and unzip it in <root>, giving the "
    f"official layout <root>/{TINY_DIR}/{{wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
    "val/val_annotations.txt, val/images/*.JPEG}"
)


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise malformed(path, exc) from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_wnids(base: Path) -> list[str]:
    """The class wnids, sorted (see the module docstring for why sorted)."""
    path = base / "wnids.txt"
    wnids = _read_lines(path)
    if not wnids:
        raise malformed(path, "no wnids listed")
    if len(set(wnids)) != len(wnids) or any(len(w.split()) != 1 for w in wnids):
        raise malformed(path, "expected one distinct wnid per line")
    return sorted(wnids)


def read_class_names(base: Path, wnids: list[str]) -> tuple[str, ...]:
    path = base / "words.txt"
    words: dict[str, str] = {}
    if path.is_file():
        for line in _read_lines(path):
            wnid, _, names = line.partition("\t")
            if names:
                words[wnid.strip()] = names.split(",")[0].strip()
    return tuple(words.get(w) or w for w in wnids)


def _train_files(base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    paths: list[Path] = []
    labels: list[int] = []
    for c, wnid in enumerate(wnids):
        folder = base / "train" / wnid / "images"
        files = list_images(folder)
        if not files:
            raise UserError(
                f"tinyimagenet data incomplete: expected images in {folder}; "
                f"re-extract {TINY_URL.rsplit('/', 1)[-1]} there"
            )
        paths.extend(files)
        labels.extend([c] * len(files))
    return paths, labels


def _val_files(base: Path, wnids: list[str]) -> tuple[list[Path], list[int]]:
    ann = base / "val" / "val_annotations.txt"
    index = {w: i for i, w in enumerate(wnids)}
    entries: list[tuple[int, Path]] = []
    for line in _read_lines(ann):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1].strip() not in index:
            raise malformed(ann, f"bad line '{line[:60]}' (need <file>\\t<wnid from wnids.txt>)")
        entries.append((index[fields[1].strip()], base / "val" / "images" / fields[0].strip()))
    if not entries:
        raise malformed(ann, "no annotations")
    entries.sort(key=lambda e: e[0])  # stable: file order kept within a class
    for _, p in entries:
        if not p.is_file():
            raise UserError(f"tinyimagenet data incomplete: expected {p}; re-extract it")
    return [p for _, p in entries], [c for c, _ in entries]


def _read(root: Path, train: bool, opts: Options) -> DatasetSplit:
    base = root / TINY_DIR
    wnids = read_wnids(base)
    info = DatasetInfo("tinyimagenet", 3, 64, read_class_names(base, wnids), TINY_MEAN, TINY_STD)
    paths, labels = _train_files(base, wnids) if train else _val_files(base, wnids)
    images = decode_images(paths, 64)  # files are listed in label order: no sorting copy
    return DatasetSplit(images, torch.tensor(labels, dtype=torch.int64), info)


def _locate(root: Path, opts: Options) -> Path:
    return root / TINY_DIR


def _required(root: Path, opts: Options, train: bool) -> Required:
    base = root / TINY_DIR
    if train:
        return ((base / "wnids.txt",), (base / "train",))
    val = base / "val"
    return ((base / "wnids.txt",), (val / "val_annotations.txt",), (val / "images",))


TINYIMAGENET = DatasetSpec(
    name="tinyimagenet",
    description="Tiny ImageNet, 3x64x64, 200 classes, 100000/10000 (val used as test)",
    how_to_get=_HOW,
    locate=_locate,
    required=_required,
    reader=_read,
    downloader=None,
)
