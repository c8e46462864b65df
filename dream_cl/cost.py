"""What a command costs, recorded in its result JSON and said in its summary: wall time,
device time (CPU core-hours; GPU-hours on CUDA), peak memory (resident, and CUDA's peak)
and where it ran (device and CPU model). Under torchrun each rank measures itself and the
ranks' numbers are added up (times and core-hours summed, peaks the largest), so a cost
says what the job used, whatever K."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CostMeter",
    "combine_costs",
    "cost_line",
    "cpu_model",
    "device_name",
    "device_time",
    "duration",
]


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU model as ``/proc/cpuinfo`` names it, with family/model/stepping (cloud CPUs
    often report a bare 'AMD EPYC': the family and model tell Zen 3 from Zen 4)."""
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


def _cpu_seconds() -> float:
    """User and system CPU time of this process and the children it has waited for."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _peak_rss_mib() -> float:
    """The largest resident set this process (or a waited-for child) has had."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return max(own.ru_maxrss, children.ru_maxrss) * unit / 2**20


@dataclass
class CostMeter:
    """Started when a command begins its work; :meth:`finish` gives the cost so far."""

    device: torch.device
    wall_start: float
    cpu_start: float

    @classmethod
    def start(cls, device: torch.device | str = "cpu", reset_peak: bool = True) -> CostMeter:
        """``reset_peak=False`` for a meter inside another's span (a run's distillations),
        which must not erase the outer one's CUDA peak."""
        device = torch.device(device)
        if device.type == "cuda" and reset_peak:
            torch.cuda.reset_peak_memory_stats(device)
        return cls(device, time.perf_counter(), _cpu_seconds())

    def local(self) -> dict[str, Any]:
        """This process's cost."""
        wall = time.perf_counter() - self.wall_start
        cuda = self.device.type == "cuda"
        return {
            "wall_seconds": wall,
            "cpu_core_hours": (_cpu_seconds() - self.cpu_start) / 3600,
            "gpu_hours": wall / 3600 if cuda else None,
            "peak_rss_mib": _peak_rss_mib(),
            "cuda_peak_mib": torch.cuda.max_memory_allocated(self.device) / 2**20 if cuda else None,
            "device": device_name(self.device),
            "cpu_model": cpu_model(),
        }

    def finish(self) -> dict[str, Any]:
        """The job's cost: every rank's, combined (collective under torchrun)."""
        from dream_cl.distributed import all_gather_objects

        return combine_costs(all_gather_objects(self.local()))


def _total(parts: list[dict[str, Any]], key: str, how=sum) -> float | None:
    values = [p[key] for p in parts if p.get(key) is not None]
    return how(values) if values else None


def combine_costs(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Several processes' (or several runs') costs as one: the longest wall time, the summed
    device time and the largest peaks."""
    return {
        "wall_seconds": _total(parts, "wall_seconds", max),
        "cpu_core_hours": _total(parts, "cpu_core_hours"),
        "gpu_hours": _total(parts, "gpu_hours"),
        "peak_rss_mib": _total(parts, "peak_rss_mib", max),
        "cuda_peak_mib": _total(parts, "cuda_peak_mib", max),
        "processes": sum(int(p.get("processes", 1)) for p in parts),
        "device": parts[0]["device"],
        "cpu_model": parts[0]["cpu_model"],
    }


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    return f"{minutes}m{s:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def device_time(cost: dict[str, Any], unit: str = "hours") -> str:
    """GPU-hours where CUDA was used, else CPU core-hours (``unit``: how "hours" is spelt)."""
    if cost.get("gpu_hours") is not None:
        return f"{cost['gpu_hours']:.3g} GPU-{unit}"
    return f"{cost['cpu_core_hours']:.3g} CPU core-{unit}"


def cost_line(cost: dict[str, Any]) -> str:
    """The summary's cost line."""
    memory = f"peak {cost['peak_rss_mib'] / 1024:.2f} GiB resident"
    if cost.get("cuda_peak_mib") is not None:
        memory += f", {cost['cuda_peak_mib'] / 1024:.2f} GiB CUDA"
    procs = f", {cost['processes']} processes" if cost.get("processes", 1) > 1 else ""
    where = cost["device"]
    if where.startswith("cpu"):
        where += f": {cost['cpu_model']}"
    return (
        f"cost: {duration(cost['wall_seconds'])} wall, {device_time(cost)}, {memory}{procs}; "
        f"on {where}"
    )
