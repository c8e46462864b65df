"""What the repeats of one evaluation cost: one model after another, or one vmapped ensemble.

``evaluate`` trains 5 models per set. This times both ways in one process, alternating, on
the shape of an IPC 10 CIFAR-10 set at factor 2 (400 decoded 32x32 images: real CIFAR-10
training images, 40 per class, so the accuracies mean something), with the evaluation recipe
(IDC's, CutMix and DSA) for ``--epochs`` epochs, at ConvNet-3 width 128 (the paper's
evaluation network) and width 32 (the cpu preset's). Reported: seconds per epoch of all
``--repeats`` models, the speed-up, and each way's test accuracies (2,000 test images; the
ensemble trains the same models up to float rounding, so they should agree closely). Each
cell is kept as it finishes; a stopped run resumes.

    python benchmarks/eval_ensemble.py --data-root DATA
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import RESULTS_DIR, args_settings, load_json, source_line  # noqa: E402

WAYS = ("one-by-one", "ensemble")


def small_set(data_root: Path, per_class: int = 40, tests: int = 2000):
    """An IPC 10 x factor 2 shaped set of real CIFAR-10 images, and a test subset."""
    import torch

    from dream_cl.artifact import ImageSet
    from dream_cl.data import load_train_test
    from dream_cl.data.base import DatasetSplit

    train, test = load_train_test("cifar10", data_root)
    idx = torch.cat([torch.arange(per_class) + int(train.offsets[c]) for c in range(10)])
    s = ImageSet(train.images[idx].float() / 255, train.labels[idx], train.info, method="first")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:tests]
    return s, DatasetSplit(test.images[pick], test.labels[pick], test.info)


def measure(s: Any, test: Any, way: str, width: int, epochs: int, repeats: int) -> dict:
    from dream_cl.evaluate import eval_recipe, evaluate_image_set

    cfg = eval_recipe("idc", "cifar10", epochs=epochs)
    t0 = time.perf_counter()
    result = evaluate_image_set(
        s, test, repeats=repeats, cfg=cfg, model_options={"width": width},
        ensemble=way == "ensemble",
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "seconds_per_epoch": seconds / epochs,
        "accuracies": result.accuracies,
    }


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--widths", default="128,32")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--name", default="eval-ensemble")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args()
    settings = {k: v for k, v in args_settings(args).items() if k not in ("name", "out_dir")}
    settings.pop("data_root")
    shaping = ("epochs", "repeats")
    cells = Cells(args.out_dir / f"{args.name}.json", settings=settings, shaping=shaping,
                  device=torch.device("cpu"))  # fmt: skip
    s, test = small_set(args.data_root)
    for r in range(args.rounds):
        for width in (int(w) for w in args.widths.split(",")):
            for way in WAYS:
                key = f"w{width}/{way}/{r}"
                if cells.done(key):
                    continue
                cell = measure(s, test, way, width, args.epochs, args.repeats)
                cells.put(key, {"width": width, "way": way, "round": r, **cell})
                print(f"{key:24s} {cell['seconds_per_epoch']:.3f} s/epoch", flush=True)
    print(f"wrote {cells.path}")


# --- RESULTS.md section --------------------------------------------------------------------


def section(results: Path) -> str:
    path = results / "eval-ensemble.json"
    if not path.exists():
        return ""
    record = load_json(path)
    cells = list(record["cells"].values())
    n = record["settings"]["repeats"]
    lines = [
        "## Evaluation repeats as one ensemble",
        "",
        __doc__.split("\n\n")[0].replace("\n", " "),
        "",
        f"| ConvNet-3 width | {n} models one by one, s / epoch | as one ensemble | speed-up "
        "| accuracies one by one (mean) | as one ensemble (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for width in sorted({c["width"] for c in cells}, reverse=True):
        by_way = {w: [c for c in cells if c["width"] == width and c["way"] == w] for w in WAYS}
        if not all(by_way.values()):
            continue
        sec = {w: sum(c["seconds_per_epoch"] for c in cs) / len(cs) for w, cs in by_way.items()}
        acc = {w: [a for c in cs for a in c["accuracies"]] for w, cs in by_way.items()}
        mean = {w: 100 * sum(a) / len(a) for w, a in acc.items()}
        lines.append(
            f"| {width} | {sec['one-by-one']:.3f} | {sec['ensemble']:.3f} | "
            f"{sec['one-by-one'] / sec['ensemble']:.2f}x | {mean['one-by-one']:.1f} % | "
            f"{mean['ensemble']:.1f} % |"
        )
    return "\n".join([*lines, "", source_line(cells[0], path, results), ""])


if __name__ == "__main__":
    main()
