"""Decoded image files, cached: decode once, load in seconds afterwards.

Decoding tens of thousands of PNG/JPEG files costs most of a minute on two cores (CIFAR-10's
60,000 JPEGs, TinyImageNet's 110,000), on every command. The first decode of a listing
writes one uint8 tensor file; later loads read it back with ``torch.load(weights_only=True)``.

The key is the listing itself: every file's name, size and modification time (for a tar
archive, the archive's own), plus the decoding settings (size, colour, crop). A changed,
added or removed file gives another key, so a stale cache is never read. A cache file that
cannot be read or does not match its key is rebuilt, never trusted. Writes are atomic.

Where: ``$DREAM_CL_CACHE`` if set, else ``~/.cache/dream-cl``. The data root itself is never
written (it may be shared and read-only). ``DREAM_CL_CACHE=off`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

CACHE_ENV = "DREAM_CL_CACHE"
CACHE_VERSION = 1


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in ("off", "0", "none", ""):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "dream-cl"


def listing_key(entries: Sequence[tuple[str, int, int]], settings: dict) -> str:
    """sha256 of (names, sizes, mtimes) and the decoding settings."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "settings": settings}, sort_keys=True).encode())
    for name, size, mtime in entries:
        h.update(f"{name}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def stat_entries(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    return out


def cached(key: str, count: int, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor stored under ``key`` (``count`` images), or ``build()``'s, stored."""
    folder = cache_dir()
    if folder is None:
        return build()
    path = folder / f"decoded-{key[:32]}.pt"
    images = _read(path, key, count)
    if images is not None:
        return images
    images = build()
    _store(path, {"key": key, "images": images})
    return images


def _store(path: Path, record: dict) -> None:
    """Write atomically, streaming to the file (no second copy of a gigabyte in memory);
    a cache that cannot be written only costs time. Temporaries a killed write left over
    an hour ago are removed first."""
    import time

    from dream_cl.utils import atomic_write

    with contextlib.suppress(OSError):
        for old in path.parent.glob(".decoded-*.tmp"):
            if time.time() - old.stat().st_mtime > 3600:
                old.unlink()

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            torch.save(record, f)

    with contextlib.suppress(Exception):
        atomic_write(path, write)


def _read(path: Path, key: str, count: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        record = torch.load(path, weights_only=True, map_location="cpu")
        images = record["images"]
        ok = (
            record.get("key") == key
            and isinstance(images, torch.Tensor)
            and images.dtype == torch.uint8
            and images.ndim == 4
            and images.shape[0] == count
        )
    except Exception:  # noqa: BLE001 - corrupt or truncated: rebuild
        ok = False
    if not ok:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return images
