"""Shared by every benchmark: provenance, result files, and what their RESULTS.md sections share.

Each result JSON carries the git commit, date, device, torch version, thread count and the
full settings, so every number in RESULTS.md can be traced to the run that produced it.
"""

from __future__ import annotations

import datetime as _dt
import json
import multiprocessing
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from dream_cl.cost import cpu_model, device_name
from dream_cl.utils import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def git_commit(cwd: Path | None = None) -> str:
    """The short commit of the code that runs, "-dirty" when tracked code differs from it."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=cwd,
        )
        # result files are not code: a sweep that has rewritten some is not "dirty"
        dirty = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ":(top)",
                ":(top,exclude)benchmarks/results",
                ":(top,exclude)benchmarks/RESULTS.md",
            ],
            capture_output=True,
            text=True,
            cwd=cwd,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(device: torch.device) -> dict[str, Any]:
    return {
        "commit": git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_name(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }


def load_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def pct(x: float) -> str:
    """A fraction as RESULTS.md writes a percentage."""
    from dream_cl.utils import percent

    return percent(x)


def note_lines(notes: dict[str, str], key: str) -> list[str]:
    """A section's note paragraph (and the blank line after it), if it has one."""
    note = notes.get(key)
    return [note, ""] if note else []


def source_line(record: dict[str, Any], path: Path, root: Path) -> str:
    """RESULTS.md's "Source:" line: the result file and the run that wrote it."""
    rel = path.relative_to(root.parent) if path.is_relative_to(root.parent) else path
    cpu = record.get("cpu_model")
    where = record.get("device", "?")
    if str(where).startswith("cpu"):
        where = f"{where}, CPU model {cpu}" if cpu else f"{where}, CPU model not recorded"
    return (
        f"Source: `{rel}` (commit {record.get('commit', '?')}, {record.get('date', '?')}, "
        f"{where}, torch {record.get('torch', '?')}, "
        f"{record.get('threads', '?')} thread(s))."
    )


# the networks' names in RESULTS.md's tables
ARCH_NAMES = {"convnet": "ConvNet-3", "resnet10": "ResNet-10", "densenet121": "DenseNet-121"}


def args_settings(args: Any) -> dict[str, Any]:
    """A benchmark's command-line arguments as JSON settings (paths as text)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def write_result(
    name: str, device: torch.device, settings: dict, results: Any, out_dir: Path | None = None
) -> Path:
    """Write ``results/<name>.json`` atomically with provenance and settings."""
    record = {"benchmark": name, **provenance(device), "settings": settings, "results": results}
    return atomic_write_json(record, (out_dir or RESULTS_DIR) / f"{name}.json")


# the two distilled-set methods the tables compare: DREAM, and plain IDC one flag apart
SET_METHODS: dict[str, dict[str, str]] = {
    "dream": {"sampler": "representative", "init": "kmeans"},
    "idc": {"sampler": "random", "init": "random"},
}


def cpu_preset_set(
    out: Path,
    dataset: str,
    ipc: int,
    method: str,
    train: Any,
    *,
    seed: int,
    device: str,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Distil (or finish, or reuse) one cpu-preset DREAM or IDC set in ``out``."""
    if not (out / "images.pt").exists():
        from dream_cl.distill.config import resolve_config
        from dream_cl.distill.engine import distill

        values = {**SET_METHODS[method], "seed": seed, "device": device, **(overrides or {})}
        cfg = resolve_config(
            dataset, ipc, preset="cpu", image_size=train.info.image_size, overrides=values
        )
        distill(cfg, train, None, out=out, resume=(out / "checkpoint.pt").exists())
    return out


def run_in_processes(
    fn: Callable[..., Any],
    calls: Sequence[tuple[Any, ...]],
    jobs: int,
    on_result: Callable[[Any], None],
) -> None:
    """``fn(*call)`` for every call, ``jobs`` at a time in spawned processes (in this one when
    ``jobs`` is 1); ``on_result`` sees each result as it finishes, so progress is saved.

    Spawn, not fork: a forked child of a process that has run OpenMP threads can hang."""
    if jobs <= 1 or len(calls) <= 1:
        for call in calls:
            on_result(fn(*call))
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for future in as_completed([pool.submit(fn, *call) for call in calls]):
            on_result(future.result())
