"""``dream-cl distill``: options to a :class:`~dream_cl.jobs.distill.DistillRequest`."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any

import typer

from dream_cl.commands.common import (
    DataRoot,
    Download,
    Nproc,
    Quiet,
    Threads,
    config_option,
    default_data_root,
    given,
    set_option,
)
from dream_cl.distill.config import DistillConfig
from dream_cl.errors import UserError
from dream_cl.settings import field_types, parse_settings, settable_keys

Opt = typer.Option


def distill(
    dataset: Annotated[
        str | None,
        typer.Argument(help="Registered dataset name (see `datasets`); from --config if left out."),
    ] = None,
    ipc: Annotated[int | None, Opt(help="Stored synthetic images per class (10).")] = None,
    framework: Annotated[str | None, Opt(help="idc (default), dc, dsa or dm.")] = None,
    preset: Annotated[str | None, Opt(help="paper (official, default) or cpu (scaled).")] = None,
    factor: Annotated[int | None, Opt(help="IDC multi-formation factor (paper: 2).")] = None,
    sampler: Annotated[
        str | None, Opt(help="representative (DREAM, default) or random (baseline).")
    ] = None,
    init: Annotated[str | None, Opt(help="kmeans (DREAM, default), random or noise.")] = None,
    iterations: Annotated[int | None, Opt(help="Outer iterations.")] = None,
    inner_loop: Annotated[int | None, Opt(help="Matching steps per network.")] = None,
    interval: Annotated[int | None, Opt(help="Re-cluster every I_int steps.")] = None,
    n_clusters: Annotated[int | None, Opt(help="Clusters N per class.")] = None,
    per_cluster: Annotated[int | None, Opt(help="Samples n per cluster.")] = None,
    candidates: Annotated[
        int | None, Opt(help="Cluster a random subset of this many per class.")
    ] = None,
    lr_img: Annotated[float | None, Opt(help="Image learning rate.")] = None,
    metric: Annotated[str | None, Opt(help="mse, l1, l1_mean or cos.")] = None,
    formulation: Annotated[
        str | None,
        Opt(
            help="per-class: one image step per class, IDC's official loop (the default). "
            "joint: the class losses summed into one step, DC/DSA's official loop. batched: "
            "joint, all classes in one vmapped pass (meant for GPUs; see docs/performance.md)."
        ),
    ] = None,
    compile: Annotated[
        bool,
        Opt(
            help="torch.compile the embedding, the matching step and the network update "
            "(equal up to float rounding)."
        ),
    ] = False,
    precision: Annotated[
        str | None,
        Opt(help="fp32 (default) or bf16 (autocast; for CPUs with AVX-512 BF16 or AMX, GPUs)."),
    ] = None,
    width: Annotated[int | None, Opt(help="ConvNet width.")] = None,
    net_update: Annotated[
        str | None,
        Opt(
            help="With --nproc/torchrun, IDC's network update: data-parallel (default; equal "
            "to one process up to float rounding) or replicated (bit for bit, slower)."
        ),
    ] = None,
    eval_every: Annotated[int | None, Opt(help="Evaluate every K iterations (0: never).")] = None,
    eval_model: Annotated[str | None, Opt(help="Architecture for evaluation (convnet).")] = None,
    eval_epochs: Annotated[int | None, Opt(help="Evaluation epochs.")] = None,
    eval_repeats: Annotated[int | None, Opt(help="Models per evaluation (1).")] = None,
    eval_width: Annotated[
        int | None, Opt(help="Width of a ConvNet evaluation model (cpu preset: 32).")
    ] = None,
    eval_recipe: Annotated[
        str | None,
        Opt(help="auto (the framework's own, default), idc, dc, dsa or dm."),
    ] = None,
    eval_split: Annotated[
        str | None, Opt(help="test (monitoring only, default) or val (needs --val-fraction).")
    ] = None,
    val_fraction: Annotated[
        float | None,
        Opt(
            help="Hold out this fraction of every class of the training split as a validation "
            "split (seeded, never trained on); 0 (default): none."
        ),
    ] = None,
    val_seed: Annotated[int | None, Opt(help="Seed of the validation split (0).")] = None,
    checkpoint_every: Annotated[int | None, Opt(help="Checkpoint every K.")] = None,
    settings: Annotated[list[str] | None, set_option(settable_keys(DistillConfig))] = None,
    config: Annotated[Path | None, config_option("distill")] = None,
    out: Annotated[Path, Opt(help="Output folder.")] = Path("runs/distill"),
    resume: Annotated[bool, Opt(help="Continue the run in --out.")] = False,
    tensorboard: Annotated[
        bool, Opt(help="Also log every iteration to TensorBoard (OUT/tensorboard/).")
    ] = False,
    wandb: Annotated[
        str | None,
        Opt(help="Also log to this Weights & Biases project (WANDB_MODE=offline: to disk)."),
    ] = None,
    data_root: DataRoot = None,
    download: Download = False,
    device: Annotated[str | None, Opt(help="auto (CUDA when present), cpu or cuda.")] = None,
    seed: Annotated[int | None, Opt(help="Random seed (0).")] = None,
    threads: Threads = None,
    quiet: Quiet = False,
    nproc: Nproc = 1,
) -> None:
    """Distill a dataset with DREAM (or a baseline) into IPC synthetic images per class."""
    options = dict(locals())
    from dream_cl.jobs.distill import distill_dataset, summary_lines
    from dream_cl.jobs.process import join_processes, set_threads
    from dream_cl.logs import LogOptions

    flags = given(**{k: v for k, v in options.items() if k in _CONFIG_FIELDS})
    if not compile:  # a switch: off means "as the preset or saved run says"
        flags.pop("compile")
    request = _request(config, flags | parse_settings(DistillConfig, settings), data_root)
    log = LogOptions(tensorboard=tensorboard, wandb=wandb)
    request = dataclasses.replace(request, out=out, resume=resume, download=download, log=log)
    env, local = join_processes(nproc, request.overrides.get("device", "auto"))
    request = dataclasses.replace(request, overrides={**request.overrides, "device": local})
    set_threads(threads, request.dataset)
    result = distill_dataset(request, quiet=quiet, env=env)
    for line in summary_lines(result, request.dataset, request.out):
        typer.echo(line)


_CONFIG_FIELDS = frozenset(field_types(DistillConfig))
_REQUEST_FIELDS = ("dataset", "ipc", "framework", "preset")


def _request(config: Path | None, values: dict[str, Any], data_root: Path | None) -> Any:
    """The request: a saved run's (``--config``) or a new one, the given settings on top."""
    from dream_cl.jobs.distill import DistillRequest, request_from_config

    request = {k: values.pop(k) for k in _REQUEST_FIELDS if k in values}
    if data_root is not None:
        request["data_root"] = data_root
    if config is not None:
        return request_from_config(config, **request, overrides=values)
    if "dataset" not in request:
        raise UserError("give a DATASET to distill (see `dream-cl datasets`), or --config")
    request.setdefault("data_root", default_data_root())
    return DistillRequest(**request, overrides=values)
