"""``dream-cl run`` and ``dream-cl compare`` as library calls: plan, run, resume.

A run is planned first (:func:`prepare_run`: names, data, sizes and the output folder are
checked; nothing is written), then executed (:func:`execute_run`). Output layout::

    OUT/config.json                    resolved configuration (CLConfig + provenance)
    OUT/results.json                   per-order metrics and their mean/std over orders
    OUT/accuracy.png                   accuracy on all seen classes against number of classes
    OUT/order{s}/scenario.json         the class order drawn with seed s (dataset labels)
    OUT/order{s}/step{k}/images.pt     memory of step k's classes (image-set format, dataset
    OUT/order{s}/step{k}/meta.json       labels; ``dream-cl show`` views it) + grid.png
    OUT/order{s}/step{k}/distill/      the engine's run folder (config, checkpoints)
    OUT/order{s}/step{k}/model.pt      model state after step k (weights only)
    OUT/order{s}/step{k}/result.json   evaluation after step k (written last: step complete)
    OUT/order{s}/metrics.json          accuracy matrix, average incremental accuracy, final
                                       accuracy, forgetting, memory accounting
    OUT/order{s}/logs/from-step{k}/    Avalanche loggers (log.txt, CSV, TensorBoard)

Resuming (``resume=True``) keeps every completed step, reloads its memory and model, and
redoes the first incomplete step; an interrupted distillation continues from the engine's
checkpoint. Every step's randomness derives from (seed, step), so the result equals an
uninterrupted run's. The numbers are computed in :mod:`~dream_cl.strategies.metrics`, the
table and plots drawn in :mod:`~dream_cl.strategies.report`.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dream_cl.cost import CostMeter
from dream_cl.data import check_out_outside_data, load_train_test
from dream_cl.distributed import DistEnv, agree, broadcast_object
from dream_cl.errors import UserError
from dream_cl.logs import LogOptions
from dream_cl.progress import NullProgress, Progress, notify
from dream_cl.runfolder import CONFIG_FILE, claim
from dream_cl.runfolder import record as run_folder_record
from dream_cl.scenarios.builder import Scenario, resolve_scenario_source, scenario_from_splits
from dream_cl.strategies.config import CLConfig, derive_seed, resolve_cl_config
from dream_cl.strategies.memory import DistilledBuffer
from dream_cl.strategies.metrics import comparison_record, run_results, step_row, summarize
from dream_cl.strategies.plugins import ModelFactory
from dream_cl.strategies.report import (
    comparison_table,
    comparison_title,
    cost_table,
    plot_accuracy,
    run_title,
)
from dream_cl.strategies.strategy import DistilledReplay, close_loggers, make_evaluator
from dream_cl.utils import atomic_torch_save, atomic_write, atomic_write_json, resolve_device

__all__ = [
    "LogOptions",
    "OrderRun",
    "OrderStart",
    "RunPlan",
    "compare",
    "execute_run",
    "prepare_run",
    "run_cl",
    "run_order",
    "run_record",
]

# settings that may change between a run and its resumption without changing the result
_RESUMABLE = {"device"}


@dataclass
class RunPlan:
    """A checked run: configuration, output folder and one scenario per class order."""

    cfg: CLConfig
    out: Path
    scenarios: list[Scenario]
    resume: bool = False
    data_root: str = "data"
    notes: list[str] = field(default_factory=list)
    """What :func:`prepare_run` decided about the folder (a resumed or restarted run)."""


@dataclass(frozen=True)
class OrderRun:
    """One class order of a run: its settings, scenario, folder and seed."""

    cfg: CLConfig
    scenario: Scenario
    order_dir: Path
    seed: int

    def step_dir(self, k: int) -> Path:
        return self.order_dir / f"step{k}"


@dataclass
class OrderStart:
    """Where an order (re)starts: the first step to run, the model to continue training and
    the rows of the steps already completed (their memories are back in the policy)."""

    done: int
    model: torch.nn.Module
    rows: list[dict[str, Any]]


# -- planning ----------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(
            f"{path} cannot be read ({type(exc).__name__}); use another --out"
        ) from None


def run_record(cfg: CLConfig, data_root: str | Path) -> dict[str, Any]:
    """The run folder's ``config.json``, less the provenance of the machine."""
    return run_folder_record("run", cfg.to_dict(), data_root=str(data_root))


