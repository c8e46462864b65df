"""One on-disk format for every small image set: coresets and distilled sets alike.

A set is a directory with two files:

- ``images.pt``: ``{"images": float32 (N, C, H, W) in [0,1], "labels": int64 (N,)}``. Only
  tensors, so it loads with ``torch.load(weights_only=True)`` and no pickled code ever runs.
  The images are the *stored* ones; with an IDC factor f > 1 each decodes into f*f images.
- ``meta.json``: format name and version, the dataset info (normalisation included), factor,
  method, free-form meta, counts, and the sha256 and byte size of ``images.pt``.

Both are written atomically, tensors first and JSON last: a reader that finds ``meta.json``
finds a complete tensor file, and the checksum catches a file changed or cut short later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dream_cl.data.base import DatasetInfo
from dream_cl.errors import UserError
from dream_cl.formation import decode
from dream_cl.utils import atomic_torch_save, atomic_write_json

FORMAT_NAME = "dream-cl-imageset"
FORMAT_VERSION = 1
IMAGES_FILE = "images.pt"
META_FILE = "meta.json"


@dataclass
class ImageSet:
    """A small labelled image set plus what is needed to train on it.

    ``images`` are the stored images (float32 in [0,1]); ``decoded()`` gives the training
    images. ``info`` carries the normalisation a model trained on the set must use.
    """

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    factor: int = 1
    method: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.images = self.images.detach().to(torch.float32)
        self.labels = self.labels.detach().to(torch.int64)
        _check_consistent(self.images, self.labels, self.info, self.factor, where="ImageSet")

    @property
    def num_stored(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_decoded(self) -> int:
        return self.num_stored * self.factor * self.factor

    @property
    def ipc(self) -> int:
        """Stored images per class (the budget); the largest class count if classes differ."""
        if self.num_stored == 0:
            return 0
        counts = torch.bincount(self.labels, minlength=self.info.num_classes)
        return int(counts.max())

    def class_counts(self) -> list[int]:
        return torch.bincount(self.labels, minlength=self.info.num_classes).tolist()

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Training images and labels: the stored ones passed through IDC decoding."""
        with torch.no_grad():
            return decode(self.images, self.labels, self.factor)


def _check_consistent(
    images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, factor: int, where: str
) -> None:
    """Raise ValueError when tensors cannot belong to ``info`` (shape, label range, factor)."""
    expected = (info.channels, info.image_size, info.image_size)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected:
        raise ValueError(
            f"{where}: images have shape {tuple(images.shape)}, expected (N, {expected[0]}, "
            f"{expected[1]}, {expected[2]}) for dataset {info.name!r}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{where}: {tuple(labels.shape)} labels for {images.shape[0]} images")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= info.num_classes):
        raise ValueError(
            f"{where}: labels outside 0..{info.num_classes - 1} for dataset {info.name!r}"
        )
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"{where}: factor must be a positive integer, got {factor!r}")
    if factor > info.image_size:
        raise ValueError(
            f"{where}: factor {factor} is larger than the {info.image_size}-pixel images "
            "(each stored image decodes into factor x factor tiles)"
        )


