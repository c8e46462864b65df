"""Dataset registry: every loader on its official on-disk format, real (Fashion-)MNIST, errors."""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import sys
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import torch
from conftest import needs_real_data
from fakedata import (
    CIFAR10_NAMES,
    fake_color,
    fake_image,
    shared_data_root,
    tiny_wnids,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_image_folder,
    write_mnist,
    write_svhn,
    write_tinyimagenet,
)

from dream_cl.data import (
    DATASETS,
    DatasetInfo,
    DatasetSpec,
    DatasetSplit,
    RestrictedUnpickler,
    dataset_names,
    load_dataset,
    load_train_test,
    to_float,
)
from dream_cl.data._common import channel_mean_std, stratified_split
from dream_cl.data.cifar import load_pickle
from dream_cl.data.mnist import read_idx
from dream_cl.errors import UserError

SHARED = shared_data_root()
needs_shared = needs_real_data("MNIST", "raw")
FILE_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "tinyimagenet")


def assert_well_formed(split: DatasetSplit, n: int, shape: tuple[int, int, int], k: int) -> None:
    assert split.images.dtype == torch.uint8
    assert tuple(split.images.shape) == (n, *shape)
    assert split.images.is_contiguous()
    assert split.labels.dtype == torch.int64
    assert bool((split.labels[1:] >= split.labels[:-1]).all())
    assert split.num_classes == k
    assert split.offsets[0] == 0 and int(split.offsets[-1]) == n
    for c in range(k):
        assert bool((split.labels[split.class_slice(c)] == c).all())


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def one_line_error(exc: pytest.ExceptionInfo[UserError]) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


# -- registry --------------------------------------------------------------------------------
def test_registry_names_and_read_only() -> None:
    assert dataset_names() == (
        "digits",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
        "svhn",
        "tinyimagenet",
        "imagefolder",
    )
    assert isinstance(DATASETS, MappingProxyType)
    with pytest.raises(TypeError):
        DATASETS["x"] = DATASETS["mnist"]  # type: ignore[index]
    spec = DATASETS["cifar10"]
    assert isinstance(spec, DatasetSpec) and spec.name == "cifar10" and spec.how_to_get
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]


def test_unknown_name_lists_known_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError) as exc:
        load_dataset("imagenet-1k", tmp_path)
    msg = one_line_error(exc)
    assert "imagenet-1k" in msg
    assert all(n in msg for n in dataset_names())


def test_name_lookup_ignores_case_and_separators(tmp_path: Path) -> None:
    write_fashion_mnist(tmp_path, 1, 1)
    assert load_dataset("FashionMNIST", tmp_path).info.name == "fashion_mnist"
    assert load_dataset("Fashion-MNIST", tmp_path, train=False).info.name == "fashion_mnist"


def test_reexports_from_base() -> None:
    from dream_cl.data import base

    assert DatasetInfo is base.DatasetInfo and DatasetSplit is base.DatasetSplit
    assert to_float is base.to_float


# -- MNIST / Fashion-MNIST --------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_fake_idx_round_trip(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path, per_class_train=3, per_class_test=2, gz=gz)
    before = tree(tmp_path)
    train, test = load_train_test("mnist", tmp_path)
    assert tree(tmp_path) == before  # nothing written under root
    assert_well_formed(train, 30, (1, 28, 28), 10)
    assert_well_formed(test, 20, (1, 28, 28), 10)
    assert train.class_counts() == [3] * 10 and test.class_counts() == [2] * 10
    assert train.offsets.tolist() == list(range(0, 31, 3))
    for c in (0, 4, 9):
        for i in range(3):  # files interleave classes; within-class file order must survive
            assert torch.equal(train.class_images(c)[i], torch.from_numpy(fake_image(c, i, 1, 28)))
    assert train.info.mean == (0.1307,) and train.info.std == (0.3081,)


def test_mnist_class_names_match_torchvision() -> None:
    import torchvision

    from dream_cl.data.mnist import FASHION_MNIST_CLASSES, MNIST_CLASSES

    assert list(MNIST_CLASSES) == torchvision.datasets.MNIST.classes
    assert list(FASHION_MNIST_CLASSES) == torchvision.datasets.FashionMNIST.classes


