"""How fast may the synthetic images move? The cpu preset's image learning rate, measured.

The paper's image rates are tuned for 120,000 matching steps; the cpu preset takes a few
hundred, so it multiplies the paper's rate. This benchmark distils one dataset at several
multipliers of the paper's rate (IDC framework, cpu preset otherwise unchanged) and records
accuracy against iteration, so the multiplier each dataset family uses in the cpu preset can be
traced to a measurement.

    python benchmarks/image_rate.py --dataset digits --ipcs 1,10 --multipliers 1,10,100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result  # noqa: E402


def one_run(
    dataset: str, ipc: int, multiplier: float, args: argparse.Namespace, data: Any
) -> dict[str, Any]:
    """Distil at ``multiplier`` x the paper's image rate; return the accuracy curve."""
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill

    train, test = data
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
    }
    if args.eval_epochs:
        overrides["eval_epochs"] = args.eval_epochs
    cfg = resolve_config(dataset, ipc, preset="cpu", image_size=size, overrides=overrides)
    result = distill(cfg, train, test)
    evals = result.metrics["evals"]
    return {
        "dataset": dataset,
        "ipc": ipc,
        "multiplier": multiplier,
        "lr_img": cfg.lr_img,
        "paper_lr_img": paper_lr,
        "eval_iterations": [e["iteration"] for e in evals],
        "accuracy": [e["mean"] for e in evals],
        "accuracy_std": [e.get("std", 0.0) for e in evals],
        "config": cfg.to_dict(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--ipcs", default="1,10")
    ap.add_argument("--multipliers", default="1,10,100")
    ap.add_argument("--sampler", default="random", help="random: the plain-IDC baseline")
    ap.add_argument("--init", default="random")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--eval-repeats", type=int, default=3)
    ap.add_argument("--eval-epochs", type=int, default=0, help="0: the preset's")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--name", default=None, help="result name (default image-rate-<dataset>)")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from dream_cl.data import load_train_test
    from dream_cl.utils import resolve_device

    torch.set_num_threads(args.threads)
    data = load_train_test(args.dataset, Path(args.data_root))
    runs = []
    for ipc in (int(i) for i in args.ipcs.split(",")):
        for mult in (float(m) for m in args.multipliers.split(",")):
            row = one_run(args.dataset, ipc, mult, args, data)
            runs.append(row)
            curve = " ".join(f"{100 * a:.2f}" for a in row["accuracy"])
            print(f"{args.dataset} ipc {ipc:3d} x{mult:g}: {curve}", flush=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    settings["preset"] = "cpu"
    path = write_result(
        args.name or f"image-rate-{args.dataset}",
        resolve_device(args.device),
        settings,
        {"runs": [{k: v for k, v in r.items() if k != "config"} for r in runs]},
        args.out_dir,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
