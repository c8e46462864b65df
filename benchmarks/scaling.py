"""Strong scaling of class-sharded distillation: the same job on K = 1, 2, ... processes.

For CIFAR-10- and CIFAR-100-shaped random data at the paper preset's per-class work (IDC,
ConvNet-3 width 128, IPC 10, factor 2, N = 128 per class, the whole class clustered, a
refresh every 10 inner iterations, 16 network-update steps of 128 real images), each
setting distils ``--steps`` inner iterations on K ranks started by torchrun's launcher
(Gloo and one torch thread per rank on CPU; NCCL and one GPU per rank when CUDA is
present). Each rank builds only its own classes' images, as a sharded run holds them.

Per inner iteration = one refresh / interval + the mean plain inner iteration (matching +
network update), read from rank 0's timer (every inner iteration ends in a collective, so
rank 0's clock is the job's). Speed-up = T(1) / T(K); parallel efficiency = speed-up / K;
peak memory = each rank's resident-set peak.

Every (shape, K) is written to ``results/scaling/`` as it finishes and is skipped when
found, so an interrupted run continues (``--force`` redoes). The summary goes to
``results/scaling.json``; ``python benchmarks/report.py`` puts it into RESULTS.md.

    python benchmarks/scaling.py                  # CPU: cifar10 and cifar100, K = 1, 2
    python benchmarks/scaling.py --procs 1,2,4,8  # on a machine with 8 GPUs
    python benchmarks/scaling.py --quick          # tiny smoke setting
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import RESULTS_DIR, load_json, provenance, source_line, write_result  # noqa: E402

SHAPES = {
    # name: (classes, per class, channels, size)
    "cifar10": (10, 5000, 3, 32),
    "cifar100": (100, 500, 3, 32),
    "tiny": (4, 40, 3, 8),
}


def shard_train(shape: str, shard_classes: list[int]):
    """Random data of ``shape`` holding only ``shard_classes`` (as a rank of a sharded run
    holds them), each class's images from its own seed."""
    from dream_cl.data.base import DatasetInfo, DatasetSplit
    from dream_cl.distill.engine import ShardedTrain

    classes, per_class, ch, size = SHAPES[shape]
    parts = [
        torch.randint(
            0,
            256,
            (per_class, ch, size, size),
            generator=torch.Generator().manual_seed(1000 + c),
            dtype=torch.uint8,
        )
        for c in shard_classes
    ]
    labels = torch.tensor(shard_classes).repeat_interleave(per_class)
    info = DatasetInfo(
        shape, ch, size, tuple(str(i) for i in range(classes)), (0.5,) * ch, (0.25,) * ch
    )
    offsets = torch.arange(classes + 1, dtype=torch.int64) * per_class
    return ShardedTrain(DatasetSplit(torch.cat(parts), labels, info), offsets)