@pytest.mark.slow
@needs_shared
def test_real_mnist() -> None:
    before = tree(SHARED)
    train = load_dataset("mnist", SHARED, train=True)
    test = load_dataset("mnist", SHARED, train=False)
    assert tree(SHARED) == before
    assert_well_formed(train, 60000, (1, 28, 28), 10)
    assert_well_formed(test, 10000, (1, 28, 28), 10)
    assert train.class_counts() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test.class_counts() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    mean, std = channel_mean_std(train.images)
    assert abs(mean[0] - 0.1307) < 5e-4 and abs(std[0] - 0.3081) < 5e-4
    assert train.info.class_names[1] == "1 - one"


@pytest.mark.slow
@needs_real_data("FashionMNIST")
def test_real_fashion_mnist() -> None:
    train, test = load_train_test("fashion_mnist", SHARED)
    assert_well_formed(train, 60000, (1, 28, 28), 10)
    assert_well_formed(test, 10000, (1, 28, 28), 10)
    assert train.class_counts() == [6000] * 10 and test.class_counts() == [1000] * 10
    mean, std = channel_mean_std(train.images)
    assert abs(mean[0] - 0.2861) < 5e-4 and abs(std[0] - 0.3530) < 5e-4
    assert train.info.class_names[-1] == "Ankle boot"


def test_idx_malformed_names_file(tmp_path: Path) -> None:
    raw = write_mnist(tmp_path, 1, 1)
    bad = raw / "train-images-idx3-ubyte.gz"
    with gzip.open(bad, "rb") as f:
        data = f.read()
    with gzip.open(bad, "wb") as f:
        f.write(data[:-100])  # truncated
    with pytest.raises(UserError) as exc:
        load_dataset("mnist", tmp_path)
    assert str(bad) in one_line_error(exc) and "truncated" in str(exc.value)
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="malformed") as exc:
        load_dataset("mnist", tmp_path)
    assert str(bad) in str(exc.value)
    plain = tmp_path / "x-idx"
    plain.write_bytes(b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"abc")
    with pytest.raises(UserError, match="unsigned byte"):
        read_idx(plain, 1)


def test_mnist_label_count_mismatch(tmp_path: Path) -> None:
    raw = write_mnist(tmp_path, 2, 1, gz=False)
    three_labels = b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + b"\x00\x01\x02"
    (raw / "t10k-labels-idx1-ubyte").write_bytes(three_labels)
    with pytest.raises(UserError) as exc:
        load_dataset("mnist", tmp_path, train=False)
    assert str(raw / "t10k-labels-idx1-ubyte") in str(exc.value)


# -- CIFAR -----------------------------------------------------------------------------------
def test_cifar10_official_layout(tmp_path: Path) -> None:
    base = write_cifar10(tmp_path, per_class_train=3, per_class_test=2)
    before = tree(tmp_path)
    train, test = load_train_test("cifar10", tmp_path)
    assert tree(tmp_path) == before
    assert DATASETS["cifar10"].expected_path(tmp_path) == base
    assert_well_formed(train, 30, (3, 32, 32), 10)
    assert_well_formed(test, 20, (3, 32, 32), 10)
    assert train.info.class_names == CIFAR10_NAMES
    assert train.info.mean == (0.4914, 0.4822, 0.4465)
    assert train.info.std == (0.2023, 0.1994, 0.2010)
    # train images are spread over data_batch_1..5; each class keeps its order across batches
    for c in range(10):
        for i in range(3):
            assert torch.equal(train.class_images(c)[i], torch.from_numpy(fake_image(c, i, 3, 32)))
    assert torch.equal(test.class_images(7)[1], torch.from_numpy(fake_image(7, 1, 3, 32)))
    assert int(train.images[0, 2, 5, 9]) == int(fake_image(0, 0, 3, 32)[2, 5, 9])


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path, per_class_train=2, per_class_test=1)
    train = load_dataset("cifar100", tmp_path)
    test = load_dataset("cifar100", tmp_path, train=False)
    assert_well_formed(train, 200, (3, 32, 32), 100)
    assert_well_formed(test, 100, (3, 32, 32), 100)
    assert train.class_counts() == [2] * 100  # coarse labels would give 20 classes of 10
    assert train.info.class_names[57] == "fine_57"
    assert torch.equal(train.class_images(57)[1], torch.from_numpy(fake_image(57, 1, 3, 32)))
    assert train.info.mean == (0.4914, 0.4822, 0.4465)  # IDC/DREAM reuse CIFAR-10's


