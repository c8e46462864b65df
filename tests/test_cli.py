"""The command line: happy paths on embedded data, and one-line errors that write nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dream_cl.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_datasets_lists_registry(tmp_path: Path) -> None:
    result = invoke("datasets", "--data-root", tmp_path)
    assert result.exit_code == 0
    assert "digits" in result.output and "cifar100" in result.output
    digits_line = next(line for line in result.output.splitlines() if "digits" in line)
    assert "found" in digits_line
    cifar_line = next(line for line in result.output.splitlines() if " cifar10 " in line)
    assert "missing" in cifar_line


def test_coreset_evaluate_show_roundtrip(tmp_path: Path) -> None:
    out = tmp_path / "herding"
    result = invoke(
        "coreset",
        "digits",
        "--method",
        "herding",
        "--ipc",
        "3",
        "--out",
        out,
        "--device",
        "cpu",
        "--feature-model",
        "convnet",
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["method"] == "herding"
    result = invoke(
        "evaluate", out, "--epochs", "2", "--repeats", "2", "--device", "cpu", "--quiet"
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "eval_convnet.json").read_text())
    assert len(record["accuracies"]) == 2
    assert all(0.0 <= a <= 1.0 for a in record["accuracies"])
    result = invoke("show", out)
    assert result.exit_code == 0, result.output
    assert (out / "grid.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("coreset", "nosuchset", "--ipc", "1"), ("unknown dataset", "digits")),
        (("coreset", "cifar10", "--ipc", "1"), ("cifar-10-batches-py",)),
        (("coreset", "digits", "--ipc", "1000"), ("--ipc",)),
        (("coreset", "digits", "--method", "magic"), ("unknown coreset method",)),
        (("coreset", "digits", "--feature-model", "vgg"), ("unknown model",)),
        (("distill", "digits", "--framework", "mtt"), ("unknown framework",)),
        (("distill", "digits", "--ipc", "1000", "--preset", "cpu"), ("--ipc",)),
        (("distill", "nosuchset"), ("unknown dataset",)),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args, needles) -> None:
    out = tmp_path / "out"
    result = invoke(*args, "--out", out, "--data-root", tmp_path / "data", "--device", "cpu")
    assert_one_line_error(result, *needles)
    assert not out.exists()


def test_evaluate_bad_inputs(tmp_path: Path) -> None:
    assert_one_line_error(invoke("evaluate", tmp_path / "missing"), "missing")
    out = tmp_path / "set"
    assert (
        invoke("coreset", "digits", "--method", "random", "--ipc", "1", "--out", out).exit_code == 0
    )
    assert_one_line_error(invoke("evaluate", out, "--model", "vgg"), "unknown model")
    (out / "images.pt").write_bytes((out / "images.pt").read_bytes()[:100])
    assert_one_line_error(invoke("evaluate", out, "--epochs", "1"), "images.pt")


@pytest.mark.slow
def test_console_script_exit_code(tmp_path: Path) -> None:
    """The installed entry point behaves the same as the app under CliRunner."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dream_cl.cli import main; main()",
            "coreset",
            "nosuchset",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: unknown dataset")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_distill_cpu_preset_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "dream"
    result = invoke(
        "distill",
        "digits",
        "--preset",
        "cpu",
        "--ipc",
        "2",
        "--iterations",
        "2",
        "--eval-every",
        "2",
        "--eval-epochs",
        "2",
        "--out",
        out,
        "--quiet",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    for name in ("images.pt", "meta.json", "grid.png", "metrics.json", "config.json"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "dream-idc"
    assert len(metrics["losses"]) == 2
    assert [e["iteration"] for e in metrics["evals"]] == [0, 2]
    # running into the same folder again without --resume is refused
    again = invoke(
        "distill",
        "digits",
        "--preset",
        "cpu",
        "--ipc",
        "2",
        "--iterations",
        "2",
        "--out",
        out,
        "--quiet",
        "--device",
        "cpu",
    )
    assert_one_line_error(again, "--resume")
