"""Shared by every benchmark: provenance and result files.

Each result JSON carries the git commit, date, device, torch version, thread count and the
full settings, so every number in RESULTS.md can be traced to the run that produced it.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

from dream_cl.utils import atomic_write_json

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU model as ``/proc/cpuinfo`` names it, with family/model/stepping (cloud CPUs
    often report a bare 'AMD EPYC': the family and model tell Zen 3 from Zen 4). Timings are
    only comparable between equal models, so every benchmark records it."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or platform.machine() or "unknown"
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key not in fields:
            fields[key] = value.strip()
        if not line.strip() and fields:
            break
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown"
    extra = [f"{k} {fields[k]}" for k in ("cpu family", "model", "stepping") if k in fields]
    flags = set(fields.get("flags", "").split())
    isa = [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    if isa:
        extra.append("/".join(isa))
    return f"{name} ({', '.join(extra)})" if extra else name


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


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


def write_result(
    name: str, device: torch.device, settings: dict, results: Any, out_dir: Path | None = None
) -> Path:
    """Write ``results/<name>.json`` atomically with provenance and settings."""
    record = {"benchmark": name, **provenance(device), "settings": settings, "results": results}
    return atomic_write_json(record, (out_dir or RESULTS_DIR) / f"{name}.json")
