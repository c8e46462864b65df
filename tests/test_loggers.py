"""Experiment loggers (#31 item 4): distill logs every iteration to CSV, and on request to
TensorBoard and Weights & Biases; run and compare log through Avalanche's loggers plus
TensorBoard and W&B. W&B runs offline (nothing needs the network)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dream_cl.cli import app


@pytest.fixture
def offline(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_a_distillation_logs_each_iteration_once_even_when_resumed(tmp_path: Path) -> None:
    from fakedata import tiny_digits, tiny_distill_config

    from dream_cl.distill.engine import distill

    cfg, train, out = tiny_distill_config("idc"), tiny_digits(3, 30), tmp_path / "run"
    cfg.iterations, cfg.checkpoint_every = 4, 2
    distill(cfg, train, out=out, stop_after=3)  # a checkpoint at 2 and at the stop, 3
    (out / "checkpoint.pt").unlink()  # as if killed after iteration 3 was logged ...
    first = _rows(out / "iterations.csv")
    assert [r["iteration"] for r in first] == ["1", "2", "3"]
    distill(cfg, train, out=out, stop_after=1)  # ... it starts over from nothing
    distill(cfg, train, out=out, resume=True)
    rows = _rows(out / "iterations.csv")
    assert [r["iteration"] for r in rows] == ["1", "2", "3", "4"]
    assert set(rows[0]) >= {"loss", "eval_accuracy", "seconds_matching", "seconds_clustering"}
    assert all(float(r["loss"]) > 0 and float(r["seconds_matching"]) > 0 for r in rows)


def test_distill_logs_to_tensorboard_and_wandb_offline(tmp_path: Path, offline) -> None:
    out = tmp_path / "d"
    args = ["distill", "digits", "--preset", "cpu", "--ipc", "1", "--iterations", "2",
            "--device", "cpu", "--quiet", "--tensorboard", "--wandb", "dream-cl-tests"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(_rows(out / "iterations.csv")) == 2
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    (run,) = (out / "wandb").glob("offline-run-*")
    assert list(run.glob("*.wandb"))


@pytest.mark.slow
def test_run_and_compare_log_to_csv_tensorboard_and_wandb_offline(tmp_path: Path, offline) -> None:
    runner = CliRunner()
    common = ["digits", "--steps", "2", "--ipc", "1", "--epochs", "1", "--model", "convnet",
              "--device", "cpu", "--quiet", "--tensorboard",
              "--wandb", "dream-cl-tests"]  # fmt: skip
    run = ["run", *common, "--distill-iterations", "1", "--out", str(tmp_path / "r")]
    result = runner.invoke(app, run)
    assert result.exit_code == 0, result.output
    logs = tmp_path / "r" / "order0" / "logs" / "from-step0"
    assert (logs / "training_results.csv").is_file() and (logs / "eval_results.csv").is_file()
    assert list((logs / "tensorboard").glob("events.out.tfevents.*"))
    assert list((logs / "wandb").glob("offline-run-*/*.wandb"))
    args = ["compare", *common, "--memories", "random,herding", "--out", str(tmp_path / "c")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for memory in ("random", "herding"):
        logs = tmp_path / "c" / memory / "order0" / "logs" / "from-step0"
        assert list((logs / "tensorboard").glob("events.out.tfevents.*")), memory
        assert list((logs / "wandb").glob("offline-run-*/*.wandb")), memory
