"""``dream-cl run`` and ``dream-cl compare`` as library calls: plan, run, resume, report.

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
uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dream_cl.data import load_train_test
from dream_cl.distributed import DistEnv, agree, broadcast_object
from dream_cl.errors import UserError
from dream_cl.progress import NullProgress, Progress, notify
from dream_cl.runfolder import CONFIG_FILE, claim
from dream_cl.runfolder import record as run_folder_record
from dream_cl.scenarios.builder import Scenario, resolve_scenario_source, scenario_from_splits
from dream_cl.strategies.config import CLConfig, derive_seed, resolve_cl_config
from dream_cl.strategies.memory import DistilledBuffer
from dream_cl.strategies.strategy import DistilledReplay, close_loggers, make_evaluator
from dream_cl.utils import (
    atomic_torch_save,
    atomic_write,
    atomic_write_json,
    percent,
    resolve_device,
)

__all__ = [
    "RunPlan",
    "compare",
    "execute_run",
    "prepare_run",
    "run_cl",
    "summarize",
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
    loggers: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    """What :func:`prepare_run` decided about the folder (a resumed or restarted run)."""


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
    notes = agree(lambda: _check_out(cfg, out, resume, data_root))  # decided once, by rank 0
    options = {**options, **(dataset_options or {})}
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


def _model_factory(cfg: CLConfig, scenario: Scenario, seed: int):
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


def _completed_steps(order_dir: Path, num_steps: int) -> int:
    done = 0
    while done < num_steps:
        step = order_dir / f"step{done}"
        if not ((step / "result.json").is_file() and (step / "model.pt").is_file()):
            break
        done += 1
    return done


def _exp_key(j: int) -> str:
    return f"Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}"


STREAM_KEY = "Top1_Acc_Stream/eval_phase/test_stream"


def run_order(
    cfg: CLConfig,
    scenario: Scenario,
    order_dir: Path,
    seed: int,
    *,
    progress: Progress | None = None,
    loggers: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """Run (or finish) one class order; return its metrics (also saved as ``metrics.json``)."""
    env = DistEnv.current()
    main = env.is_main
    progress = progress or NullProgress()
    scenario_path = order_dir / "scenario.json"
    record = scenario.to_dict()

    def check_order() -> None:
        order_dir.mkdir(parents=True, exist_ok=True)
        if scenario_path.is_file() and _read_json(scenario_path) != json.loads(json.dumps(record)):
            raise UserError(f"{scenario_path} records another class order; use another --out")
        atomic_write_json(record, scenario_path)

    agree(check_order)
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
    done = agree(lambda: _completed_steps(order_dir, scenario.num_steps))
    rows: list[dict[str, Any]] = []
    if done:
        for k in range(done):
            policy.add_classes(scenario.step_labels(k), k)
            rows.append(agree(lambda k=k: _read_json(order_dir / f"step{k}" / "result.json")))
        last = order_dir / f"step{done - 1}" / "model.pt"
        state = agree(lambda: _load_model(last, done - 1))
        model = factory(int(state["num_classes"]), 0)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            raise UserError(
                f"{last} does not fit this run's model; delete {last.parent} to redo step "
                f"{done - 1}, then rerun with --resume"
            ) from None
    else:
        model = factory(len(scenario.steps[0]), 0)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    log = loggers or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the other ranks' evaluators log nothing
        evaluator, active = make_evaluator(
            order_dir / "logs" / f"from-step{done}" if main else None,
            interactive=log.get("interactive", False) and main,
            tensorboard=log.get("tensorboard", False),
        )
    strategy = DistilledReplay(
        model=model,
        optimizer=optimizer,
        storage_policy=policy,
        regime=cfg.regime,
        train_config=cfg.train_config(seed),
        model_factory=factory,
        train_mb_size=cfg.batch_size,
        train_epochs=cfg.epochs,
        eval_mb_size=cfg.eval_batch_size,
        device=device,
        evaluator=evaluator,
        progress=progress,
    )
    bench = scenario.benchmark
    try:
        for k in range(done, scenario.num_steps):
            before = len(policy.steps)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                strategy.train(bench.train_stream[k], eval_streams=[])
                t1 = time.perf_counter()
                # the model is the same on every rank: rank 0 evaluates, once
                results = strategy.eval(bench.test_stream[: k + 1]) if main else None
            results = broadcast_object(
                None
                if results is None
                else {key: float(v) for key, v in results.items() if isinstance(v, (int, float))}
            )
            t2 = time.perf_counter()
            memory_seconds = sum(m.seconds for m in policy.steps[before:])
            row = {
                "step": k,
                "classes": list(scenario.steps[k]),
                "num_classes_seen": scenario.seen_classes(k),
                "accuracy": float(results[STREAM_KEY]),
                "accuracy_by_experience": [float(results[_exp_key(j)]) for j in range(k + 1)],
                "memory": policy.accounting(),
                "seconds": {
                    "memory": memory_seconds,
                    "train": t1 - t0 - memory_seconds,
                    "eval": t2 - t1,
                },
            }
            step_dir = order_dir / f"step{k}"
            if main:
                atomic_torch_save(
                    {
                        "model": {
                            n: t.detach().cpu() for n, t in strategy.model.state_dict().items()
                        },
                        "num_classes": int(strategy.model.classifier.out_features),
                        "step": k,
                    },
                    step_dir / "model.pt",
                )
                atomic_write_json(row, step_dir / "result.json")
            rows.append(row)
    finally:
        close_loggers(active)
    metrics = summarize(rows)
    metrics.update(
        {
            "seed": seed,
            "scenario": scenario.to_dict(),
            "memory_steps": [
                {"step": m.step, "classes": m.classes, "path": str(m.path)} for m in policy.steps
            ],
        }
    )
    if main:
        atomic_write_json(metrics, order_dir / "metrics.json")
    return metrics


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


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's metrics from its per-step rows.

    ``accuracy_matrix[t][j]``: accuracy on experience j's test classes after step t (None
    before j is learned). ``forgetting`` follows Avalanche's ``functional.forgetting``:
    accuracy on j right after learning it minus accuracy now, averaged over the earlier
    experiences (0 after the first step).
    """
    from avalanche.evaluation.functional import forgetting

    steps = len(rows)
    matrix = [
        [r["accuracy_by_experience"][j] if j <= t else None for j in range(steps)]
        for t, r in enumerate(rows)
    ]
    seen = [float(r["accuracy"]) for r in rows]
    stream_forgetting: list[float] = []
    if steps:
        dense = np.array([[np.nan if v is None else v for v in row] for row in matrix])
        forget = forgetting(dense)
        stream_forgetting = [float(np.mean(forget[t, :t])) if t > 0 else 0.0 for t in range(steps)]
    return {
        "steps": steps,
        "num_classes": [int(r["num_classes_seen"]) for r in rows],
        "accuracy": seen,
        "accuracy_matrix": matrix,
        "average_incremental_accuracy": float(np.mean(seen)) if seen else math.nan,
        "final_accuracy": seen[-1] if seen else math.nan,
        "forgetting_by_step": stream_forgetting,
        "forgetting": stream_forgetting[-1] if stream_forgetting else math.nan,
        "memory": [r["memory"] for r in rows],
        "seconds": [r["seconds"] for r in rows],
    }


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def aggregate(per_order: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and (population) std over class orders of every summary number."""
    steps = min(m["steps"] for m in per_order)
    return {
        "num_classes": per_order[0]["num_classes"][:steps],
        "accuracy": [_mean_std([m["accuracy"][k] for m in per_order]) for k in range(steps)],
        "average_incremental_accuracy": _mean_std(
            [m["average_incremental_accuracy"] for m in per_order]
        ),
        "final_accuracy": _mean_std([m["final_accuracy"] for m in per_order]),
        "forgetting": _mean_std([m["forgetting"] for m in per_order]),
        "memory": per_order[0]["memory"][-1] if per_order[0]["memory"] else {},
    }


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
) -> dict[str, Any]:
    """Run every class order of ``plan``; writes the layout in the module docstring."""
    cfg, out = plan.cfg, plan.out
    main = DistEnv.current().is_main
    for text in plan.notes:
        notify(progress, text)
    if main and not (out / CONFIG_FILE).is_file():  # the write makes the folder
        atomic_write_json(
            {**run_record(cfg, plan.data_root), "provenance": _provenance()}, out / CONFIG_FILE
        )
    per_order = []
    for seed, scenario in zip(cfg.order_seeds(), plan.scenarios, strict=True):
        per_order.append(
            run_order(
                cfg,
                scenario,
                out / f"order{seed}",
                seed,
                progress=progress,
                loggers={"interactive": interactive, "tensorboard": tensorboard},
            )
        )
    results = {
        "config": cfg.to_dict(),
        "scenario": plan.scenarios[0].name,
        "orders": [
            {
                "seed": m["seed"],
                "class_order": m["scenario"]["class_order"],
                **{k: m[k] for k in _SUMMARY_KEYS},
            }
            for m in per_order
        ],
        "summary": aggregate(per_order),
    }
    if main:
        atomic_write_json(results, out / "results.json")
        plot_accuracy({cfg.memory: results}, out / "accuracy.png", title=_title(cfg, plan))
    return results


_SUMMARY_KEYS = (
    "num_classes",
    "accuracy",
    "accuracy_matrix",
    "average_incremental_accuracy",
    "final_accuracy",
    "forgetting",
)


def _title(cfg: CLConfig, plan: RunPlan) -> str:
    return f"{plan.scenarios[0].name}: {cfg.regime}, {cfg.model}, ipc {cfg.ipc}"


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
    plan = prepare_run(
        cfg,
        data_root=data_root,
        out=out,
        resume=resume,
        download=download,
        dataset_options=dataset_options,
    )
    return execute_run(plan, progress=progress, interactive=interactive, tensorboard=tensorboard)


# -- compare -----------------------------------------------------------------------------------
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
    state = agree(lambda: claim(out, "compare", top, resume))
    resume = resume or state.kind == "same"  # an identical earlier comparison continues
    plans = [
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
    if DistEnv.current().is_main:
        atomic_write_json(top, out / CONFIG_FILE)
    results = {}
    for plan in plans:
        results[plan.cfg.memory] = execute_run(plan, progress=progress)
    table = comparison_table(results)
    record = {
        "scenario": plans[0].scenarios[0].name,
        "memories": memories,
        "budget": {
            "ipc": cfgs[0].ipc,
            "stored_images_final": _final(results, "stored_images"),
            "decoded_images_final": _final(results, "decoded_images"),
        },
        "results": {m: r["summary"] for m, r in results.items()},
        "configs": {m: r["config"] for m, r in results.items()},
    }
    if DistEnv.current().is_main:
        atomic_write_json(record, out / "comparison.json")
        atomic_write(out / "comparison.md", lambda p: p.write_text(table))
        cfg = cfgs[0]
        name = plans[0].scenarios[0].name
        title = f"{name}: {cfg.regime}, {cfg.model}, ipc {cfg.ipc} (same budget)"
        plot_accuracy(results, out / "comparison.png", title=title)
    return record


def _final(results: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    return {m: r["summary"]["memory"].get(key) for m, r in results.items()}


def comparison_table(results: dict[str, dict[str, Any]]) -> str:
    """A Markdown table: per method, stored/decoded images and accuracy (%) after each step."""
    first = next(iter(results.values()))["summary"]
    classes = first["num_classes"]
    head = (
        "| memory | stored | decoded | "
        + " | ".join(f"{c} cls" for c in classes)
        + " | avg inc | final | forgetting |"
    )
    rule = "|" + "---|" * (6 + len(classes))
    lines = [head, rule]
    for method, r in results.items():
        s = r["summary"]

        def pct(d: dict[str, float]) -> str:
            return percent(d["mean"]) + (f" ± {percent(d['std'])}" if d["n"] > 1 else "")

        mem = s["memory"]
        cells = [pct(a) for a in s["accuracy"]]
        lines.append(
            f"| {method} | {mem.get('stored_images')} | {mem.get('decoded_images')} | "
            + " | ".join(cells)
            + f" | {pct(s['average_incremental_accuracy'])} | {pct(s['final_accuracy'])} | "
            f"{pct(s['forgetting'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_accuracy(results: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Accuracy on all seen classes against the number of classes (the paper's Fig. 4d)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0), dpi=120)
    for method, r in results.items():
        s = r["summary"]
        x = s["num_classes"]
        mean = [100 * a["mean"] for a in s["accuracy"]]
        std = [100 * a["std"] for a in s["accuracy"]]
        ax.errorbar(x, mean, yerr=std if any(std) else None, marker="o", capsize=3, label=method)
    first = next(iter(results.values()))["summary"]["num_classes"]
    ax.set_xticks(first)
    ax.set_xlabel("number of classes")
    ax.set_ylabel("test accuracy on seen classes (%)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
    return path


def replace_config(cfg: CLConfig, **changes: Any) -> CLConfig:
    """``dataclasses.replace`` that validates the result."""
    new = dataclasses.replace(cfg, **changes)
    new.validate()
    return new
