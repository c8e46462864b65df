"""What ``dream-cl run`` / ``compare`` print, from their results alone (no training)."""

from __future__ import annotations

from pathlib import Path

from dream_cl.strategies.metrics import aggregate, comparison_record, summarize
from dream_cl.strategies.report import comparison_lines, comparison_table, summary_lines


def _rows(accs: list[list[float]]) -> list[dict]:
    return [
        {
            "num_classes_seen": 2 * (t + 1),
            "accuracy": sum(a) / len(a),
            "accuracy_by_experience": a,
            "memory": {"stored_images": 4 * (t + 1), "decoded_images": 16 * (t + 1)},
            "seconds": {"memory": 0.0, "train": 0.0, "eval": 0.0},
        }
        for t, a in enumerate(accs)
    ]


def _results(per_order: list[dict], memory: str = "dream") -> dict:
    cfg = {"memory": memory, "ipc": 2, "regime": "finetune-kd", "model": "convnet"}
    orders = [{"seed": s, **m} for s, m in enumerate(per_order)]
    return {
        "config": cfg,
        "scenario": "digits-2step",
        "orders": orders,
        "summary": aggregate(orders),
    }


def test_summary_lines_one_order_and_the_spread_over_two() -> None:
    one = summarize(_rows([[0.9], [0.5, 0.7]]))
    out = Path("runs") / "x"
    assert summary_lines(_results([one]), out) == [
        "digits-2step: dream memory, ipc 2 (8 stored images, 32 decoded), finetune-kd, "
        "convnet, 1 order(s)",
        "  classes  accuracy on seen classes (%)",
        "        2  90.00",
        "        4  60.00",
        "average incremental 75.00, final 60.00, forgetting 40.00",
        f"results: {out / 'results.json'}  plot: {out / 'accuracy.png'}  "
        f"memories: {out / 'order0'}/step*/ (dream-cl show)",
    ]
    two = summarize(_rows([[0.7], [0.5, 0.5]]))
    lines = summary_lines(_results([one, two]), out)
    assert lines[2:4] == ["        2  80.00 +- 10.00", "        4  55.00 +- 5.00"]


def test_comparison_lines_are_the_heading_the_table_and_the_files() -> None:
    a = _results([summarize(_rows([[0.9], [0.5, 0.7]]))], "dream")
    b = _results([summarize(_rows([[0.8], [0.4, 0.6]]))], "random")
    a["cost"] = {"wall_seconds": 65.0, "cpu_core_hours": 0.5, "gpu_hours": None,
                 "peak_rss_mib": 2048.0, "cuda_peak_mib": None}  # fmt: skip
    results = {"dream": a, "random": b}
    record = comparison_record("digits-2step", ["dream", "random"], 2, results)
    out = Path("cmp")
    lines = comparison_lines(record, out)
    assert lines[0] == "digits-2step: accuracy on seen classes (%), same stored budget"
    assert lines[1:5] == comparison_table(results).rstrip().split("\n")
    assert lines[3].startswith("| dream | 8 | 32 | 90.00 | 60.00 |")
    # the cost of each memory's run beside it (#31 item 2); a run without one says so
    assert lines[5].startswith("cost per memory")
    assert lines[8] == "| dream | 1m05s | 0.5 CPU core-h | 2.00 GiB | - |"
    assert lines[9] == "| random | - | - | - | - |"
    assert lines[-1] == f"table: {out / 'comparison.md'}  plot: {out / 'comparison.png'}"
    assert record["budget"]["stored_images_final"] == {"dream": 8, "random": 8}
