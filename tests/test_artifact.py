"""The image-set format: round trip, integrity checks, refusal messages, IDC decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dream_cl.artifact import (
    FORMAT_NAME,
    FORMAT_VERSION,
    ImageSet,
    load_image_set,
    save_image_set,
)
from dream_cl.data.base import DatasetInfo
from dream_cl.errors import UserError

INFO = DatasetInfo("toy", 1, 8, ("zero", "one", "two"), (0.5,), (0.25,))


def make_set(factor: int = 1, ipc: int = 2) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    n = ipc * INFO.num_classes
    images = torch.rand(n, 1, 8, 8, generator=g)
    labels = torch.arange(INFO.num_classes).repeat_interleave(ipc)
    meta = {"ipc": ipc, "seed": 3, "config": {"lr": 0.01, "tags": ["a", "b"]}}
    return ImageSet(images, labels, INFO, factor=factor, method="dream-idc", meta=meta)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    return save_image_set(make_set(), tmp_path / "set")


def test_round_trip_preserves_everything(saved: Path) -> None:
    original = make_set()
    loaded = load_image_set(saved)
    assert torch.equal(loaded.images, original.images)
    assert loaded.images.dtype == torch.float32
    assert torch.equal(loaded.labels, original.labels)
    assert loaded.labels.dtype == torch.int64
    assert loaded.info == original.info
    assert loaded.factor == 1
    assert loaded.method == "dream-idc"
    assert loaded.meta == original.meta
    assert loaded.ipc == 2 and loaded.num_stored == 6 and loaded.num_decoded == 6


def test_load_accepts_either_file_path(saved: Path) -> None:
    for p in (saved / "meta.json", saved / "images.pt", str(saved)):
        assert load_image_set(p).num_stored == 6


def test_meta_json_describes_the_tensor_file(saved: Path) -> None:
    meta = json.loads((saved / "meta.json").read_text())
    assert meta["format"] == FORMAT_NAME
    assert meta["format_version"] == FORMAT_VERSION == 1
    assert meta["images_bytes"] == (saved / "images.pt").stat().st_size
    assert len(meta["images_sha256"]) == 64
    assert meta["info"]["class_names"] == ["zero", "one", "two"]
    assert meta["num_stored"] == 6 and meta["class_counts"] == [2, 2, 2]
    # Only the two files: the atomic writes leave no temporaries behind.
    assert sorted(p.name for p in saved.iterdir()) == ["images.pt", "meta.json"]


def test_tensor_file_loads_with_weights_only(saved: Path) -> None:
    data = torch.load(saved / "images.pt", weights_only=True, map_location="cpu")
    assert set(data) == {"images", "labels"}
    assert data["images"].shape == (6, 1, 8, 8)


def test_truncated_tensor_file_is_refused(saved: Path) -> None:
    path = saved / "images.pt"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match=r"images\.pt.*truncated"):
        load_image_set(saved)


def test_altered_tensor_file_is_refused(saved: Path) -> None:
    path = saved / "images.pt"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="sha256"):
        load_image_set(saved)


def test_newer_format_version_is_refused(saved: Path) -> None:
    meta_path = saved / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = 999
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="format_version 999.*upgrade"):
        load_image_set(saved)


def test_unknown_format_is_refused(saved: Path) -> None:
    meta_path = saved / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = "something-else"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="format"):
        load_image_set(saved)


def test_missing_or_broken_meta_is_refused(saved: Path) -> None:
    meta_path = saved / "meta.json"
    meta_path.write_text("{not json")
    with pytest.raises(UserError, match=r"meta\.json.*not valid JSON"):
        load_image_set(saved)
    meta_path.unlink()
    with pytest.raises(UserError, match=r"meta\.json is missing"):
        load_image_set(saved)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_image_set(tmp_path / "nowhere")


def test_shapes_inconsistent_with_meta_are_refused(saved: Path) -> None:
    # The tensor file is intact (checksum matches) but meta.json claims 3-channel 8x8 images.
    meta_path = saved / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["info"]["channels"] = 3
    meta["info"]["mean"] = [0.5] * 3
    meta["info"]["std"] = [0.25] * 3
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="shape"):
        load_image_set(saved)


def test_labels_outside_the_classes_are_refused(saved: Path) -> None:
    meta_path = saved / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["info"]["class_names"] = ["zero", "one"]  # labels go up to 2
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match="labels outside"):
        load_image_set(saved)


def test_error_messages_are_one_line(tmp_path: Path, saved: Path) -> None:
    (saved / "images.pt").write_bytes(b"garbage")
    for target in (tmp_path / "nowhere", saved):
        with pytest.raises(UserError) as exc:
            load_image_set(target)
        assert "\n" not in str(exc.value)


def test_constructor_rejects_mismatched_tensors() -> None:
    with pytest.raises(ValueError, match="shape"):
        ImageSet(torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.int64), INFO)
    with pytest.raises(ValueError, match="labels"):
        ImageSet(torch.rand(2, 1, 8, 8), torch.zeros(3, dtype=torch.int64), INFO)


def test_factor_two_decodes_into_four_images_each(tmp_path: Path) -> None:
    s = load_image_set(save_image_set(make_set(factor=2), tmp_path / "f2"))
    assert s.factor == 2 and s.num_stored == 6 and s.num_decoded == 24
    images, labels = s.decoded()
    assert images.shape == (24, 1, 8, 8)
    # Tile (0,0) of every stored image first, each keeping its parent's label.
    assert torch.equal(labels, s.labels.repeat(4))
    # Tile (0,0) of image 0 is its top-left 4x4 quarter, upsampled: same mean up to bilinear.
    assert torch.allclose(images[0].mean(), s.images[0, :, :4, :4].mean(), atol=0.05)
