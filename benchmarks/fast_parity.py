"""Does the fast path keep accuracy? The faithful and the fast distillation of real data,
compared on validation accuracy.

For each dataset (MNIST and CIFAR-10 by default) at the cpu preset, IPC 10 (DREAM: IDC
framework, representative sampler, k-means init), seeds 0-2: a validation split (10 % of
each class, seeded, never distilled on) is held out of the training split; each seed is
distilled the faithful way (fp32, eager) and the fast way (``--compile``, and bf16 where the
hardware has bf16 units; the cpu preset already clusters a candidate pool), then the set is
evaluated on the validation split (the cpu preset's recipe and ConvNet-3 width 32,
``--eval-repeats`` models). The fast path keeps accuracy when its seed mean is within one
seed standard deviation of the faithful mean. The distillation's wall time is recorded in
the JSON (not a speed measurement: other work may share the machine; speed is
``versus_official.py``'s). The test split is never read. Each (dataset, way, seed) cell is
kept as it finishes; a stopped run resumes.

    python benchmarks/fast_parity.py --data-root DATA
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import RESULTS_DIR, args_settings, load_json, source_line  # noqa: E402

WAYS = ("faithful", "fast")


def fast_options(device: str) -> dict[str, Any]:
    """The fast path's settings on this machine: compile, and bf16 where it pays."""
    from benchmarks.throughput import variant_precision

    return {"compile": True, "precision": variant_precision("auto", device)}


def one_cell(dataset: str, way: str, seed: int, args: argparse.Namespace, data: Any) -> dict:
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill

    train, val = data
    overrides: dict[str, Any] = {
        "seed": seed,
        "device": args.device,
        "eval_every": args.iterations,
        "iterations": args.iterations,
        "eval_repeats": args.eval_repeats,
        "eval_split": "val",
        "val_fraction": args.val_fraction,
        "val_seed": 0,
    }
    if way == "fast":
        overrides |= fast_options(args.device)
    size = train.info.image_size
    cfg = resolve_config(dataset, 10, preset="cpu", image_size=size, overrides=overrides)
    t0 = time.perf_counter()
    result = distill(cfg, train, val)
    final = result.metrics["evals"][-1]
    assert final["split"] == "val"
    return {
        "validation_accuracy": final["mean"],
        "accuracies": final.get("accuracies", [final["mean"]]),
        "seconds": time.perf_counter() - t0,
        "distill_seconds": result.metrics["time_seconds"],
        "compile": cfg.compile,
        "precision": cfg.precision,
    }


def main() -> None:
    import torch

    from dream_cl.data import ValidationSpec, load_splits

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--datasets", default="mnist,cifar10")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iterations", type=int, default=40, help="the cpu preset's 40")
    ap.add_argument("--eval-repeats", type=int, default=1)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--name", default="fast-parity")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args()
    settings = {k: v for k, v in args_settings(args).items() if k not in ("name", "out_dir")}
    settings.pop("data_root")
    shaping = ("iterations", "eval_repeats", "val_fraction")
    cells = Cells(args.out_dir / f"{args.name}.json", settings=settings, shaping=shaping,
                  device=torch.device("cpu"))  # fmt: skip
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = args.datasets.split(",")
    splits: dict[str, Any] = {}
    # seed by seed across the datasets, so that a stopped run has comparable partial rows
    for seed in seeds:
        for dataset in datasets:
            for way in WAYS:
                key = f"{dataset}/{way}/{seed}"
                if cells.done(key):
                    continue
                if dataset not in splits:
                    spec = ValidationSpec(args.val_fraction, 0)
                    splits[dataset] = load_splits(dataset, args.data_root, spec)[:2]
                cell = one_cell(dataset, way, seed, args, splits[dataset])
                cells.put(key, {"dataset": dataset, "way": way, "seed": seed, **cell})
                print(f"{key:22s} val {100 * cell['validation_accuracy']:.2f} %  "
                      f"{cell['seconds']:.0f} s", flush=True)  # fmt: skip
    print(f"wrote {cells.path}")


# --- RESULTS.md section --------------------------------------------------------------------


def summary(cells: list[dict], dataset: str, way: str) -> tuple[float, float, int]:
    """(mean, seed std, seeds) of one dataset's way; accuracies in %."""
    mine = [c for c in cells if c["dataset"] == dataset and c["way"] == way]
    accs = [100 * c["validation_accuracy"] for c in mine]
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return statistics.fmean(accs) if accs else float("nan"), std, len(mine)


def _cell(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} +- {std:.2f} % ({n} seed{'s' if n != 1 else ''})" if n else "pending"


def _per_seed(cells: list[dict], dataset: str) -> str:
    """Each seed's two accuracies (%): a pair shares its seed (initial images, networks)."""
    acc = {
        (c["way"], c["seed"]): 100 * c["validation_accuracy"]
        for c in cells
        if c["dataset"] == dataset
    }
    seeds = sorted({c["seed"] for c in cells})
    pair = lambda s: "/".join(f"{acc[w, s]:.2f}" if (w, s) in acc else "-" for w in WAYS)  # noqa: E731
    return ", ".join(f"{s}: {pair(s)}" for s in seeds)


def section(results: Path) -> str:
    path = results / "fast-parity.json"
    if not path.exists():
        return ""
    record = load_json(path)
    cells = list(record["cells"].values())
    lines = [
        "## The fast path's accuracy (validation split)",
        "",
        __doc__.split("\n\n")[0].replace("\n", " "),
        "",
        "| dataset | faithful val. accuracy | fast val. accuracy | fast - faithful "
        "| within one std | per seed (faithful / fast) | fast path here |",
        "|---|---|---|---|---|---|---|",
    ]
    for dataset in dict.fromkeys(c["dataset"] for c in cells):
        f_mean, f_std, f_n = summary(cells, dataset, "faithful")
        q_mean, q_std, q_n = summary(cells, dataset, "fast")
        fast = [c for c in cells if c["dataset"] == dataset and c["way"] == "fast"]
        within = "yes" if abs(q_mean - f_mean) <= f_std else "no"
        if min(f_n, q_n) < 2:
            within = "- (needs 2 seeds or more)"
        precision = f"compile, {fast[0]['precision']}" if fast else "-"
        lines.append(
            f"| {dataset} | {_cell(f_mean, f_std, f_n)} | {_cell(q_mean, q_std, q_n)} | "
            f"{q_mean - f_mean:+.2f} | {within} | {_per_seed(cells, dataset)} | {precision} |"
        )
    seeds = len(record["settings"]["seeds"].split(","))
    done = {
        (c["dataset"], c["way"])
        for c in cells
        if sum(1 for d in cells if (d["dataset"], d["way"]) == (c["dataset"], c["way"])) == seeds
    }
    if len(done) < 2 * len({c["dataset"] for c in cells}):
        lines += ["", f"Partial: of {seeds} seeds per row, the counts above are done so far "
                  "(the same command continues the run)."]  # fmt: skip
    commits = list(dict.fromkeys(c["commit"] for c in cells if "commit" in c))
    if len(commits) > 1:
        lines += ["", f"The cells ran at commits {', '.join(commits)}."]
    return "\n".join([*lines, "", source_line(cells[0], path, results), ""])


if __name__ == "__main__":
    main()
