"""The paper's efficiency claim (Table 3 ablation): accuracy against distillation iteration.

Four variants of the IDC framework, one flag apart, on real data with the cpu preset:

- ``baseline``: random real batches, random real initialisation (plain IDC);
- ``rm``: representative matching only (DREAM's sampler, random initialisation);
- ``init``: k-means initialisation only (random sampler);
- ``dream``: both (full DREAM).

Each (dataset, ipc, variant, seed) is one run in its own process, evaluated every
``--eval-every`` outer iterations (iteration 0 = the initialisation) with the cpu preset's
shortened protocol. Finished runs are kept under ``results/efficiency/`` and skipped when the
benchmark is started again, so an interrupted sweep resumes. The summary gives, per variant,
the first evaluated iteration at which the seed-mean accuracy reaches the baseline's final
seed-mean accuracy, and the ratio of the baseline's own iterations to that.

    python benchmarks/efficiency.py --data-root ../shared/data          # full sweep, 20 its
    python benchmarks/efficiency.py --name efficiency-40 --ipcs 1 --iterations 40 \
        --continue-from efficiency                      # continues the 20-iteration runs
    python benchmarks/efficiency.py --quick --data-root ...              # smoke setting
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    load_json,
    note_lines,
    pct,
    provenance,
    source_line,
    write_result,
)

if TYPE_CHECKING:
    from dream_cl.distill.config import DistillConfig

VARIANTS: dict[str, dict[str, str]] = {
    "baseline": {"sampler": "random", "init": "random"},
    "rm": {"sampler": "representative", "init": "random"},
    "init": {"sampler": "random", "init": "kmeans"},
    "dream": {"sampler": "representative", "init": "kmeans"},
}


def run_key(dataset: str, ipc: int, variant: str, seed: int) -> str:
    return f"{dataset}-ipc{ipc}-{variant}-seed{seed}"


def run_config(setting: dict[str, Any], image_size: int) -> DistillConfig:
    """The resolved distillation config of one run."""
    from dream_cl.distill.config import resolve_config

    overrides = {
        **VARIANTS[setting["variant"]],
        "seed": setting["seed"],
        "eval_every": setting["eval_every"],
        "iterations": setting["iterations"],
        "eval_epochs": setting["eval_epochs"],
        "device": setting["device"],
    }
    overrides.update(setting.get("extra") or {})
    return resolve_config(
        setting["dataset"], setting["ipc"], preset="cpu", image_size=image_size, overrides=overrides
    )


def run_identity(cfg: DistillConfig) -> dict[str, Any]:
    """What a finished run's row must match to be reused: its resolved distillation config
    and evaluation recipe (a preset or recipe changed since makes the row stale)."""
    from dream_cl.evaluate import resolve_eval_config

    resolved = resolve_eval_config(cfg.eval_config(), cfg.dataset, cfg.factor, cfg.ipc)
    return {"config": cfg.to_dict(), "eval_config": resolved.to_dict()}


# Rows written before rows recorded ``eval_config`` are judged by their config alone: of the
# committed ones, only CIFAR-10's match today's config, and no evaluation-recipe change has
# landed since their commit.
LEGACY_OPTIONAL = ("eval_config",)
# the sweep settings a finished row must share with the sweep that reuses it
ROW_SETTINGS = ("iterations", "eval_every", "eval_epochs")


def run_cells(
    runs_dir: Path,
    settings: list[dict[str, Any]],
    identities: dict[str, dict[str, Any] | None] | None = None,
) -> Cells:
    """The sweep's finished runs, one row file each in ``runs_dir``: a row is reused only at
    these settings and, where ``identities`` gives one, the current :func:`run_identity` (a
    row from an older preset or recipe runs again, never silently reported)."""
    by_key = {_setting_key(s): s for s in settings}

    def expect(key: str) -> dict[str, Any]:
        s = by_key.get(key)
        fields = {k: s[k] for k in ROW_SETTINGS} if s else {}
        return fields | ((identities or {}).get(key) or {})

    return Cells(runs_dir, per_cell_files=True, expect=expect, optional=LEGACY_OPTIONAL)


def is_current(row: dict[str, Any], identity: dict[str, Any]) -> bool:
    """Whether a finished row matches the run the current code would make."""
    return Cells(Path(), expect=identity, optional=LEGACY_OPTIONAL).current("", row)


def one_run(setting: dict[str, Any]) -> dict[str, Any]:
    """Distill one variant and return its accuracy curve (runs in a child process)."""
    import torch

    from dream_cl.data import load_train_test
    from dream_cl.distill.engine import distill

    torch.set_num_threads(setting["threads"])
    train, test = load_train_test(setting["dataset"], Path(setting["data_root"]))
    cfg = run_config(setting, train.info.image_size)
    # each run keeps a checkpointed run folder, so a later sweep with more --iterations
    # continues it instead of starting over
    out = Path(setting["work_dir"]) / _setting_key(setting)
    if setting.get("continue_from") and not out.exists():
        _start_from(Path(setting["work_dir"]).parent / setting["continue_from"], out, cfg)
    result = distill(cfg, train, test, out=out, resume=(out / "checkpoint.pt").exists())
    m = result.metrics
    return {
        **setting,
        **run_identity(cfg),
        "eval_iterations": [e["iteration"] for e in m["evals"]],
        "accuracy": [e["mean"] for e in m["evals"]],
        "time_seconds": m["time_seconds"],
        "wall_seconds": m["wall_seconds_this_call"],
        **provenance(torch.device("cpu") if cfg.device != "cuda" else torch.device("cuda")),
    }


def _start_from(sweep_dir: Path, out: Path, cfg: DistillConfig) -> None:
    """Copy the same run of a shorter sweep (``--continue-from``) as this run's start.

    Only a run of these settings but fewer iterations is taken (periodic evaluation never
    changes a set, so its curve is this run's first part); anything else starts fresh."""
    import shutil

    src = sweep_dir / out.name
    if not (src / "checkpoint.pt").is_file() or not (src / "config.json").is_file():
        return
    saved = json.loads((src / "config.json").read_text()).get("config", {})
    ours = cfg.to_dict()
    if saved.get("iterations", 0) > ours["iterations"]:
        return
    if {k: v for k, v in saved.items() if k != "iterations"} != {
        k: v for k, v in ours.items() if k != "iterations"
    }:
        return
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.lock", "*.tmp"))


def _child(
    setting: dict[str, Any], runs_dir: Path, identity: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """One run through a child process; kept by :func:`run_cells`, skipped while another
    sweep process holds its lock (so a second sweep can share the work). The lock is an
    ``fcntl`` lock, so a killed sweep leaves none behind that would skip the run forever."""
    from dream_cl.errors import UserError
    from dream_cl.runfolder import FolderLock

    key = _setting_key(setting)
    cells = run_cells(runs_dir, [setting], {key: identity})
    row = cells.get(key)
    if row is not None:
        return row
    if cells.stale(key):
        print(f"{key}: the finished run is stale (settings, config or recipe); running again")
    try:
        lock = FolderLock(runs_dir, name=f".{key}.lock").acquire()
    except UserError:
        return None
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(setting)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"run {key} failed:\n{proc.stderr[-2000:]}")
        return cells.put(key, json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        lock.release()


def _setting_key(s: dict[str, Any]) -> str:
    return run_key(s["dataset"], s["ipc"], s["variant"], s["seed"])


def _identities(settings: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each run's :func:`run_identity`, reading each dataset once for its image size."""
    from dream_cl.data import load_train_test

    sizes: dict[tuple[str, str], int] = {}
    out = {}
    for s in settings:
        where = (s["dataset"], s["data_root"])
        if where not in sizes:
            sizes[where] = load_train_test(s["dataset"], Path(s["data_root"]))[0].info.image_size
        out[_setting_key(s)] = run_identity(run_config(s, sizes[where]))
    return out


def first_reaching(iterations: list[int], accuracy: list[float], target: float) -> int | None:
    """The first evaluated iteration whose accuracy is at least ``target`` (None: never)."""
    for it, acc in zip(iterations, accuracy, strict=True):
        if acc >= target - 1e-12:
            return it
    return None


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed-mean curves and the iterations each variant needs to match the baseline."""
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["ipc"]), {}).setdefault(r["variant"], []).append(r)
    out = []
    for (dataset, ipc), by_variant in sorted(groups.items()):
        # compare like with like: while a sweep is partial, only the seeds every variant
        # has finished (a variant's mean over more seeds is not comparable to one over fewer)
        common = set.intersection(*({r["seed"] for r in runs} for runs in by_variant.values()))
        waiting = sum(r["seed"] not in common for runs in by_variant.values() for r in runs)
        by_variant = {v: [r for r in runs if r["seed"] in common] for v, runs in by_variant.items()}
        curves = {}
        for variant, runs in by_variant.items():
            its = runs[0]["eval_iterations"]
            accs = [r["accuracy"] for r in runs if r["eval_iterations"] == its]
            mean = [statistics.fmean(col) for col in zip(*accs, strict=True)]
            std = [
                statistics.pstdev(col) if len(col) > 1 else 0.0 for col in zip(*accs, strict=True)
            ]
            curves[variant] = {
                "iterations": its,
                "mean": mean,
                "std": std,
                "seeds": [r["seed"] for r in runs],
                "final_mean": mean[-1],
                "final_std": std[-1],
                # the distillation's net gain over its own initialisation: where a curve
                # falls back, "final" alone hides that. No "best" point: these are test
                # accuracies, and picking the best one would select on the test set.
                "gain_over_init": mean[-1] - mean[0],
                "seconds_per_run": statistics.fmean(
                    sum(v for k, v in r["time_seconds"].items() if k != "evaluation") for r in runs
                ),
            }
        entry: dict[str, Any] = {"dataset": dataset, "ipc": ipc, "curves": curves}
        if waiting:
            entry["runs_waiting_for_their_seed"] = waiting
        base = curves.get("baseline")
        if base is not None:
            target = base["final_mean"]
            base_iters = first_reaching(base["iterations"], base["mean"], target)
            entry["target_accuracy"] = target
            entry["baseline_iterations"] = base_iters
            # a baseline that ends no higher than it started makes "iterations to its final
            # accuracy" 0 for everyone: no ratio can be read off such a run
            entry["baseline_improved"] = base["final_mean"] > base["mean"][0]
            reach = {}
            for variant, c in curves.items():
                it = first_reaching(c["iterations"], c["mean"], target)
                ratio = None
                if it is not None and it > 0 and base_iters is not None:
                    ratio = base_iters / it
                first_eval = next((i for i in c["iterations"] if i > 0), None)
                reach[variant] = {
                    "iterations": it,
                    "ratio": ratio,
                    "at_init": it == 0,
                    # reached at the first evaluation after init: it may have needed fewer
                    # iterations than that, so the ratio is a lower bound
                    "ratio_is_lower_bound": variant != "baseline"
                    and ratio is not None
                    and it == first_eval,
                }
            entry["to_baseline_final"] = reach
        out.append(entry)
    return out


def plot(summary: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy against iteration with one-std bands, one panel per (dataset, ipc)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(summary)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, entry in zip(axes[0], summary, strict=True):
        for variant, c in entry["curves"].items():
            mean = [100 * m for m in c["mean"]]
            std = [100 * s for s in c["std"]]
            ax.plot(c["iterations"], mean, marker="o", ms=3, label=variant)
            ax.fill_between(
                c["iterations"],
                [m - s for m, s in zip(mean, std, strict=True)],
                [m + s for m, s in zip(mean, std, strict=True)],
                alpha=0.2,
            )
        if "target_accuracy" in entry:
            ax.axhline(100 * entry["target_accuracy"], color="gray", ls=":", lw=1)
        ax.set_title(f"{entry['dataset']} IPC {entry['ipc']}")
        ax.set_xlabel("distillation iteration")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_summary(
    args: argparse.Namespace,
    settings: list[dict[str, Any]],
    runs_dir: Path,
    out_dir: Path,
    identities: dict[str, dict[str, Any]],
) -> Path | None:
    """Summarise every finished run of this sweep's settings (from ``runs_dir``, so it
    counts the runs of any sweep sharing the work) and write the result and its plot.

    A row whose config or recipe is not the one ``identities`` holds (a stale run not yet
    rerun) is left out: the summary counts it as not finished."""
    cells = run_cells(runs_dir, settings, identities)
    rows = list(cells.finished(sorted(_setting_key(s) for s in settings)).values())
    if not rows:
        return None
    summary = summarize(rows)
    import torch

    from dream_cl.utils import resolve_device

    torch.set_num_threads(args.threads)  # provenance records the runs' thread count
    cli_settings = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("child", "out_dir")
    }
    record_rows = [{k: v for k, v in r.items() if k not in ("config", "eval_config")} for r in rows]
    path = write_result(
        args.name,
        resolve_device(args.device),
        {
            **cli_settings,
            "preset": "cpu",
            "config_example": rows[0]["config"],
            "eval_config_example": rows[0].get("eval_config"),
        },
        {"summary": summary, "runs": record_rows},
        out_dir,
    )
    plot(summary, out_dir / "plots" / f"{args.name}.png")  # after the provenance check
    return path


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,fashion_mnist")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument(
        "--iterations",
        type=int,
        default=20,
        help="outer iterations (20, as RESULTS.md's main tables; the cpu preset's full run: 40)",
    )
    ap.add_argument("--eval-every", type=int, default=5)
    ap.add_argument("--eval-epochs", type=int, default=300)
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--name", default="efficiency")
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=Path("runs/benchmarks"),
        help="checkpointed run folders (not results; safe to delete)",
    )
    ap.add_argument("--out-dir", type=Path, default=None)
    ap.add_argument(
        "--continue-from",
        default=None,
        help="a shorter sweep's name: its run folders (same settings) are continued, not redone",
    )
    ap.add_argument("--quick", action="store_true", help="tiny smoke setting")
    ap.add_argument(
        "--summarize-only",
        action="store_true",
        help="start no runs; summarise the finished ones (e.g. while a sweep is stopped)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return ap


def sweep_settings(args: argparse.Namespace, extra: dict[str, Any]) -> list[dict[str, Any]]:
    """One setting per run of the sweep, in the order they start."""
    return [
        {
            "dataset": dataset,
            "ipc": int(ipc),
            "variant": variant,
            "seed": int(seed),
            "iterations": args.iterations,
            "eval_every": args.eval_every,
            "eval_epochs": args.eval_epochs,
            "threads": args.threads,
            "device": args.device,
            "data_root": str(Path(args.data_root).resolve()),
            "work_dir": str((args.work_dir / args.name).resolve()),
            "extra": extra,
            "continue_from": args.continue_from,
        }
        for dataset in args.datasets.split(",")
        for ipc in args.ipcs.split(",")
        for seed in args.seeds.split(",")
        for variant in args.variants.split(",")
    ]


def main() -> None:
    args = parser().parse_args()
    if args.child:
        print(json.dumps(one_run(json.loads(args.child))))
        return
    extra: dict[str, Any] = {}
    if args.quick:
        args.ipcs, args.seeds, args.iterations, args.eval_every = "1", "0", 2, 1
        args.eval_epochs = 2
        extra = {"inner_loop": 2, "n_clusters": 4, "batch_real": 4, "candidates": 16, "n_data": 16}
    out_dir = args.out_dir or RESULTS_DIR
    runs_dir = out_dir / args.name
    runs_dir.mkdir(parents=True, exist_ok=True)
    settings = sweep_settings(args, extra)
    todo = [] if args.summarize_only else settings
    identities = _identities(settings)
    # the runs already finished (and current) when this sweep started
    cells = run_cells(runs_dir, settings, identities)
    reused = {_setting_key(s) for s in todo if cells.done(_setting_key(s))}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for row in pool.map(lambda s: _child(s, runs_dir, identities[_setting_key(s)]), todo):
            if row is None:
                continue
            print(
                f"{row['dataset']:14s} ipc {row['ipc']:3d} {row['variant']:9s} seed {row['seed']}"
                f"  final {100 * row['accuracy'][-1]:.2f}%  ({row['wall_seconds']:.0f}s)",
                flush=True,
            )
            if _setting_key(row) not in reused:
                # a sweep stopped at any point leaves a summary of what it finished
                write_summary(args, settings, runs_dir, out_dir, identities)
    path = write_summary(args, settings, runs_dir, out_dir, identities)
    if path is None:
        print("no finished runs yet")
        return
    print(f"wrote {path}")


# --- RESULTS.md section --------------------------------------------------------------------

VARIANT_NAMES = {
    "baseline": "baseline (random sampler, random init)",
    "rm": "representative matching only",
    "init": "k-means init only",
    "dream": "DREAM (both)",
}
TITLES = {
    "efficiency": "## Efficiency: the Table 3 ablation on real data",
    "efficiency-40": "## Efficiency over the cpu preset's full 40 iterations (IPC 1)",
    "efficiency-paper-lr": "## Efficiency, before the cpu preset's image-rate fix "
    "(paper rate, 300x fewer steps)",
    "efficiency-cifar10": "## Efficiency on CIFAR-10: the Table 3 ablation on real colour images",
}
PAPER_NOTES = {
    "efficiency-cifar10": "The paper's Table 3 (CIFAR-10, IPC 10, 1,000 iterations of the "
    "full protocol): IDC 67.5 ± 0.5 %; RM only 68.9 ± 0.5 % and reaches IDC's final "
    "accuracy in 350 iterations, init only 68.1 ± 0.3 % in 750, DREAM 69.4 ± 0.4 % in 150 "
    "(6.7x). The images here are the third-party JPEG copy of CIFAR-10 "
    "(`../shared/data/README`).",
}
# Result files whose numbers a later change made stale, and what replaces them (item 9 of
# the honest-protocol issue: nothing committed may come from a choice made on test data or
# from a recipe that has since changed without saying so).
SUPERSEDED: dict[str, str] = {
    "efficiency-paper-lr": "**Historical.** The cpu preset before its image-rate multiple, "
    "evaluated with the old MNIST factor-2 recipe; kept as the record of why the multiple "
    "exists, not as a current number.",
}
METHOD = (
    "IDC framework, cpu preset, {iterations} outer iterations of {inner} matching steps each, "
    "evaluated every {eval_every} iterations (iteration 0 = the initialisation) by training a "
    "width-32 ConvNet-3 for {eval_epochs} epochs on the decoded set; seeds {seeds}. "
    "'Iterations to target' is the first evaluated iteration at which the seed-mean accuracy "
    "reaches the baseline's final seed-mean accuracy; 'ratio' is the baseline's own iterations "
    "to that accuracy divided by the variant's ('at init': reached before any distillation; "
    "'≥': reached at the first evaluation, so possibly sooner); 'gain' is final minus "
    "iteration 0, in points. Every accuracy is test accuracy, reported at each evaluated "
    "iteration; nothing is chosen from these curves (no 'best' point: picking one would "
    "select on the test set)."
)
FLAT_BASELINE = (
    "The baseline ends no higher than its initialisation: at this budget the distillation "
    "does not improve on its starting images, so every variant reaches the baseline's final "
    "accuracy at init and no iteration ratio can be read off this run; compare the 'gain' "
    "column instead."
)
# variants that start from the same set (one init), so their iteration-0 accuracies agree
SAME_START = (("baseline", "rm"), ("init", "dream"))


def section(results: Path) -> str:
    """RESULTS.md's efficiency sections, one per ``efficiency*.json`` (the main one first)."""
    paths = sorted(results.glob("efficiency*.json"), key=lambda p: (p.stem != "efficiency", p.stem))
    return "\n".join(line for p in paths for line in _sweep_lines(p, results))


def _sweep_lines(path: Path, root: Path) -> list[str]:
    record = load_json(path)
    summary = record["results"]["summary"]
    s = record["settings"]
    inner = s.get("config_example", {}).get("inner_loop", "?")
    order = list(VARIANT_NAMES)
    for entry in summary:
        entry["curves"] = dict(
            sorted(
                entry["curves"].items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99
            )
        )
    png = plot(summary, root / "plots" / f"{path.stem}.png")
    paper_note = PAPER_NOTES.get(path.stem)
    lines = [
        TITLES.get(path.stem, f"## {path.stem}"),
        "",
        METHOD.format(**s, inner=inner),
        "",
        *([paper_note, ""] if paper_note else []),
        *partial_note(record, resumable=path.stem not in SUPERSEDED),
        *note_lines(SUPERSEDED, path.stem),
        source_line(record, path, root),
        "",
        *run_machines(record),
    ]
    for entry in summary:
        lines += _entry_lines(entry)
    return [*lines, f"![accuracy against iteration]({png.relative_to(root.parent)})", ""]


def _entry_lines(entry: dict[str, Any]) -> list[str]:
    """One (dataset, IPC)'s table: every variant's curve and its iterations to the target."""
    its = next(iter(entry["curves"].values()))["iterations"]
    head = " | ".join(f"it {i}" for i in its)
    waiting = entry.get("runs_waiting_for_their_seed")
    lines = [f"### {entry['dataset']}, IPC {entry['ipc']}", ""]
    if waiting:
        lines += [
            f"Over the seeds every variant has finished; {waiting} more finished "
            "run(s) wait for their seed's other variants.",
            "",
        ]
    lines += [
        f"| variant | seeds | {head} | final (mean ± std) | gain | iterations to target | ratio |",
        "|---|---|" + "---|" * len(its) + "---|---|---|---|",
    ]
    reach = entry.get("to_baseline_final", {})
    for variant, c in entry["curves"].items():
        r = reach.get(variant, {})
        if r.get("iterations") is None:
            to, ratio = "not reached", "-"
        elif r.get("at_init"):
            to, ratio = "0 (at init)", "at init"
        else:
            to = str(r["iterations"])
            ratio = f"{r['ratio']:.1f}x" if r.get("ratio") else "-"
            if r.get("ratio_is_lower_bound"):
                ratio = f"≥ {ratio}"
        accs = " | ".join(pct(m) for m in c["mean"])
        gain = 100 * (c["mean"][-1] - c["mean"][0])
        lines.append(
            f"| {VARIANT_NAMES.get(variant, variant)} | {len(c['seeds'])} | {accs} | "
            f"{pct(c['final_mean'])} ± {pct(c['final_std'])} | {gain:+.2f} | {to} | {ratio} |"
        )
    lines.append("")
    base = entry["curves"].get("baseline")
    if base is not None and base["mean"][-1] <= base["mean"][0]:
        lines += [FLAT_BASELINE, ""]
    return lines


def partial_note(record: dict[str, Any], resumable: bool = True) -> list[str]:
    """Say so when an efficiency sweep's summary covers only some of its runs."""
    s = record["settings"]
    wanted = 1
    for key in ("datasets", "ipcs", "variants", "seeds"):
        wanted *= len(str(s.get(key, "")).split(","))
    done = len(record["results"].get("runs", []))
    if done >= wanted:
        return []
    note = (
        f"**Partial: {done} of {wanted} runs finished** (seed means below are over the seeds shown)"
    )
    shown = {(e["dataset"], int(e["ipc"])) for e in record["results"].get("summary", [])}
    absent = [
        f"{d} IPC {i}"
        for d in str(s.get("datasets", "")).split(",")
        for i in (int(x) for x in str(s.get("ipcs", "")).split(",") if x)
        if (d, i) not in shown
    ]
    if absent:
        note += f"; not run yet: {', '.join(absent)}"
    if resumable:
        note += (
            "; the sweep resumes where it stopped when its command is run again "
            f"(`python benchmarks/efficiency.py --name {s.get('name')} ...`, same settings)"
        )
    return [note + ".", ""]


def run_machines(record: dict[str, Any]) -> list[str]:
    """Name the CPU models a sweep's runs ran on when they were not all on one machine.

    The source line names the machine that wrote the summary; a sweep resumed across sessions
    may have run its seeds on different CPUs, which matters to anyone reading its times.
    """
    runs = record["results"].get("runs", [])
    counts = Counter(str(run.get("cpu_model") or "not recorded") for run in runs)
    if len(counts) < 2:
        return []
    parts = "; ".join(f"{n} on {model}" for model, n in counts.items())
    return [
        f"The runs ran on more than one CPU model ({parts}); no time from this table is "
        "compared across those machines. " + _cross_cpu_agreement(runs),
        "",
    ]


def _cross_cpu_agreement(runs: list[dict[str, Any]]) -> str:
    """How far one iteration-0 set scores apart on two CPU models (floating-point paths differ
    between CPUs, so equal seeds agree only to within this), measured from the runs."""
    by_key = {(r.get("dataset"), r.get("ipc"), r.get("seed"), r.get("variant")): r for r in runs}
    same, across = 0, []
    for (dataset, ipc, seed, variant), r in by_key.items():
        for a, b in SAME_START:
            other = by_key.get((dataset, ipc, seed, b)) if variant == a else None
            if other is None or not r.get("accuracy") or not other.get("accuracy"):
                continue
            gap = abs(r["accuracy"][0] - other["accuracy"][0])
            if r.get("cpu_model") == other.get("cpu_model"):
                same += gap == 0
            else:
                across.append(gap)
    if not across:
        return (
            "No two runs that share an initial set ran on different models, so the table "
            "does not measure how far CPUs agree; floating-point paths differ between them, so "
            "a seed rerun on another model may score slightly differently."
        )
    return (
        "Seed for seed, accuracies agree across CPU models only up to floating-point "
        f"differences: the same initial set scored up to {100 * max(across):.2f} points apart "
        f"on two models ({len(across)} pair(s)), and identically on one model ({same} pair(s))."
    )


if __name__ == "__main__":
    main()
