"""What every command shares: option declarations, ``--set``/``--config``, the error policy."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from dream_cl.errors import Interrupted, UserError
from dream_cl.jobs.process import LAUNCHER_ENV, PEER_LOST_EXIT, interrupt_line, interrupt_status


def default_data_root() -> Path:
    return Path(os.environ.get("DREAM_CL_DATA", "data"))


DataRoot = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Folder holding datasets in torchvision's on-disk layout (default: $DREAM_CL_DATA "
        "or data/; see `dream-cl datasets`).",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (runs are seeded by default).")]
Download = Annotated[
    bool, typer.Option("--download", help="Download the dataset if it is missing.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Threads = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for torch (default: 1 for digits, else torch's choice; under "
        "torchrun the cores shared by the node's processes)."
    ),
]
Nproc = Annotated[
    int,
    typer.Option(
        "--nproc",
        help="Processes on this machine (starts torchrun's launcher; classes are sharded "
        "across them, one GPU each when present). See docs/distributed.md.",
    ),
]
ModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model-option",
        help="KEY=VALUE option of the trained model, repeatable (e.g. branch=cifar for the "
        "CIFAR ResNet-10 on any dataset; default: the official choice for the dataset).",
    ),
]


def set_option(keys: str) -> Any:
    """``--set KEY=VALUE`` (repeatable) for the configuration whose keys are ``keys``."""
    return typer.Option(
        "--set",
        help=f"KEY=VALUE, repeatable: any setting of the configuration. Keys: {keys}.",
    )


def config_option(command: str) -> Any:
    return typer.Option(
        "--config",
        help=f"Repeat the `dream-cl {command}` recorded in this run folder (or its "
        "config.json); flags and --set change settings on top.",
    )


def parse_model_options(model: str | None, items: list[str] | None) -> dict | None:
    """``KEY=VALUE`` strings as the model's options, typed like each option's default."""
    if not items:
        return None
    from dream_cl.models import model_options

    defaults = model_options(model or "resnet10")
    options: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in defaults:
            known = ", ".join(defaults) or "none"
            raise UserError(f"--model-option {item!r}: use KEY=VALUE with KEY one of {known}")
        default = defaults[key]
        try:
            if isinstance(default, bool):
                value: object = text.lower() in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                value = int(text)
            elif isinstance(default, float):
                value = float(text)
            else:
                value = text
        except ValueError:
            raise UserError(f"--model-option {item!r}: {key} takes a number") from None
        options[key] = value
    return options


def given(**values: Any) -> dict[str, Any]:
    """The options the user gave (``None`` means left at the configuration's value)."""
    return {k: v for k, v in values.items() if v is not None}


# -- the error policy ---------------------------------------------------------------------------
def _on_interrupt(err: BaseException, name: str) -> typer.Exit:
    import sys

    from dream_cl.distributed import DistEnv, exit_process

    env, status = DistEnv.current(), interrupt_status(err)
    if env.is_main and not os.environ.get(LAUNCHER_ENV):
        typer.echo(f"error: {interrupt_line(err, name, sys.argv[1:])}", err=True)
    if env.world_size > 1:
        exit_process(status)  # no collective clean-up: the others stop too
    return typer.Exit(status)


def _on_user_error(err: UserError) -> typer.Exit:
    from dream_cl.distributed import AgreedError, DistEnv, exit_process, shutdown

    env = DistEnv.current()
    agreed = isinstance(err, AgreedError)
    if env.is_main or not agreed:
        prefix = f"rank {env.rank}: " if env.world_size > 1 and not env.is_main else ""
        typer.echo(f"error: {prefix}{err}", err=True)
    if env.world_size > 1 and not agreed:
        exit_process(1)  # the other ranks are elsewhere: no barrier, just go
    shutdown(sync=True)
    return typer.Exit(1)


def _on_peer_lost() -> None:
    from dream_cl.distributed import DistEnv, exit_process

    if not os.environ.get(LAUNCHER_ENV):
        typer.echo(
            f"error: rank {DistEnv.current().rank}: another process of the job stopped; "
            "ending this one too (rerun with --resume)",
            err=True,
        )
    exit_process(PEER_LOST_EXIT)  # no collective clean-up with a dead peer


def with_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A command whose user errors print one line and exit 1 (also under CliRunner).

    Under torchrun an error every rank agreed on is printed by rank 0 alone; an error of
    one rank says which; a lost peer process ends the rank with one line (or silently
    when dream-cl's own launcher, which names the failed rank, started it).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dream_cl.distributed import is_peer_failure, shutdown

        try:
            result = func(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted) as err:
            raise _on_interrupt(err, func.__name__) from None
        except UserError as err:
            raise _on_user_error(err) from None
        except Exception as err:
            if not is_peer_failure(err):
                raise  # a bug: the traceback, and torchrun stops the other ranks
            _on_peer_lost()
        shutdown(sync=True)
        return result

    return wrapper


def _print_version(shown: bool) -> None:
    if shown:
        from dream_cl import __version__

        typer.echo(f"dream-cl {__version__}")
        raise typer.Exit()


def app_options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """DREAM dataset distillation and continual-learning replay."""
