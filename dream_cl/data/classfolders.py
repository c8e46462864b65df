"""Datasets read from class folders as well as from their official files.

The common hand-made layout, ``NAME/train/<class>/*`` and ``NAME/test/<class>/*`` (PNG or
JPEG, the dataset's own class names), as a folder under the data root or straight from a
tar of it (``NAME.tar``), for CIFAR-10, CIFAR-100 and SVHN. The official files come first
when both are there; decoded images are cached (:mod:`dream_cl.data.imagecache`). A tar is
read into memory member by member, never extracted: nothing is written, links are not
followed, hidden and ``..`` members are skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dream_cl.data._common import decode_images, decode_tar_members, malformed
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.data.spec import Options, Required
from dream_cl.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SOURCE_WORDS = {
    "folder": "class folders (PNG/JPEG)",
    "tar": "a tar of class folders (PNG/JPEG)",
}
Reader = Callable[[Path, bool, Options], DatasetSplit]


@dataclass(frozen=True)
class ClassFolders:
    """One dataset's class-folder layout: the folder names searched under the data root
    (each as a folder or ``NAME.tar``), its classes in label order and its statistics."""

    dataset: str
    folders: tuple[str, ...]
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def info(self) -> DatasetInfo:
        return DatasetInfo(self.dataset, 3, 32, self.classes, self.mean, self.std)

    def source(self, root: Path) -> tuple[str, Path] | None:
        """("folder" | "tar", path) of the first copy under ``root``; None when none."""
        for name in self.folders:
            if (root / name / "train").is_dir() and (root / name / "test").is_dir():
                return "folder", root / name
        for name in self.folders:
            if (root / f"{name}.tar").is_file():
                return "tar", root / f"{name}.tar"
        return None

    def alternatives(self, root: Path, train: bool) -> tuple[Path, ...]:
        """The paths any of which holds a split in this layout."""
        split = "train" if train else "test"
        return (
            *(root / f / split for f in self.folders),
            *(root / f"{f}.tar" for f in self.folders),
        )

    def listing(self, names: list[str], where: str) -> tuple[list[str], list[int]]:
        """(relative file names, labels) of one split from ``<class>/<file>`` names, sorted
        by class then file name; a missing class, an unknown folder or a file that is not an
        image is a one-line error naming it."""
        by_class: dict[str, list[str]] = {c: [] for c in self.classes}
        for name in names:
            parts = name.split("/")
            if any(part.startswith(".") for part in parts):
                continue  # hidden files (.DS_Store, ...) and '..'
            if len(parts) != 2 or parts[0] not in by_class:
                shown = ", ".join(self.classes[:10]) + (", ..." if len(self.classes) > 10 else "")
                raise UserError(
                    f"{self.dataset}: {where}/{name} is not <class>/<image> with a "
                    f"{self.dataset} class ({shown}); remove it"
                )
            if Path(parts[1]).suffix.lower() not in IMAGE_SUFFIXES:
                raise UserError(
                    f"{self.dataset}: {where}/{name} is not a PNG or JPEG image; remove it"
                )
            by_class[parts[0]].append(name)
        empty = [c for c, files in by_class.items() if not files]
        if empty:
            raise UserError(
                f"{self.dataset}: no images in {where}/{empty[0]}; the class-folder layout "
                f"needs a folder of images for each {self.dataset} class under train/ and test/"
            )
        files, labels = [], []
        for label, c in enumerate(self.classes):
            chosen = sorted(by_class[c])
            files += chosen
            labels += [label] * len(chosen)
        return files, labels

    def split(self, images: torch.Tensor, labels: list[int]) -> DatasetSplit:
        return DatasetSplit(images, torch.tensor(labels, dtype=torch.int64), self.info())

    def read_folder(self, base: Path, train: bool) -> DatasetSplit:
        folder = base / ("train" if train else "test")
        names = []
        for sub in sorted(folder.iterdir()):
            if sub.name.startswith("."):
                continue
            if not sub.is_dir():
                raise UserError(f"{self.dataset}: {sub} is not a class folder; remove it")
            names += [f"{sub.name}/{f.name}" for f in sorted(sub.iterdir()) if f.is_file()]
        files, labels = self.listing(names, str(folder))
        images = decode_images([folder / f for f in files], 32, downloadable=False)
        return self.split(images, labels)

    def read_tar(self, archive: Path, splits: dict[str, dict[str, str]], train: bool):
        key = "train" if train else "test"
        members = splits[key]
        if not members:
            raise malformed(archive, f"no {key}/<class>/<image> members", downloadable=False)
        files, labels = self.listing(list(members), f"{archive}:{key}")
        images = decode_tar_members(archive, [members[f] for f in files], 32)
        return self.split(images, labels)


def tar_listing(archive: Path) -> dict[str, dict[str, str]]:
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


@dataclass(frozen=True)
class WithFolders:
    """A dataset's spec functions that read its official files when they are complete and
    its class folders (or their tar) otherwise."""

    layout: ClassFolders
    official: str | Callable[[Path], Path]
    """Where the official files are (a name under the root, or a function of the root)."""
    complete: Callable[[Path], bool]
    official_required: Callable[[Path, Options, bool], Required]
    official_read: Reader
    official_words: str = "official files"

    def _official(self, root: Path) -> Path:
        return self.official(root) if callable(self.official) else root / self.official

    def source(self, root: Path) -> tuple[str, Path] | None:
        """("official" | "folder" | "tar", path): the complete official files first."""
        if self.complete(root):
            return "official", self._official(root)
        return self.layout.source(root)

    def locate(self, root: Path, opts: Options) -> Path:
        found = self.source(root)
        return found[1] if found else self._official(root)

    def describe(self, root: Path, opts: Options) -> str:
        found = self.source(root)
        if found is None:
            return ""
        return self.official_words if found[0] == "official" else SOURCE_WORDS[found[0]]

    def required(self, root: Path, opts: Options, train: bool) -> Required:
        """Each official file, or any class-folder copy, satisfies the check; the official
        path is named when nothing is there."""
        others = self.layout.alternatives(root, train)
        return tuple((*group, *others) for group in self.official_required(root, opts, train))

    def read(self, root: Path, train: bool, opts: Options) -> DatasetSplit:
        kind, path = self.source(root) or ("official", self._official(root))
        if kind == "official":
            return self.official_read(root, train, opts)
        if kind == "folder":
            return self.layout.read_folder(path, train)
        return self.layout.read_tar(path, tar_listing(path), train)

    def pair(self, root: Path, opts: Options) -> tuple[DatasetSplit, DatasetSplit]:
        found = self.source(root)
        if found is None or found[0] != "tar":
            return self.read(root, True, opts), self.read(root, False, opts)
        splits = tar_listing(found[1])  # one pass over the archive for both splits
        return self.layout.read_tar(found[1], splits, True), self.layout.read_tar(
            found[1], splits, False
        )
