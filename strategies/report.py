"""How a continual-learning run or comparison is shown: text lines, Markdown table, plot.

:func:`summary_lines` and :func:`comparison_lines` are what ``dream-cl run`` and
``dream-cl compare`` print; :func:`comparison_table` is ``comparison.md``;
:func:`plot_accuracy` draws ``accuracy.png`` / ``comparison.png``. Everything reads the
dictionaries of :mod:`dream_cl.strategies.metrics` and changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dream_cl.cost import cost_line, device_time, duration
from dream_cl.strategies.config import CLConfig
from dream_cl.utils import atomic_write, percent

__all__ = [
    "comparison_lines",
    "comparison_table",
    "comparison_title",
    "cost_table",
    "plot_accuracy",
    "run_title",
    "summary_lines",
]


def run_title(scenario_name: str, cfg: CLConfig) -> str:
    """The title of a run's accuracy plot."""
    return f"{scenario_name}: {cfg.regime}, {cfg.model}, ipc {cfg.ipc}"


def comparison_title(scenario_name: str, cfg: CLConfig) -> str:
    """The title of a comparison's plot (``cfg``: any of its runs; they share the budget)."""
    return f"{run_title(scenario_name, cfg)} (same budget)"


def summary_lines(results: dict[str, Any], out: Path) -> list[str]:
    """What ``dream-cl run`` prints about a finished run (``results.json``'s content) in
    ``out``: the setting, accuracy after each step, the summary numbers and the files."""
    cfg, summary = results["config"], results["summary"]
    mem = summary["memory"]
    lines = [
        f"{results['scenario']}: {cfg['memory']} memory, ipc {cfg['ipc']} "
        f"({mem.get('stored_images')} stored images, {mem.get('decoded_images')} decoded), "
        f"{cfg['regime']}, {cfg['model']}, {len(results['orders'])} order(s)",
        "  classes  accuracy on seen classes (%)",
    ]
    for n, acc in zip(summary["num_classes"], summary["accuracy"], strict=True):
        spread = f" +- {100 * acc['std']:.2f}" if acc["n"] > 1 else ""
        lines.append(f"  {n:>7}  {100 * acc['mean']:.2f}{spread}")
    aia = summary["average_incremental_accuracy"]["mean"]
    lines.append(
        f"average incremental {100 * aia:.2f}, final "
        f"{100 * summary['final_accuracy']['mean']:.2f}, forgetting "
        f"{percent(summary['forgetting']['mean'])}"
    )
    if results.get("cost"):
        lines.append(cost_line(results["cost"]))
    first = results["orders"][0]["seed"]
    lines.append(
        f"results: {out / 'results.json'}  plot: {out / 'accuracy.png'}  "
        f"memories: {out / f'order{first}'}/step*/ (dream-cl show)"
    )
    return lines


def comparison_lines(record: dict[str, Any], out: Path) -> list[str]:
    """What ``dream-cl compare`` prints about a finished comparison (``comparison.json``'s
    content) in ``out``: a heading, the table of ``comparison.md`` and the files."""
    table = comparison_table({m: {"summary": s} for m, s in record["results"].items()})
    return [
        f"{record['scenario']}: accuracy on seen classes (%), same stored budget",
        *table.rstrip().split("\n"),
        "cost per memory (this call; distillation, training and evaluation)",
        *cost_table(record.get("costs", {})).rstrip().split("\n"),
        f"table: {out / 'comparison.md'}  plot: {out / 'comparison.png'}",
    ]


def cost_table(costs: dict[str, dict[str, Any] | None]) -> str:
    """A Markdown table: per memory, wall time, device time and peak memory of its run."""
    lines = [
        "| memory | wall | device time | peak resident | peak CUDA |",
        "|---|---|---|---|---|",
    ]
    for method, c in costs.items():
        if not c:
            lines.append(f"| {method} | - | - | - | - |")
            continue
        cuda = f"{c['cuda_peak_mib'] / 1024:.2f} GiB" if c.get("cuda_peak_mib") else "-"
        lines.append(
            f"| {method} | {duration(c['wall_seconds'])} | {device_time(c, 'h')} | "
            f"{c['peak_rss_mib'] / 1024:.2f} GiB | {cuda} |"
        )
    return "\n".join(lines) + "\n"


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
