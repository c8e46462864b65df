"""Before and after each evaluation-recipe fix: the same synthetic set, both recipes.

Distils one set per case (cpu preset, seed 0, kept in ``--work`` and reused), then trains
``--repeats`` fresh evaluation models on it under the recipe dream-cl used before the
honest-protocol fixes and under the official one it uses now, at the preset's epochs and
evaluation width. Test accuracy, last epoch, mean +- std over the repeats; nothing is chosen.

Cases:
- ``idc-f2``: an IDC/DREAM set at factor 2 on MNIST. Before: DSA
  ``color_crop_cutout_scale_rotate`` (cutout kept because CutMix was off); now the reproduce
  rule's ``color_crop_scale_rotate``, no CutMix.
- ``dm`` / ``dsa``: DM / DSA sets. Before: IDC's recipe (batch 64, x0.2 at 2/3
  and 5/6, IDC's stacked DSA, CutMix); now VICO's (batch 256, x0.1 after E//2+1, DSA 'S'
  mode, no CutMix).

    python benchmarks/recipes.py --data-root ../shared/data
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import (  # noqa: E402
    RESULTS_DIR,
    args_settings,
    load_json,
    pct,
    source_line,
    write_result,
)

CASES = {
    "idc-f2": {"framework": "idc", "ipc": 1},
    "dm": {"framework": "dm", "ipc": 10},
    "dsa": {"framework": "dsa", "ipc": 1},
}

# the settings a case's numbers depend on: a file made under others is run again
SHAPING = ("dataset", "repeats", "iterations", "eval_epochs", "device")


def recipes(case: str, dataset: str, epochs: int) -> dict[str, Any]:
    """(before, now) evaluation configs of ``case``."""
    from dream_cl.evaluate import EvalConfig, eval_recipe

    if case == "idc-f2":
        now = eval_recipe("idc", dataset, epochs=epochs)
        before = dataclasses.replace(
            now, dsa_strategy="color_crop_cutout_scale_rotate", cutmix_p=0.0
        )
        return {"before": before, "now": now}
    framework = CASES[case]["framework"]
    return {
        "before": EvalConfig(epochs=epochs),
        "now": eval_recipe(framework, dataset, epochs=epochs),
    }


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    """Distil (or reuse) ``case``'s set, then evaluate it under both recipes."""
    from dream_cl.artifact import load_image_set
    from dream_cl.data import load_train_test
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill
    from dream_cl.evaluate import evaluate_image_set
    from dream_cl.utils import resolve_device

    spec = CASES[case] | {"dataset": args.dataset}
    train, test = load_train_test(spec["dataset"], Path(args.data_root))
    overrides: dict[str, Any] = {"seed": 0, "device": args.device}
    if args.iterations:
        overrides["iterations"] = args.iterations
    cfg = resolve_config(
        spec["dataset"],
        spec["ipc"],
        framework=spec["framework"],
        preset="cpu",
        image_size=train.info.image_size,
        overrides=overrides,
    )
    folder = args.work / f"{args.dataset}-{case}"
    if not (folder / "images.pt").exists():
        distill(cfg, train, None, out=folder, resume=(folder / "checkpoint.pt").exists())
    image_set = load_image_set(folder)
    epochs = args.eval_epochs or cfg.eval_epochs
    options = {"width": cfg.eval_width} if cfg.eval_width else None
    row: dict[str, Any] = {"config": {k: spec[k] for k in spec} | {"factor": cfg.factor}}
    for label, recipe in recipes(case, spec["dataset"], epochs).items():
        res = evaluate_image_set(
            image_set,
            test,
            repeats=args.repeats,
            cfg=recipe,
            seed=0,
            device=resolve_device(args.device),
            model_options=options,
        )
        row[label] = {
            "accuracies": res.accuracies,
            "mean": statistics.fmean(res.accuracies),
            "std": statistics.pstdev(res.accuracies) if len(res.accuracies) > 1 else 0.0,
            "recipe": res.config,  # the resolved recipe the evaluator used
        }
        print(f"{case} {label}: {100 * row[label]['mean']:.2f} %", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iterations", type=int, default=0, help="0: the preset's (smoke tests)")
    ap.add_argument("--eval-epochs", type=int, default=0, help="0: the preset's")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--work", type=Path, default=Path("runs/benchmarks/recipes"))
    ap.add_argument("--name", default="recipes")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()

    import torch

    from dream_cl.utils import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    settings = args_settings(args)
    settings |= {"preset": "cpu"}
    out_dir = args.out_dir or RESULTS_DIR

    def save(finished: dict[str, Any]) -> Path:
        return write_result(args.name, device, settings, finished, out_dir)

    # a finished case is kept while the settings that shape it are the same
    cells = Cells(
        out_dir / f"{args.name}.json",
        settings=settings,
        shaping=SHAPING,
        where=("results",),
        write=save,
        device=device,
    )
    for case in args.cases.split(","):
        key = f"{args.dataset}-{case}"
        if cells.done(key):
            print(f"{case}: finished already", flush=True)
        else:
            cells.put(key, run_case(case, args))
    print(f"wrote {save(cells.finished())}")


# --- RESULTS.md section --------------------------------------------------------------------

INTRO = (
    "The same synthetic set (cpu preset, seed 0) evaluated under the recipe dream-cl "
    "used before and the official one it uses now, at the preset's epochs and width; "
    "{repeats} evaluation models each; test accuracy (%), last epoch, mean ± std."
)


def section(results: Path) -> str:
    """RESULTS.md's before-and-after section, one per ``recipes*.json``."""
    return "\n".join(
        line for path in sorted(results.glob("recipes*.json")) for line in _lines(path, results)
    )


def _recipe(r: dict[str, Any]) -> str:
    return (
        f"{r['recipe']} batch {r['batch_size']}, DSA `{r['dsa_strategy']}` "
        f"({r['dsa_mode']}), CutMix {r['cutmix_p']:g}"
    )


def _lines(path: Path, root: Path) -> list[str]:
    record = load_json(path)
    lines = [
        "## Evaluation recipes: before and after the official-recipe fixes",
        "",
        INTRO.format(repeats=record["settings"]["repeats"]),
        "",
        source_line(record, path, root),
        "",
        "| set | before | recipe before | now | recipe now |",
        "|---|---|---|---|---|",
    ]
    for case, row in record["results"].items():
        b, n = row["before"], row["now"]
        lines.append(
            f"| {case} (IPC {row['config']['ipc']}, factor {row['config']['factor']}) | "
            f"{pct(b['mean'])} ± {pct(b['std'])} | {_recipe(b['recipe'])} | "
            f"{pct(n['mean'])} ± {pct(n['std'])} | {_recipe(n['recipe'])} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