def worker(setting: dict) -> None:
    """One rank: build this rank's classes, distil, rank 0 writes the row."""
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill
    from dream_cl.distributed import (
        ClassShard,
        all_gather_objects,
        init_from_env,
        local_device,
        shutdown,
    )
    from dream_cl.utils import resolve_device

    env = init_from_env(setting["device"])
    torch.set_num_threads(setting["threads"])
    device = str(resolve_device(local_device(env, setting["device"])))
    classes, per_class, _, size = SHAPES[setting["shape"]]
    shard = ClassShard.for_env(classes, env)
    train = shard_train(setting["shape"], shard.classes)
    overrides = {
        "iterations": 1,
        "inner_loop": setting["steps"],
        "interval": setting["interval"],
        "init": "noise",
        "width": setting["width"],
        "factor": setting["factor"],
        "device": device,
    }
    if setting["quick"]:
        overrides.update(n_clusters=8, batch_real=8, n_data=16, batch_syn_max=8)
    cfg = resolve_config(
        setting["shape"], setting["ipc"], preset="paper", image_size=size, overrides=overrides
    )
    t0 = time.perf_counter()
    result = distill(cfg, train, env=env)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.startswith("cuda"):
        peak_gpu = torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    else:
        peak_gpu = None
    peaks = all_gather_objects({"rss_mib": peak, "gpu_mib": peak_gpu, "wall": wall})
    if env.is_main:
        laps = result.metrics["time_laps"]
        secs = result.metrics["time_seconds"]
        matching = laps.get("matching", [0.0])
        update = laps.get("network_update", [0.0])
        inner = {
            "clustering": secs.get("clustering", 0.0) / cfg.interval,
            "matching": sum(matching) / len(matching),
            "network_update": sum(update) / len(update),
        }
        row = {
            "shape": setting["shape"],
            "processes": env.world_size,
            "classes": classes,
            "classes_per_process": shard.sizes(),
            "per_class": per_class,
            "seconds_per_inner_iteration": sum(inner.values()),
            "breakdown_per_inner_iteration": inner,
            "matching_laps": matching,
            "network_update_laps": update,
            "refresh_seconds": secs.get("clustering", 0.0),
            "peak_rss_mib_per_rank": [p["rss_mib"] for p in peaks],
            "peak_gpu_mib_per_rank": [p["gpu_mib"] for p in peaks],
            "wall_seconds_per_rank": [p["wall"] for p in peaks],
            "config": cfg.to_dict(),
            **provenance(torch.device(device)),
        }
        row_cells(setting).put(setting["key"], row)
    shutdown()


def row_cells(setting: dict) -> Cells:
    """The measured (shape, K) rows, one file each in ``setting["rows_dir"]``; a row is
    reused while it was measured with the same setting (rows from before rows kept their
    setting are taken as they are)."""
    same = {k: v for k, v in setting.items() if k not in ("rows_dir", "key")}
    rows_dir = Path(setting["rows_dir"])
    return Cells(rows_dir, per_cell_files=True, expect={"setting": same}, optional=["setting"])


def summarise(rows: list[dict]) -> list[dict]:
    """Speed-up and efficiency of every K against K = 1 of the same shape."""
    out = []
    for row in rows:
        base = next((r for r in rows if r["shape"] == row["shape"] and r["processes"] == 1), None)
        t1 = base["seconds_per_inner_iteration"] if base else None
        tk = row["seconds_per_inner_iteration"]
        speedup = t1 / tk if t1 else None
        out.append(
            {
                **{k: v for k, v in row.items() if k not in ("config", "setting")},
                "speedup": speedup,
                "efficiency": speedup / row["processes"] if speedup else None,
            }
        )
    return out


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="cifar10,cifar100")
    ap.add_argument("--procs", default=None, help="K values (default: 1,2; GPUs: 1..count)")
    ap.add_argument("--ipc", type=int, default=10)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--factor", type=int, default=2)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--steps", type=int, default=2, help="inner iterations timed per setting")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per rank (CPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--name", default="scaling")
    ap.add_argument("--force", action="store_true", help="redo settings already measured")
    ap.add_argument("--quick", action="store_true", help="tiny setting, for the smoke test")
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap


def measure(args: argparse.Namespace, shape: str, k: int, rows_dir: Path) -> dict:
    """The (shape, K) row: measured already (and not ``--force``), or measured now."""
    from dream_cl.distributed import run_local_workers

    setting = {
        "shape": shape,
        "ipc": args.ipc,
        "width": args.width,
        "factor": args.factor,
        "interval": args.interval,
        "steps": args.steps,
        "threads": args.threads,
        "device": args.device,
        "quick": args.quick,
        "rows_dir": str(rows_dir),
        "key": f"{shape}-k{k}",
    }
    cells = row_cells(setting)
    if cells.done(setting["key"]) and not args.force:
        print(f"{shape} K={k}: measured already ({setting['key']}.json)", flush=True)
    else:
        env = {"OMP_NUM_THREADS": str(args.threads)}
        os.environ.update(env)
        run_local_workers(k, [__file__, "--worker", json.dumps(setting)], env=env)
    row = cells.get(setting["key"])
    assert row is not None, f"{shape} K={k}: rank 0 recorded no row"
    print(
        f"{shape:9s} K={k}: {row['seconds_per_inner_iteration']:.2f} s/inner "
        f"(matching {row['breakdown_per_inner_iteration']['matching']:.2f}, "
        f"update {row['breakdown_per_inner_iteration']['network_update']:.2f}), "
        f"peak {max(row['peak_rss_mib_per_rank']):.0f} MiB/rank",
        flush=True,
    )
    return row


def main() -> None:
    args = parser().parse_args()
    if args.worker:
        from dream_cl.distributed import exit_process

        worker(json.loads(args.worker))
        exit_process(0)
    from dream_cl.utils import resolve_device

    device = resolve_device(args.device)
    if args.procs is None:
        gpus = torch.cuda.device_count() if device.type == "cuda" else 0
        procs = [k for k in (1, 2, 4, 8) if k <= max(gpus, 2)]
    else:
        procs = [int(k) for k in args.procs.split(",")]
    if args.quick:
        args.shapes, args.width, args.steps, args.interval = "tiny", 8, 2, 2
    out_dir = args.out_dir or RESULTS_DIR
    rows_dir = out_dir / args.name
    rows_dir.mkdir(parents=True, exist_ok=True)
    for shape in args.shapes.split(","):
        if shape not in SHAPES:
            raise SystemExit(f"unknown shape '{shape}'; use one of {', '.join(SHAPES)}")
    rows = [measure(args, shape, k, rows_dir) for shape in args.shapes.split(",") for k in procs]
    summary = summarise(rows)
    for r in summary:
        if r["speedup"] is not None and r["processes"] > 1:
            print(
                f"{r['shape']:9s} K={r['processes']}: speed-up {r['speedup']:.2f}x, "
                f"efficiency {100 * r['efficiency']:.0f}%"
            )
    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "out_dir")}
    settings["procs"] = procs
    path = write_result(args.name, device, settings, summary, out_dir)
    print(f"wrote {path}")


