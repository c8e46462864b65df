"""Decoded image files, cached: decode once, load in seconds afterwards.

Decoding tens of thousands of PNG/JPEG files costs most of a minute on two cores (CIFAR-10's
60,000 JPEGs, TinyImageNet's 110,000), on every command. The first decode of a listing
writes one uint8 tensor file; later loads read it back with ``torch.load(weights_only=True)``.

An entry is keyed by content: the sha256 of every listed file's bytes (for a tar archive,
the archive's), with the file names and the decoding settings (size, colour, crop). Any
change to a listed file, whatever its size and modification time, gives another key, so a
stale entry is never read. Each entry also records the sha256 of its pixels and is checked
against it when read: an entry that cannot be read, does not match its key or whose pixels
were altered is deleted and rebuilt, never trusted. Writes are atomic.

One entry per listing: storing a listing's new entry removes its older ones. ``dream-cl
cache`` lists the entries and ``dream-cl cache --clear`` removes them all.

Where: ``$DREAM_CL_CACHE`` if set, else ``~/.cache/dream-cl``. The data root itself is never
written (it may be shared and read-only). ``DREAM_CL_CACHE=off`` turns the cache off.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

CACHE_ENV = "DREAM_CL_CACHE"
CACHE_VERSION = 2
ENTRY_GLOB = "decoded-*"


@dataclass
class Listing:
    """What is decoded: ``names`` (which files, how: one entry per listing) and ``content``
    (their bytes too: the entry's key, hashed only when the cache is used), with a
    description for ``dream-cl cache``."""

    source: str
    names: str
    files: Sequence[Path]

    @functools.cached_property
    def content(self) -> str:
        h = hashlib.sha256(self.names.encode())
        for path in self.files:
            h.update(f"{_file_digest(path)}\n".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    bytes: int
    source: str
    images: int
    written: str


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is off."""
    value = os.environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in ("off", "0", "none", ""):
        return None
    return Path(value).expanduser() if value else Path.home() / ".cache" / "dream-cl"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_listing(
    source: str, files: Sequence[Path], names: Sequence[str], settings: dict
) -> Listing:
    """The listing of ``names`` read from ``files`` (the same files, or one archive)."""
    head = json.dumps({"version": CACHE_VERSION, "settings": settings}, sort_keys=True)
    by_name = hashlib.sha256(head.encode())
    for name in names:
        by_name.update(f"{name}\n".encode())
    return Listing(source, by_name.hexdigest(), list(files))


def cached(listing: Listing, count: int, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The tensor stored for ``listing`` (``count`` images), or ``build()``'s, stored."""
    folder = cache_dir()
    if folder is None:
        return build()
    path = folder / f"decoded-{listing.names[:16]}-{listing.content[:16]}.pt"
    images = _read(path, listing.content, count)
    if images is not None:
        return images
    images = build()
    _store(path, listing, images)
    return images


def _pixels_digest(images: torch.Tensor) -> str:
    return hashlib.sha256(memoryview(images.contiguous().numpy()).cast("B")).hexdigest()


def _store(path: Path, listing: Listing, images: torch.Tensor) -> None:
    """Write atomically, streaming to the file (no second copy of a gigabyte in memory),
    then drop the listing's older entries; a cache that cannot be written only costs time.
    Temporaries a killed write left over an hour ago are removed first."""
    from dream_cl.utils import atomic_write, atomic_write_json

    with contextlib.suppress(OSError):
        for old in path.parent.glob(".decoded-*.tmp"):
            if time.time() - old.stat().st_mtime > 3600:
                old.unlink()
    record = {"key": listing.content, "images": images, "sha256": _pixels_digest(images)}

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            torch.save(record, f)

    with contextlib.suppress(Exception):
        atomic_write(path, write)
        about = {"source": listing.source, "images": int(images.shape[0])}
        atomic_write_json(about | {"written": time.strftime("%Y-%m-%d %H:%M:%S")}, _about(path))
        for older in path.parent.glob(f"decoded-{listing.names[:16]}-*.pt"):
            if older != path:
                _remove(older)


def _about(path: Path) -> Path:
    return path.with_suffix(".json")


def _remove(path: Path) -> None:
    for p in (path, _about(path)):
        with contextlib.suppress(OSError):
            p.unlink()


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
            and record.get("sha256") == _pixels_digest(images)
        )
    except Exception:  # noqa: BLE001 - corrupt or truncated: rebuild
        ok = False
    if not ok:
        _remove(path)
        return None
    return images


def cache_entries() -> list[CacheEntry]:
    """Every entry in the cache folder, oldest first (entries of earlier versions too)."""
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob(f"{ENTRY_GLOB}.pt"), key=lambda p: p.stat().st_mtime):
        try:
            about = json.loads(_about(path).read_text())
        except (OSError, ValueError):
            about = {}
        about = about if isinstance(about, dict) else {}
        written = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(path.stat().st_mtime))
        found.append(
            CacheEntry(
                path,
                path.stat().st_size,
                str(about.get("source", "unknown (an earlier version's entry)")),
                int(about.get("images", 0)) if isinstance(about.get("images"), int) else 0,
                str(about.get("written", written)),
            )
        )
    return found


def clear_cache() -> tuple[int, int]:
    """Remove every entry (and leftover temporaries); (entries removed, bytes freed)."""
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return 0, 0
    entries, freed = 0, 0
    for path in [*folder.glob(ENTRY_GLOB), *folder.glob(f".{ENTRY_GLOB}.tmp")]:
        with contextlib.suppress(OSError):
            size = path.stat().st_size
            path.unlink()
            entries += path.suffix == ".pt"
            freed += size
    return entries, freed
