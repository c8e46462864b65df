"""Every setting reachable from the command line through one mechanism (``--set``), and a
run repeated from its folder's ``config.json``."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dream_cl.cli import app
from dream_cl.distill.config import DistillConfig
from dream_cl.errors import UserError
from dream_cl.evaluate import EvalConfig
from dream_cl.settings import field_types, parse_settings, parse_value
from dream_cl.strategies import CLConfig

runner = CliRunner()


def _as_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


@pytest.mark.parametrize("cls", [DistillConfig, CLConfig, EvalConfig])
def test_every_field_of_each_configuration_is_settable_from_text(cls: type) -> None:
    defaults = cls(dataset="digits") if cls is DistillConfig else cls()
    for name, hint in field_types(cls).items():
        value = getattr(defaults, name)
        assert parse_value(_as_text(value), hint) == value, name
    items = [f"{f.name}={_as_text(getattr(defaults, f.name))}" for f in dataclasses.fields(cls)]
    assert set(parse_settings(cls, items)) == {f.name for f in dataclasses.fields(cls)}


def test_values_are_typed_and_dashes_read_as_underscores() -> None:
    got = parse_settings(
        DistillConfig,
        ["n-data=512", "lr_img=0.5", "compile=yes", "candidates=none", "metric=cos"],
    )
    assert got == {
        "n_data": 512,
        "lr_img": 0.5,
        "compile": True,
        "candidates": None,
        "metric": "cos",
    }
    assert parse_settings(CLConfig, ["class_order=3,1,2", 'model_options={"branch": "cifar"}']) == {
        "class_order": (3, 1, 2),
        "model_options": {"branch": "cifar"},
    }


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("bogus=1", ["'bogus=1'", "n_data"]),
        ("n_data", ["KEY=VALUE"]),
        ("n_data=lots", ["n_data takes an integer"]),
        ("lr_img=nan", ["lr_img takes a finite number"]),
        ("lr_img=inf", ["finite"]),
        ("compile=maybe", ["yes/no"]),
        ("ipc=none", ["integer"]),
    ],
)
def test_bad_key_or_value_is_one_line(item: str, needles: list[str]) -> None:
    with pytest.raises(UserError) as err:
        parse_settings(DistillConfig, [item])
    line = str(err.value)
    assert "\n" not in line
    for needle in needles:
        assert needle in line, line


def test_distill_help_names_the_settable_keys() -> None:
    result = runner.invoke(app, ["distill", "--help"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for key in ("n_data", "batch_real", "lr_net", "depth", "norm", "model"):
        assert key in text, key


def _distill(tmp_path: Path, *args: str):
    """``dream-cl distill ARGS``; each argument a new string, as a shell's argv is (the
    checkpoint's pickle refers back to a string it has already written only when the two
    places hold the same object)."""
    argv = ["distill", *args, "--quiet", "--device", "cpu", "--data-root", str(tmp_path / "none")]
    return runner.invoke(app, [a.encode().decode() for a in argv])


def test_distill_set_reaches_fields_without_a_flag(tmp_path: Path) -> None:
    out = tmp_path / "set"
    common = ["digits", "--preset", "cpu", "--ipc", "1", "--iterations", "1"]
    result = _distill(
        tmp_path, *common, "--set", "n_data=64", "--set", "lr_net=0.02", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["n_data"] == 64 and saved["lr_net"] == 0.02


def test_distill_bad_set_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bad"
    result = _distill(tmp_path, "digits", "--set", "n_dta=5", "--out", str(out))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --set 'n_dta=5'"), result.output
    assert not out.exists()


def test_distill_repeated_from_config_writes_the_same_bytes(tmp_path: Path) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    args = ["digits", "--preset", "cpu", "--ipc", "1", "--iterations", "2", "--set", "n_data=64"]
    assert _distill(tmp_path, *args, "--out", str(first)).exit_code == 0
    result = _distill(tmp_path, "--config", str(first / "config.json"), "--out", str(again))
    assert result.exit_code == 0, result.output
    for name in ("images.pt", "checkpoint.pt", "config.json"):
        assert (first / name).read_bytes() == (again / name).read_bytes(), name


def test_config_of_another_command_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"command": "coreset", "config": {}}))
    result = _distill(tmp_path, "--config", str(tmp_path), "--out", str(tmp_path / "x"))
    assert result.exit_code == 1 and "does not record a dream-cl distill run" in result.output


def test_run_request_from_config_repeats_the_configuration(tmp_path: Path) -> None:
    from dream_cl.jobs.continual import ContinualRequest, request_from_config
    from dream_cl.strategies.experiment import run_record

    request = ContinualRequest(
        overrides={"ipc": 3, "epochs": 2, "distill_overrides": {"iterations": 1}, "seed": 4}
    )
    cfg = request.config()
    (tmp_path / "config.json").write_text(json.dumps(run_record(cfg, "somewhere")))
    again = request_from_config(tmp_path / "config.json")
    assert again.config() == cfg and again.data_root == Path("somewhere")
    changed = request_from_config(tmp_path, overrides={"epochs": 5}).config()
    assert changed == dataclasses.replace(cfg, epochs=5)


def test_run_and_compare_share_one_declaration_of_their_options() -> None:
    from dream_cl.commands.continual import _SHARED, compare, run

    for command in (run, compare):
        names = list(inspect.signature(command).parameters)
        assert names[: len(_SHARED)] == list(_SHARED)


@pytest.mark.slow
def test_run_repeated_from_config_writes_the_same_bytes(tmp_path: Path) -> None:
    import subprocess
    import sys

    def dream_cl(*args: str) -> None:
        cmd = [sys.executable, "-m", "dream_cl.cli", "run", *args, "--quiet"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr

    first, again = tmp_path / "first", tmp_path / "again"
    dream_cl(
        "digits",
        "--steps",
        "2",
        "--ipc",
        "1",
        "--epochs",
        "1",
        "--distill-iterations",
        "1",
        "--set",
        "kd_temperature=3",
        "--out",
        str(first),
    )
    dream_cl("--config", str(first), "--out", str(again))
    made = sorted(p.relative_to(first) for p in first.rglob("*.pt"))
    assert len(made) >= 4
    for rel in made:
        assert (first / rel).read_bytes() == (again / rel).read_bytes(), rel
    saved = json.loads((again / "config.json").read_text())["config"]
    assert saved["kd_temperature"] == 3.0


def _request(**options: object):
    from dream_cl.commands.continual import continual_request

    return continual_request({"resume": False, "download": False, **options}, None)


def test_run_set_chooses_the_run_as_its_flags_do() -> None:
    by_set = _request(settings=["scenario=digits", "steps=2", "preset=cpu"])
    by_flag = _request(scenario="digits", steps=2, preset="cpu")
    assert by_set == by_flag and by_set.config().steps == 2


def test_distill_set_refuses_what_the_run_sets_or_no_memory_reads() -> None:
    with pytest.raises(UserError, match="the run sets it for every memory"):
        _request(distill_settings=["ipc=3"])
    request = _request(memory="dm", distill_settings=["lr_net=0.02"])
    with pytest.raises(UserError, match="no memory of this run"):
        request.check_distill_settings(["dm"])
    request.check_distill_settings(["dm", "idc"])  # idc reads it: applied where read


def test_run_repeated_from_config_keeps_the_saved_device(tmp_path: Path) -> None:
    from dream_cl.commands.continual import continual_request
    from dream_cl.jobs.continual import ContinualRequest
    from dream_cl.strategies.experiment import run_record

    cfg = ContinualRequest(overrides={"device": "cpu", "epochs": 2}).config()
    (tmp_path / "config.json").write_text(json.dumps(run_record(cfg, "data")))
    options = {"resume": False, "download": False, "config": tmp_path}
    again = continual_request(options, None)
    assert again.overrides["device"] == "cpu" and again.config() == cfg


def test_a_damaged_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"command": "distill", "config": {}}))
    result = _distill(tmp_path, "--config", str(tmp_path), "--out", str(tmp_path / "x"))
    assert result.exit_code == 1 and "lacks the setting(s) dataset" in result.output
    assert "Traceback" not in result.output


def test_evaluate_set_epochs_is_the_epochs_flag() -> None:
    from types import SimpleNamespace

    from dream_cl.jobs.evaluate import EvaluateRequest, eval_config_for

    dc_set = SimpleNamespace(
        meta={"config": {"framework": "dc"}}, info=SimpleNamespace(name="cifar10"), factor=1, ipc=1
    )
    by_flag = eval_config_for(EvaluateRequest(Path("s"), epochs=100), dc_set)
    by_set = eval_config_for(EvaluateRequest(Path("s"), overrides={"epochs": 100}), dc_set)
    assert by_set == by_flag and by_flag[1].lr_epochs == (52,)
    recipe = eval_config_for(EvaluateRequest(Path("s"), overrides={"recipe": "idc"}), dc_set)
    assert recipe == eval_config_for(EvaluateRequest(Path("s"), recipe="idc"), dc_set)
