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
