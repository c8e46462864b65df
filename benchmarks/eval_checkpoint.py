"""What checkpointing an evaluation costs: epoch time, save time, file size, per network.

An evaluation saves its model in training at most once a minute (``EvalCheckpoint``), so its
overhead is one save per minute: ``save_seconds / 60`` of the run, or one save per epoch
when an epoch takes longer than that. This measures both sides in one process, on a
synthetic set of the cross-architecture table's shape (400 decoded MNIST-sized images), and
checks that a run that saves every epoch ends with the same accuracy as one that never saves.

    python benchmarks/eval_checkpoint.py --models convnet,resnet10,densenet121
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.cells import Cells  # noqa: E402
from benchmarks.common import (  # noqa: E402
    ARCH_NAMES,
    RESULTS_DIR,
    args_settings,
    load_json,
    source_line,
    write_result,
)


def measure(model: str, epochs: int, repeats: int) -> dict[str, float | bool | int]:
    import torch

    from dream_cl.data.base import DatasetInfo, DatasetSplit
    from dream_cl.evaluate import EvalCheckpoint, EvalConfig, train_and_test
    from dream_cl.models import build_model
    from dream_cl.utils import atomic_torch_save

    info = DatasetInfo("mnist", 1, 28, tuple(str(c) for c in range(10)), (0.1307,), (0.3081,))
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(400, 1, 28, 28, generator=gen)
    labels = torch.arange(10).repeat_interleave(40)
    test_images = (torch.rand(1000, 1, 28, 28, generator=gen) * 255).to(torch.uint8)
    test = DatasetSplit(test_images, torch.arange(10).repeat_interleave(100), info)
    cfg = EvalConfig(epochs=epochs)
    options = {"width": 32} if model == "convnet" else None

    def train(checkpoint: EvalCheckpoint | None) -> tuple[float, float]:
        t0 = time.perf_counter()
        acc = train_and_test(
            model, images, labels, info, test, cfg, seed=0, model_options=options,
            checkpoint=checkpoint,
        )  # fmt: skip
        return acc, time.perf_counter() - t0

    plain_acc, plain_s = train(None)
    with tempfile.TemporaryDirectory() as tmp:
        saving_acc, saving_s = train(EvalCheckpoint(Path(tmp), every_seconds=0))
        # one save of the state a checkpoint holds mid-run (weights and momentum buffers)
        net = build_model(
            model, channels=1, num_classes=10, image_size=28, dataset="mnist", **(options or {})
        )
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        net(info.normalize(images[:64])).sum().backward()
        opt.step()
        state = {"model": net.state_dict(), "optimizer": opt.state_dict()}
        path = Path(tmp) / "state.pt"
        saves = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            atomic_torch_save(state, path)
            saves.append(time.perf_counter() - t0)
        size = path.stat().st_size
    epoch_s = plain_s / epochs
    save_s = statistics.median(saves)
    return {
        "epoch_seconds": epoch_s,
        "save_seconds": save_s,
        "file_mib": size / 2**20,
        "every_epoch_seconds": saving_s,
        "never_seconds": plain_s,
        "same_accuracy": plain_acc == saving_acc,
        # the default cadence: one save a minute, or one an epoch if epochs are longer
        "overhead_at_60s": save_s / max(60.0, epoch_s),
    }


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="convnet,resnet10,densenet121")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="saves timed per network")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default="eval-checkpoint")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    settings = args_settings(args)
    out_dir = args.out_dir or RESULTS_DIR

    def save(finished: dict[str, Any]) -> Path:
        return write_result(args.name, device, settings, finished, out_dir)

    # a network measured already is kept while the settings that shape it are the same
    cells = Cells(
        out_dir / f"{args.name}.json",
        settings=settings,
        shaping=("epochs", "repeats", "threads"),
        where=("results",),
        write=save,
        device=device,
    )
    for model in args.models.split(","):
        if cells.done(model):
            print(f"{model}: measured already", flush=True)
            continue
        r = cells.put(model, measure(model, args.epochs, args.repeats))
        print(
            f"{model}: epoch {r['epoch_seconds']:.2f} s, save {r['save_seconds']:.3f} s "
            f"({r['file_mib']:.1f} MiB), overhead at one save a minute "
            f"{100 * r['overhead_at_60s']:.2f} %, same accuracy: {r['same_accuracy']}",
            flush=True,
        )
    print(f"wrote {save(cells.finished())}")


# --- RESULTS.md section --------------------------------------------------------------------

INTRO = (
    "An evaluation saves its model in training (weights and momentum) at most once a "
    "minute, so that the same command continues it after a stop. One fresh network per "
    "row trains {epochs} epochs on 400 synthetic 28x28 images (the cross-architecture "
    "cells' shape) without saving and again saving after every epoch; the save is timed "
    "alone (median of {repeats}). Overhead at the default cadence = one save per "
    "minute, or per epoch where an epoch is longer."
)


def section(results: Path) -> str:
    """RESULTS.md's checkpoint-cost section, one per ``eval-checkpoint*.json``."""
    return "\n".join(
        line
        for path in sorted(results.glob("eval-checkpoint*.json"))
        for line in _lines(path, results)
    )


def _lines(path: Path, root: Path) -> list[str]:
    record = load_json(path)
    lines = [
        "## Evaluation checkpoints: what they cost",
        "",
        INTRO.format(**record["settings"]),
        "",
        source_line(record, path, root),
        "",
        "| network | s per epoch | s per save | file (MiB) | overhead at one save a minute "
        "| saving every epoch changes the accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for net, r in record["results"].items():
        lines.append(
            f"| {ARCH_NAMES.get(net, net)} | {r['epoch_seconds']:.2f} | {r['save_seconds']:.3f} "
            f"| {r['file_mib']:.1f} | {100 * r['overhead_at_60s']:.2f} % "
            f"| {'no' if r['same_accuracy'] else 'YES'} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    main()
