"""How a command runs as a process: joining torchrun, threads, progress, the launcher.

The command line and Python users share these rules: a job started with ``--nproc N``
becomes N processes of the same command; a user error is one line; an interrupt says how
to continue. Nothing here knows a command's work.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from dream_cl.distributed import DistEnv
from dream_cl.errors import Interrupted, UserError

LAUNCHER_ENV = "DREAM_CL_LAUNCHED"
"""Set in the processes that ``--nproc`` starts (the launcher reports failures)."""
PEER_LOST_EXIT = 3
"""Exit status of a rank that stopped because another rank of the job died."""
RESUMABLE_COMMANDS = ("run", "distill", "compare")
CONTINUABLE_COMMANDS = ("evaluate",)
"""Commands that continue from their checkpoints when the same command runs again."""


def join_processes(nproc: int, device: str, avalanche: bool = False) -> tuple[DistEnv, str]:
    """Join torchrun's process group when launched by it; returns (env, device name).

    Outside torchrun nothing changes. Ranks other than 0 print nothing to stdout: progress,
    logs and results come from rank 0 only. ``avalanche``: import it first, since importing
    Avalanche's strategies creates a logger, which it refuses on ranks other than 0 once
    the process group exists.
    """
    from dream_cl.distributed import init_from_env, launched_by_torchrun, local_device

    if avalanche:
        import dream_cl.strategies  # noqa: F401

    if nproc < 1:
        raise UserError("--nproc must be at least 1")
    if nproc > 1 and not launched_by_torchrun():
        raise UserError(
            "--nproc starts processes from the dream-cl command line only; in Python, launch "
            "with torchrun instead"
        )
    env = init_from_env(device)
    if env.world_size > 1 and not env.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the process's lifetime
    return env, local_device(env, device)


def set_threads(threads: int | None, dataset: str) -> None:
    """Digits-sized models run fastest on one thread, and one thread cannot be starved by
    oversubscribed cores (two spinning threads on two busy cores ran 10x slower). Under
    torchrun each process takes its share of the node's cores."""
    from dream_cl.distributed import split_threads

    env = DistEnv.current()
    if threads is None:
        threads = 1 if dataset == "digits" else None
    if threads is None and env.world_size > 1:
        threads = split_threads(env)
    if threads is None:
        return
    if threads < 1:
        raise UserError("--threads must be at least 1")
    import torch

    torch.set_num_threads(threads)


def progress_for(quiet: bool, env: DistEnv | None = None, long_run: Any = None) -> Any:
    """A bar on a terminal, plain lines otherwise, notes only when quiet; rank 0 alone."""
    from dream_cl.progress import NullProgress, cli_progress

    if env is not None and not env.is_main:
        return contextlib.nullcontext(NullProgress())
    return cli_progress(not quiet, long_run=long_run)


# -- interrupts and the launcher -------------------------------------------------------------
def interrupt_status(err: BaseException) -> int:
    return 143 if isinstance(err, Interrupted) and err.signal_name == "SIGTERM" else 130


def join_argv(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def resume_hint(argv: list[str]) -> str:
    return "dream-cl " + join_argv([*argv] + ([] if "--resume" in argv else ["--resume"]))


def command_name(argv: list[str]) -> str:
    """The sub-command of a dream-cl command line (its first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), "")


def interrupt_line(err: BaseException, name: str, argv: list[str]) -> str:
    """Where the run stopped and the exact command that continues it."""
    signal_name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
    where = f" during {err.where}" if isinstance(err, Interrupted) and err.where else ""
    stopped = f"interrupted by {signal_name}{where}"
    if name in RESUMABLE_COMMANDS:
        return f"{stopped}; what was checkpointed is kept. Resume with: {resume_hint(argv)}"
    if name in CONTINUABLE_COMMANDS:
        return (
            f"{stopped}; what was checkpointed is kept. Continue with the same command: "
            f"dream-cl {join_argv(argv)}"
        )
    return f"{stopped}; nothing was written. Rerun: dream-cl {join_argv(argv)}"


def nproc_from_argv(argv: list[str]) -> tuple[int, list[str]]:
    """``--nproc N`` (or ``--nproc=N``) taken out of the command line."""
    rest, nproc, i = [], 1, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--nproc" and i + 1 < len(argv):
            value, i = argv[i + 1], i + 2
        elif arg.startswith("--nproc="):
            value, i = arg.split("=", 1)[1], i + 1
        else:
            rest.append(arg)
            i += 1
            continue
        try:
            nproc = int(value)
        except ValueError:
            raise UserError(f"--nproc takes a number of processes, got '{value}'") from None
    return nproc, rest


def _failure_line(err: Any, nproc: int, argv: list[str]) -> str | None:
    """The launcher's line for a failed job (None: a user error a rank already printed)."""
    # the root cause: a rank that did not merely stop because a peer was lost
    causes = {r: f for r, f in err.failures.items() if f.exitcode != PEER_LOST_EXIT}
    rank, failure = min((causes or err.failures).items(), key=lambda rf: rf[1].timestamp)
    if failure.signal_name() not in ("", "<N/A>", None) and failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
    else:
        how = f"exited with status {failure.exitcode}"
    if failure.exitcode == 1:
        return None
    return (
        f"error: rank {rank} of {nproc} {how}; the job was stopped. Resume with: "
        f"{resume_hint([*argv, '--nproc', str(nproc)])}"
    )


def launch(nproc: int, argv: list[str], echo: Callable[[str], None] | None = None) -> int:
    """Start ``nproc`` processes of ``dream-cl ARGV`` on this machine with torchrun's
    launcher (c10d rendezvous on loopback, no restarts); returns the exit status.

    A failed process ends the job: the launcher stops the others at once and prints one
    line naming the first rank that failed and the command that resumes the run.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from dream_cl.distributed import run_local_workers

    say = echo or (lambda line: print(line, file=sys.stderr))
    if nproc < 1:
        raise UserError("--nproc must be at least 1")
    try:
        run_local_workers(nproc, ["-m", "dream_cl.cli", *argv], env={LAUNCHER_ENV: "1"})
    except (KeyboardInterrupt, Interrupted, SignalException) as err:
        if isinstance(err, SignalException):  # torch's agent got SIGTERM (or another signal)
            err = Interrupted(err.sigval.name)
        say(f"error: {interrupt_line(err, command_name(argv), argv)}")
        return interrupt_status(err)
    except ChildFailedError as err:
        line = _failure_line(err, nproc, argv)
        if line is not None:
            say(line)
        return 1
    return 0