def _check_out(cfg: CLConfig, out: Path, resume: bool, data_root: str | Path) -> list[str]:
    """Refuse a folder this run may not write; return notes on what will happen to it."""
    state = claim(out, "run", run_record(cfg, data_root), resume)
    if state.kind in ("missing", "empty"):
        return [f"--resume: no run in {out} yet; starting from the beginning"] if resume else []
    if state.kind == "same":
        return [] if resume else [f"{out} holds an earlier run of these settings; continuing it"]
    saved = (state.saved or {}).get("config", {})
    current = cfg.to_dict()
    keys = (set(saved) | set(current)) - _RESUMABLE
    diff = sorted(k for k in keys if saved.get(k) != current.get(k))
    if diff:
        raise UserError(
            f"--resume: settings differ from the run in {out} ({', '.join(diff)}); "
            "use the original settings or another --out"
        )
    return []


def _check_sizes(cfg: CLConfig, scenario: Scenario) -> None:
    mem = cfg.memory_config(0)
    need = mem.images_needed(scenario.dataset, scenario.info.image_size)
    counts = scenario.train.class_counts()
    smallest = min(range(len(counts)), key=lambda c: counts[c])
    if counts[smallest] < need:
        name = scenario.info.class_names[smallest]
        what = f"ipc*factor^2 = {need}" if need != cfg.ipc else f"{need}"
        raise UserError(
            f"--ipc {cfg.ipc} is larger than a class: '{name}' has {counts[smallest]} training "
            f"images and {cfg.memory} needs {what}; use --ipc "
            f"{max(1, counts[smallest] // (need // cfg.ipc))} or less"
        )


def prepare_run(
    cfg: CLConfig,
    *,
    data_root: str | Path = "data",
    out: str | Path = "runs/cl",
    resume: bool = False,
    download: bool = False,
    dataset_options: dict[str, Any] | None = None,
) -> RunPlan:
    """Check everything a run needs and build its scenarios; writes nothing.

    Unknown names, missing data, an IPC larger than a class, an occupied ``out`` without
    ``resume`` (or a ``resume`` with other settings) raise a one-line ``UserError``.
    """
    cfg.validate()
    resolve_device(cfg.device)
    name, dataset, steps, options = resolve_scenario_source(cfg.scenario, cfg.steps)
    out = Path(out)
    options = {**options, **(dataset_options or {})}
    check_out_outside_data(out, dataset, data_root, **options)
    notes = agree(lambda: _check_out(cfg, out, resume, data_root))  # decided once, by rank 0
    train, test = load_train_test(dataset, data_root, download=download, **options)
    mem = cfg.memory_config(0)
    mem.distill_config(dataset, train.info.image_size)  # engine settings are valid
    scenarios = [
        scenario_from_splits(
            train,
            test,
            steps,
            class_order=cfg.class_order,
            seed=seed,
            name=name,
            dataset_options=options,
        )
        for seed in cfg.order_seeds()
    ]
    for scenario in scenarios:
        _check_sizes(cfg, scenario)
    sizes = [len(g) for g in scenarios[0].steps]
    if len(set(sizes)) > 1:
        notes.append(
            f"note: {sum(sizes)} classes in {len(sizes)} steps do not divide evenly; steps of "
            f"{', '.join(map(str, sizes))} classes (earlier steps take one more)"
        )
    return RunPlan(cfg, out, scenarios, resume, str(data_root), notes=notes)


# -- one class order ---------------------------------------------------------------------------
def _model_factory(cfg: CLConfig, scenario: Scenario, seed: int) -> ModelFactory:
    from dream_cl.models import build_model

    info = scenario.info

    def factory(num_classes: int, step: int) -> torch.nn.Module:
        gen = torch.Generator().manual_seed(derive_seed(seed, "model", step))
        return build_model(
            cfg.model,
            channels=info.channels,
            num_classes=num_classes,
            image_size=info.image_size,
            generator=gen,
            dataset=info.name,
            **cfg.model_options,
        )

    return factory


def _claim_order(order: OrderRun) -> None:
    """Record the order's class order; refuse a folder that holds another one."""
    path = order.order_dir / "scenario.json"
    record = order.scenario.to_dict()
    order.order_dir.mkdir(parents=True, exist_ok=True)
    if path.is_file() and _read_json(path) != json.loads(json.dumps(record)):
        raise UserError(f"{path} records another class order; use another --out")
    atomic_write_json(record, path)


