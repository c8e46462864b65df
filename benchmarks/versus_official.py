"""The official DREAM code and dream-cl, side by side on this CPU: seconds per inner iteration.

Both sides run the paper preset (IDC framework, ConvNet-3 width 128, instance norm, IPC 10,
factor 2, N = 128, a k-means refresh every 10 inner iterations) on random uint8 tensors of
the dataset's shape, with 2 torch threads, one process at a time, alternating: in each round,
for each shape, the official harness first, then every dream-cl variant. Per inner iteration
= one refresh / 10 + the mean plain inner iteration (its first lap dropped as warm-up; on
dream-cl's side the refresh is the steady second of two, the first carrying compilation),
broken down into clustering, matching and network update, with the process's peak resident
memory. The official side is ``bench_official.py`` in a tree prepared by
``prepare.sh`` (the official-bench tools: the code, patched only to run on a CPU); the
dream-cl side is ``benchmarks/throughput.py``'s setting. One JSON holds both sides, the CPU
model and the settings; every cell is kept as it finishes, so a stopped run resumes.

    prepare.sh GIT_DIR WORK_DIR .venv              # once: the official code, ready to time
    python benchmarks/versus_official.py --official WORK_DIR
    python benchmarks/versus_official.py --official WORK_DIR --before COMMIT   # + the old code
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import RESULTS_DIR, load_json, source_line  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2
INTERVAL = 10  # the paper's refresh interval, on both sides


def official_cell(work: Path, shape: str, steps: int) -> dict[str, Any]:
    """Run the official harness once; its numbers in this benchmark's schema."""
    tree = work / "tree"
    python = str(work / "venv" / "bin" / "python")
    out = _run([python, "bench_official.py", shape, str(steps)], tree)
    plain, net = out["plain_s"], out["net_update_s"]
    breakdown = {
        "clustering": out["refresh_s"] / out["interval"],
        "matching": plain - net,
        "network_update": net,
    }
    return {
        "seconds_per_inner_iteration": out["per_inner_s"],
        "breakdown_per_inner_iteration": breakdown,
        "refresh_seconds": out["refresh_s"],
        "peak_gib": out["peak_gib"],
        "raw": out,
    }


def dream_cl_cell(
    shape: str, variant: str, steps: int, root: Path = ROOT, warm_refresh: bool = True
) -> dict[str, Any]:
    """Run one ``benchmarks/throughput.py`` setting in its own process, with the code in
    ``root`` (this checkout, or a worktree of an earlier commit: ``warm_refresh=False``, as
    its benchmark timed the first refresh only)."""
    setting = {
        "shape": shape,
        "ipc": 10,
        "variant": variant,
        "width": 128,
        "interval": INTERVAL,
        "steps": steps,
        "factor": 2,
        "device": "cpu",
    }
    if warm_refresh:
        setting["warm_refresh"] = True
    script = root / "benchmarks" / "throughput.py"
    out = _run([sys.executable, str(script), "--child", json.dumps(setting)], root)
    return {
        "seconds_per_inner_iteration": out["seconds_per_inner_iteration"],
        "breakdown_per_inner_iteration": out["breakdown_per_inner_iteration"],
        "refresh_seconds": out["refresh_seconds"],
        "first_refresh_seconds": out.get("first_refresh_seconds", out["refresh_seconds"]),
        "peak_gib": out["peak_rss_mib"] / 1024,
        "raw": out,
    }


def worktree(commit: str) -> Path:
    """A checkout of ``commit`` beside this one's results (made once), for a before run."""
    path = ROOT / "runs" / "worktrees" / commit
    if not path.exists():
        cmd = ["git", "worktree", "add", "--detach", str(path), commit]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    return path


