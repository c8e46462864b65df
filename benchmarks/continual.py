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

from benchmarks.common import RESULTS_DIR, provenance  # noqa: E402


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


if __name__ == "__main__":
    main()
