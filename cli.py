"""The ``dream-cl`` command line: the app's wiring, nothing else.

Installed as ``dream_cl.cli`` (``dream_cl/cli.py`` links here). Each command is one module
of :mod:`dream_cl.commands` that turns options into a request of :mod:`dream_cl.jobs`,
where the work lives (Python users and tests call the same functions). Every command
checks its input before doing work; user errors print one line and exit 1.
"""

from __future__ import annotations

import sys

import typer

from dream_cl.commands.catalog import cache, datasets, scenarios
from dream_cl.commands.common import app_options, with_errors
from dream_cl.commands.continual import compare, run
from dream_cl.commands.coreset import coreset
from dream_cl.commands.distill import distill
from dream_cl.commands.evaluate import evaluate
from dream_cl.commands.show import show
from dream_cl.errors import Interrupted, UserError
from dream_cl.jobs.process import command_name, interrupt_line, interrupt_status

app = typer.Typer(
    name="dream-cl",
    help="DREAM dataset distillation and continual-learning replay.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for _command in (datasets, coreset, evaluate, distill, show, run, compare, scenarios, cache):
    app.command()(with_errors(_command))

app.callback()(app_options)  # --version


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted("SIGTERM")


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1.

    ``--nproc N`` outside torchrun starts N processes of the same command (see
    :func:`dream_cl.jobs.process.launch`); inside them, and under torchrun, the command
    runs as usual.
    """
    import signal

    from dream_cl.distributed import launched_by_torchrun
    from dream_cl.jobs.process import launch, nproc_from_argv

    signal.signal(signal.SIGTERM, _on_sigterm)  # SIGTERM ends a run as Ctrl-C does
    argv = sys.argv[1:]
    try:
        nproc, rest = nproc_from_argv(argv)
        if nproc != 1 and not launched_by_torchrun():
            sys.exit(launch(nproc, rest, echo=lambda line: typer.echo(line, err=True)))
        if launched_by_torchrun():
            _run_as_rank()
        app()
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted) as err:
        typer.echo(f"error: {interrupt_line(err, command_name(argv), argv)}", err=True)
        sys.exit(interrupt_status(err))


def _run_as_rank() -> None:
    """One rank of a torchrun job: the command, then an exit that skips interpreter
    finalization (see :func:`dream_cl.distributed.exit_process`)."""
    from dream_cl.distributed import exit_process

    try:
        app()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        code = 1
    except (KeyboardInterrupt, Interrupted) as err:
        code = interrupt_status(err)
    exit_process(code)


if __name__ == "__main__":
    main()
