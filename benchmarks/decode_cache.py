"""What the decode cache's content key costs, against the decode it saves.

The cache keys an entry by the sha256 of every listed file (or of the tar) and checks the
sha256 of the entry's pixels when reading it. This times, in one process on one CPU, for
CIFAR-10's 60,000 JPEGs both as the tar and as class folders (extracted to a temporary
folder): the full decode (no cache), a load from the cache, and the two hashes alone, next
to what the earlier key (names, sizes and modification times only) cost.

    python benchmarks/decode_cache.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import args_settings, load_json, source_line, write_result  # noqa: E402


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _hash_files(paths: list[Path]) -> None:
    from dream_cl.data.imagecache import _file_digest

    for p in paths:
        _file_digest(p)


def measure(root: Path, cache: Path) -> dict[str, Any]:
    """Decode, cached load and key costs for the data root's CIFAR-10 copy."""
    import torch

    from dream_cl.data import load_train_test
    from dream_cl.data.imagecache import CACHE_ENV, _pixels_digest, clear_cache

    os.environ[CACHE_ENV] = str(cache)
    clear_cache()
    decode = _seconds(lambda: load_train_test("cifar10", root))
    cached = _seconds(lambda: load_train_test("cifar10", root))
    files = sorted(p for p in root.rglob("*") if p.is_file())
    pixels = torch.zeros(60000, 3, 32, 32, dtype=torch.uint8)
    return {
        "files": len(files),
        "decode_seconds": decode,
        "cached_load_seconds": cached,
        "stat_key_seconds": _seconds(lambda: [p.stat() for p in files]),
        "content_key_seconds": _seconds(lambda: _hash_files(files)),
        "pixel_check_seconds": _seconds(lambda: _pixels_digest(pixels)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--name", default="decode-cache")
    args = parser.parse_args()
    import torch

    tar = args.data_root / "cifar10-jpeg.tar"
    results = {}
    with tempfile.TemporaryDirectory() as work:
        work_path = Path(work)
        (work_path / "tar").mkdir()
        os.symlink(tar.resolve(), work_path / "tar" / tar.name)
        results["tar"] = measure(work_path / "tar", work_path / "cache")
        with tarfile.open(tar) as archive:
            archive.extractall(work_path / "folder", filter="data")
        results["folder"] = measure(work_path / "folder", work_path / "cache")
    path = write_result(args.name, torch.device("cpu"), args_settings(args), results)
    print(path)


def section(results: Path) -> str:
    """RESULTS.md's section on the decode cache's key."""
    path = results / "decode-cache.json"
    if not path.is_file():
        return ""
    record = load_json(path)
    lines = [
        "## Decode cache: what keying by content costs",
        "",
        "CIFAR-10's 60,000 JPEGs decoded without the cache, then loaded from it (which now "
        "includes hashing every listed file and checking the entry's pixels); the two hashes "
        "timed alone beside the names-sizes-mtimes key they replace.",
        "",
        source_line(record, path, results),
        "",
        "| copy | files | decode (s) | cached load (s) | stat key (s) | content key (s) "
        "| pixel check (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for copy, r in record["results"].items():
        lines.append(
            f"| {copy} | {r['files']} | {r['decode_seconds']:.1f} | "
            f"{r['cached_load_seconds']:.2f} | {r['stat_key_seconds']:.2f} | "
            f"{r['content_key_seconds']:.2f} | {r['pixel_check_seconds']:.2f} |"
        )
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    main()
