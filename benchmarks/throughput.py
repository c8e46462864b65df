"""Seconds per inner iteration of DREAM (IDC framework) and where they go.

For MNIST-, CIFAR-10- and CIFAR-100-shaped random data at the paper's width, this times one
k-means refresh and ``--steps`` inner iterations. Per inner iteration = refresh / interval +
the mean plain inner iteration (its first lap dropped as warm-up: it carries any
compilation), split into clustering (embedding + k-means + selection), matching and network
update, plus the peak resident memory of the process.

Variants: ``per-class`` (faithful: one image step per class, every real image of a class
clustered); ``batched`` (vmapped class gradients, one step); ``compiled`` (per-class with
``--compile``: the embedding, each class's matching gradient and the network update are
torch.compile'd functions); ``pool`` (per-class, clustering a random pool of 16 candidates
per centre, the cpu preset's choice); ``pool-compiled`` (both); ``bf16`` (per-class under
``--precision bf16``); ``fast`` (pool, compile, and bf16 where the hardware has it);
``fast-bf16`` (pool, compile and bf16 on any hardware). ``SHAPE:K`` sets the number of
classes (``cifar100:50``). Each setting runs in its own subprocess so peak memory is its
own. Random tensors are fine for timing: the arithmetic does not depend on content.

    python benchmarks/throughput.py                 # the grid (CPU: tens of minutes)
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

from benchmarks.common import load_json, source_line, write_result  # noqa: E402

SHAPES = {
    # name: (classes, per class, channels, size)
    "mnist": (10, 6000, 1, 28),
    "cifar10": (10, 5000, 3, 32),
    "cifar100": (100, 500, 3, 32),
}
VARIANTS = {
    # name: (formulation, candidates per centre or None for the whole class, compile, precision)
    "per-class": ("per-class", None, False, "fp32"),
    "batched": ("batched", None, False, "fp32"),
    "compiled": ("per-class", None, True, "fp32"),
    "pool": ("per-class", 16, False, "fp32"),
    "pool-compiled": ("per-class", 16, True, "fp32"),
    "bf16": ("per-class", None, False, "bf16"),
    "fast": ("per-class", 16, True, "auto"),
    "fast-bf16": ("per-class", 16, True, "bf16"),
}
"""``auto`` precision: bf16 where the hardware has bf16 units (a GPU, a CPU with AVX-512 BF16
or AMX), fp32 elsewhere: what the fast path runs on that machine."""


def variant_precision(precision: str, device: str) -> str:
    """A variant's precision on this machine (``auto`` resolved)."""
    if precision != "auto":
        return precision
    from dream_cl.distill.compiled import cpu_has_bf16
    from dream_cl.utils import resolve_device

    on_gpu = resolve_device(device).type == "cuda"
    return "bf16" if on_gpu or cpu_has_bf16() else "fp32"


def parse_shape(text: str) -> tuple[str, int, int, int, int]:
    """``name`` or ``name:classes`` -> (name, classes, per class, channels, size)."""
    name, _, k = text.partition(":")
    if name not in SHAPES:
        raise SystemExit(f"unknown shape '{name}'; use one of {', '.join(SHAPES)}")
    classes, per_class, ch, size = SHAPES[name]
    return name, int(k) if k else classes, per_class, ch, size


