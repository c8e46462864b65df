"""``dream-cl run`` and ``dream-cl compare``: one declaration of their shared options."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dream_cl.commands.common import (
    DataRoot,
    Download,
    ModelOption,
    Nproc,
    Quiet,
    Threads,
    config_option,
    default_data_root,
    given,
    parse_model_options,
    set_option,
)
from dream_cl.distill.config import DistillConfig
from dream_cl.errors import UserError
from dream_cl.settings import parse_settings, settable_keys

Opt = typer.Option

_SHARED: dict[str, Any] = {
    "scenario": Annotated[
        str | None,
        typer.Argument(
            help="Registered scenario (see `scenarios`), a dataset name with --steps, or an "
            "image folder. Default: digits-5step on the cpu preset."
        ),
    ],
    "ipc": Annotated[
        int | None, Opt(help="Stored images per class, the budget (paper 20, cpu 10).")
    ],
    "regime": Annotated[
        str | None,
        Opt(
            help="finetune-kd (IDC/DREAM, default: keep training on the memory, KD T=2), "
            "scratch (DM/GDumb: fresh model per step) or replay-mix (Avalanche replay: "
            "current data + memory)."
        ),
    ],
    "model": Annotated[str | None, Opt(help="Network trained on the memory (default resnet10).")],
    "model_option": ModelOption,
    "distill_model": Annotated[
        str | None, Opt(help="Network that distils (and extracts herding features; convnet).")
    ],
    "preset": Annotated[
        str | None,
        Opt(help="paper (section 4.5) or cpu (scaled); default cpu for digits, else paper."),
    ],
    "orders": Annotated[
        int | None, Opt(help="Run K class orders, seeded --seed .. --seed+K-1 (1).")
    ],
    "epochs": Annotated[
        int | None, Opt(help="Training epochs per step (paper 1000; replay-mix 100).")
    ],
    "batch_size": Annotated[int | None, Opt(help="Training batch size (64).")],
    "lr": Annotated[float | None, Opt(help="SGD learning rate (0.01).")],
    "steps": Annotated[
        int | None,
        Opt(
            help="Steps, when SCENARIO is a dataset or a folder (default 5). Classes that do "
            "not divide evenly go to the earlier steps, one more each (the split is printed)."
        ),
    ],
    "class_order": Annotated[
        str | None, Opt(help="Explicit class order, e.g. 3,1,4,... (replaces the seed).")
    ],
    "distill_iterations": Annotated[
        int | None, Opt(help="Override the engine's outer iterations per step.")
    ],
    "distill_compile": Annotated[
        bool,
        Opt(
            "--compile",
            help="torch.compile the distilled memories' embedding, matching and network "
            "update (dream, idc; equal up to float rounding).",
        ),
    ],
    "settings": Annotated[
        list[str] | None, set_option("any field of the run's CLConfig (an unknown KEY lists them)")
    ],
    "distill_settings": Annotated[
        list[str] | None,
        Opt(
            "--distill-set",
            help="KEY=VALUE, repeatable: a setting of each memory's distillation. Keys: "
            f"{settable_keys(DistillConfig)}.",
        ),
    ],
    "resume": Annotated[bool, Opt(help="Continue the run in --out (same settings).")],
    "threads": Threads,
    "data_root": DataRoot,
    "download": Download,
    "device": Annotated[str | None, Opt(help="auto (CUDA when present), cpu or cuda.")],
    "seed": Annotated[int | None, Opt(help="Random seed (0).")],
    "tensorboard": Annotated[bool, Opt(help="Also log to TensorBoard (OUT/.../logs/).")],
    "wandb": Annotated[
        str | None,
        Opt(help="Also log to this Weights & Biases project (WANDB_MODE=offline: to disk)."),
    ],
    "quiet": Quiet,
    "nproc": Nproc,
}
_FALSE_BY_DEFAULT = ("distill_compile", "resume", "download", "quiet", "tensorboard")


def _signature(own: dict[str, tuple[Any, Any]]) -> inspect.Signature:
    """The shared options (scenario first), then the command's own ``{name: (type, default)}``."""
    params = []
    for name, annotation in _SHARED.items():
        default = False if name in _FALSE_BY_DEFAULT else (1 if name == "nproc" else None)
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
    for name, (annotation, default) in own.items():
        kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        params.append(inspect.Parameter(name, kind, default=default, annotation=annotation))
    return inspect.Signature(params)