def _run(cmd: list[str], cwd: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "PYTHONPATH": str(cwd)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="the folder prepare.sh made")
    ap.add_argument("--shapes", default="cifar10,mnist")
    ap.add_argument("--variants", default="per-class,compiled,fast")
    ap.add_argument("--steps", type=int, default=3, help="inner iterations timed per cell")
    ap.add_argument("--before", default=None, help="also time the per-class variant at this commit")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--name", default="versus-official")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args()
    if not (args.official / "tree" / "bench_official.py").is_file():
        raise SystemExit(f"{args.official} is not a folder prepare.sh made; run prepare.sh first")
    from benchmarks.throughput import VARIANTS

    variants = args.variants.split(",")
    if unknown := [v for v in variants if v not in VARIANTS]:
        raise SystemExit(f"unknown variant(s) {unknown}; use {', '.join(VARIANTS)}")
    torch.set_num_threads(THREADS)
    settings = {"shapes": args.shapes, "steps": args.steps, "threads": THREADS, "ipc": 10}
    settings |= {"interval": INTERVAL, "factor": 2, "width": 128, "preset": "paper"}
    settings |= {"warm_refresh": True}  # the before's old benchmark times its first refresh
    cells = Cells(
        args.out_dir / f"{args.name}.json",
        settings=settings,
        shaping=[k for k in settings if k != "shapes"],  # a different setting: a new run
        where=("cells",),
        expect=lambda key: {"key": key, "steps": args.steps},
        device=torch.device("cpu"),
    )
    for r in range(args.rounds):
        for shape in args.shapes.split(","):
            before = [f"per-class@{args.before}"] if args.before else []
            for impl in ["official", *before, *variants]:
                key = f"{shape}/{impl}/{r}"
                if cells.done(key):
                    continue
                if impl == "official":
                    cell = official_cell(args.official, shape, args.steps)
                elif "@" in impl:
                    variant, commit = impl.split("@")
                    cell = dream_cl_cell(
                        shape, variant, args.steps, worktree(commit), warm_refresh=False
                    )
                else:
                    cell = dream_cl_cell(shape, impl, args.steps)
                cells.put(key, {"shape": shape, "impl": impl, "round": r, **cell})
                b = cell["breakdown_per_inner_iteration"]
                print(
                    f"{key:28s} {cell['seconds_per_inner_iteration']:6.2f} s/inner "
                    f"(clustering {b['clustering']:.2f}, matching {b['matching']:.2f}, "
                    f"network {b['network_update']:.2f}) peak {cell['peak_gib']:.2f} GiB",
                    flush=True,
                )
    print(f"wrote {cells.path}")


# --- RESULTS.md section --------------------------------------------------------------------


def mean_cells(record: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(shape, impl) -> the mean over rounds of its seconds, breakdown and peak memory."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for cell in record["cells"].values():
        groups.setdefault((cell["shape"], cell["impl"]), []).append(cell)
    out = {}
    for key, cs in groups.items():
        n = len(cs)
        parts = cs[0]["breakdown_per_inner_iteration"]
        out[key] = {
            "seconds": sum(c["seconds_per_inner_iteration"] for c in cs) / n,
            "parts": {p: sum(c["breakdown_per_inner_iteration"][p] for c in cs) / n for p in parts},
            "peak_gib": max(c["peak_gib"] for c in cs),
            "rounds": n,
            "precision": cs[0].get("raw", {}).get("precision", "fp32"),
        }
    shapes = list(dict.fromkeys(shape for shape, _ in out))
    return dict(sorted(out.items(), key=lambda kv: (shapes.index(kv[0][0]), _rank(kv[0][1]))))


INTRO = (
    "The official code (patched only to run on a CPU) and dream-cl's variants, alternately "
    "in one run on one CPU: paper preset (IDC, ConvNet-3 width 128, IPC 10, factor 2, N = "
    "128, a refresh every 10 inner iterations), random tensors of each shape, 2 threads. "
    "Seconds per inner iteration = one refresh / 10 + the mean plain inner iteration "
    "(clustering = refresh / 10; on dream-cl's side the steady second of two refreshes, "
    "where the run says `warm_refresh`). Peak: the process's resident peak, in GiB. "
    "`benchmarks/versus_official.py`'s docstring says how."
)
LABELS = {
    "official": "official",
    "per-class": "dream-cl faithful, eager",
    "compiled": "dream-cl faithful, `--compile`",
    "fast": "dream-cl fast path (pool, `--compile`, {precision})",
    "pool-compiled": "dream-cl pool + `--compile`",
}


ORDER = ("official", "@", "per-class", "compiled", "pool-compiled", "fast")


def label(impl: str, precision: str = "fp32") -> str:
    """An implementation's name in the table (``variant@commit``: the variant then)."""
    variant, _, commit = impl.partition("@")
    if commit:
        return f"dream-cl faithful at {commit} (before)"
    return LABELS.get(variant, f"dream-cl `{variant}`").format(precision=precision)


def _rank(impl: str) -> int:
    key = "@" if "@" in impl else impl
    return ORDER.index(key) if key in ORDER else len(ORDER)


def table_lines(record: dict[str, Any]) -> list[str]:
    lines = [
        "| shape | implementation | s / inner | clustering | matching | network update "
        "| vs official | peak GiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    means = mean_cells(record)
    for (shape, impl), m in means.items():
        official = means.get((shape, "official"))
        rel = "-"
        if impl != "official" and official:
            rel = f"{official['seconds'] / m['seconds']:.2f}x"
        p = m["parts"]
        lines.append(
            f"| {shape} | {label(impl, m['precision'])} | {m['seconds']:.2f} | "
            f"{p['clustering']:.2f} | "
            f"{p['matching']:.2f} | {p['network_update']:.2f} | {rel} | {m['peak_gib']:.2f} |"
        )
    return lines


def section(results: Path) -> str:
    paths = sorted(results.glob("versus-official*.json"))
    if not paths:
        return ""
    lines = ["## Against the official code, side by side", "", INTRO, ""]
    for path in paths:
        record = load_json(path)
        first = next(iter(record["cells"].values()), {})
        lines += [f"### `{path.stem}`: {first.get('cpu_model', '?')}", ""]
        lines += [*table_lines(record), "", source_line(first, path, results), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