def one_setting(
    shape: str,
    ipc: int,
    variant: str,
    width: int,
    interval: int,
    steps: int,
    factor: int,
    device: str,
    warm_refresh: bool = False,
) -> dict:
    """One variant's costs. With ``warm_refresh`` the run refreshes twice (at its first and
    last inner iteration) and the second, steady refresh is the one amortised over
    ``interval``, as the first lap of matching and update is dropped: the first refresh
    carries the embedding's compilation, which a run pays once, not at every refresh."""
    from dream_cl.data.base import DatasetInfo, DatasetSplit
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill

    name, classes, per_class, ch, size = parse_shape(shape)
    formulation, per_centre, compiled, precision = VARIANTS[variant]
    precision = variant_precision(precision, device)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (classes * per_class, ch, size, size), generator=g, dtype=torch.uint8
    )
    labels = torch.arange(classes).repeat_interleave(per_class)
    info = DatasetInfo(
        shape, ch, size, tuple(str(i) for i in range(classes)), (0.5,) * ch, (0.25,) * ch
    )
    train = DatasetSplit(images, labels, info)
    cfg = resolve_config(
        name,
        ipc,
        preset="paper",
        image_size=size,
        overrides={
            "iterations": 1,
            "inner_loop": steps,
            "interval": max(steps - 1, 1) if warm_refresh else interval,
            "init": "noise",
            "formulation": formulation,
            "compile": compiled,
            "precision": precision,
            "width": width,
            "factor": factor,
            "device": device,
        },
    )
    if per_centre is not None:
        cfg.candidates = per_centre * cfg.n_clusters
    t0 = time.perf_counter()
    result = distill(cfg, train)
    wall = time.perf_counter() - t0
    secs = result.metrics["time_seconds"]
    laps = result.metrics["time_laps"]

    def steady(name: str) -> float:
        # the first inner iteration is a warm-up (allocator, and compilation when compiled)
        values = laps.get(name, [0.0])
        values = values[1:] if len(values) > 1 else values
        return sum(values) / len(values)

    refreshes = laps.get("clustering", [0.0])
    refresh = refreshes[-1] if warm_refresh and len(refreshes) > 1 else secs.get("clustering", 0.0)
    # one refresh amortised over the interval, plus the mean steady plain inner iteration
    inner = {
        "clustering": refresh / interval,
        "matching": steady("matching"),
        "network_update": steady("network_update"),
    }
    per_inner = sum(inner.values())
    return {
        "shape": shape,
        "classes": classes,
        "per_class": per_class,
        "ipc": ipc,
        "variant": variant,
        "formulation": formulation,
        "compile": compiled,
        "precision": precision,
        "candidates": cfg.candidates,
        "warmup_matching_seconds": laps.get("matching", [0.0])[0],
        "width": width,
        "factor": factor,
        "interval": interval,
        "steps": steps,
        "seconds_per_inner_iteration": per_inner,
        "breakdown_per_inner_iteration": inner,
        "clustering_share": inner["clustering"] / per_inner if per_inner else 0.0,
        "refresh_seconds": refresh,
        "first_refresh_seconds": refreshes[0],
        "sampler": result.metrics["sampler"],
        "wall_seconds": wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="mnist,cifar10,cifar100", help="SHAPE or SHAPE:CLASSES")
    ap.add_argument("--ipcs", default="10")
    ap.add_argument("--variants", default="per-class,pool")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--steps", type=int, default=3, help="inner iterations timed per setting")
    ap.add_argument("--factor", type=int, default=2)
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
        args.shapes, args.ipcs, args.width, args.interval, args.steps = "mnist:2", "1", 8, 2, 2
    for shape in args.shapes.split(","):
        parse_shape(shape)
    runs = []
    for shape in args.shapes.split(","):
        for ipc in (int(i) for i in args.ipcs.split(",")):
            for variant in args.variants.split(","):
                if variant not in VARIANTS:
                    raise SystemExit(f"unknown variant '{variant}'; use {', '.join(VARIANTS)}")
                setting = {
                    "shape": shape,
                    "ipc": ipc,
                    "variant": variant,
                    "width": args.width,
                    "interval": args.interval,
                    "steps": args.steps,
                    "factor": args.factor,
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
                    f"{shape:12s} ipc {ipc:3d} {variant:9s} "
                    f"{row['seconds_per_inner_iteration']:.3f} s/inner  "
                    f"clustering {100 * row['clustering_share']:.1f}%  "
                    f"peak {row['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    from dream_cl.utils import resolve_device

    settings = {k: v for k, v in vars(args).items() if k not in ("child", "out_dir")}
    path = write_result(args.name, resolve_device(args.device), settings, runs, args.out_dir)
    print(f"wrote {path}")


# --- RESULTS.md section --------------------------------------------------------------------

TITLES = {
    "throughput": "Three shapes at IPC 10: faithful, compiled, candidate pool, both",
    "throughput-cifar100": "CIFAR-100 shape: faithful and compiled",
    "throughput-peak": "Faithful design after the refresh's memory fix (peak memory)",
    "throughput-ipc": "Growth with IPC (MNIST shape, faithful)",
    "throughput-classes": "Growth with the number of classes (500 per class, faithful)",
    "throughput-batched": "The vmapped formulation on CPU",
}
INTRO = (
    "Paper preset (ConvNet-3 width 128, factor 2, N = 128, refresh every 10 inner "
    "iterations), random tensors of the dataset's shape. Per inner iteration = one refresh "
    "/ 10 + the mean plain inner iteration. `per-class` is the faithful design (one image "
    "step per class, every real image of a class clustered); `compiled` adds `--compile`; "
    "`pool` clusters a random pool of 16 candidates per centre; `batched` vmaps the class "
    "gradients. 'vs per-class' compares variants measured in the same run."
)
OTHER_MACHINE = (
    "Against the official code, see the side-by-side section above (both measured in one run "
    "on one CPU). The tables below compare dream-cl's variants within each run; some were "
    "measured on a machine whose CPU model the files do not record."
)


def section(results: Path) -> str:
    """RESULTS.md's throughput section, from every ``throughput*.json``."""
    paths = sorted(results.glob("throughput*.json"))
    if not paths:
        return ""
    lines = [
        "## Throughput: seconds per inner iteration",
        "",
        INTRO,
        "",
        OTHER_MACHINE,
        "",
    ]
    order = list(TITLES)
    for path in sorted(paths, key=lambda p: order.index(p.stem) if p.stem in order else 99):
        lines += _table_lines(path, results)
    return "\n".join(lines)


def _table_lines(path: Path, root: Path) -> list[str]:
    record = load_json(path)
    rows = [r for r in record["results"] if "variant" in r]
    if not rows:
        return []  # older schema
    lines = [
        f"### {TITLES.get(path.stem, path.stem)}",
        "",
        "| shape | classes | IPC | variant | s / inner | vs per-class | clustering | matching"
        " | net update | clustering share | peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    faithful = {
        (r["shape"], r["classes"], r["ipc"]): r["seconds_per_inner_iteration"]
        for r in rows
        if r["variant"] == "per-class"
    }
    for row in rows:
        b = row["breakdown_per_inner_iteration"]
        sec = row["seconds_per_inner_iteration"]
        base = faithful.get((row["shape"], row["classes"], row["ipc"]))
        rel = f"{base / sec:.2f}x" if base and row["variant"] != "per-class" else "-"
        peak = row["peak_rss_mib"] / 1024
        lines.append(
            f"| {row['shape'].partition(':')[0]} | {row['classes']} | {row['ipc']} | "
            f"{row['variant']} | {sec:.2f} | {rel} | {b['clustering']:.2f} | "
            f"{b['matching']:.2f} | {b['network_update']:.2f} | "
            f"{100 * row['clustering_share']:.0f} % | {peak:.2f} |"
        )
    return [*lines, "", source_line(record, path, root), ""]


if __name__ == "__main__":
    main()
