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

Runs go to ``--work-dir`` and are resumed (``--resume``) or skipped when done (kept as
cells in ``--work-dir``/cells with their command: one made with another starts over), so an
interrupted benchmark continues. Results: ``results/equivalence.json``.

    python benchmarks/equivalence.py --data-root ../shared/data
    python benchmarks/equivalence.py --quick       # smoke setting (digits, 2 iterations)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from statistics import mean, pstdev

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import load_json, note_lines, pct, source_line, write_result  # noqa: E402

SUMMARY_KEYS = ("final_accuracy", "average_incremental_accuracy", "forgetting")


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


def cli_cell(
    work: Path,
    name: str,
    cmd: list[str],
    k: int,
    markers: tuple[str, str],
    read: Callable[[Path], dict],
    where: tuple[str, ...] = (),
) -> dict:
    """``dream-cl CMD`` on ``k`` processes in ``work/name``, kept as a cell (``work/cells``):
    skipped once it finished with this command, started over when made with another, and
    resumed when stopped part-way. ``markers``: the files a started and a finished run hold
    (a finished run folder from before cells were kept is taken as it is); ``where``: more
    arguments that do not shape the run (where the data is)."""
    out = work / name
    cells = Cells(work / "cells", per_cell_files=True, expect={"command": cmd, "processes": k})
    cell = cells.get(name)
    if cell is not None:
        return cell
    started, finished = (out / m for m in markers)
    if cells.stale(name):
        shutil.rmtree(out, ignore_errors=True)  # made with another command: start over
    if not finished.is_file():
        _cli([*cmd, *where, "--out", str(out)], k, started=started.is_file())
        print(f"{name}: done", flush=True)
    return cells.put(name, read(out))


def _distill_cell(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    evals = {str(e["iteration"]): e["mean"] for e in metrics["evals"]}
    return {"evals": evals, "seconds": metrics["time_seconds"]}


def distill_runs(args: argparse.Namespace, work: Path) -> dict:
    rows = []
    for seed in args.seeds:
        row: dict = {"seed": seed}
        images = {}
        for k in (1, args.procs):
            name = f"distill-{args.dataset}-ipc{args.ipc}-k{k}-s{seed}"
            cmd = ["distill", args.dataset, "--preset", "cpu", "--ipc", str(args.ipc)]
            cmd += ["--seed", str(seed), "--eval-every", str(args.eval_every), "--threads", "1"]
            if args.iterations:
                cmd += ["--iterations", str(args.iterations)]
            markers = ("checkpoint.pt", "metrics.json")
            where = ("--data-root", str(args.data_root))
            cell = cli_cell(work, name, cmd, k, markers, _distill_cell, where)
            evals = {int(it): acc for it, acc in cell["evals"].items()}
            row[f"k{k}"] = {"evals": evals, "seconds": cell["seconds"]}
            images[k] = torch.load(work / name / "images.pt", weights_only=True)["images"]
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


def _cl_cell(out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    return {
        "summary": {key: results["summary"][key] for key in SUMMARY_KEYS},
        "orders": [
            {key: o[key] for key in ("seed", "final_accuracy", "average_incremental_accuracy")}
            for o in results["orders"]
        ],
    }


def cl_runs(args: argparse.Namespace, work: Path) -> dict:
    out_rows = {}
    for k in (1, args.procs):
        cmd = ["run", "digits-5step", "--orders", str(args.orders)]
        if args.quick:
            cmd += ["--epochs", "2", "--distill-iterations", "2"]
        name = f"cl-digits-5step-orders{args.orders}-k{k}"
        cell = cli_cell(work, name, cmd, k, ("config.json", "results.json"), _cl_cell)
        out_rows[f"k{k}"] = {key: cell[key] for key in ("summary", "orders")}
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


# --- RESULTS.md section --------------------------------------------------------------------

# Results whose numbers a later change made stale, and what replaces them (none today).
SUPERSEDED: dict[str, str] = {}


def section(results: Path) -> str:
    """RESULTS.md's K-processes-against-one sections, one per ``equivalence*.json``."""
    return "\n".join(
        line for path in sorted(results.glob("equivalence*.json")) for line in _lines(path, results)
    )


def _lines(path: Path, root: Path) -> list[str]:
    record = load_json(path)
    s, res = record["settings"], record["results"]
    k = s["procs"]
    lines = [
        f"## {k} processes against one",
        "",
        *note_lines(SUPERSEDED, path.stem),
        source_line(record, path, root),
        "",
    ]
    if "distill" in res:
        lines += _distill_lines(s, res["distill"])
    if "cl" in res:
        c = res["cl"]
        lines += [
            f"`dream-cl run digits-5step` (cpu preset), {s['orders']} class orders, with and "
            f"without `--nproc {k}`. Accuracy (%), mean ± std over orders:",
            "",
            "| processes | final | average incremental | forgetting |",
            "|---|---|---|---|",
        ]
        for key, label in (("k1", "1"), (f"k{k}", str(k))):
            m = c[key]["summary"]
            cells = [f"{pct(m[x]['mean'])} ± {pct(m[x]['std'])}" for x in SUMMARY_KEYS]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _distill_lines(s: dict, d: dict) -> list[str]:
    k = s["procs"]
    its = list(d["summary"]["k1"])
    lines = [
        f"DREAM (IDC, cpu preset) on `{s['dataset']}`, IPC {s['ipc']}, seeds "
        f"{', '.join(str(x) for x in s['seeds'])}, through `dream-cl distill` with and "
        f"without `--nproc {k}` (data-parallel network update). Test accuracy (%), mean "
        "± std over seeds, with the preset's evaluation protocol:",
        "",
        "| processes | " + " | ".join(f"iteration {i}" for i in its) + " |",
        "|---|" + "---|" * len(its),
    ]
    for key, label in (("k1", "1"), (f"k{k}", str(k))):
        cells = [
            f"{pct(d['summary'][key][i]['mean'])} ± {pct(d['summary'][key][i]['std'])}" for i in its
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    diffs = ", ".join(
        f"seed {r['seed']}: max {r['max_pixel_difference']:.3f}, "
        f"mean {r['mean_pixel_difference']:.4f}"
        for r in d["runs"]
    )
    return [*lines, "", f"Pixel differences between the two synthetic sets: {diffs}.", ""]


if __name__ == "__main__":
    main()