def _completed_steps(order_dir: Path, num_steps: int) -> int:
    done = 0
    while done < num_steps:
        step = order_dir / f"step{done}"
        if not ((step / "result.json").is_file() and (step / "model.pt").is_file()):
            break
        done += 1
    return done


def _load_model(path: Path, step: int) -> dict[str, Any]:
    """A completed step's model, checked: weights only, never pickled code."""
    redo = f"delete {path.parent} to redo step {step}, then rerun with --resume"
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - truncated, corrupt or not weights-only
        raise UserError(f"{path} cannot be loaded ({type(err).__name__}); {redo}") from None
    model = state.get("model") if isinstance(state, dict) else None
    num = state.get("num_classes") if isinstance(state, dict) else None
    if (
        not isinstance(model, dict)
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items())
        or isinstance(num, bool)
        or not isinstance(num, int)
        or num < 1
    ):
        raise UserError(f"{path} is not a dream-cl model checkpoint; {redo}")
    return state


def _check_step_model(path: Path, state: dict[str, Any], step: int, seen: int) -> None:
    """A step's model classifies exactly the classes seen through that step (a model copied
    from another step of the run has the right keys but another width)."""
    saved_step = state.get("step", step)
    if state["num_classes"] != seen or saved_step != step:
        raise UserError(
            f"{path} holds the model of another step ({state['num_classes']} classes, step "
            f"{saved_step}; step {step} has seen {seen}); delete {path.parent} to redo step "
            f"{step}, then rerun with --resume"
        )


def _restore(order: OrderRun, policy: DistilledBuffer, factory: ModelFactory) -> OrderStart:
    """The completed steps (decided by rank 0): memories back in ``policy``, their rows, and
    the last one's model; a fresh model when none is complete."""
    scenario = order.scenario
    done = agree(lambda: _completed_steps(order.order_dir, scenario.num_steps))
    if not done:
        return OrderStart(0, factory(len(scenario.steps[0]), 0), [])
    last = order.step_dir(done - 1) / "model.pt"
    state = agree(lambda: _load_model(last, done - 1))
    _check_step_model(last, state, done - 1, scenario.seen_classes(done - 1))
    rows: list[dict[str, Any]] = []
    for k in range(done):  # memories rebuilt only once the model is known to fit
        policy.add_classes(scenario.step_labels(k), k)
        rows.append(agree(lambda k=k: _read_json(order.step_dir(k) / "result.json")))
    model = factory(int(state["num_classes"]), 0)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError:
        raise UserError(
            f"{last} does not fit this run's model; delete {last.parent} to redo step "
            f"{done - 1}, then rerun with --resume"
        ) from None
    return OrderStart(done, model, rows)