def shares_options(**own: tuple[Any, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a ``def command(**options)`` the shared options plus its own."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func.__signature__ = _signature(own)  # type: ignore[attr-defined]
        return func

    return decorate


def _parse_order(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise UserError(
            f"--class-order {text!r} is not a comma-separated list of class indices"
        ) from None


_WHERE = ("scenario", "preset", "steps")
"""Settings that choose the run rather than change it: the request holds them."""
_MEMORY_SETS = ("dataset", "ipc", "framework", "sampler", "init", "model", "seed", "device")
"""A memory's distillation settings that the run sets (--ipc, --memory, --distill-model...)."""


def cl_overrides(o: dict[str, Any], device: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """The ``CLConfig`` settings the options give: named flags, then ``--set``, then the
    memories' distillation settings (``--distill-iterations``, ``--compile``, ``--distill-set``)."""
    flags = given(
        **{k: o.get(k) for k in ("memory", "ipc", "regime", "model", "distill_model")},
        **{k: o.get(k) for k in ("orders", "epochs", "batch_size", "lr", "seed")},
        model_options=parse_model_options(o.get("model"), o.get("model_option")),
        class_order=_parse_order(o.get("class_order")),
        device=device,
    )
    overrides = flags | {k: v for k, v in settings.items() if k not in _WHERE}
    distill = given(iterations=o.get("distill_iterations"))
    if o.get("distill_compile"):
        distill["compile"] = True
    distill_set = parse_settings(DistillConfig, o.get("distill_settings"), "--distill-set")
    if fixed := sorted(set(distill_set) & set(_MEMORY_SETS)):
        raise UserError(
            f"--distill-set {', '.join(fixed)}: the run sets it for every memory (--ipc, "
            "--memory, --distill-model, --seed, --device); leave it out"
        )
    distill |= distill_set
    if distill:
        overrides["distill_overrides"] = {**overrides.get("distill_overrides", {}), **distill}
    return overrides


def continual_request(o: dict[str, Any], device: str) -> Any:
    """The request the options describe: a saved run's (``--config``) or a new one."""
    import dataclasses

    from dream_cl.jobs.continual import ContinualRequest, request_from_config
    from dream_cl.strategies import CLConfig

    settings = parse_settings(CLConfig, o.get("settings"))
    where = given(
        scenario=o.get("scenario"),
        preset=o.get("preset"),
        steps=o.get("steps"),
        out=o.get("out"),
        data_root=o.get("data_root"),
    ) | {k: v for k, v in settings.items() if k in _WHERE}
    where.update(resume=o["resume"], download=o["download"])
    overrides = cl_overrides(o, device, settings)
    if o.get("config") is not None:
        return request_from_config(o["config"], **where, overrides=overrides)
    request = ContinualRequest(overrides=overrides, **where)
    if o.get("data_root") is None:
        request = dataclasses.replace(request, data_root=default_data_root())
    return request


def _log_options(o: dict[str, Any], interactive: bool = False) -> Any:
    from dream_cl.logs import LogOptions

    return LogOptions(interactive=interactive, tensorboard=o["tensorboard"], wandb=o["wandb"])


def _start(o: dict[str, Any]) -> tuple[Any, Any]:
    """The request, this process's place in the job, and its device (a saved run's unless
    --device is given)."""
    import dataclasses

    from dream_cl.jobs.process import join_processes, set_threads

    request = continual_request(o, o.get("device"))
    saved = request.overrides.get("device", "auto")
    env, device = join_processes(o["nproc"], saved, avalanche=True)
    request = dataclasses.replace(request, overrides={**request.overrides, "device": device})
    set_threads(o["threads"], request.dataset)
    return env, request


@shares_options(
    memory=(Annotated[str | None, Opt(help="dream (default), idc, dm, herding or random.")], None),
    config=(Annotated[Path | None, config_option("run")], None),
    out=(
        Annotated[Path | None, Opt(help="Output folder (default runs/SCENARIO-MEMORY-REGIME).")],
        None,
    ),
    interactive=(
        Annotated[bool, Opt(help="Avalanche's InteractiveLogger instead of progress bars.")],
        False,
    ),
)
def run(**options: Any) -> None:
    """Class-incremental learning with a distilled memory (paper section 4.5)."""
    from dream_cl.jobs.continual import run_continual
    from dream_cl.strategies.report import summary_lines

    t0 = time.perf_counter()
    env, request = _start(options)
    results, target = run_continual(
        request,
        quiet=options["quiet"],
        env=env,
        log=_log_options(options, interactive=options["interactive"]),
    )
    for line in summary_lines(results, target):
        typer.echo(line)
    typer.echo(f"time: {time.perf_counter() - t0:.1f}s")


@shares_options(
    memories=(
        Annotated[str, Opt(help="Comma-separated memory methods, all with the same budget.")],
        "dream,idc,herding,random",
    ),
    out=(Annotated[Path | None, Opt(help="Output folder (default runs/compare-SCENARIO).")], None),
)
def compare(**options: Any) -> None:
    """Run several memories with one budget and class order; table + accuracy plot."""
    from dream_cl.jobs.continual import compare_continual
    from dream_cl.strategies.report import comparison_lines

    t0 = time.perf_counter()
    env, request = _start(options)
    methods = [m.strip() for m in options["memories"].split(",") if m.strip()]
    record, target = compare_continual(
        request, methods, quiet=options["quiet"], env=env, log=_log_options(options)
    )
    if not env.is_main:
        return
    for line in comparison_lines(record, target):
        typer.echo(line)
    typer.echo(f"time: {time.perf_counter() - t0:.1f}s")
