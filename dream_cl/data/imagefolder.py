"""Any folder of class sub-folders (torchvision ``ImageFolder`` style) as a dataset.

The folder is the data root itself, or ``root / path`` when the ``path`` option is given (an
absolute ``path`` ignores ``root``). Each sub-folder is one class (sorted by name); its image
files (sorted by name) are that class's images. If the folder holds both ``train/`` and
``test/`` sub-folders, those are the split (test classes must also exist in train);
otherwise every class is split deterministically: ``test_fraction`` of its images (default
0.2, at least one when a class has two or more) go to test, drawn with ``split_seed``.

Options: ``path`` (default: none), ``image_size`` (default 32; other sizes are resized so the
shorter side fits, then centre-cropped), ``test_fraction``, ``split_seed`` (default 0),
``grayscale`` (default False: RGB). Mean and std are computed on the train split, so loading
the test split alone still decodes the train images once.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import torch

from dream_cl.data._common import channel_mean_std, decode_images, list_images, stratified_split
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.digits import check_test_fraction
from dream_cl.data.spec import DatasetSpec, Options, Required
from dream_cl.errors import UserError

_OPTIONS = MappingProxyType(
    {"path": None, "image_size": 32, "test_fraction": 0.2, "split_seed": 0, "grayscale": False}
)
_HOW = (
    "put one sub-folder of images per class there (optionally inside train/ and test/), "
    "or point the path option at such a folder"
)


def folder_of(root: Path, opts: Options) -> Path:
    path = opts.get("path")
    return root / Path(path).expanduser() if path else root


def _classes(folder: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image files, one per sub-folder (hidden ones skipped); a
    sub-folder without images is a one-line error, not a class silently dropped."""
    found: dict[str, list[Path]] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = list_images(sub)
        if not files:
            raise UserError(
                f"imagefolder: the class folder {sub} holds no images; add some or move it "
                f"out of {folder}"
            )
        found[sub.name] = files
    return found


def _flatten(
    classes: tuple[str, ...], by_class: dict[str, list[Path]]
) -> tuple[list[Path], torch.Tensor]:
    paths: list[Path] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        files = by_class.get(name, [])
        paths.extend(files)
        labels.extend([c] * len(files))
    return paths, torch.tensor(labels, dtype=torch.int64)


Plan = tuple[tuple[str, ...], list[Path], list[Path], torch.Tensor, torch.Tensor]


def _plan(folder: Path, opts: Options) -> Plan:
    """Class names and (train paths, test paths, train labels, test labels), in label order."""
    if not folder.is_dir():
        raise UserError(f"imagefolder data not found: expected the folder {folder}; {_HOW}")
    train_dir, test_dir = folder / "train", folder / "test"
    if train_dir.is_dir() and test_dir.is_dir():
        train_by, test_by = _classes(train_dir), _classes(test_dir)
        if not train_by:
            raise UserError(f"imagefolder: no class sub-folders with images in {train_dir}; {_HOW}")
        extra = sorted(set(test_by) - set(train_by))
        if extra:
            raise UserError(
                f"imagefolder: {test_dir} has classes missing from {train_dir}: {', '.join(extra)}"
            )
        classes = tuple(train_by)
        train_paths, train_labels = _flatten(classes, train_by)
        test_paths, test_labels = _flatten(classes, test_by)
        return classes, train_paths, test_paths, train_labels, test_labels
    by_class = _classes(folder)
    if not by_class:
        raise UserError(f"imagefolder: no class sub-folders with images in {folder}; {_HOW}")
    classes = tuple(by_class)
    paths, labels = _flatten(classes, by_class)
    fraction = check_test_fraction(float(opts["test_fraction"]))
    train_idx, test_idx = stratified_split(labels, len(classes), fraction, int(opts["split_seed"]))
    return (
        classes,
        [paths[i] for i in train_idx.tolist()],
        [paths[i] for i in test_idx.tolist()],
        labels[train_idx],
        labels[test_idx],
    )


def _size(opts: Options) -> int:
    size = int(opts["image_size"])
    if not 1 <= size <= 4096:
        raise UserError(f"option image_size={size} must be between 1 and 4096")
    return size


def _pair(root: Path, opts: Options) -> tuple[DatasetSplit, DatasetSplit]:
    train, info, test_paths, test_labels = _train_and_plan(root, opts)
    size, gray = _size(opts), bool(opts["grayscale"])
    test = DatasetSplit(
        decode_images(test_paths, size, gray, downloadable=False), test_labels, info
    )
    return train, test


def _train_and_plan(
    root: Path, opts: Options
) -> tuple[DatasetSplit, DatasetInfo, list[Path], torch.Tensor]:
    size, gray = _size(opts), bool(opts["grayscale"])
    classes, train_paths, test_paths, train_labels, test_labels = _plan(folder_of(root, opts), opts)
    images = decode_images(train_paths, size, gray, downloadable=False)
    mean, std = channel_mean_std(images)
    info = DatasetInfo("imagefolder", 1 if gray else 3, size, classes, mean, std)
    return DatasetSplit(images, train_labels, info), info, test_paths, test_labels


def _read(root: Path, train: bool, opts: Options) -> DatasetSplit:
    if train:
        return _train_and_plan(root, opts)[0]
    return _pair(root, opts)[1]


def _required(root: Path, opts: Options, train: bool) -> Required:
    return ((folder_of(root, opts),),)


IMAGEFOLDER = DatasetSpec(
    name="imagefolder",
    description="your own folder of class sub-folders (options: path, image_size, "
    "test_fraction, split_seed, grayscale)",
    how_to_get=_HOW,
    locate=folder_of,
    reads_folder=True,
    required=_required,
    reader=_read,
    pair_reader=_pair,
    options=_OPTIONS,
    folders=True,
)