def _strategy(
    order: OrderRun,
    start: OrderStart,
    policy: DistilledBuffer,
    factory: ModelFactory,
    *,
    device: torch.device,
    progress: Progress,
    log: LogOptions,
) -> tuple[DistilledReplay, list[Any]]:
    """The strategy that continues ``start``, and the loggers to close after it."""
    cfg, main = order.cfg, DistEnv.current().is_main
    optimizer = torch.optim.SGD(
        start.model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the other ranks' evaluators log nothing
        evaluator, active = make_evaluator(
            order.order_dir / "logs" / f"from-step{start.done}" if main else None,
            interactive=log.interactive and main,
            tensorboard=log.tensorboard,
            wandb=log.wandb if main else None,
            run_name=f"{order.order_dir.parent.name}-order{order.seed}",
            config=cfg.to_dict(),
        )
    strategy = DistilledReplay(
        model=start.model,
        optimizer=optimizer,
        storage_policy=policy,
        regime=cfg.regime,
        train_config=cfg.train_config(order.seed),
        model_factory=factory,
        train_mb_size=cfg.batch_size,
        train_epochs=cfg.epochs,
        eval_mb_size=cfg.eval_batch_size,
        device=device,
        evaluator=evaluator,
        progress=progress,
    )
    return strategy, active


def _run_step(
    order: OrderRun, strategy: DistilledReplay, policy: DistilledBuffer, k: int
) -> dict[str, Any]:
    """Train on step ``k`` (its memory is built first) and evaluate on the classes seen;
    rank 0 evaluates once and every rank gets the row."""
    bench = order.scenario.benchmark
    before = len(policy.steps)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strategy.train(bench.train_stream[k], eval_streams=[])
        t1 = time.perf_counter()
        # the model is the same on every rank: rank 0 evaluates, once
        results = strategy.eval(bench.test_stream[: k + 1]) if DistEnv.current().is_main else None
    results = broadcast_object(
        None
        if results is None
        else {key: float(v) for key, v in results.items() if isinstance(v, (int, float))}
    )
    t2 = time.perf_counter()
    memory_seconds = sum(m.seconds for m in policy.steps[before:])
    seconds = {"memory": memory_seconds, "train": t1 - t0 - memory_seconds, "eval": t2 - t1}
    return step_row(order.scenario, k, results, policy.accounting(), seconds)


def _save_step(step_dir: Path, model: torch.nn.Module, row: dict[str, Any]) -> None:
    """The step's model, then its row: ``result.json`` last marks the step complete."""
    atomic_torch_save(
        {
            "model": {n: t.detach().cpu() for n, t in model.state_dict().items()},
            "num_classes": int(model.classifier.out_features),
            "step": row["step"],
        },
        step_dir / "model.pt",
    )
    atomic_write_json(row, step_dir / "result.json")


def _order_metrics(
    order: OrderRun, rows: list[dict[str, Any]], policy: DistilledBuffer
) -> dict[str, Any]:
    metrics = summarize(rows)
    metrics.update(
        {
            "seed": order.seed,
            "scenario": order.scenario.to_dict(),
            "memory_steps": [
                {"step": m.step, "classes": m.classes, "path": str(m.path)} for m in policy.steps
            ],
        }
    )
    return metrics


def run_order(
    cfg: CLConfig,
    scenario: Scenario,
    order_dir: Path,
    seed: int,
    *,
    progress: Progress | None = None,
    log: LogOptions | None = None,
) -> dict[str, Any]:
    """Run (or finish) one class order; return its metrics (also saved as ``metrics.json``)."""
    order = OrderRun(cfg, scenario, order_dir, seed)
    main = DistEnv.current().is_main
    progress = progress or NullProgress()
    agree(lambda: _claim_order(order))
    device = resolve_device(cfg.device)
    factory = _model_factory(cfg, scenario, seed)
    policy = DistilledBuffer(
        cfg.memory_config(seed),
        info=scenario.info,
        source=scenario.train,
        workdir=order_dir,
        class_map=scenario.class_map,
        progress=progress,
    )
    start = _restore(order, policy, factory)
    strategy, active = _strategy(
        order, start, policy, factory, device=device, progress=progress, log=log or LogOptions()
    )
    rows = start.rows
    try:
        for k in range(start.done, scenario.num_steps):
            row = _run_step(order, strategy, policy, k)
            if main:
                _save_step(order.step_dir(k), strategy.model, row)
            rows.append(row)
    finally:
        close_loggers(active)
    metrics = _order_metrics(order, rows, policy)
    if main:
        atomic_write_json(metrics, order_dir / "metrics.json")
    return metrics


# -- a run: every class order ------------------------------------------------------------------
def _provenance() -> dict[str, Any]:
    import avalanche

    return {
        "torch": torch.__version__,
        "avalanche": getattr(avalanche, "__version__", "?"),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
    }


def execute_run(
    plan: RunPlan,
    *,
    progress: Progress | None = None,
    interactive: bool = False,
    tensorboard: bool = False,
    wandb: str | None = None,
    meter: CostMeter | None = None,
) -> dict[str, Any]:
    """Run every class order of ``plan``; writes the layout in the module docstring.
    ``results.json`` records the cost from ``meter`` (started by the caller, to include its
    planning and data loading; by default here)."""
    cfg, out = plan.cfg, plan.out
    meter = meter or CostMeter.start(resolve_device(cfg.device))
    main = DistEnv.current().is_main
    for text in plan.notes:
        notify(progress, text)
    if main and not (out / CONFIG_FILE).is_file():  # the write makes the folder
        atomic_write_json(
            {**run_record(cfg, plan.data_root), "provenance": _provenance()}, out / CONFIG_FILE
        )
    log = LogOptions(interactive=interactive, tensorboard=tensorboard, wandb=wandb)
    per_order = [
        run_order(cfg, scenario, out / f"order{seed}", seed, progress=progress, log=log)
        for seed, scenario in zip(cfg.order_seeds(), plan.scenarios, strict=True)
    ]
    name = plan.scenarios[0].name
    results = run_results(cfg, name, per_order) | {"cost": meter.finish()}  # collective
    if main:
        atomic_write_json(results, out / "results.json")
        plot_accuracy({cfg.memory: results}, out / "accuracy.png", title=run_title(name, cfg))
    return results


def run_cl(
    cfg: CLConfig,
    *,
    data_root: str | Path = "data",
    out: str | Path = "runs/cl",
    resume: bool = False,
    download: bool = False,
    progress: Progress | None = None,
    dataset_options: dict[str, Any] | None = None,
    interactive: bool = False,
    tensorboard: bool = False,
) -> dict[str, Any]:
    """:func:`prepare_run` then :func:`execute_run`."""
    meter = CostMeter.start(resolve_device(cfg.device))
    plan = prepare_run(
        cfg,
        data_root=data_root,
        out=out,
        resume=resume,
        download=download,
        dataset_options=dataset_options,
    )
    return execute_run(
        plan, progress=progress, interactive=interactive, tensorboard=tensorboard, meter=meter
    )


# -- compare -----------------------------------------------------------------------------------
def _plan_comparison(
    cfgs: list[CLConfig],
    top: dict[str, Any],
    out: Path,
    *,
    resume: bool,
    data_root: str | Path,
    download: bool,
    dataset_options: dict[str, Any] | None,
) -> list[RunPlan]:
    """Claim ``out`` for the comparison ``top`` and plan every run before the first starts."""
    state = agree(lambda: claim(out, "compare", top, resume))
    resume = resume or state.kind == "same"  # an identical earlier comparison continues
    return [
        prepare_run(
            c,
            data_root=data_root,
            out=out / c.memory,
            resume=resume and agree(lambda c=c: (out / c.memory / CONFIG_FILE).is_file()),
            download=download,
            dataset_options=dataset_options,
        )
        for c in cfgs
    ]


def compare(
    scenario: str,
    memories: list[str],
    *,
    preset: str = "paper",
    overrides: dict[str, Any] | None = None,
    data_root: str | Path = "data",
    out: str | Path = "runs/compare",
    resume: bool = False,
    download: bool = False,
    progress: Progress | None = None,
    dataset_options: dict[str, Any] | None = None,
    log: LogOptions | None = None,
) -> dict[str, Any]:
    """Run each memory method with the same stored budget, regime, model and class orders.

    Writes ``OUT/<method>/`` (a full run each), ``comparison.json``, ``comparison.md`` (table)
    and ``comparison.png`` (accuracy against number of classes). Every run is planned before
    the first one starts, so a bad input writes nothing.
    """
    if not memories:
        raise UserError("--memories is empty; give e.g. dream,idc,herding,random")
    if len(set(memories)) != len(memories):
        raise UserError("--memories names a method twice")
    out = Path(out)
    overrides = {k: v for k, v in (overrides or {}).items() if k != "memory"}
    cfgs = [resolve_cl_config(scenario, preset, memory=m, **overrides) for m in memories]
    top = run_folder_record(
        "compare",
        {"scenario": scenario, "memories": list(memories), "runs": [c.to_dict() for c in cfgs]},
        data_root=str(data_root),
    )
    plans = _plan_comparison(
        cfgs,
        top,
        out,
        resume=resume,
        data_root=data_root,
        download=download,
        dataset_options=dataset_options,
    )
    main = DistEnv.current().is_main
    if main:
        atomic_write_json(top, out / CONFIG_FILE)
    log = log or LogOptions()
    results = {
        plan.cfg.memory: execute_run(
            plan, progress=progress, tensorboard=log.tensorboard, wandb=log.wandb
        )
        for plan in plans
    }
    name = plans[0].scenarios[0].name
    record = comparison_record(name, memories, cfgs[0].ipc, results)
    if main:
        atomic_write_json(record, out / "comparison.json")
        costs = {m: r.get("cost") for m, r in results.items()}
        table = comparison_table(results) + "\n" + cost_table(costs)
        atomic_write(out / "comparison.md", lambda p: p.write_text(table))
        plot_accuracy(results, out / "comparison.png", title=comparison_title(name, cfgs[0]))
    return record
