"""``dream-cl evaluate``: options to an :class:`~dream_cl.jobs.evaluate.EvaluateRequest`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dream_cl.commands.common import (
    DataRoot,
    Device,
    Download,
    ModelOption,
    Quiet,
    Seed,
    default_data_root,
    parse_model_options,
    set_option,
)
from dream_cl.evaluate import EvalConfig
from dream_cl.settings import parse_settings, settable_keys

Opt = typer.Option


def evaluate(
    artifact: Annotated[Path, typer.Argument(help="Image-set folder (coreset or distilled).")],
    model: Annotated[str, Opt(help="Architecture to train (see models).")] = "convnet",
    model_option: ModelOption = None,
    recipe: Annotated[
        str,
        Opt(
            help="auto (the set's framework: idc for IDC/DREAM sets and coresets, VICO's for "
            "dc/dsa/dm sets), idc, dc, dsa or dm. --epochs/--lr/--batch-size/--augment/"
            "--cutmix-p/--set change one setting of it."
        ),
    ] = "auto",
    repeats: Annotated[
        int, Opt(help="Fresh models to train; mean and std reported (paper: 5).")
    ] = 5,
    epochs: Annotated[
        int | None, Opt(help="The recipe's epochs E (idc/dsa/dm 1000, dc 300).")
    ] = None,
    lr: Annotated[float | None, Opt(help="SGD learning rate (0.01).")] = None,
    batch_size: Annotated[
        int | None, Opt(help="Training batch size (idc 64, dc/dsa/dm 256).")
    ] = None,
    augment: Annotated[
        str | None,
        Opt(help="DSA strategy, e.g. color_crop_flip_scale_rotate; default per recipe."),
    ] = None,
    cutmix_p: Annotated[float | None, Opt(help="CutMix probability (idc 0.5, others 0).")] = None,
    settings: Annotated[list[str] | None, set_option(settable_keys(EvalConfig))] = None,
    baselines: Annotated[
        bool,
        Opt(
            "--baselines",
            help="Also train, with the same recipe and seeds, random real images of the same "
            "storage and the set without augmentation, and report the gaps to each.",
        ),
    ] = False,
    split: Annotated[
        str,
        Opt(
            help="test, or val: the validation split the set was distilled without (as its "
            "config records it)."
        ),
    ] = "test",
    out: Annotated[
        Path | None, Opt(help="Where to write the JSON result (default: beside the set).")
    ] = None,
    checkpoint_seconds: Annotated[
        float,
        Opt(
            help="Save the model in training at most this often (0: every epoch), so that the "
            "same command continues an interrupted evaluation."
        ),
    ] = 60.0,
    ensemble: Annotated[
        bool,
        Opt(
            help="Train the repeats together in lock step: vmapped on a GPU, through one "
            "compiled step on a CPU (the same models up to float rounding)."
        ),
    ] = False,
    workers: Annotated[
        int,
        Opt(
            help="Train the repeats this many at a time, one per process, each with its share "
            "of the threads (on a CPU, small models use the cores better this way)."
        ),
    ] = 1,
    data_root: DataRoot = None,
    download: Download = False,
    device: Device = "auto",
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Train fresh models on an image set and report last-epoch accuracy (mean +- std)."""
    from dream_cl.jobs.evaluate import EvaluateRequest, evaluate_artifact

    request = EvaluateRequest(
        artifact,
        model=model,
        model_options=parse_model_options(model, model_option),
        recipe=recipe,
        repeats=repeats,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        augment=augment,
        cutmix_p=cutmix_p,
        overrides=parse_settings(EvalConfig, settings) or None,
        split=split,
        out=out,
        checkpoint_seconds=checkpoint_seconds,
        data_root=data_root or default_data_root(),
        download=download,
        seed=seed,
        baselines=baselines,
        ensemble=ensemble,
        workers=workers,
    )
    request.validate()
    done = evaluate_artifact(request, device=device, quiet=quiet)
    for line in done.summary_lines():
        typer.echo(line)