def test_cifar_missing_batch_names_it(tmp_path: Path) -> None:
    base = write_cifar10(tmp_path, 1, 1)
    (base / "data_batch_3").unlink()
    assert not DATASETS["cifar10"].available(tmp_path)
    with pytest.raises(UserError) as exc:
        load_dataset("cifar10", tmp_path)
    msg = one_line_error(exc)
    assert str(base / "data_batch_3") in msg and "--download" in msg
    assert load_dataset("cifar10", tmp_path, train=False).class_counts() == [1] * 10


def test_cifar_malformed_pickle(tmp_path: Path) -> None:
    base = write_cifar10(tmp_path, 1, 1)
    (base / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(UserError) as exc:
        load_dataset("cifar10", tmp_path, train=False)
    assert str(base / "test_batch") in one_line_error(exc)
    with open(base / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}, f, protocol=2)
    with pytest.raises(UserError, match="3072") as exc:
        load_dataset("cifar10", tmp_path, train=False)
    assert str(base / "test_batch") in str(exc.value)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_restricted_unpickler_refuses_os_system(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Evil(marker)}, protocol=protocol)
    assert b"system" in payload
    import io

    with pytest.raises(pickle.UnpicklingError, match="system"):
        RestrictedUnpickler(io.BytesIO(payload)).load()
    # hand-written: GLOBAL 'os system' applied to a string
    raw = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        RestrictedUnpickler(io.BytesIO(raw)).load()
    base = write_cifar10(tmp_path, 1, 1)
    (base / "batches.meta").write_bytes(payload)
    with pytest.raises(UserError) as exc:
        load_dataset("cifar10", tmp_path)
    assert str(base / "batches.meta") in one_line_error(exc)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(eval, protocol=protocol))).load()


@pytest.mark.parametrize("protocol", [2, 4])
def test_restricted_unpickler_reads_numpy_and_containers(tmp_path: Path, protocol: int) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 12)
    obj = {b"data": arr, "labels": [1, 2], "names": (b"a", "b"), "f": np.float32(1.5)}
    path = tmp_path / "p"
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = load_pickle(path)
    assert set(got) == {"data", "labels", "names", "f"}  # bytes keys decoded
    assert np.array_equal(got["data"], arr) and got["labels"] == [1, 2]
    assert float(got["f"]) == 1.5
    # pickles written by numpy 1.x (and the official CIFAR files) name numpy.core.multiarray
    payload = pickle.dumps({"data": arr}, protocol=2)  # text GLOBAL opcode: safe to edit
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in payload
    path.write_bytes(payload)
    assert np.array_equal(load_pickle(path)["data"], arr)


# -- SVHN ------------------------------------------------------------------------------------
def test_svhn_mat_layout_and_label_ten(tmp_path: Path) -> None:
    write_svhn(tmp_path, per_class_train=3, per_class_test=2)
    train, test = load_train_test("svhn", tmp_path)
    assert_well_formed(train, 30, (3, 32, 32), 10)
    assert_well_formed(test, 20, (3, 32, 32), 10)
    assert train.class_counts() == [3] * 10  # label 10 became class 0, nothing left over
    for c in (0, 3, 9):
        for i in range(3):  # (H, W, C, N) -> (N, C, H, W) with the right axis order
            assert torch.equal(train.class_images(c)[i], torch.from_numpy(fake_image(c, i, 3, 32)))
    assert train.info.mean == (0.4377, 0.4438, 0.4728)
    assert DATASETS["svhn"].expected_path(tmp_path) == tmp_path


def test_svhn_malformed(tmp_path: Path) -> None:
    import scipy.io

    write_svhn(tmp_path, 1, 1)
    bad = tmp_path / "test_32x32.mat"
    bad.write_bytes(b"MATLAB? no")
    with pytest.raises(UserError) as exc:
        load_dataset("svhn", tmp_path, train=False)
    assert str(bad) in one_line_error(exc)
    x = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(str(bad), {"X": x, "y": np.array([[1], [11]])})
    with pytest.raises(UserError, match="1..10") as exc:
        load_dataset("svhn", tmp_path, train=False)
    assert str(bad) in str(exc.value)


