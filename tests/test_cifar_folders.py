"""CIFAR-10 from class folders (a folder or its tar) and the decoded-image cache."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, needs_real_data
from fakedata import write_cifar10
from PIL import Image
from typer.testing import CliRunner

from dream_cl.cli import app
from dream_cl.data import DATASETS, load_train_test
from dream_cl.data.cifar import CIFAR10_CLASSES, cifar10_source
from dream_cl.data.imagecache import CACHE_ENV
from dream_cl.errors import UserError

SHARED_TAR = SHARED_DATA / "cifar10-jpeg.tar"


def pixels(c: int, i: int, split: str) -> np.ndarray:
    """A distinct, smooth 32x32 RGB image per (class, index, split): JPEG keeps it close."""
    base = np.zeros((32, 32, 3), dtype=np.uint8)
    base[..., 0] = 20 * c + 5
    base[..., 1] = 30 * i + (100 if split == "test" else 0)
    base[..., 2] = np.linspace(0, 250, 32, dtype=np.uint8)[None, :]
    return base


def write_folders(root: Path, fmt: str = "png", per_class: int = 2, name: str = "cifar10-jpeg"):
    base = root / name
    for split in ("train", "test"):
        for c, cls in enumerate(CIFAR10_CLASSES):
            folder = base / split / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(pixels(c, i, split)).save(folder / f"{i:04d}.{fmt}")
    return base


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(folder))
    return folder


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_class_folders_read_as_cifar10(tmp_path: Path, cache: Path, fmt: str) -> None:
    write_folders(tmp_path / "data", fmt)
    train, test = load_train_test("cifar10", tmp_path / "data")
    assert train.info.class_names == CIFAR10_CLASSES and train.info.name == "cifar10"
    assert train.info.mean == (0.4914, 0.4822, 0.4465)  # CIFAR-10's constants, unchanged
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.class_counts() == [2] * 10 and test.class_counts() == [2] * 10
    for split, name in ((train, "train"), (test, "test")):
        for k in range(20):
            c, i = int(split.labels[k]), k % 2
            want = torch.from_numpy(pixels(c, i, name)).permute(2, 0, 1).int()
            diff = (split.images[k].int() - want).abs().max()
            assert diff == 0 if fmt == "png" else diff <= 12, (name, k, diff)


def test_the_tar_reads_like_the_folder_and_the_pickles_come_first(tmp_path: Path, cache) -> None:
    folder_root, tar_root = tmp_path / "f", tmp_path / "t"
    base = write_folders(folder_root, "png")
    tar_root.mkdir()
    with tarfile.open(tar_root / "cifar10-jpeg.tar", "w") as tar:
        tar.add(base, arcname="cifar10-jpeg")
    a_train, a_test = load_train_test("cifar10", folder_root)
    b_train, b_test = load_train_test("cifar10", tar_root)
    assert torch.equal(a_train.images, b_train.images) and torch.equal(a_test.images, b_test.images)
    assert torch.equal(a_train.labels, b_train.labels)
    assert cifar10_source(tar_root)[0] == "tar" and cifar10_source(folder_root)[0] == "folder"
    write_cifar10(tar_root, per_class_train=1, per_class_test=1)
    assert cifar10_source(tar_root)[0] == "pickles"
    assert load_train_test("cifar10", tar_root)[0].images.shape[0] == 10
    listed = CliRunner().invoke(app, ["datasets", "--data-root", str(folder_root)]).output
    line = next(x for x in listed.splitlines() if " cifar10 " in x)
    assert "found" in line and "class folders" in line


def test_the_cache_is_hit_invalidated_and_rebuilt_when_corrupt(tmp_path: Path, cache) -> None:
    base = write_folders(tmp_path / "data", "png")
    first = load_train_test("cifar10", tmp_path / "data")[0]
    files = sorted(cache.glob("decoded-*.pt"))
    assert len(files) == 2  # train and test
    # a changed file invalidates its entry even with its size and mtime kept (#32 item 6):
    # the bad file is decoded again, not served from the cache
    victim = base / "train" / "cat" / "0000.png"
    stat = victim.stat()
    original = victim.read_bytes()
    victim.write_bytes(b"x" * len(original))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(UserError, match="0000.png"):
        load_train_test("cifar10", tmp_path / "data")
    victim.write_bytes(original)
    fresh = load_train_test("cifar10", tmp_path / "data")[0]
    assert torch.equal(fresh.images, first.images)
    # a corrupt cache file is rebuilt, not trusted
    for f in cache.glob("decoded-*.pt"):
        f.unlink()
    load_train_test("cifar10", tmp_path / "data")
    assert len(list(cache.glob("decoded-*.pt"))) == 2
    for f in cache.glob("decoded-*.pt"):
        f.write_bytes(f.read_bytes()[:200])
    assert torch.equal(load_train_test("cifar10", tmp_path / "data")[0].images, first.images)
    for f in cache.glob("decoded-*.pt"):
        assert torch.load(f, weights_only=True)["images"].dtype == torch.uint8


def test_bad_class_folders_are_one_line_naming_the_file(tmp_path: Path, cache) -> None:
    root = tmp_path / "data"
    base = write_folders(root, "jpg")
    for child in (base / "train" / "ship").iterdir():
        child.unlink()
    (base / "train" / "ship").rmdir()
    with pytest.raises(UserError, match="no images in .*train/ship"):
        load_train_test("cifar10", root)
    (base / "train" / "ship").mkdir()
    Image.fromarray(pixels(8, 0, "train")).save(base / "train" / "ship" / "0000.jpg")
    (base / "train" / "ship" / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"ship/notes.txt is not a PNG or JPEG"):
        load_train_test("cifar10", root)
    (base / "train" / "ship" / "notes.txt").unlink()
    good = (base / "test" / "dog" / "0001.jpg").read_bytes()
    (base / "test" / "dog" / "0001.jpg").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(UserError, match=r"test/dog/0001.jpg") as err:
        load_train_test("cifar10", root)
    assert "\n" not in str(err.value) and "--download" not in str(err.value)


@pytest.mark.slow
@needs_real_data("cifar10-jpeg.tar")
def test_the_real_cifar10_jpeg_tar(cache) -> None:
    """All 60,000 images straight from the tar (about half a minute), then from the cache."""
    assert DATASETS["cifar10"].found_as(SHARED_TAR.parent) == "a tar of class folders (PNG/JPEG)"
    train, test = load_train_test("cifar10", SHARED_TAR.parent)
    assert train.images.shape == (50000, 3, 32, 32) and test.images.shape == (10000, 3, 32, 32)
    assert train.class_counts() == [5000] * 10 and test.class_counts() == [1000] * 10
    mean = train.images.float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor(train.info.mean), atol=0.01)  # CIFAR-10's stats
    again, _ = load_train_test("cifar10", SHARED_TAR.parent)
    assert torch.equal(again.images, train.images)


@pytest.mark.parametrize(("name", "folder"), [("cifar100", "cifar100-jpeg"), ("svhn", "svhn-jpeg")])
def test_cifar100_and_svhn_read_from_class_folders_and_their_tar(
    tmp_path: Path, cache, name: str, folder: str
) -> None:
    """#31 item 5: the same class-folder and tar layouts as CIFAR-10."""
    import tarfile

    from fakedata import write_cifar100, write_image_folder, write_svhn

    from dream_cl.data import DATASETS
    from dream_cl.data.cifar import CIFAR100_CLASSES
    from dream_cl.data.svhn import SVHN_CLASSES

    classes = CIFAR100_CLASSES if name == "cifar100" else SVHN_CLASSES
    folders, tars = tmp_path / "f", tmp_path / "t"
    write_image_folder(folders / folder, classes, per_class=1, size=32, split_dirs=True,
                       per_class_test=1)  # fmt: skip
    tars.mkdir()
    with tarfile.open(tars / f"{folder}.tar", "w") as tar:
        tar.add(folders / folder, arcname=folder)
    spec = DATASETS[name]
    assert spec.found_as(folders) == "class folders (PNG/JPEG)"
    assert spec.found_as(tars) == "a tar of class folders (PNG/JPEG)"
    train, test = load_train_test(name, folders)
    from_tar = load_train_test(name, tars)
    assert train.info.class_names == classes and train.info.name == name
    assert train.class_counts() == [1] * len(classes) == test.class_counts()
    assert torch.equal(from_tar[0].images, train.images)
    assert torch.equal(from_tar[1].images, test.images)
    # the official files win when both are there
    (write_cifar100 if name == "cifar100" else write_svhn)(folders)
    assert spec.found_as(folders).startswith("official")
    assert load_train_test(name, folders)[0].images.shape[0] != train.images.shape[0]
