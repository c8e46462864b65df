"""What the repeats of one evaluation cost: one model after another, in lock step (an
ensemble), or in worker processes.

``evaluate`` trains 5 models per set. This times the three ways in one run, alternating, on
the shape of an IPC 10 CIFAR-10 set at factor 2 (400 decoded 32x32 images: real CIFAR-10
training images, 40 per class, so the accuracies mean something), with IDC's evaluation
recipe (DSA and CutMix), at ConvNet-3 width 128 (the paper's evaluation network) and width 32
(the cpu preset's). Each way runs twice, for ``E1`` and ``E2`` epochs (``--epochs``): the
steady cost of an epoch of all ``--repeats`` models is the difference over ``E2 - E1``, and
what is left of the shorter run is the start-up (processes, compilation with warm caches:
each way first runs one untimed epoch, as a user's earlier run would). Also reported:
each way's test accuracies (2,000 test images). Each cell is kept as it finishes; a stopped
run resumes.

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

WAYS = {
    # name: evaluate_image_set's options
    "one-by-one": {},
    "ensemble": {"ensemble": True},
    "workers-2": {"workers": 2},
}


def small_set(data_root: Path, per_class: int = 40, tests: int = 2000):
    """An IPC 10 x factor 2 shaped set of real CIFAR-10 images, and a test subset."""
    import torch

    from dream_cl.artifact import ImageSet
    from dream_cl.data import load_train_test
    from dream_cl.data.base import DatasetSplit

    train, test = load_train_test("cifar10", data_root)
    idx = torch.cat([torch.arange(per_class) + int(train.offsets[c]) for c in range(10)])
    s = ImageSet(train.images[idx].float() / 255, train.labels[idx], train.info, method="first")
    pick = (
        torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:tests].sort().values
    )
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
    ap.add_argument("--epochs", default="w128:4,12;w32:20,60", help="E1,E2 per width")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--name", default="eval-ensemble")
    ap.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    args = ap.parse_args()
    settings = {k: v for k, v in args_settings(args).items() if k not in ("name", "out_dir")}
    settings.pop("data_root")
    shaping = ("epochs", "repeats")
    epochs = {
        int(w.removeprefix("w")): [int(e) for e in es.split(",")]
        for w, es in (part.split(":") for part in args.epochs.split(";"))
    }
    cells = Cells(args.out_dir / f"{args.name}.json", settings=settings, shaping=shaping,
                  device=torch.device("cpu"))  # fmt: skip
    s, test = small_set(args.data_root)
    for r in range(args.rounds):
        for width in (int(w) for w in args.widths.split(",")):
            warm: set[str] = set()
            for e in epochs[width]:
                for way in WAYS:
                    key = f"w{width}/{way}/e{e}/{r}"
                    if cells.done(key):
                        continue
                    if way not in warm:  # compiler caches warm, as for a user's second run
                        measure(s, test, way, width, 1, args.repeats)
                        warm.add(way)
                    cell = measure(s, test, way, width, e, args.repeats)
                    cells.put(key, {"width": width, "way": way, "epochs": e, "round": r, **cell})
                    print(f"{key:28s} {cell['seconds']:.1f} s", flush=True)
    print(f"wrote {cells.path}")


# --- RESULTS.md section --------------------------------------------------------------------


def steady(cells: list[dict]) -> tuple[float, float]:
    """(seconds per epoch of all models, start-up seconds) from one way's runs of two
    epoch counts (means over rounds)."""
    by_e: dict[int, list[float]] = {}
    for c in cells:
        by_e.setdefault(c["epochs"], []).append(c["seconds"])
    (e1, t1), (e2, t2) = sorted((e, sum(t) / len(t)) for e, t in by_e.items())[:2]
    per_epoch = (t2 - t1) / (e2 - e1)
    return per_epoch, t1 - e1 * per_epoch


def section(results: Path) -> str:
    path = results / "eval-ensemble.json"
    if not path.exists():
        return ""
    record = load_json(path)
    cells = list(record["cells"].values())
    n = record["settings"]["repeats"]
    lines = [
        "## Evaluation repeats: one by one, in lock step, in processes",
        "",
        __doc__.split("\n\n")[0].replace("\n", " "),
        "",
        f"| ConvNet-3 width | way | s per epoch of {n} models | vs one by one | start-up s "
        "| accuracies (mean) |",
        "|---|---|---|---|---|---|",
    ]
    for width in sorted({c["width"] for c in cells}, reverse=True):
        base = None
        for way in WAYS:
            mine = [c for c in cells if c["width"] == width and c["way"] == way]
            if len({c["epochs"] for c in mine}) < 2:
                continue
            per_epoch, startup = steady(mine)
            base = per_epoch if way == "one-by-one" else base
            rel = f"{base / per_epoch:.2f}x" if base and way != "one-by-one" else "-"
            acc = [a for c in mine for a in c["accuracies"]]
            lines.append(
                f"| {width} | {way} | {per_epoch:.3f} | {rel} | {startup:.1f} | "
                f"{100 * sum(acc) / len(acc):.1f} % |"
            )
    return "\n".join([*lines, "", source_line(cells[0], path, results), ""])


if __name__ == "__main__":
    main()