# -- TinyImageNet ----------------------------------------------------------------------------
def test_tinyimagenet_folder_layout(tmp_path: Path) -> None:
    base = write_tinyimagenet(tmp_path, num_classes=3, per_class_train=2, per_class_test=2)
    train, test = load_train_test("tinyimagenet", tmp_path)
    assert DATASETS["tinyimagenet"].expected_path(tmp_path) == base
    assert_well_formed(train, 6, (3, 64, 64), 3)
    assert_well_formed(test, 6, (3, 64, 64), 3)
    assert tiny_wnids(3) != sorted(tiny_wnids(3))  # the file order differs from class order
    assert train.info.class_names == ("thing0", "thing1", "thing2")  # sorted wnids, 1st synonym
    assert test.info == train.info
    for split in (train, test):
        for c in range(3):
            for i in range(2):
                want = torch.tensor(fake_color(c, i), dtype=torch.int16).view(3, 1, 1)
                got = split.class_images(c)[i].to(torch.int16)
                assert int((got - want).abs().max()) <= 3  # JPEG of a flat colour
    assert train.info.mean == (0.485, 0.456, 0.406)  # DREAM's (ImageNet statistics)


def test_tinyimagenet_missing_says_where_to_get_it(tmp_path: Path) -> None:
    for download in (False, True):
        with pytest.raises(UserError) as exc:
            load_dataset("tinyimagenet", tmp_path, download=download)
        msg = one_line_error(exc)
        assert str(tmp_path / "tiny-imagenet-200") in msg
        assert "tiny-imagenet-200.zip" in msg


def test_tinyimagenet_corrupt_jpeg_and_annotations(tmp_path: Path) -> None:
    base = write_tinyimagenet(tmp_path, 2, 1, 1)
    bad = base / "val" / "images" / "val_0.JPEG"
    bad.write_bytes(b"\xff\xd8 broken")
    with pytest.raises(UserError) as exc:
        load_dataset("tinyimagenet", tmp_path, train=False)
    assert str(bad) in one_line_error(exc)
    ann = base / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn_unknown\t0\t0\t1\t1\n")
    with pytest.raises(UserError) as exc:
        load_dataset("tinyimagenet", tmp_path, train=False)
    assert str(ann) in one_line_error(exc)


# -- image folder ----------------------------------------------------------------------------
def test_imagefolder_stratified_split(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "imgs", ("fish", "cat", "dog"), per_class=10, size=12)
    train, test = load_train_test("imagefolder", folder, image_size=12, test_fraction=0.3)
    assert_well_formed(train, 21, (3, 12, 12), 3)
    assert_well_formed(test, 9, (3, 12, 12), 3)
    assert train.info.class_names == ("cat", "dog", "fish")
    assert train.class_counts() == [7, 7, 7] and test.class_counts() == [3, 3, 3]
    # every image is in exactly one split, byte-exact (PNG, no resize)
    for c in range(3):
        got = torch.cat([train.class_images(c), test.class_images(c)])
        found = sorted(int(x[0, 0, 0]) for x in got)
        want = sorted(int(fake_image(c, k, 3, 12)[0, 0, 0]) for k in range(10))
        assert found == want
        for x in got:
            k = next(k for k in range(10) if np.array_equal(fake_image(c, k, 3, 12), x.numpy()))
            assert k is not None
    mean, std = channel_mean_std(train.images)
    assert train.info.mean == mean and train.info.std == std and test.info == train.info
    alone = load_dataset("imagefolder", folder, train=False, image_size=12, test_fraction=0.3)
    assert alone.info == train.info and torch.equal(alone.images, test.images)
    again = load_dataset("imagefolder", folder, image_size=12, test_fraction=0.3)
    assert torch.equal(again.images, train.images)
    other = load_dataset("imagefolder", folder, image_size=12, test_fraction=0.3, split_seed=5)
    assert not torch.equal(other.images, train.images)


def test_imagefolder_options(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "sub", ("a", "b"), per_class=3, size=20)
    gray = load_dataset("imagefolder", tmp_path, path="sub", grayscale="true", image_size="8")
    assert tuple(gray.images.shape[1:]) == (1, 8, 8) and gray.info.channels == 1
    assert DATASETS["imagefolder"].expected_path(tmp_path, path="sub") == tmp_path / "sub"
    with pytest.raises(UserError, match="no option colour"):
        load_dataset("imagefolder", tmp_path, path="sub", colour=True)
    with pytest.raises(UserError, match="test_fraction"):
        load_dataset("imagefolder", tmp_path, path="sub", test_fraction=1.5)
    with pytest.raises(UserError, match="image_size"):
        load_dataset("imagefolder", tmp_path, path="sub", image_size="big")
    with pytest.raises(UserError) as exc:
        load_dataset("imagefolder", tmp_path, path="nowhere")
    assert str(tmp_path / "nowhere") in one_line_error(exc)
    with pytest.raises(UserError, match="no class sub-folders"):
        load_dataset("imagefolder", tmp_path / "sub" / "a")


