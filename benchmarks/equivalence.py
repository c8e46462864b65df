"""K processes against one: do class-sharded runs give the single-process result?

Two checks on real data, each through the command line exactly as a user runs it:

- ``distill``: DREAM (IDC framework, cpu preset, IPC ``--ipc``) on MNIST with 1 and with
  ``--procs`` processes, for each seed; test accuracy (the preset's evaluation protocol) at
  ``--eval-every`` iterations and the largest pixel difference between the two synthetic
  sets. DC, DSA and DM give the single-process set bit for bit (their network updates are
  replicated; tests/test_distributed.py); IDC's data-parallel network update sums per-rank
  gradients, so its sets differ by float rounding, which representative selection can turn
  into another pick. This measures whether that difference matters.
- ``cl``: ``dream-cl run`` (digits-5step, cpu preset) over ``--orders`` class orders with 1
  and ``--procs`` processes: final and average incremental accuracy, mean and std.

Runs go to ``--work-dir`` and are resumed (``--resume``) or skipped when done, so an
interrupted benchmark continues. Results: ``results/equivalence.json``.

    python benchmarks/equivalence.py --data-root ../shared/data
    python benchmarks/equivalence.py --quick       # smoke setting (digits, 2 iterations)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import mean, pstdev

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402


def _cli(args: list[str], procs: int, started: bool) -> None:
    """``dream-cl ARGS`` on ``procs`` processes of one thread each; ``--resume`` when an
    earlier call left the run unfinished."""
    if started:
        args = [*args, "--resume"]
    if procs > 1:
        args = [*args, "--nproc", str(procs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "dream_cl.cli", *args, "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")


def distill_runs(args: argparse.Namespace, work: Path) -> dict:
    rows = []
    for seed in args.seeds:
        row: dict = {"seed": seed}
        images = {}
        for k in (1, args.procs):
            out = work / f"distill-{args.dataset}-ipc{args.ipc}-k{k}-s{seed}"
            if not (out / "metrics.json").is_file():
                cmd = ["distill", args.dataset, "--preset", "cpu", "--ipc", str(args.ipc)]
                cmd += ["--seed", str(seed), "--eval-every", str(args.eval_every)]
                cmd += ["--data-root", str(args.data_root), "--out", str(out), "--threads", "1"]
                if args.iterations:
                    cmd += ["--iterations", str(args.iterations)]
                _cli(cmd, k, started=(out / "checkpoint.pt").is_file())
                print(f"distill seed {seed} K={k}: done", flush=True)
            metrics = json.loads((out / "metrics.json").read_text())
            row[f"k{k}"] = {
                "evals": {e["iteration"]: e["mean"] for e in metrics["evals"]},
                "seconds": metrics["time_seconds"],
            }
            images[k] = torch.load(out / "images.pt", weights_only=True)["images"]
        diff = (images[1] - images[args.procs]).abs()
        row["max_pixel_difference"] = float(diff.max())
        row["mean_pixel_difference"] = float(diff.mean())
        row["identical"] = bool(torch.equal(images[1], images[args.procs]))
        rows.append(row)
    summary = {}
    for k in (1, args.procs):
        its = sorted(rows[0][f"k{k}"]["evals"])
        summary[f"k{k}"] = {
            str(it): {
                "mean": mean(r[f"k{k}"]["evals"][it] for r in rows),
                "std": pstdev(r[f"k{k}"]["evals"][it] for r in rows),
            }
            for it in its
        }
    return {"runs": rows, "summary": summary}


def cl_runs(args: argparse.Namespace, work: Path) -> dict:
    out_rows = {}
    for k in (1, args.procs):
        out = work / f"cl-digits-5step-orders{args.orders}-k{k}"
        if not (out / "results.json").is_file():
            cmd = ["run", "digits-5step", "--orders", str(args.orders), "--out", str(out)]
            if args.quick:
                cmd += ["--epochs", "2", "--distill-iterations", "2"]
            _cli(cmd, k, started=(out / "config.json").is_file())
            print(f"cl K={k}: done", flush=True)
        results = json.loads((out / "results.json").read_text())
        out_rows[f"k{k}"] = {
            "summary": {
                key: results["summary"][key]
                for key in ("final_accuracy", "average_incremental_accuracy", "forgetting")
            },
            "orders": [
                {key: o[key] for key in ("seed", "final_accuracy", "average_incremental_accuracy")}
                for o in results["orders"]
            ],
        }
    return out_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--ipc", type=int, default=1)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=None, help="default: the cpu preset's")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--orders", type=int, default=3)
    ap.add_argument("--checks", default="distill,cl")
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    ap.add_argument("--work-dir", type=Path, default=Path("runs/benchmarks/equivalence"))
    ap.add_argument("--name", default="equivalence")
    ap.add_argument("--quick", action="store_true", help="tiny setting, for the smoke test")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        args.dataset, args.seeds, args.iterations, args.eval_every = "digits", [0], 2, 2
        args.orders = 1
    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    checks = args.checks.split(",")
    if "distill" in checks:
        results["distill"] = distill_runs(args, work)
    if "cl" in checks:
        results["cl"] = cl_runs(args, work)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings.pop("out_dir")
    path = write_result(args.name, torch.device("cpu"), settings, results, args.out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
