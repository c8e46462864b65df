"""Small shared helpers: seeding, device choice, atomic file writes."""

from __future__ import annotations

import io
import json
import math
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dream_cl.errors import UserError, unwritable


def percent(x: float) -> str:
    """A fraction as a percentage with two decimals; a tiny negative (a float residue, e.g.
    a forgetting of -1e-17) prints as 0.00, not -0.00."""
    text = f"{100 * x:.2f}"
    return "0.00" if text == "-0.00" else text


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator seeded alike."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise UserError(f"unknown device '{name}'; use auto, cpu or cuda")
    return torch.device(name)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Write via ``write(tmp_path)`` to a temporary file beside ``path``, then rename.

    A reader never sees a half-written file: the rename is atomic on one filesystem. A
    write that fails (no permission, a full disk) removes its temporary file and is a
    one-line ``UserError``; the file it would have replaced is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise unwritable(path.parent, err) from None
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes owner-only files
        os.replace(tmp_path, path)
    except OSError as err:
        raise unwritable(path, err) from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` with an atomic rename; store only tensors and plain containers.

    Serialised in memory first, so the zip records are named ``archive/...`` rather than
    after the random temporary file (equal objects give byte-identical files and hashes),
    and a failing disk raises the ``OSError`` of a plain write.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            f.write(buffer.getbuffer())

    return atomic_write(path, write)


def load_checkpoint_file(path: str | Path, what: str, hint: str) -> Any:
    """``torch.load(weights_only=True)`` on the CPU; a file that cannot be read (truncated,
    corrupt, pickled code) is the one line "WHAT PATH cannot be read (ERROR); HINT"."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means an unusable file
        raise UserError(f"{what} {path} cannot be read ({type(err).__name__}); {hint}") from None


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    """Write standard JSON (indented, sorted keys) atomically: a NaN or infinite number,
    which JSON cannot hold, is written as ``null``."""
    text = json.dumps(standard_json(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write(path, lambda p: p.write_text(text))


def standard_json(obj: Any) -> Any:
    """``obj`` with only JSON's types: paths, tensors and numpy scalars converted, and
    floats that are not finite replaced by ``None``."""
    if isinstance(obj, dict):
        return {k: standard_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [standard_json(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return standard_json(_json_default(obj))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, torch.device):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
