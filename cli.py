"""The ``dream-cl`` command line (typer).

Installed as ``dream_cl.cli`` (``dream_cl/cli.py`` links here). Every command validates its
input before doing work, so a bad argument costs nothing and writes nothing; user errors
print one line and exit 1.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dream_cl.errors import Interrupted, UserError

if TYPE_CHECKING:
    from dream_cl.distributed import DistEnv as DistEnvT

app = typer.Typer(
    name="dream-cl",
    help="DREAM dataset distillation and continual-learning replay.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(*args, **kwargs):
    """``app.command`` whose user errors print one line and exit 1 (also under CliRunner).

    Under torchrun an error every rank agreed on is printed by rank 0 alone; an error of
    one rank says which; a lost peer process ends the rank with one line (or silently
    when dream-cl's own launcher, which names the failed rank, started it).
    """

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*a, **k):
            from dream_cl.distributed import (
                AgreedError,
                DistEnv,
                exit_process,
                is_peer_failure,
                shutdown,
            )

            try:
                result = func(*a, **k)
            except (KeyboardInterrupt, Interrupted) as err:
                env, status = DistEnv.current(), _interrupt_status(err)
                if env.is_main and not os.environ.get(LAUNCHER_ENV):
                    typer.echo(f"error: {_interrupt_line(err, func.__name__)}", err=True)
                if env.world_size > 1:
                    exit_process(status)  # no collective clean-up: the others stop too
                raise typer.Exit(status) from None
            except UserError as err:
                env = DistEnv.current()
                agreed = isinstance(err, AgreedError)
                if env.is_main or not agreed:
                    prefix = f"rank {env.rank}: " if env.world_size > 1 and not env.is_main else ""
                    typer.echo(f"error: {prefix}{err}", err=True)
                if env.world_size > 1 and not agreed:
                    exit_process(1)  # the other ranks are elsewhere: no barrier, just go
                shutdown(sync=True)
                raise typer.Exit(1) from None
            except Exception as err:
                if not is_peer_failure(err):
                    raise  # a bug: the traceback, and torchrun stops the other ranks
                env = DistEnv.current()
                if not os.environ.get(LAUNCHER_ENV):
                    typer.echo(
                        f"error: rank {env.rank}: another process of the job stopped; "
                        "ending this one too (rerun with --resume)",
                        err=True,
                    )
                exit_process(PEER_LOST_EXIT)  # no collective clean-up with a dead peer
            shutdown(sync=True)
            return result

        return app.command(*args, **kwargs)(wrapper)

    return decorate


_RESUMABLE_COMMANDS = ("run", "distill", "compare")
_CONTINUABLE_COMMANDS = ("evaluate",)
"""Commands that continue from their checkpoints when the same command runs again."""


def _interrupt_status(err: BaseException) -> int:
    return 143 if isinstance(err, Interrupted) and err.signal_name == "SIGTERM" else 130


def _interrupt_line(err: BaseException, command_name: str) -> str:
    """Where the run stopped and the exact command that continues it."""
    name = err.signal_name if isinstance(err, Interrupted) else "SIGINT"
    where = f" during {err.where}" if isinstance(err, Interrupted) and err.where else ""
    if command_name in _RESUMABLE_COMMANDS:
        return (
            f"interrupted by {name}{where}; what was checkpointed is kept. Resume with: "
            f"{_resume_hint(sys.argv[1:])}"
        )
    if command_name in _CONTINUABLE_COMMANDS:
        return (
            f"interrupted by {name}{where}; what was checkpointed is kept. Continue with the "
            f"same command: dream-cl {_join(sys.argv[1:])}"
        )
    return (
        f"interrupted by {name}{where}; nothing was written. Rerun: dream-cl {_join(sys.argv[1:])}"
    )


def _command_name(argv: list[str]) -> str:
    """The sub-command of a dream-cl command line (its first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), "")