# --- RESULTS.md section --------------------------------------------------------------------

INTRO = (
    "The same distillation on K processes (torchrun's launcher; Gloo and one torch thread "
    "per process on CPU, one GPU each on GPUs), at the paper preset's per-class work on "
    "random data of the dataset's shape: IDC, ConvNet-3 width 128, IPC 10, factor 2, "
    "N = 128, the whole class clustered at each refresh. Seconds per inner iteration = "
    "refresh / 10 + matching + network update (rank 0's clock; every inner iteration "
    "ends in a collective). Speed-up against K = 1 of the same run; efficiency = "
    "speed-up / K. Peak memory: each process's resident set."
)


def section(results: Path) -> str:
    """RESULTS.md's strong-scaling section, one table per ``scaling*.json``."""
    paths = sorted(results.glob("scaling*.json"))
    if not paths:
        return ""
    lines = ["## Strong scaling on several processes (class sharding)", "", INTRO, ""]
    for path in paths:
        record = load_json(path)
        lines += [
            source_line(record, path, results),
            "",
            "| shape | K | classes per process | s / inner iteration | refresh / 10 | matching "
            "| network update | speed-up | efficiency | peak memory per process (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in record["results"]:
            b = r["breakdown_per_inner_iteration"]
            speed = f"{r['speedup']:.2f}x" if r.get("speedup") else "-"
            eff = f"{100 * r['efficiency']:.0f} %" if r.get("efficiency") else "-"
            peaks = ", ".join(f"{p:.0f}" for p in r["peak_rss_mib_per_rank"])
            lines.append(
                f"| {r['shape']} | {r['processes']} | "
                f"{', '.join(str(n) for n in r['classes_per_process'])} | "
                f"{r['seconds_per_inner_iteration']:.2f} | {b['clustering']:.2f} | "
                f"{b['matching']:.2f} | {b['network_update']:.2f} | {speed} | {eff} | {peaks} |"
            )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
