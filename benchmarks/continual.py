"""Continual learning: `dream-cl compare` over several class orders, same stored budget.

Runs (or resumes) the comparison in a work folder, then copies its summary
(``comparison.json``, ``comparison.md``, ``comparison.png``) into
``results/cl-<scenario>-<preset>/`` with a ``provenance.json`` (commit, date, device,
threads, the exact command, wall time, peak memory, and the seconds every memory spent
summed over its steps and orders). Per-step memories and logs stay in the work folder.

    python benchmarks/continual.py fmnist-5step --data-root ../shared/data
    python benchmarks/continual.py digits-5step
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import RESULTS_DIR, load_json, note_lines, pct, provenance  # noqa: E402


def step_seconds(work: Path) -> dict[str, dict[str, float]]:
    """Seconds each memory spent building memories, training and evaluating, summed over
    every step of every class order in ``work``: the whole comparison's cost, however many
    resumed calls it took (a call's own wall time covers only that call)."""
    import json

    totals: dict[str, dict[str, float]] = {}
    for metrics in sorted(work.glob("*/order*/metrics.json")):
        per = totals.setdefault(metrics.parent.parent.name, {})
        for step in json.loads(metrics.read_text()).get("seconds", []):
            for part, sec in step.items():
                per[part] = per.get(part, 0.0) + float(sec)
    return {
        name: {k: round(v, 1) for k, v in per.items()} | {"total": round(sum(per.values()), 1)}
        for name, per in totals.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--memories", default="dream,idc,herding,random")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--orders", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--work-dir", type=Path, default=Path("runs/benchmarks"))
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument("--extra", default="", help="more `dream-cl compare` options, quoted")
    ap.add_argument("--note", default="", help="how this result was made, when not one call")
    args = ap.parse_args()

    name = f"cl-{args.scenario}-{args.preset}"
    work = args.work_dir / name
    command = [
        "dream-cl",
        "compare",
        args.scenario,
        "--memories",
        args.memories,
        "--preset",
        args.preset,
        "--orders",
        str(args.orders),
        "--threads",
        str(args.threads),
        "--data-root",
        args.data_root,
        "--out",
        str(work),
        "--quiet",
        *args.extra.split(),
    ]
    if (work / "comparison.json").exists() or any(work.glob("*")):
        command.append("--resume")
    import torch

    # the commit whose code runs: taken before the copied result files dirty the tree
    started = provenance(torch.device("cpu"))
    exe = Path(sys.executable).with_name("dream-cl")
    t0 = time.perf_counter()
    subprocess.run([str(exe) if exe.exists() else "dream-cl", *command[1:]], check=True)
    wall = time.perf_counter() - t0

    from dream_cl.utils import atomic_write_json

    out = (args.out_dir or RESULTS_DIR) / name
    out.mkdir(parents=True, exist_ok=True)
    for f in ("comparison.json", "comparison.md", "comparison.png"):
        shutil.copyfile(work / f, out / f)
    record = {
        **started,
        "date": provenance(torch.device("cpu"))["date"],
        "threads": args.threads,
        "command": " ".join(command),
        "wall_seconds_this_call": round(wall, 1),
        "step_seconds": step_seconds(work),
        "peak_rss_mib_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    if args.note:
        record["note"] = args.note
    atomic_write_json(record, out / "provenance.json")
    print(f"wrote {out}")


# --- RESULTS.md section --------------------------------------------------------------------

INTRO = "Accuracy on all classes seen so far (%), mean ± std over class orders."
# What a reader needs beside a continual-learning table (settings that the table omits).
CONTEXT: dict[str, str] = {
    "cl-cifar10-5step-cpu": "CIFAR-10 in 5 steps of 2 classes (the third-party JPEG copy, "
    "`../shared/data/README`), cpu preset: ResNet-10 (CIFAR branch) kept across steps and "
    "trained 40 epochs per step on the cumulative memory only, cross-entropy plus KD from the "
    "previous step's model (`finetune-kd`); every memory stores 10 images per class seen "
    "(100 at the end). DREAM and IDC store factor-2 "
    "multi-formation images, so their 100 stored images decode to 400 training images, as "
    "in the paper's equal-storage comparison; they are distilled with the cpu preset's 8 x 10 "
    "matching steps per task. The paper's continual-learning experiment is on CIFAR-100, so "
    "there is no paper row to put beside this one.",
}
# Results whose numbers a later change made stale, and what replaces them (none today).
SUPERSEDED: dict[str, str] = {}


def section(results: Path) -> str:
    """RESULTS.md's continual-learning section, one table per ``cl-*/comparison.json``."""
    paths = sorted(results.glob("cl-*/comparison.json"))
    if not paths:
        return ""
    lines = [
        "## Continual learning: `dream-cl compare`, same stored budget",
        "",
        INTRO,
        "",
    ]
    for path in paths:
        lines += _comparison_lines(path, results)
    return "\n".join(lines)


def _comparison_lines(path: Path, root: Path) -> list[str]:
    from dream_cl.strategies.report import plot_accuracy

    record = load_json(path)
    results = record["results"]
    n = next(iter(results.values()))["final_accuracy"].get("n", 1)
    png = plot_accuracy(
        {k: {"summary": v} for k, v in results.items()},
        root / "plots" / f"{path.parent.name}.png",
        title=f"{record['scenario']}",
    )
    lines = [
        f"### {record['scenario']} ({n} class order{'s' if n != 1 else ''})",
        "",
        *note_lines(SUPERSEDED, path.parent.name),
        *note_lines(CONTEXT, path.parent.name),
        "| memory | stored | decoded | final | average incremental | forgetting |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        mem = r["memory"]
        ms = [
            f"{pct(r[key]['mean'])} ± {pct(r[key]['std'])}"
            for key in ("final_accuracy", "average_incremental_accuracy", "forgetting")
        ]
        lines.append(
            f"| {name} | {mem['stored_images']} | {mem['decoded_images']} | "
            + " | ".join(ms)
            + " |"
        )
    prov = path.parent / "provenance.json"
    if prov.exists():
        p = load_json(prov)
        lines += [
            "",
            f"Source: `{path.relative_to(root.parent)}` (commit {p.get('commit', '?')}, "
            f"{p.get('date', '?')}, {p.get('device', '?')}); command: "
            f"`{p.get('command', '?')}`." + (f" Note: {p['note']}." if p.get("note") else ""),
        ]
        lines += step_seconds_lines(p.get("step_seconds"), p.get("threads"))
    return [*lines, "", f"![{record['scenario']}]({png.relative_to(root.parent)})", ""]


def step_seconds_lines(seconds: dict[str, dict[str, float]] | None, threads) -> list[str]:
    """The comparison's cost per memory, summed over steps and orders (all its calls)."""
    if not seconds:
        return []
    thread = f", {threads} thread{'s' if threads != 1 else ''}" if threads else ""
    lines = [
        "",
        f"Compute time (s, summed over every step and class order{thread}):",
        "",
        "| memory | build memory | train | evaluate | total |",
        "|---|---|---|---|---|",
    ]
    for name, s in seconds.items():
        cells = [f"{s.get(k, 0.0):,.0f}" for k in ("memory", "train", "eval", "total")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    total = sum(s.get("total", 0.0) for s in seconds.values())
    return [*lines, "", f"All memories: {total / 3600:.2f} h."]


if __name__ == "__main__":
    main()