def _check_counts(
    meta: dict[str, Any], meta_path: Path, labels: torch.Tensor, info: DatasetInfo, factor: int
) -> None:
    """The counts ``meta.json`` records must be integers and agree with the tensors."""
    counts = torch.bincount(labels, minlength=info.num_classes).tolist()
    expected = {
        "num_stored": int(labels.shape[0]),
        "num_decoded": int(labels.shape[0]) * factor * factor,
        "ipc": max(counts) if labels.numel() else 0,
    }
    for key, want in expected.items():
        if key not in meta:
            continue
        got = meta[key]
        if isinstance(got, bool) or not isinstance(got, int):
            raise UserError(
                f"{meta_path} field '{key}' is {got!r}, not an integer; re-create the image set"
            )
        if got != want:
            raise UserError(
                f"{meta_path} says {key} {got} but the images give {want} (factor {factor}); "
                "the fields contradict the images: re-create the image set"
            )
    if "class_counts" in meta and meta["class_counts"] != counts:
        raise UserError(
            f"{meta_path} field 'class_counts' does not match the labels; re-create the image set"
        )
    recorded = meta.get("meta", {}).get("config", {})
    if isinstance(recorded, dict) and "factor" in recorded and recorded["factor"] != factor:
        raise UserError(
            f"{meta_path} says factor {factor} but its run's configuration says "
            f"{recorded['factor']!r}; re-create the image set"
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_image_set(s: ImageSet, out_dir: str | Path) -> Path:
    """Write ``s`` to ``out_dir`` (created if needed); return the directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images_path = out / IMAGES_FILE
    tensors = {"images": s.images.cpu().contiguous(), "labels": s.labels.cpu().contiguous()}
    atomic_torch_save(tensors, images_path)
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "info": s.info.to_dict(),
        "factor": s.factor,
        "method": s.method,
        "meta": s.meta,
        "num_stored": s.num_stored,
        "num_decoded": s.num_decoded,
        "ipc": s.ipc,
        "class_counts": s.class_counts(),
        "images_file": IMAGES_FILE,
        "images_sha256": _sha256(images_path),
        "images_bytes": images_path.stat().st_size,
    }
    atomic_write_json(meta, out / META_FILE)
    return out


def _resolve_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"image set {p} does not exist; pass a folder written by coreset, distill or run"
        )
    if p.is_file():
        if p.name not in (META_FILE, IMAGES_FILE):
            raise UserError(
                f"{p} is not an image set file; pass the directory holding {META_FILE} "
                f"and {IMAGES_FILE}"
            )
        p = p.parent
    return p


def _read_meta(meta_path: Path) -> dict[str, Any]:
    if not meta_path.is_file():
        raise UserError(
            f"{meta_path} is missing; the image set is incomplete or not one, re-create it"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{meta_path} is not valid JSON ({type(exc).__name__}); re-create the image set"
        ) from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path} does not hold a JSON object; re-create the image set")
    if meta.get("format") != FORMAT_NAME:
        raise UserError(
            f"{meta_path} has format {meta.get('format')!r}, not {FORMAT_NAME!r}; "
            "pass a dream-cl image set directory"
        )
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UserError(f"{meta_path} has invalid format_version {version!r}; re-create the set")
    if version > FORMAT_VERSION:
        raise UserError(
            f"{meta_path} has format_version {version}, newer than the supported "
            f"{FORMAT_VERSION}; upgrade dream-cl to read it"
        )
    return meta


_REQUIRED = object()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _mangled(meta_path: Path, name: str) -> UserError:
    return UserError(f"{meta_path} lacks or mangles field '{name}'; re-create the image set")


def _field(
    meta: dict[str, Any],
    meta_path: Path,
    name: str,
    ok: Callable[[Any], bool],
    default: Any = _REQUIRED,
) -> Any:
    """``meta[name]``, checked by ``ok``; missing or wrong is one line naming the field."""
    value = meta.get(name, default)
    if value is _REQUIRED or not ok(value):
        raise _mangled(meta_path, name)
    return value


def load_image_set(path: str | Path) -> ImageSet:
    """Read an image set written by :func:`save_image_set`, verifying it first.

    ``path`` may be the directory or either of its two files. Any problem (missing or
    malformed files, unknown or newer format, a tensor file truncated or changed since it was
    written, shapes or labels that disagree with the metadata) is a one-line ``UserError``.
    """
    root = _resolve_dir(path)
    meta_path = root / META_FILE
    meta = _read_meta(meta_path)
    images_path = root / IMAGES_FILE  # fixed name: meta.json cannot point elsewhere
    if not images_path.is_file():
        raise UserError(f"{images_path} is missing; re-create the image set")
    expected_bytes = _field(meta, meta_path, "images_bytes", _is_int)
    expected_sha = _field(meta, meta_path, "images_sha256", lambda v: isinstance(v, str))
    factor = _field(meta, meta_path, "factor", _is_int, default=1)
    extra = _field(meta, meta_path, "meta", lambda v: isinstance(v, dict), default={})
    method = str(meta.get("method", "unknown"))
    try:
        info = DatasetInfo.from_dict(meta.get("info"))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _mangled(meta_path, "info") from None
    size = images_path.stat().st_size
    if size != expected_bytes:
        raise UserError(
            f"{images_path} is {size} bytes but {META_FILE} says {expected_bytes} "
            "(truncated or replaced); re-create the image set"
        )
    if _sha256(images_path) != expected_sha:
        raise UserError(
            f"{images_path} does not match the sha256 in {META_FILE} (altered or corrupt); "
            "re-create the image set"
        )
    try:
        tensors = torch.load(images_path, weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for a bad archive
        raise UserError(
            f"{images_path} cannot be loaded ({type(exc).__name__}); re-create the image set"
        ) from None
    if (
        not isinstance(tensors, dict)
        or not isinstance(tensors.get("images"), torch.Tensor)
        or not isinstance(tensors.get("labels"), torch.Tensor)
    ):
        raise UserError(
            f"{images_path} must hold a dict with tensors 'images' and 'labels'; "
            "re-create the image set"
        )
    images, labels = tensors["images"], tensors["labels"]
    if not images.is_floating_point() or labels.dtype != torch.int64:
        raise UserError(
            f"{images_path} has images {images.dtype} / labels {labels.dtype}, expected "
            "float32 / int64; re-create the image set"
        )
    if not bool(torch.isfinite(images).all()):
        raise UserError(
            f"{images_path} holds NaN or infinite pixels (a distillation that diverged); "
            "distil the set again"
        )
    try:
        _check_consistent(images, labels, info, factor, where=str(images_path))
    except ValueError as exc:
        raise UserError(f"{exc}; re-create the image set") from None
    _check_counts(meta, meta_path, labels, info, factor)
    return ImageSet(images, labels, info, factor=factor, method=method, meta=dict(extra))