def _join(argv: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted("SIGTERM")


LAUNCHER_ENV = "DREAM_CL_LAUNCHED"
"""Set in the processes that ``--nproc`` starts (the launcher reports failures)."""
PEER_LOST_EXIT = 3
"""Exit status of a rank that stopped because another rank of the job died."""


DEFAULT_DATA_ROOT = os.environ.get("DREAM_CL_DATA", "data")

DataRoot = Annotated[
    Path,
    typer.Option(
        "--data-root",
        help="Folder holding datasets in torchvision's on-disk layout (env DREAM_CL_DATA).",
    ),
]
Device = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")]
Seed = Annotated[int, typer.Option("--seed", help="Random seed (runs are seeded by default).")]
Download = Annotated[
    bool, typer.Option("--download", help="Download the dataset if it is missing.")
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ValFractionOpt = Annotated[
    float,
    typer.Option(
        help="Hold out this fraction of every class of the training split as a validation "
        "split (seeded, never trained on); 0: none, the whole split is used."
    ),
]
ValSeedOpt = Annotated[int, typer.Option(help="Seed of the validation split.")]
ThreadsOpt = Annotated[
    int | None,
    typer.Option(
        help="CPU threads for torch (default: 1 for digits, else torch's choice; under "
        "torchrun the cores shared by the node's processes)."
    ),
]
NprocOpt = Annotated[
    int,
    typer.Option(
        "--nproc",
        help="Processes on this machine (starts torchrun's launcher; classes are sharded "
        "across them, one GPU each when present). See docs/distributed.md.",
    ),
]


def _distributed(nproc: int, device: str, avalanche: bool = False) -> tuple[DistEnvT, str]:
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


def _set_threads(threads: int | None, dataset: str) -> None:
    """Digits-sized models run fastest on one thread, and one thread cannot be starved by
    oversubscribed cores (two spinning threads on two busy cores ran 10x slower). Under
    torchrun each process takes its share of the node's cores."""
    from dream_cl.distributed import DistEnv, split_threads

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


def _long_run_hint(preset: str | None, device: str):  # noqa: ANN202 - lazy import
    """On a CPU, the paper preset's long tasks are told so, with the cpu preset as the hint."""
    from dream_cl.distill.engine import LONG_RUN_SECONDS
    from dream_cl.progress import LongRunHint
    from dream_cl.utils import resolve_device

    if preset != "paper" or resolve_device(device).type != "cpu":
        return None
    return LongRunHint(after_seconds=LONG_RUN_SECONDS, hint="; `--preset cpu` runs in minutes")


def _progress(quiet: bool, env: DistEnvT | None = None, long_run=None):  # noqa: ANN001, ANN202
    """A bar on a terminal, plain lines otherwise, notes only with --quiet; rank 0 alone."""
    from dream_cl.progress import NullProgress, cli_progress

    if env is not None and not env.is_main:
        return contextlib.nullcontext(NullProgress())
    return cli_progress(not quiet, long_run=long_run)


@contextlib.contextmanager
def _claimed(
    folder: Path, command: str | None = None, lock_name: str | None = None, clean: bool = True
):
    """Hold ``folder`` for the whole command: an exclusive lock (rank 0's, under torchrun),
    then the temporaries of killed writes removed. Another command's folder is refused
    before the lock file is made; a failed command leaves no folder it created behind."""
    from dream_cl.distributed import agree
    from dream_cl.runfolder import LOCK_FILE, FolderLock, refuse_if_foreign, remove_temporaries

    lock = FolderLock(folder, lock_name or LOCK_FILE)

    def take() -> None:
        if command is not None:
            refuse_if_foreign(folder, command)
        lock.acquire()
        if clean:
            remove_temporaries(folder)

    agree(take)
    try:
        yield lock
    except BaseException:
        lock.release(failed=True)
        raise
    lock.release()


@command()
def datasets(data_root: DataRoot = Path(DEFAULT_DATA_ROOT)) -> None:
    """List the registered datasets and whether each is found under the data root."""
    from dream_cl.data import DATASETS

    typer.echo(f"data root: {data_root}")
    for name, spec in DATASETS.items():
        found = "found" if spec.available(data_root) else "missing"
        kind = spec.found_as(data_root) if found == "found" else ""
        kind = f"  ({kind})" if kind else ""
        typer.echo(f"  {name:<14} {found:<8} {spec.expected_path(data_root)}{kind}")


@command()
def coreset(
    dataset: Annotated[str, typer.Argument(help="Registered dataset name (see `datasets`).")],
    method: Annotated[str, typer.Option(help="random, herding or k-center.")] = "herding",
    ipc: Annotated[int, typer.Option(help="Images per class.")] = 10,
    out: Annotated[Path, typer.Option(help="Output folder for the image set.")] = Path(
        "runs/coreset"
    ),
    feature_model: Annotated[
        str, typer.Option(help="Network whose random-init features herding/k-center use.")
    ] = "convnet",
    data_root: DataRoot = Path(DEFAULT_DATA_ROOT),
    download: Download = False,
    device: Device = "auto",
    seed: Seed = 0,
    nproc: NprocOpt = 1,
) -> None:
    """Select IPC real images per class (coreset baseline) and save them as an image set."""
    from dream_cl.artifact import save_image_set
    from dream_cl.coreset import METHODS as CORESET_METHODS
    from dream_cl.coreset import select_coreset
    from dream_cl.data import load_dataset
    from dream_cl.distributed import agree
    from dream_cl.models import model_names
    from dream_cl.runfolder import CONFIG_FILE, claim, record
    from dream_cl.utils import atomic_write_json, resolve_device, seed_everything

    if method not in CORESET_METHODS:
        raise UserError(
            f"unknown coreset method '{method}'; use one of {', '.join(CORESET_METHODS)}"
        )
    if feature_model not in model_names():
        raise UserError(f"unknown model '{feature_model}'; use one of {', '.join(model_names())}")
    if ipc < 1:
        raise UserError("--ipc must be at least 1")
    env, device = _distributed(nproc, device)
    _set_threads(None, dataset)
    dev = resolve_device(device)
    settings = {
        "dataset": dataset,
        "method": method,
        "ipc": ipc,
        "feature_model": feature_model,
        "seed": seed,
        "data_root": str(data_root),
    }
    run = record("coreset", settings)
    with _claimed(out, "coreset"):
        agree(lambda: claim(out, "coreset", run, resume=False, resumable=False))
        seed_everything(seed)
        train = load_dataset(dataset, data_root, train=True, download=download)
        t0 = time.perf_counter()
        image_set = select_coreset(
            train, method, ipc, seed=seed, feature_model=feature_model, device=dev
        )
        if env.is_main:
            atomic_write_json(run, out / CONFIG_FILE)
            save_image_set(image_set, out)
    typer.echo(
        f"{method} coreset of {dataset}: {image_set.num_stored} images "
        f"({ipc} per class) in {time.perf_counter() - t0:.1f}s -> {out}"
    )


def _check_eval_target(target: Path) -> None:
    """``evaluate --out`` replaces an earlier evaluation record, never any other file."""
    import json

    if target.is_dir():
        raise UserError(f"--out {target} is a folder; give the JSON file to write")
    if not target.exists():
        return
    try:
        saved = json.loads(target.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        saved = None
    if not (isinstance(saved, dict) and "accuracies" in saved and "artifact" in saved):
        raise UserError(
            f"--out {target} exists and is not an evaluation record; choose another file"
        )


@command()
def evaluate(
    artifact: Annotated[Path, typer.Argument(help="Image-set folder (coreset or distilled).")],
    model: Annotated[str, typer.Option(help="Architecture to train (see models).")] = "convnet",
    model_option: ModelOptionOpt = None,
    recipe: Annotated[
        str,
        typer.Option(
            help="auto (the set's framework: idc for IDC/DREAM sets and coresets, VICO's for "
            "dc/dsa/dm sets), idc, dc, dsa or dm. --epochs/--lr/--batch-size/--augment/"
            "--cutmix-p change one setting of it."
        ),
    ] = "auto",
    repeats: Annotated[
        int, typer.Option(help="Fresh models to train; mean and std reported (paper: 5).")
    ] = 5,
    epochs: Annotated[
        int | None, typer.Option(help="The recipe's epochs E (idc/dsa/dm 1000, dc 300).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="SGD learning rate (0.01).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Training batch size (idc 64, dc/dsa/dm 256).")
    ] = None,
    augment: Annotated[
        str | None,
        typer.Option(help="DSA strategy, e.g. color_crop_flip_scale_rotate; default per recipe."),
    ] = None,
    cutmix_p: Annotated[
        float | None, typer.Option(help="CutMix probability (idc 0.5, others 0).")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            help="test, or val: the validation split the set was distilled without (as its "
            "config records it)."
        ),
    ] = "test",
    out: Annotated[
        Path | None, typer.Option(help="Where to write the JSON result (default: beside the set).")
    ] = None,
    checkpoint_seconds: Annotated[
        float,
        typer.Option(
            help="Save the model in training at most this often (0: every epoch), so that the "
            "same command continues an interrupted evaluation."
        ),
    ] = 60.0,
    data_root: DataRoot = Path(DEFAULT_DATA_ROOT),
    download: Download = False,
    device: Device = "auto",
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Train fresh models on an image set and report last-epoch accuracy (mean +- std)."""
    import dataclasses
    import shutil

    from dream_cl.artifact import load_image_set
    from dream_cl.data import ValidationSpec, load_dataset, load_splits
    from dream_cl.data.validation import SPLITS
    from dream_cl.evaluate import (
        RECIPES,
        EvalCheckpoint,
        eval_recipe,
        evaluate_image_set,
        recipe_for_framework,
        resolve_eval_config,
    )
    from dream_cl.models import model_names
    from dream_cl.utils import atomic_write_json, resolve_device, seed_everything

    if model not in model_names():
        raise UserError(f"unknown model '{model}'; use one of {', '.join(model_names())}")
    if recipe != "auto" and recipe not in RECIPES:
        raise UserError(f"unknown --recipe '{recipe}'; use auto, {', '.join(RECIPES)}")
    if split not in SPLITS:
        raise UserError(f"unknown --split '{split}'; use {' or '.join(SPLITS)}")
    if repeats < 1 or any(v is not None and v < 1 for v in (epochs, batch_size)):
        raise UserError("--repeats, --epochs and --batch-size must be at least 1")
    if (lr is not None and lr <= 0) or (cutmix_p is not None and not 0.0 <= cutmix_p <= 1.0):
        raise UserError("--lr must be positive and --cutmix-p between 0 and 1")
    if not checkpoint_seconds >= 0:  # also refuses nan
        raise UserError("--checkpoint-seconds must be 0 (every epoch) or more")
    options = _parse_model_options(model, model_option)
    dev = resolve_device(device)
    image_set = load_image_set(artifact)
    run_cfg = image_set.meta.get("config") if isinstance(image_set.meta, dict) else None
    run_cfg = run_cfg if isinstance(run_cfg, dict) else {}
    chosen = recipe_for_framework(run_cfg.get("framework")) if recipe == "auto" else recipe
    target = out or (Path(artifact) if Path(artifact).is_dir() else Path(artifact).parent) / (
        f"eval_{model}.json" if split == "test" else f"eval_{model}_val.json"
    )
    _check_eval_target(target)
    # the recipe with the set's own dataset rules first, so that one flag changes one setting
    cfg = resolve_eval_config(
        eval_recipe(chosen, image_set.info.name, epochs=epochs),
        image_set.info.name,
        image_set.factor,
        image_set.ipc,
    )
    changes = {"lr": lr, "batch_size": batch_size, "dsa_strategy": augment, "cutmix_p": cutmix_p}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})
    spec = None
    if split == "val":
        spec = ValidationSpec(
            float(run_cfg.get("val_fraction", 0.0)), int(run_cfg.get("val_seed", 0))
        )
        if not spec.enabled:
            raise UserError(
                "--split val: this set records no validation split (it may have been made "
                "from every training image); distill it with --val-fraction to evaluate on one"
            )
    # the models in training, one file each, under the JSON file's lock; gone once it is written
    partial = target.parent / f".{target.name}.partial"
    with _claimed(target.parent, lock_name=f".{target.name}.lock", clean=False):
        if spec is None:
            data = load_dataset(image_set.info.name, data_root, train=False, download=download)
        else:
            _, data, _ = load_splits(image_set.info.name, data_root, spec, download=download)
        seed_everything(seed)
        with _progress(quiet) as progress:
            result = evaluate_image_set(
                image_set,
                data,
                model=model,
                repeats=repeats,
                cfg=cfg,
                seed=seed,
                device=dev,
                model_options=options,
                progress=progress,
                checkpoint=EvalCheckpoint(partial, every_seconds=checkpoint_seconds),
            )
        record = result.to_dict() | {
            "artifact": str(artifact),
            "device": str(dev),
            "seed": seed,
            "split": split,
            "validation": None if spec is None else spec.to_dict(),
        }
        atomic_write_json(record, target)
        shutil.rmtree(partial, ignore_errors=True)
    typer.echo(
        f"{model} on {image_set.method} ({image_set.info.name}, {image_set.num_stored} stored), "
        f"{chosen} recipe, {split} split: {100 * result.mean:.2f} +- {100 * result.std:.2f} % "
        f"over {repeats} run(s) -> {target}"
    )


@command()
def distill(
    dataset: Annotated[str, typer.Argument(help="Registered dataset name (see `datasets`).")],
    ipc: Annotated[int, typer.Option(help="Stored synthetic images per class.")] = 10,
    factor: Annotated[
        int | None, typer.Option(help="IDC multi-formation factor (paper preset: 2).")
    ] = None,
    framework: Annotated[str, typer.Option(help="idc, dc, dsa or dm.")] = "idc",
    sampler: Annotated[
        str, typer.Option(help="representative (DREAM) or random (baseline).")
    ] = "representative",
    init: Annotated[str, typer.Option(help="kmeans (DREAM), random or noise.")] = "kmeans",
    preset: Annotated[
        str, typer.Option(help="paper (official settings) or cpu (scaled).")
    ] = "paper",
    iterations: Annotated[int | None, typer.Option(help="Outer iterations.")] = None,
    inner_loop: Annotated[int | None, typer.Option(help="Matching steps per network.")] = None,
    interval: Annotated[int | None, typer.Option(help="Re-cluster every I_int steps.")] = None,
    n_clusters: Annotated[int | None, typer.Option(help="Clusters N per class.")] = None,
    per_cluster: Annotated[int | None, typer.Option(help="Samples n per cluster.")] = None,
    candidates: Annotated[
        int | None, typer.Option(help="Cluster a random subset of this many per class.")
    ] = None,
    lr_img: Annotated[float | None, typer.Option(help="Image learning rate.")] = None,
    metric: Annotated[str | None, typer.Option(help="mse, l1, l1_mean or cos.")] = None,
    formulation: Annotated[
        str | None,
        typer.Option(
            help="per-class: one image step per class, IDC's official loop (the default, "
            "and the fastest measured on CPU). joint: the class losses summed into one step, "
            "DC/DSA's official loop. batched: joint, all classes in one vmapped pass; in one "
            "benchmark run on a 2-core x86_64 CPU it took 1.7x the time per inner iteration "
            "and 2.9x the peak memory of per-class at the paper's MNIST IPC-10 shape "
            "(benchmarks/RESULTS.md); meant for GPUs, not yet measured there."
        ),
    ] = None,
    compile: Annotated[
        bool,
        typer.Option(help="torch.compile the per-class matching step (faster; ~1e-3 rel. diff)."),
    ] = False,
    width: Annotated[int | None, typer.Option(help="ConvNet width.")] = None,
    net_update: Annotated[
        str | None,
        typer.Option(
            help="With --nproc/torchrun, IDC's network update: data-parallel (default; equal "
            "to one process up to float rounding) or replicated (bit for bit, slower)."
        ),
    ] = None,
    eval_every: Annotated[int, typer.Option(help="Evaluate every K iterations (0: never).")] = 0,
    eval_model: Annotated[str, typer.Option(help="Architecture for evaluation.")] = "convnet",
    eval_epochs: Annotated[int | None, typer.Option(help="Evaluation epochs.")] = None,
    eval_repeats: Annotated[int, typer.Option(help="Models per evaluation.")] = 1,
    eval_width: Annotated[
        int | None, typer.Option(help="Width of a ConvNet evaluation model (cpu preset: 32).")
    ] = None,
    eval_recipe: Annotated[
        str,
        typer.Option(
            help="auto (the framework's own: idc for idc, VICO's for dc/dsa/dm), "
            "idc, dc, dsa or dm."
        ),
    ] = "auto",
    eval_split: Annotated[
        str,
        typer.Option(help="test (monitoring only) or val (needs --val-fraction)."),
    ] = "test",
    val_fraction: ValFractionOpt = 0.0,
    val_seed: ValSeedOpt = 0,
    checkpoint_every: Annotated[int | None, typer.Option(help="Checkpoint every K.")] = None,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/distill"),
    resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
    data_root: DataRoot = Path(DEFAULT_DATA_ROOT),
    download: Download = False,
    device: Device = "auto",
    seed: Seed = 0,
    threads: ThreadsOpt = None,
    quiet: Quiet = False,
    nproc: NprocOpt = 1,
) -> None:
    """Distill a dataset with DREAM (or a baseline) into IPC synthetic images per class."""
    from dream_cl.data import ValidationSpec, load_splits
    from dream_cl.distill.config import resolve_config
    from dream_cl.distill.engine import distill as run_distill
    from dream_cl.models import model_names

    if eval_model not in model_names():
        raise UserError(f"unknown model '{eval_model}'; use one of {', '.join(model_names())}")
    if ipc < 1:
        raise UserError("--ipc must be at least 1")
    env, device = _distributed(nproc, device)
    _set_threads(threads, dataset)
    spec = ValidationSpec(val_fraction, val_seed)
    if eval_split == "val" and not spec.enabled:
        raise UserError("--eval-split val needs a validation split: pass --val-fraction (e.g. 0.1)")
    with _claimed(out, "distill"):
        train, val, test = load_splits(dataset, data_root, spec, download=download)
        if eval_split == "val":
            test = val
        if env.world_size > 1:
            from dream_cl.distill.engine import shard_train

            train = shard_train(train, env)  # the other classes' images are freed
            test = test if env.is_main else None
        overrides = {
            "factor": factor,
            "sampler": sampler,
            "init": init,
            "iterations": iterations,
            "inner_loop": inner_loop,
            "interval": interval,
            "n_clusters": n_clusters,
            "per_cluster": per_cluster,
            "candidates": candidates,
            "lr_img": lr_img,
            "metric": metric,
            "formulation": formulation,
            "compile": compile or None,
            "width": width,
            "net_update": net_update,
            "eval_every": eval_every,
            "eval_model": eval_model,
            "eval_epochs": eval_epochs,
            "eval_repeats": eval_repeats,
            "eval_width": eval_width,
            "eval_recipe": eval_recipe,
            "eval_split": eval_split,
            "val_fraction": val_fraction,
            "val_seed": val_seed,
            "checkpoint_every": checkpoint_every,
            "device": device,
            "seed": seed,
        }
        cfg = resolve_config(
            dataset,
            ipc,
            framework=framework,
            preset=preset,
            image_size=train.info.image_size,
            overrides=overrides,
        )
        hint = _long_run_hint(cfg.preset, cfg.device)
        with _progress(quiet, env, long_run=hint) as progress:
            result = run_distill(
                cfg,
                train,
                test,
                out=out,
                resume=resume,
                progress=progress,
                data={"data_root": str(data_root)},
            )
    m = result.metrics
    secs = m["time_seconds"]
    typer.echo(
        f"{m['method']} on {dataset}: {m['stored_images']} stored images "
        f"({m['decoded_images']} decoded), {m['iterations_done']} iterations"
    )
    typer.echo("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(secs.items())))
    for e in m["evals"][-3:]:
        typer.echo(
            f"  iteration {e['iteration']}: {e['model']} {100 * e['mean']:.2f}% "
            f"({e.get('split', 'test')}, {e.get('recipe', 'idc')} recipe, "
            f"{len(e.get('accuracies', [0]))} model(s))"
        )
    typer.echo(f"artifact: {out}  (dream-cl evaluate {out}; dream-cl show {out})")


@command()
def show(
    artifact: Annotated[Path, typer.Argument(help="Image-set folder (coreset or distilled).")],
    out: Annotated[
        Path | None, typer.Option(help="PNG path (default: grid.png beside it).")
    ] = None,
    decoded: Annotated[
        bool, typer.Option(help="Show the decoded multi-formation images instead of stored.")
    ] = False,
    max_classes: Annotated[int, typer.Option(help="Show at most this many classes.")] = 100,
) -> None:
    """Save a PNG grid of an image set: one row per class."""
    from dream_cl.artifact import load_image_set
    from dream_cl.visualize import save_class_grid

    if max_classes < 1:
        raise UserError("--max-classes must be at least 1")
    image_set = load_image_set(artifact)
    images, labels = image_set.decoded() if decoded else (image_set.images, image_set.labels)
    base = Path(artifact) if Path(artifact).is_dir() else Path(artifact).parent
    target = out or base / ("grid_decoded.png" if decoded else "grid.png")
    save_class_grid(images, labels, target, max_classes=max_classes)
    typer.echo(f"grid: {target}")


# -- continual learning ------------------------------------------------------------------------
ScenarioArg = Annotated[
    str | None,
    typer.Argument(
        help="Registered scenario (see `scenarios`), a dataset name with --steps, or an image "
        "folder. Default: digits-5step on the cpu preset."
    ),
]
RegimeOpt = Annotated[
    str,
    typer.Option(
        help="finetune-kd (IDC/DREAM: keep training on the memory, KD T=2), scratch (DM/GDumb: "
        "fresh model per step) or replay-mix (Avalanche replay: current data + memory)."
    ),
]
IpcOpt = Annotated[
    int | None, typer.Option(help="Stored images per class, the budget (paper 20, cpu 10).")
]
ModelOpt = Annotated[
    str | None, typer.Option(help="Network trained on the memory (default resnet10).")
]
ModelOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--model-option",
        help="KEY=VALUE option of the trained model, repeatable (e.g. branch=cifar for the "
        "CIFAR ResNet-10 on any dataset; default: the official choice for the dataset).",
    ),
]
DistillModelOpt = Annotated[
    str, typer.Option(help="Network that distils (and extracts herding features).")
]
PresetOpt = Annotated[
    str | None,
    typer.Option(help="paper (section 4.5) or cpu (scaled); default cpu for digits, else paper."),
]
OrdersOpt = Annotated[int, typer.Option(help="Run K class orders, seeded --seed .. --seed+K-1.")]
EpochsOpt = Annotated[
    int | None, typer.Option(help="Training epochs per step (paper 1000; replay-mix 100).")
]
BatchOpt = Annotated[int | None, typer.Option(help="Training batch size (64).")]
LrOpt = Annotated[float | None, typer.Option(help="SGD learning rate (0.01).")]
StepsOpt = Annotated[
    int | None,
    typer.Option(
        help="Steps, when SCENARIO is a dataset or a folder (default 5). Classes that do not "
        "divide evenly go to the earlier steps, one more each (the split is printed)."
    ),
]
ClassOrderOpt = Annotated[
    str | None, typer.Option(help="Explicit class order, e.g. 3,1,4,... (replaces the seed).")
]
DistillItersOpt = Annotated[
    int | None, typer.Option(help="Override the engine's outer iterations per step.")
]
DistillCompileOpt = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the distilled memories' matching step (dream, idc; faster on "
        "long runs, ~1e-3 rel. diff).",
    ),
]
ResumeOpt = Annotated[bool, typer.Option(help="Continue the run in --out (same settings).")]


def _parse_model_options(model: str | None, items: list[str] | None) -> dict | None:
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


def _parse_order(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        raise UserError(
            f"--class-order {text!r} is not a comma-separated list of class indices"
        ) from None


def _dataset_of(scenario: str, steps: int | None) -> str:
    from dream_cl.scenarios import resolve_scenario_source

    return resolve_scenario_source(scenario, steps)[1]


def _cl_settings(
    scenario: str | None, preset: str | None, steps: int | None, **flags: object
) -> tuple[str, str, dict]:
    """(scenario, preset, overrides) with the embedded default and the per-data preset."""
    from dream_cl.scenarios import DEFAULT_SCENARIO

    scenario = scenario or DEFAULT_SCENARIO
    preset = preset or ("cpu" if _dataset_of(scenario, steps) == "digits" else "paper")
    distill: dict[str, object] = {}
    if (iterations := flags.pop("distill_iterations", None)) is not None:
        distill["iterations"] = iterations
    if flags.pop("distill_compile", False):
        distill["compile"] = True
    overrides = {k: v for k, v in flags.items() if v is not None}
    overrides["steps"] = steps
    if distill:
        overrides["distill_overrides"] = distill
    return scenario, preset, overrides


def _echo_cl_result(results: dict, out: Path) -> None:
    from dream_cl.utils import percent

    cfg, summary = results["config"], results["summary"]
    mem = summary["memory"]
    typer.echo(
        f"{results['scenario']}: {cfg['memory']} memory, ipc {cfg['ipc']} "
        f"({mem.get('stored_images')} stored images, {mem.get('decoded_images')} decoded), "
        f"{cfg['regime']}, {cfg['model']}, {len(results['orders'])} order(s)"
    )
    typer.echo("  classes  accuracy on seen classes (%)")
    for n, acc in zip(summary["num_classes"], summary["accuracy"], strict=True):
        spread = f" +- {100 * acc['std']:.2f}" if acc["n"] > 1 else ""
        typer.echo(f"  {n:>7}  {100 * acc['mean']:.2f}{spread}")
    aia = summary["average_incremental_accuracy"]["mean"]
    typer.echo(
        f"average incremental {100 * aia:.2f}, final "
        f"{100 * summary['final_accuracy']['mean']:.2f}, forgetting "
        f"{percent(summary['forgetting']['mean'])}"
    )
    first = results["orders"][0]["seed"]
    typer.echo(
        f"results: {out / 'results.json'}  plot: {out / 'accuracy.png'}  "
        f"memories: {out / f'order{first}'}/step*/ (dream-cl show)"
    )


@command()
def run(
    scenario: ScenarioArg = None,
    memory: Annotated[str, typer.Option(help="dream, idc, dm, herding or random.")] = "dream",
    ipc: IpcOpt = None,
    regime: RegimeOpt = "finetune-kd",
    model: ModelOpt = None,
    model_option: ModelOptionOpt = None,
    distill_model: DistillModelOpt = "convnet",
    preset: PresetOpt = None,
    orders: OrdersOpt = 1,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    steps: StepsOpt = None,
    class_order: ClassOrderOpt = None,
    distill_iterations: DistillItersOpt = None,
    distill_compile: DistillCompileOpt = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default runs/SCENARIO-MEMORY-REGIME).")
    ] = None,
    resume: ResumeOpt = False,
    threads: ThreadsOpt = None,
    tensorboard: Annotated[bool, typer.Option(help="Also log to TensorBoard.")] = False,
    interactive: Annotated[
        bool, typer.Option(help="Avalanche's InteractiveLogger instead of progress bars.")
    ] = False,
    data_root: DataRoot = Path(DEFAULT_DATA_ROOT),
    download: Download = False,
    device: Device = "auto",
    seed: Seed = 0,
    quiet: Quiet = False,
    nproc: NprocOpt = 1,
) -> None:
    """Class-incremental learning with a distilled memory (paper section 4.5)."""
    from dream_cl.strategies import execute_run, prepare_run, resolve_cl_config

    env, device = _distributed(nproc, device, avalanche=True)
    scenario, preset, overrides = _cl_settings(
        scenario,
        preset,
        steps,
        memory=memory,
        ipc=ipc,
        regime=regime,
        model=model,
        model_options=_parse_model_options(model, model_option),
        distill_model=distill_model,
        orders=orders,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        class_order=_parse_order(class_order),
        distill_iterations=distill_iterations,
        distill_compile=distill_compile,
        device=device,
        seed=seed,
    )
    cfg = resolve_cl_config(scenario, preset, **overrides)
    _set_threads(threads, _dataset_of(scenario, steps))
    name = scenario if "/" not in scenario else Path(scenario).name
    target = out or Path("runs") / f"{name}-{cfg.memory}-{cfg.regime}"
    t0 = time.perf_counter()
    with _claimed(target, "run"):
        plan = prepare_run(cfg, data_root=data_root, out=target, resume=resume, download=download)
        hint = _long_run_hint(cfg.preset, cfg.device)
        with _progress(quiet or interactive, env, long_run=hint) as progress:
            results = execute_run(
                plan, progress=progress, interactive=interactive, tensorboard=tensorboard
            )
    _echo_cl_result(results, target)
    typer.echo(f"time: {time.perf_counter() - t0:.1f}s")


@command()
def compare(
    scenario: ScenarioArg = None,
    memories: Annotated[
        str, typer.Option(help="Comma-separated memory methods, all with the same budget.")
    ] = "dream,idc,herding,random",
    ipc: IpcOpt = None,
    regime: RegimeOpt = "finetune-kd",
    model: ModelOpt = None,
    model_option: ModelOptionOpt = None,
    distill_model: DistillModelOpt = "convnet",
    preset: PresetOpt = None,
    orders: OrdersOpt = 1,
    epochs: EpochsOpt = None,
    batch_size: BatchOpt = None,
    lr: LrOpt = None,
    steps: StepsOpt = None,
    class_order: ClassOrderOpt = None,
    distill_iterations: DistillItersOpt = None,
    distill_compile: DistillCompileOpt = False,
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default runs/compare-SCENARIO).")
    ] = None,
    resume: ResumeOpt = False,
    threads: ThreadsOpt = None,
    data_root: DataRoot = Path(DEFAULT_DATA_ROOT),
    download: Download = False,
    device: Device = "auto",
    seed: Seed = 0,
    quiet: Quiet = False,
    nproc: NprocOpt = 1,
) -> None:
    """Run several memories with one budget and class order; table + accuracy plot."""
    from dream_cl.strategies import compare as run_compare

    env, device = _distributed(nproc, device, avalanche=True)
    methods = [m.strip() for m in memories.split(",") if m.strip()]
    scenario, preset, overrides = _cl_settings(
        scenario,
        preset,
        steps,
        ipc=ipc,
        regime=regime,
        model=model,
        model_options=_parse_model_options(model, model_option),
        distill_model=distill_model,
        orders=orders,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        class_order=_parse_order(class_order),
        distill_iterations=distill_iterations,
        distill_compile=distill_compile,
        device=device,
        seed=seed,
    )
    _set_threads(threads, _dataset_of(scenario, steps))
    name = scenario if "/" not in scenario else Path(scenario).name
    target = out or Path("runs") / f"compare-{name}"
    t0 = time.perf_counter()
    with (
        _claimed(target, "compare"),
        _progress(quiet, env, long_run=_long_run_hint(preset, device)) as progress,
    ):
        record = run_compare(
            scenario,
            methods,
            preset=preset,
            overrides=overrides,
            data_root=data_root,
            out=target,
            resume=resume,
            download=download,
            progress=progress,
        )
    if not env.is_main:
        return
    typer.echo(f"{record['scenario']}: accuracy on seen classes (%), same stored budget")
    typer.echo((target / "comparison.md").read_text().rstrip())
    typer.echo(f"table: {target / 'comparison.md'}  plot: {target / 'comparison.png'}")
    typer.echo(f"time: {time.perf_counter() - t0:.1f}s")


@command()
def scenarios(data_root: DataRoot = Path(DEFAULT_DATA_ROOT)) -> None:
    """List the registered class-incremental scenarios and whether their data is present."""
    from dream_cl.scenarios import SCENARIOS

    typer.echo(f"data root: {data_root}")
    for name, spec in SCENARIOS.items():
        found = "found" if spec.available(data_root) else "missing"
        typer.echo(f"  {name:<20} {found:<8} {spec.description}")
    typer.echo(
        "others: dream-cl run DATASET --steps N [--class-order 3,1,...] or "
        "dream-cl run IMAGE_FOLDER --steps N"
    )


def _nproc_from_argv(argv: list[str]) -> tuple[int, list[str]]:
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


def _resume_hint(argv: list[str]) -> str:
    return "dream-cl " + _join([*argv] + ([] if "--resume" in argv else ["--resume"]))


def launch(nproc: int, argv: list[str]) -> int:
    """Start ``nproc`` processes of ``dream-cl ARGV`` on this machine with torchrun's
    launcher (c10d rendezvous on loopback, no restarts); returns the exit status.

    A failed process ends the job: the launcher stops the others at once and prints one
    line naming the first rank that failed and the command that resumes the run.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from dream_cl.distributed import run_local_workers

    if nproc < 1:
        raise UserError("--nproc must be at least 1")
    try:
        run_local_workers(nproc, ["-m", "dream_cl.cli", *argv], env={LAUNCHER_ENV: "1"})
    except (KeyboardInterrupt, Interrupted, SignalException) as err:
        if isinstance(err, SignalException):  # torch's agent got SIGTERM (or another signal)
            err = Interrupted(err.sigval.name)
        typer.echo(f"error: {_interrupt_line(err, _command_name(argv))}", err=True)
        return _interrupt_status(err)
    except ChildFailedError as err:
        # the root cause: a rank that did not merely stop because a peer was lost
        causes = {r: f for r, f in err.failures.items() if f.exitcode != PEER_LOST_EXIT}
        rank, failure = min((causes or err.failures).items(), key=lambda rf: rf[1].timestamp)
        if failure.signal_name() not in ("", "<N/A>", None) and failure.exitcode < 0:
            how = f"was killed by {failure.signal_name()}"
        else:
            how = f"exited with status {failure.exitcode}"
        if failure.exitcode == 1:
            return 1  # a user error: rank 0 (or the rank) already said what to do
        typer.echo(
            f"error: rank {rank} of {nproc} {how}; the job was stopped. Resume with: "
            f"{_resume_hint([*argv, '--nproc', str(nproc)])}",
            err=True,
        )
        return 1
    return 0


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1.

    ``--nproc N`` outside torchrun starts N processes of the same command (see
    :func:`launch`); inside them, and under torchrun, the command runs as usual.
    """
    import signal

    from dream_cl.distributed import launched_by_torchrun

    signal.signal(signal.SIGTERM, _on_sigterm)  # SIGTERM ends a run as Ctrl-C does
    try:
        nproc, rest = _nproc_from_argv(sys.argv[1:])
        if nproc != 1 and not launched_by_torchrun():
            sys.exit(launch(nproc, rest))
        if launched_by_torchrun():
            _run_as_rank()
        app()
    except UserError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(1)
    except (KeyboardInterrupt, Interrupted) as err:
        typer.echo(f"error: {_interrupt_line(err, _command_name(sys.argv[1:]))}", err=True)
        sys.exit(_interrupt_status(err))


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
        code = _interrupt_status(err)
    exit_process(code)


if __name__ == "__main__":
    main()
