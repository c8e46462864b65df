"""How fast may the synthetic images move? The cpu preset's image learning rate, chosen on
validation data.

The paper's image rates are tuned for 120,000 matching steps; the cpu preset takes a few
hundred, so it multiplies the paper's rate. This benchmark holds a validation split out of
the training split (``--val-fraction``, seeded), distils the rest at several multipliers of the
paper's rate (IDC framework, cpu preset otherwise unchanged), and records *validation*
accuracy against iteration. The multiplier is chosen by :func:`choose_multiplier`: the best
seed-mean validation accuracy at the last iteration, summed over the IPCs measured. The test
split is never read.

    python benchmarks/image_rate.py --dataset digits --ipcs 1,10 --multipliers 1,10,30,100
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    args_settings,
    git_commit,
    load_json,
    pct,
    run_in_processes,
    source_line,
    write_result,
)


def one_run(
    dataset: str, ipc: int, multiplier: float, args: argparse.Namespace, data: Any
) -> dict[str, Any]:
    """Distil at ``multiplier`` x the paper's image rate; return the accuracy curve."""
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill

    train, val = data
    size = train.info.image_size
    paper_lr = resolve_config(dataset, ipc, preset="paper", image_size=size).lr_img
    overrides: dict[str, Any] = {
        "sampler": args.sampler,
        "init": args.init,
        "seed": args.seed,
        "iterations": args.iterations,
        "eval_every": args.eval_every,
        "eval_repeats": args.eval_repeats,
        "lr_img": paper_lr * multiplier,
        "device": args.device,
        "eval_split": "val",
        "val_fraction": args.val_fraction,
        "val_seed": args.val_seed,
    }
    if args.eval_epochs:
        overrides["eval_epochs"] = args.eval_epochs
    cfg = resolve_config(dataset, ipc, preset="cpu", image_size=size, overrides=overrides)
    result = distill(cfg, train, val)
    evals = result.metrics["evals"]
    assert all(e["split"] == "val" for e in evals)
    return {
        "dataset": dataset,
        "ipc": ipc,
        "multiplier": multiplier,
        "lr_img": cfg.lr_img,
        "paper_lr_img": paper_lr,
        "split": "val",
        "eval_iterations": [e["iteration"] for e in evals],
        "accuracy": [e["mean"] for e in evals],
        "accuracy_std": [e.get("std", 0.0) for e in evals],
    }


def run_key(ipc: int, multiplier: float) -> str:
    return f"{ipc}|{multiplier!r}"


def choose_multiplier(runs: list[dict[str, Any]]) -> float:
    """The multiplier with the highest last-iteration validation accuracy, summed over the
    IPCs (ties: the smaller multiplier, the closer to the paper). Refuses anything that is
    not a validation measurement, so a test accuracy can never choose a preset value."""
    totals: dict[float, float] = {}
    for r in runs:
        if r.get("split") != "val":
            raise ValueError("choose_multiplier takes validation accuracies only")
        totals[r["multiplier"]] = totals.get(r["multiplier"], 0.0) + r["accuracy"][-1]
    return min(totals, key=lambda m: (-round(totals[m], 10), m))


