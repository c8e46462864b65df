"""Cross-architecture generalisation in the shape of the paper's Table 4.

DREAM and plain IDC sets are distilled with ConvNet-3 (IDC framework, cpu preset, IPC 10;
DREAM = representative sampler + k-means init, IDC = random sampler + random real init),
one per seed, then each set trains fresh ConvNet-3 (the cpu preset's width-32 evaluation
net), ResNet-10 (the official branch for the dataset: ImageNet-style 64-128-256-512 on
(Fashion)MNIST) and DenseNet-121 with IDC's evaluation recipe at the preset's epochs; the
reported number is last-epoch test accuracy, mean +- std over seeds. Nothing is chosen.

Long on a CPU (a ResNet-10 or DenseNet-121 evaluation of 400 decoded images for 300 epochs
takes about an hour on one core), so the benchmark resumes: distillations checkpoint in
``--work``, every finished cell is kept, and the result file is rewritten after each cell
with the cells still pending listed. Cheap cells run first (all distillations and the
ConvNet column, then ResNet-10, then DenseNet-121); ``--jobs`` evaluates that many cells at
once in separate processes (``--jobs 2`` on a 2-core machine halves the wall time);
``--budget-minutes`` stops cleanly between chunks of ``--jobs`` cells.

    python benchmarks/cross_arch.py --datasets mnist,fashion_mnist --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    cpu_preset_set,
    run_in_processes,
    write_result,
)

MODELS = ("convnet", "resnet10", "densenet121")


def _set_dir(work: Path, dataset: str, method: str, seed: int) -> Path:
    return work / f"{dataset}-{method}-ipc10-s{seed}"


def distill_set(dataset: str, method: str, seed: int, args: argparse.Namespace, data) -> Path:
    """Distil (or finish, or reuse) one set; returns its folder."""
    overrides = {}
    if args.iterations:
        overrides["iterations"] = args.iterations
    if args.eval_epochs:
        overrides["eval_epochs"] = args.eval_epochs
    return cpu_preset_set(
        _set_dir(args.work, dataset, method, seed),
        dataset,
        10,
        method,
        data[dataset][0],
        seed=seed,
        device=args.device,
        overrides=overrides,
    )


def evaluate_cell(folder: Path, model: str, seed: int, args: argparse.Namespace, test):
    """Train one fresh ``model`` on the set in ``folder``; last-epoch test accuracy."""
    from dream_cl.artifact import load_image_set
    from dream_cl.distill.config import DistillConfig
    from dream_cl.evaluate import eval_recipe, evaluate_image_set
    from dream_cl.utils import resolve_device

    s = load_image_set(folder)
    cfg = DistillConfig.from_dict(s.meta["config"])
    recipe = eval_recipe(cfg.resolved_eval_recipe(), cfg.dataset, epochs=cfg.eval_epochs)
    options = {"width": cfg.eval_width} if model == "convnet" and cfg.eval_width else None
    t0 = time.perf_counter()
    result = evaluate_image_set(
        s,
        test,
        model=model,
        repeats=1,
        cfg=recipe,
        seed=seed,
        device=resolve_device(args.device),
        model_options=options,
    )
    return {
        "accuracy": result.mean,
        "seconds": time.perf_counter() - t0,
        "recipe": result.config,
        "images_sha256": s.meta.get("images_sha256"),
    }


def cell_job(key: str, folder: Path, args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """One cell, in its own process under ``--jobs`` (so it loads its own test split)."""
    import torch

    from dream_cl.data import load_train_test

    torch.set_num_threads(args.threads)
    dataset, _, model, seed = key.split("|")
    test = load_train_test(dataset, Path(args.data_root))[1]
    return key, evaluate_cell(folder, model, int(seed), args, test)


def summarize(cells: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean +- std (population) over seeds per (dataset, method, model)."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for key, cell in cells.items():
        dataset, method, model, _ = key.split("|")
        groups.setdefault((dataset, method, model), []).append(cell["accuracy"])
    return [
        {
            "dataset": d,
            "method": m,
            "model": net,
            "seeds": len(v),
            "mean": statistics.fmean(v),
            "std": statistics.pstdev(v) if len(v) > 1 else 0.0,
        }
        for (d, m, net), v in sorted(groups.items())
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="mnist,fashion_mnist")
    ap.add_argument("--methods", default="dream,idc")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--iterations", type=int, default=0, help="0: the preset's (smoke tests)")
    ap.add_argument("--eval-epochs", type=int, default=0, help="0: the preset's")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per cell")
    ap.add_argument("--jobs", type=int, default=1, help="cells evaluated in parallel processes")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--work", type=Path, default=Path("runs/benchmarks/cross-arch"))
    ap.add_argument("--budget-minutes", type=float, default=0.0, help="0: no limit")
    ap.add_argument("--name", default="cross-arch")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()

    import json

    import torch

    from dream_cl.data import load_train_test
    from dream_cl.utils import resolve_device

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    datasets = args.datasets.split(",")
    methods = args.methods.split(",")
    models = args.models.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    out_dir = args.out_dir or RESULTS_DIR
    result_path = out_dir / f"{args.name}.json"
    cells: dict[str, dict[str, Any]] = {}
    if result_path.exists():
        cells = json.loads(result_path.read_text())["results"].get("cells", {})
    data = {d: load_train_test(d, Path(args.data_root)) for d in datasets}
    plan = [(d, m, net, s) for net in models for s in seeds for d in datasets for m in methods]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings |= {"preset": "cpu", "ipc": 10, "framework": "idc", "distill_model": "convnet"}

    def save() -> Path:
        pending = ["|".join(map(str, c)) for c in plan if "|".join(map(str, c)) not in cells]
        results = {"cells": cells, "summary": summarize(cells), "pending": pending}
        return write_result(args.name, resolve_device(args.device), settings, results, out_dir)

    def record(done: tuple[str, dict[str, Any]]) -> None:
        key, cell = done
        cells[key] = cell
        print(f"{key}: {100 * cell['accuracy']:.2f} % ({cell['seconds']:.0f} s)", flush=True)
        save()

    todo = [c for c in plan if "|".join(map(str, c)) not in cells]
    # Cheap cells first (the plan's order); a chunk of --jobs cells at a time, so the budget is
    # checked between chunks and a stop loses at most the chunk in flight.
    for start in range(0, len(todo), max(1, args.jobs)):
        if args.budget_minutes and time.perf_counter() - started > 60 * args.budget_minutes:
            print("budget spent; rerun the same command to continue", flush=True)
            break
        chunk = todo[start : start + max(1, args.jobs)]
        calls = []
        for d, m, net, s in chunk:
            folder = distill_set(d, m, s, args, data)
            calls.append((f"{d}|{m}|{net}|{s}", folder, args))
        run_in_processes(cell_job, calls, args.jobs, record)
    print(f"wrote {save()}")


if __name__ == "__main__":
    main()