def test_imagefolder_train_test_dirs(tmp_path: Path) -> None:
    folder = write_image_folder(
        tmp_path, ("x", "y"), per_class=4, size=10, split_dirs=True, per_class_test=2
    )
    train, test = load_train_test("imagefolder", folder, image_size=10)
    assert train.class_counts() == [4, 4] and test.class_counts() == [2, 2]
    assert torch.equal(test.class_images(1)[1], torch.from_numpy(fake_image(1, 101, 3, 10)))
    assert torch.equal(train.class_images(0)[3], torch.from_numpy(fake_image(0, 3, 3, 10)))


# -- digits ----------------------------------------------------------------------------------
def test_digits_stratified_and_deterministic() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train, test = load_train_test("digits", "unused")
    assert len(train) + len(test) == 1797
    assert_well_formed(train, len(train), (1, 8, 8), 10)
    totals = np.bincount(bunch.target, minlength=10)
    both = torch.tensor(train.class_counts()) + torch.tensor(test.class_counts())
    assert both.tolist() == totals.tolist()
    assert test.class_counts() == [round(n * 0.2) for n in totals]
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    train_idx, test_idx = stratified_split(torch.from_numpy(bunch.target), 10, 0.2, 0)
    assert set(train_idx.tolist()).isdisjoint(test_idx.tolist())
    first = int(train_idx[0])  # its class's first training image, values round(v*255/16)
    c = int(bunch.target[first])
    want = np.round(bunch.images[first] * 255 / 16).astype(np.uint8)
    assert np.array_equal(train.class_images(c)[0, 0].numpy(), want)
    mean, std = channel_mean_std(train.images)
    assert train.info.mean == mean and train.info.std == std and test.info == train.info
    assert load_dataset("digits", "unused", train=False).info == train.info
    assert torch.equal(load_dataset("digits", "unused").images, train.images)
    assert not torch.equal(load_dataset("digits", "unused", split_seed=1).images, train.images)
    assert DATASETS["digits"].available("anywhere")


# -- missing data, download ------------------------------------------------------------------
@pytest.mark.parametrize("name", FILE_DATASETS)
def test_missing_data_names_expected_path(tmp_path: Path, name: str) -> None:
    spec = DATASETS[name]
    assert not spec.available(tmp_path)
    with pytest.raises(UserError) as exc:
        load_dataset(name, tmp_path, train=False)
    msg = one_line_error(exc)
    assert str(spec.expected_path(tmp_path)) in msg
    assert ("--download" in msg) == (spec.downloader is not None)


def test_available_matches_written_files(tmp_path: Path) -> None:
    writers = {
        "mnist": write_mnist,
        "fashion_mnist": write_fashion_mnist,
        "cifar10": write_cifar10,
        "cifar100": write_cifar100,
        "svhn": write_svhn,
        "tinyimagenet": write_tinyimagenet,
    }
    for name, write in writers.items():
        assert not DATASETS[name].available(tmp_path)
        write(tmp_path)
        assert DATASETS[name].available(tmp_path), name


class _FakeTorchvisionCIFAR10:
    calls: list[tuple[str, bool]] = []

    def __init__(self, root: str, train: bool = True, download: bool = False) -> None:
        type(self).calls.append((root, download))
        write_cifar10(Path(root), 1, 1)


def test_download_uses_torchvision_only_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    _FakeTorchvisionCIFAR10.calls = []
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", _FakeTorchvisionCIFAR10)
    with pytest.raises(UserError):
        load_dataset("cifar10", tmp_path)  # no download unless asked
    assert _FakeTorchvisionCIFAR10.calls == []
    split = load_dataset("cifar10", tmp_path, download=True)
    assert _FakeTorchvisionCIFAR10.calls == [(str(tmp_path), True)]
    assert split.class_counts() == [1] * 10
    load_dataset("cifar10", tmp_path, train=False, download=True)
    assert len(_FakeTorchvisionCIFAR10.calls) == 1  # present now: no second download


def test_download_failure_is_one_line_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision

    def offline(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried 2 mirrors")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(UserError) as exc:
        load_dataset("mnist", tmp_path, download=True)
    msg = one_line_error(exc)
    assert "Tried 2 mirrors" in msg and str(tmp_path / "MNIST" / "raw") in msg


def test_unknown_option_for_fixed_dataset(tmp_path: Path) -> None:
    write_mnist(tmp_path, 1, 1)
    with pytest.raises(UserError, match="options: none"):
        load_dataset("mnist", tmp_path, image_size=32)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