def _worker(dataset: str, ipc: int, multiplier: float, args: argparse.Namespace) -> dict[str, Any]:
    """One run in a pool process: its own thread count and its own copy of the splits."""
    import torch

    from dream_cl.data import ValidationSpec, load_splits

    torch.set_num_threads(args.threads)
    spec = ValidationSpec(args.val_fraction, args.val_seed)
    train, val, _ = load_splits(dataset, Path(args.data_root), spec)
    return one_run(dataset, ipc, multiplier, args, (train, val))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--multipliers", default="1,10,100")
    ap.add_argument("--sampler", default="random", help="random: the plain-IDC baseline")
    ap.add_argument("--init", default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--val-seed", type=int, default=0)
    ap.add_argument("--eval-repeats", type=int, default=3)
    ap.add_argument("--eval-epochs", type=int, default=0, help="0: the preset's")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (own process each)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--name", default=None, help="result name (default image-rate-<dataset>)")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from dream_cl.data import ValidationSpec, load_splits
    from dream_cl.utils import resolve_device

    torch.set_num_threads(args.threads)
    spec = ValidationSpec(args.val_fraction, args.val_seed)
    if not spec.enabled:
        ap.error("--val-fraction must be > 0: the multiplier is chosen on validation data")
    train, val, _ = load_splits(args.dataset, Path(args.data_root), spec)
    name = args.name or f"image-rate-{args.dataset}"
    # resumable: finished runs are kept in a partial file beside the result, and reused only
    # when every setting that shapes them is the same
    free = ("ipcs", "multipliers", "threads", "jobs")
    same = {k: v for k, v in vars(args).items() if k not in free}
    same = json.loads(json.dumps(same, default=str)) | {"commit": git_commit()}
    partial = (args.out_dir or RESULTS_DIR) / f".{name}.partial.json"
    cells = Cells(partial, settings=same, shaping=list(same), device=resolve_device(args.device))
    todo = [(int(i), float(m)) for i in args.ipcs.split(",") for m in args.multipliers.split(",")]

    def keep(row: dict[str, Any]) -> None:
        cells.put(run_key(row["ipc"], row["multiplier"]), row)
        curve = " ".join(f"{100 * a:.2f}" for a in row["accuracy"])
        where = f"{args.dataset} ipc {row['ipc']:3d} x{row['multiplier']:g}"
        print(f"{where} (val): {curve}", flush=True)

    missing = [(args.dataset, i, m, args) for i, m in todo if not cells.done(run_key(i, m))]

    def here(dataset: str, ipc: int, multiplier: float, args: argparse.Namespace):
        return one_run(dataset, ipc, multiplier, args, (train, val))  # the splits loaded above

    run_in_processes(_worker if args.jobs > 1 else here, missing, args.jobs, keep)
    runs = [cells.get(run_key(*t)) for t in todo]
    settings = args_settings(args)
    settings["preset"] = "cpu"
    settings["validation"] = spec.to_dict() | {"images": len(val), "train_images": len(train)}
    path = write_result(
        name,
        resolve_device(args.device),
        settings,
        {"runs": runs, "chosen_multiplier": choose_multiplier(runs)},
        args.out_dir,
    )
    partial.unlink(missing_ok=True)
    print(f"chosen multiplier (validation): x{choose_multiplier(runs):g}")
    print(f"wrote {path}")


# --- RESULTS.md section --------------------------------------------------------------------

METHOD = (
    "IDC framework, cpu preset, `{dataset}`, sampler `{sampler}`, init `{init}`, seed {seed}; "
    "the image rate set to a multiple of the paper's. {fraction:g} % of every class of the "
    "training split is held out (seed {val_seed}: {images} validation images, {train_images} "
    "distilled on); each point is the mean *validation* accuracy of {eval_repeats} evaluation "
    "models. The chosen multiple has the highest last-iteration validation accuracy summed "
    "over the IPCs; the test split is not read. **Chosen: {chosen:g}x.**"
)


def section(results: Path) -> str:
    """RESULTS.md's image-rate section, from every ``image-rate*.json`` chosen on validation
    data (a file from before the validation split chose on test data: left out)."""
    paths = sorted(results.glob("image-rate*.json"))
    if not paths:
        return ""
    lines = ["## The cpu preset's image learning rate, chosen on validation data", ""]
    for path in paths:
        lines += _file_lines(path, results)
    return "\n".join(lines)


def _file_lines(path: Path, root: Path) -> list[str]:
    record = load_json(path)
    s = record["settings"]
    runs = record["results"]["runs"]
    val = s.get("validation")
    if val is None or any(r.get("split") != "val" for r in runs):
        return []  # a run from before the validation split: it chose on test data
    values = {**s, "fraction": 100 * val["fraction"], "val_seed": val["seed"]}
    values |= {"images": val["images"], "train_images": val["train_images"]}
    chosen = record["results"]["chosen_multiplier"]
    lines = [METHOD.format(**values, chosen=chosen), "", source_line(record, path, root), ""]
    for ipc in sorted({r["ipc"] for r in runs}):
        rows = [r for r in runs if r["ipc"] == ipc]
        its = rows[0]["eval_iterations"]
        lines += [
            f"### {s['dataset']}, IPC {ipc} (validation accuracy)",
            "",
            "| multiple | lr_img | " + " | ".join(f"it {i}" for i in its) + " |",
            "|---|---|" + "---|" * len(its),
        ]
        for r in rows:
            accs = " | ".join(pct(a) for a in r["accuracy"])
            lines.append(f"| {r['multiplier']:g}x | {r['lr_img']:.3g} | {accs} |")
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
