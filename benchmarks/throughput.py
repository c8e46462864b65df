"""Seconds per inner iteration of DREAM (IDC framework) and where they go.

For MNIST-, CIFAR-10- and CIFAR-100-shaped random data at the paper's width, this runs one
refresh interval (one k-means refresh + interval-1 plain inner iterations) and reports the
time per inner iteration split into clustering (embedding + k-means + selection), matching
and network update, for the faithful per-class formulation and the batched one, plus the
peak resident memory of the process. Each setting runs in its own subprocess so peak memory
is its own. Random tensors are fine for timing: the arithmetic does not depend on content.

    python benchmarks/throughput.py                 # full grid (CPU: tens of minutes)
    python benchmarks/throughput.py --quick         # tiny smoke setting
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402

SHAPES = {
    # name: (classes, per class, channels, size)
    "mnist": (10, 6000, 1, 28),
    "cifar10": (10, 5000, 3, 32),
    "cifar100": (100, 500, 3, 32),
}


def one_setting(
    shape: str,
    ipc: int,
    formulation: str,
    width: int,
    interval: int,
    factor: int,
    candidates: int | None,
    device: str,
) -> dict:
    from dream_cl.data.base import DatasetInfo, DatasetSplit
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill

    classes, per_class, ch, size = SHAPES[shape]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (classes * per_class, ch, size, size), generator=g, dtype=torch.uint8
    )
    labels = torch.arange(classes).repeat_interleave(per_class)
    info = DatasetInfo(
        shape, ch, size, tuple(str(i) for i in range(classes)), (0.5,) * ch, (0.25,) * ch
    )
    train = DatasetSplit(images, labels, info)
    dataset = {"mnist": "mnist", "cifar10": "cifar10", "cifar100": "cifar100"}[shape]
    cfg = resolve_config(
        dataset,
        ipc,
        preset="paper",
        image_size=size,
        overrides={
            "iterations": 1,
            "inner_loop": interval,
            "interval": interval,
            "init": "noise",
            "formulation": formulation,
            "width": width,
            "factor": factor,
            "candidates": candidates,
            "device": device,
        },
    )
    t0 = time.perf_counter()
    result = distill(cfg, train)
    wall = time.perf_counter() - t0
    secs = result.metrics["time_seconds"]
    inner = {k: secs.get(k, 0.0) / interval for k in ("clustering", "matching", "network_update")}
    per_inner = sum(inner.values())
    return {
        "shape": shape,
        "ipc": ipc,
        "formulation": formulation,
        "width": width,
        "factor": factor,
        "interval": interval,
        "candidates": candidates,
        "seconds_per_inner_iteration": per_inner,
        "breakdown_per_inner_iteration": inner,
        "clustering_share": inner["clustering"] / per_inner if per_inner else 0.0,
        "refresh_seconds": secs.get("clustering", 0.0),
        "sampler": result.metrics["sampler"],
        "wall_seconds": wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="mnist,cifar10,cifar100")
    ap.add_argument("--ipcs", default="10")
    ap.add_argument("--formulations", default="per-class,batched")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--candidates", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--name", default="throughput")
    ap.add_argument("--quick", action="store_true", help="tiny setting, for the smoke test")
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(json.dumps(one_setting(**json.loads(args.child))))
        return
    if args.quick:
        args.shapes, args.ipcs, args.width, args.interval = "mnist", "1", 8, 2
    runs = []
    for shape in args.shapes.split(","):
        for ipc in (int(i) for i in args.ipcs.split(",")):
            for formulation in args.formulations.split(","):
                setting = {
                    "shape": shape,
                    "ipc": ipc,
                    "formulation": formulation,
                    "width": args.width,
                    "interval": args.interval,
                    "factor": args.factor,
                    "candidates": args.candidates,
                    "device": args.device,
                }
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", json.dumps(setting)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                row = json.loads(proc.stdout.strip().splitlines()[-1])
                runs.append(row)
                print(
                    f"{shape:9s} ipc {ipc:3d} {formulation:9s} "
                    f"{row['seconds_per_inner_iteration']:.3f} s/inner  "
                    f"clustering {100 * row['clustering_share']:.1f}%  "
                    f"peak {row['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    from dream_cl.utils import resolve_device

    settings = {k: v for k, v in vars(args).items() if k not in ("child", "out_dir")}
    path = write_result(args.name, resolve_device(args.device), settings, runs, args.out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
