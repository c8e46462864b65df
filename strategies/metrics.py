"""A continual-learning run's numbers: per-step rows, per-order metrics, their mean over orders.

A *row* is one step's evaluation (``OUT/order{s}/step{k}/result.json``); :func:`summarize`
turns an order's rows into its metrics (accuracy matrix, average incremental accuracy, final
accuracy, forgetting); :func:`aggregate` takes mean and std over class orders;
:func:`run_results` and :func:`comparison_record` are ``results.json`` and
``comparison.json``. Pure functions of their arguments: nothing here trains or writes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dream_cl.scenarios.builder import Scenario
from dream_cl.strategies.config import CLConfig

__all__ = [
    "STREAM_KEY",
    "SUMMARY_KEYS",
    "aggregate",
    "comparison_record",
    "exp_key",
    "run_results",
    "step_row",
    "summarize",
]

# Avalanche's accuracy on all experiences evaluated (the classes seen so far)
STREAM_KEY = "Top1_Acc_Stream/eval_phase/test_stream"

# the per-order numbers ``results.json`` keeps (in this order)
SUMMARY_KEYS = (
    "num_classes",
    "accuracy",
    "accuracy_matrix",
    "average_incremental_accuracy",
    "final_accuracy",
    "forgetting",
)


def exp_key(j: int) -> str:
    """Avalanche's accuracy on experience ``j`` of the test stream."""
    return f"Top1_Acc_Exp/eval_phase/test_stream/Exp{j:03d}"


def step_row(
    scenario: Scenario,
    k: int,
    results: dict[str, float],
    memory: dict[str, Any],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """Step ``k``'s row from Avalanche's evaluation ``results`` after it."""
    return {
        "step": k,
        "classes": list(scenario.steps[k]),
        "num_classes_seen": scenario.seen_classes(k),
        "accuracy": float(results[STREAM_KEY]),
        "accuracy_by_experience": [float(results[exp_key(j)]) for j in range(k + 1)],
        "memory": memory,
        "seconds": seconds,
    }


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


def run_results(
    cfg: CLConfig, scenario_name: str, per_order: list[dict[str, Any]]
) -> dict[str, Any]:
    """``results.json``: the configuration, each order's summary numbers and their mean."""
    return {
        "config": cfg.to_dict(),
        "scenario": scenario_name,
        "orders": [
            {
                "seed": m["seed"],
                "class_order": m["scenario"]["class_order"],
                **{k: m[k] for k in SUMMARY_KEYS},
            }
            for m in per_order
        ],
        "summary": aggregate(per_order),
    }


def _final(results: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    return {m: r["summary"]["memory"].get(key) for m, r in results.items()}


def comparison_record(
    scenario_name: str,
    memories: list[str],
    ipc: int,
    results: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """``comparison.json``: each memory's summary and configuration, and the common budget."""
    return {
        "scenario": scenario_name,
        "memories": memories,
        "budget": {
            "ipc": ipc,
            "stored_images_final": _final(results, "stored_images"),
            "decoded_images_final": _final(results, "decoded_images"),
        },
        "results": {m: r["summary"] for m, r in results.items()},
        "costs": {m: r.get("cost") for m, r in results.items()},
        "configs": {m: r["config"] for m, r in results.items()},
    }
