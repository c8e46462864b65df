"""Every command records what it cost in its result JSON and says it in its summary
(#31 item 2): wall time, device time, peak memory, device and CPU model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dream_cl.cli import app
from dream_cl.cost import CostMeter, combine_costs, cost_line

KEYS = {"wall_seconds", "cpu_core_hours", "gpu_hours", "peak_rss_mib", "cuda_peak_mib",
        "processes", "device", "cpu_model"}  # fmt: skip


def test_ranks_add_up_device_time_and_keep_the_largest_peaks() -> None:
    a = CostMeter.start("cpu").local()
    sum(i * i for i in range(200_000))  # some CPU time
    b = CostMeter.start("cpu").local() | {"wall_seconds": 99.0, "peak_rss_mib": 1.0}
    both = combine_costs([a, b])
    assert set(both) == KEYS and both["processes"] == 2
    assert both["wall_seconds"] == 99.0 and both["peak_rss_mib"] == a["peak_rss_mib"]
    assert both["cpu_core_hours"] == pytest.approx(a["cpu_core_hours"] + b["cpu_core_hours"])
    assert both["gpu_hours"] is None and both["cuda_peak_mib"] is None
    line = cost_line(both)
    assert line.startswith("cost: 1m39s wall, ") and "CPU core-hours" in line
    assert "2 processes" in line and both["cpu_model"] in line


def _check(cost: dict, where: str) -> None:
    assert set(cost) == KEYS, where
    assert cost["wall_seconds"] > 0 and cost["cpu_core_hours"] > 0, where
    assert cost["peak_rss_mib"] > 50 and cost["device"].startswith("cpu"), where
    assert cost["cpu_model"] and cost["processes"] == 1, where


@pytest.mark.slow
def test_every_command_records_its_cost_and_says_it(tmp_path: Path) -> None:
    runner = CliRunner()

    def ok(*args: object) -> str:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, result.output
        assert "cost: " in result.output and " wall, " in result.output, result.output
        return result.output

    quick = ("--device", "cpu", "--quiet")
    ok("distill", "digits", "--preset", "cpu", "--ipc", "1", "--iterations", "2", *quick,
       "--out", tmp_path / "d")  # fmt: skip
    _check(json.loads((tmp_path / "d" / "metrics.json").read_text())["cost"], "distill")
    ok("coreset", "digits", "--ipc", "1", "--device", "cpu", "--out", tmp_path / "c")
    _check(json.loads((tmp_path / "c" / "meta.json").read_text())["meta"]["cost"], "coreset")
    ok("evaluate", tmp_path / "c", "--epochs", "1", "--repeats", "1", *quick)
    _check(json.loads((tmp_path / "c" / "eval_convnet.json").read_text())["cost"], "evaluate")
    ok("run", "digits", "--steps", "2", "--ipc", "1", "--epochs", "1", "--model", "convnet",
       "--distill-iterations", "1", *quick, "--out", tmp_path / "r")  # fmt: skip
    _check(json.loads((tmp_path / "r" / "results.json").read_text())["cost"], "run")


@pytest.mark.slow
def test_evaluate_baselines_use_the_same_recipe_and_seeds_and_report_the_gaps(
    tmp_path: Path,
) -> None:
    """#31 item 3: a random real subset of the same storage and the set without its
    augmentation, in the same call; the set's own accuracies are those of a plain call."""
    runner = CliRunner()
    folder = tmp_path / "set"
    args = ("distill", "digits", "--preset", "cpu", "--ipc", "2", "--iterations", "2", "--quiet")
    assert runner.invoke(app, [*args, "--out", str(folder)]).exit_code == 0
    quick = ["--epochs", "3", "--repeats", "2", "--quiet"]
    plain = runner.invoke(app, ["evaluate", str(folder), *quick, "--out", str(tmp_path / "a.json")])
    assert plain.exit_code == 0, plain.output
    both = runner.invoke(
        app, ["evaluate", str(folder), *quick, "--baselines", "--out", str(tmp_path / "b.json")]
    )
    assert both.exit_code == 0, both.output
    assert "random real images, same storage (20 stored)" in both.output
    assert "without augmentation" in both.output
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["accuracies"] == a["accuracies"] and "baselines" not in a
    scores = b["baselines"]
    rand, no_aug = scores["random_real"], scores["no_augmentation"]
    assert rand["stored_images"] == 20 and len(rand["accuracies"]) == 2
    assert rand["config"]["epochs"] == no_aug["config"]["epochs"] == 3  # the same recipe
    assert no_aug["config"]["cutmix_p"] == 0.0 and no_aug["config"]["dsa_strategy"] == "none"
    assert b["config"]["cutmix_p"] > 0  # the set's recipe augments
    assert scores["gain_over_random_real"] == pytest.approx(b["mean"] - rand["mean"])
    assert scores["gain_from_augmentation"] == pytest.approx(b["mean"] - no_aug["mean"])
