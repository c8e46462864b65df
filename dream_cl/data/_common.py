"""Helpers every loader shares: one-line errors, file checks, stats, splits, image decoding.

Loaders never write under ``root`` unless asked to download, because the data root may be a
shared read-only folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.errors import UserError

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".ppm",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)


def one_line(text: object) -> str:
    """Collapse whitespace so a message (often a wrapped exception) fits on one line."""
    return " ".join(str(text).split())


def malformed(path: Path, reason: object, downloadable: bool = True) -> UserError:
    """The error for a file that exists but cannot be read as the expected format."""
    how = " (for a downloadable dataset: delete it and pass --download)" if downloadable else ""
    return UserError(
        f"malformed data file {path}: {one_line(reason)}; replace it with a good copy{how}"
    )


def require_file(path: Path, name: str, how_to_get: str) -> Path:
    """Return ``path`` if it is a file; otherwise a one-line missing-data error."""
    if not path.is_file():
        raise UserError(f"{name} data not found: expected {path}; {how_to_get}")
    return path


def first_existing(candidates: Sequence[Path]) -> Path | None:
    for p in candidates:
        if p.is_file():
            return p
    return None


def split_from_sorted_or_not(
    images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo
) -> DatasetSplit:
    """Skip the sorting copy when labels are already grouped (TinyImageNet train is 1.2 GB)."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if labels.numel() < 2 or not bool((labels[1:] < labels[:-1]).any()):
        return DatasetSplit(images, labels, info)
    return DatasetSplit.from_unsorted(images, labels, info)


def check_labels(labels: torch.Tensor, num_classes: int, path: Path) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        found = f"{int(labels.min())}..{int(labels.max())}"
        raise malformed(path, f"labels outside 0..{num_classes - 1} (found {found})")


def channel_mean_std(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], ...]:
    """Per-channel mean and (population) std of uint8 images on the [0,1] scale.

    Works in chunks in float64 so no float copy of the whole set is ever held.
    """
    n, c = images.shape[0], images.shape[1]
    if n == 0:
        return tuple(0.0 for _ in range(c)), tuple(1.0 for _ in range(c))
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.float64)
        if images.dtype == torch.uint8:
            x = x / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    var = (total_sq / count - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    # A constant channel would divide by zero in normalize(); 1.0 leaves it centred only.
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    return tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std)


def stratified_split(
    labels: torch.Tensor, num_classes: int, test_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test), each ascending, with about ``test_fraction`` of every class in test.

    Deterministic for a given ``seed`` (one CPU ``torch.Generator``, classes in order). Every
    class keeps at least one training image, and gets at least one test image when it has two
    or more images and ``test_fraction > 0``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    labels = torch.as_tensor(labels, dtype=torch.int64)
    train_parts, test_parts = [], []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c, as_tuple=False).flatten()
        n = idx.numel()
        if n == 0:
            continue
        n_test = int(round(n * test_fraction))
        if test_fraction > 0 and n >= 2:
            n_test = max(n_test, 1)
        n_test = min(n_test, n - 1)
        perm = idx[torch.randperm(n, generator=gen)]
        test_parts.append(perm[:n_test])
        train_parts.append(perm[n_test:])
    empty = torch.zeros(0, dtype=torch.int64)
    train = torch.cat(train_parts).sort().values if train_parts else empty
    test = torch.cat(test_parts).sort().values if test_parts else empty
    return train, test


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (deterministic order)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def decode_images(
    paths: Sequence[Path],
    size: int,
    grayscale: bool = False,
    center_crop: bool = True,
    downloadable: bool = True,
) -> torch.Tensor:
    """Decode ``paths`` with PIL into one uint8 (N, C, size, size) tensor, cached.

    Images of another size are resized so the shorter side is ``size`` and then centre-cropped
    (aspect kept), or squashed when ``center_crop`` is False. The result is cached under the
    listing's names and file contents (:mod:`dream_cl.data.imagecache`), so the next load of
    the same files takes seconds.
    """
    from dream_cl.data.imagecache import cached, make_listing

    settings = {"size": size, "grayscale": grayscale, "center_crop": center_crop}
    names = [str(p.resolve()) for p in paths]
    where = os.path.commonpath(names) if names else ""
    listing = make_listing(f"{len(names)} files in {where}", paths, names, settings)
    sources = [(p, p) for p in paths]
    return cached(
        listing, len(paths), lambda: _decode(sources, size, grayscale, center_crop, downloadable)
    )


def decode_tar_members(
    archive: Path,
    members: Sequence[str],
    size: int,
    grayscale: bool = False,
    center_crop: bool = True,
) -> torch.Tensor:
    """Decode image files stored in a tar archive, in ``members`` order, cached (keyed by the
    archive's name and content and the member names)."""
    import io
    import tarfile

    from dream_cl.data.imagecache import cached, make_listing

    settings = {"size": size, "grayscale": grayscale, "center_crop": center_crop}
    names = [str(archive.resolve()), *members]
    source = f"{len(members)} files in {archive.resolve()}"
    listing = make_listing(source, [archive], names, settings)

    def build() -> torch.Tensor:
        wanted = {m: i for i, m in enumerate(members)}
        blobs: list[bytes | None] = [None] * len(members)
        try:
            with tarfile.open(archive, "r:*") as tar:
                for info in tar:
                    i = wanted.get(info.name)
                    if i is not None and info.isfile():
                        handle = tar.extractfile(info)
                        blobs[i] = handle.read() if handle is not None else None
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise malformed(archive, exc, downloadable=False) from None
        missing = [m for m, b in zip(members, blobs, strict=True) if b is None]
        if missing:
            raise malformed(archive, f"member {missing[0]} cannot be read", downloadable=False)
        sources = [(f"{archive}:{m}", io.BytesIO(b)) for m, b in zip(members, blobs, strict=True)]
        return _decode(sources, size, grayscale, center_crop, downloadable=False)

    return cached(listing, len(members), build)


def _decode(
    sources: Sequence[tuple[object, object]],
    size: int,
    grayscale: bool,
    center_crop: bool,
    downloadable: bool,
) -> torch.Tensor:
    """Decode (name, path or file object) pairs into one preallocated uint8 tensor. Threads
    help because PIL releases the GIL while decoding."""
    from PIL import Image, UnidentifiedImageError

    channels = 1 if grayscale else 3
    mode = "L" if grayscale else "RGB"
    out = np.empty((len(sources), channels, size, size), dtype=np.uint8)

    def work(i: int) -> None:
        name, source = sources[i]
        try:
            with Image.open(source) as im:
                im = im.convert(mode)
                if im.size != (size, size):
                    im = _resize(im, size, center_crop)
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise malformed(Path(str(name)), exc, downloadable) from None
        out[i] = arr[None] if grayscale else arr.transpose(2, 0, 1)

    workers = max(1, min(8, os.cpu_count() or 1))
    if len(sources) < 64 or workers == 1:
        for i in range(len(sources)):
            work(i)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(work, range(len(sources))):
                pass
    return torch.from_numpy(out)


def _resize(im, size: int, center_crop: bool):  # noqa: ANN001, ANN202 - PIL types stay lazy
    from PIL import Image

    if not center_crop:
        return im.resize((size, size), Image.Resampling.BILINEAR)
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    im = im.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return im.crop((left, top, left + size, top + size))
