"""End-to-end continual-learning runs on the embedded digits: outputs, resume, errors, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fakedata import TINY_DISTILL as ENGINE_TINY

from dream_cl.artifact import load_image_set
from dream_cl.errors import UserError
from dream_cl.strategies import compare, prepare_run, resolve_cl_config, run_cl

# the engine and the model at a size where a 5-step run takes seconds
TINY_DISTILL = {
    **ENGINE_TINY,
    "factor": 2,  # multi-formation accounting is what these tests check (digits' default: 1)
}
TINY = {
    "ipc": 2,
    "epochs": 2,
    "device": "cpu",
    "model": "convnet",
    "model_options": {"width": 8},
    "distill_overrides": TINY_DISTILL,
}


def tiny(**kw):
    return resolve_cl_config("digits-5step", "cpu", **{**TINY, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "dream"
    results = run_cl(tiny(), data_root="data", out=out)
    return out, results


def _load(path: Path):
    return json.loads(path.read_text())


def test_digits_5step_end_to_end_writes_matrix_metrics_and_memories(finished) -> None:
    out, results = finished
    order = out / "order0"
    m = _load(order / "metrics.json")
    matrix = m["accuracy_matrix"]
    assert len(matrix) == 5 and all(len(row) == 5 for row in matrix)
    for t in range(5):
        for j in range(5):
            if j > t:
                assert matrix[t][j] is None  # not learned yet
            else:
                assert 0.0 <= matrix[t][j] <= 1.0
    assert m["num_classes"] == [2, 4, 6, 8, 10]
    assert m["average_incremental_accuracy"] == pytest.approx(np.mean(m["accuracy"]))
    assert m["final_accuracy"] == m["accuracy"][-1]
    expected_forgetting = np.mean([matrix[j][j] - matrix[4][j] for j in range(4)])
    assert m["forgetting"] == pytest.approx(expected_forgetting)
    scenario = _load(order / "scenario.json")
    # accuracy on all seen classes is the test-size-weighted mean of the per-step accuracies
    for t in range(5):
        sizes = [scenario["steps"][j]["test_images"] for j in range(t + 1)]
        weighted = sum(a * n for a, n in zip(matrix[t][: t + 1], sizes, strict=True)) / sum(sizes)
        assert m["accuracy"][t] == pytest.approx(weighted)
    # memory accounting: the budget is stored images; decoded ones are reported beside it
    for k, acc in enumerate(m["memory"]):
        seen = 2 * (k + 1)
        assert acc["stored_images"] == 2 * seen and acc["decoded_images"] == 2 * 4 * seen
        assert acc["budget_max_size"] == 2 * 10
    # per-step memories are image sets in the dataset's labels, viewable with `dream-cl show`
    for k in range(5):
        s = load_image_set(order / f"step{k}")
        assert s.info.name == "digits" and s.factor == 2
        assert sorted(set(s.labels.tolist())) == scenario["steps"][k]["classes"]
        assert [n for n in s.class_counts() if n] == [2, 2]
        assert (order / f"step{k}" / "grid.png").is_file()
        assert (order / f"step{k}" / "distill" / "config.json").is_file()
    assert (out / "config.json").is_file() and (out / "accuracy.png").is_file()
    csv = (order / "logs" / "from-step0" / "eval_results.csv").read_text()
    assert "test_stream" in csv or len(csv.splitlines()) > 1
    assert _load(out / "results.json")["orders"][0]["class_order"] == scenario["class_order"]
    assert results["summary"]["final_accuracy"]["mean"] == m["final_accuracy"]


class Interrupt:
    """A progress reporter that raises KeyboardInterrupt at the n-th advance of one task."""

    def __init__(self, task: str, n: int) -> None:
        self.task, self.n, self.count = task, n, 0

    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, task: str, n: int = 1, **metrics: float) -> None:
        if task == self.task:
            self.count += 1
            if self.count == self.n:
                raise KeyboardInterrupt

    def finish(self, task: str) -> None:
        pass


def _comparable(metrics: dict) -> dict:
    drop = {"seconds", "memory_steps"}
    return {k: v for k, v in metrics.items() if k not in drop}


def test_resume_equals_uninterrupted(finished, tmp_path: Path) -> None:
    ref_out, _ = finished
    out = tmp_path / "killed"
    cfg = tiny()
    # killed inside the distillation of step 1, after its first of two iterations ...
    with pytest.raises(KeyboardInterrupt):
        run_cl(cfg, data_root="data", out=out, progress=Interrupt("step 1 distill", 1))
    ckpt = torch.load(out / "order0" / "step1" / "distill" / "checkpoint.pt", weights_only=True)
    assert ckpt["iteration"] == 1
    assert (out / "order0" / "step1" / "distill" / "checkpoint.pt").is_file()
    assert not (out / "order0" / "step1" / "result.json").exists()
    # ... resumed, then killed while training step 3 ...
    with pytest.raises(KeyboardInterrupt):
        run_cl(cfg, data_root="data", out=out, resume=True, progress=Interrupt("train step 3", 1))
    assert (out / "order0" / "step2" / "result.json").is_file()
    # ... and resumed to the end
    run_cl(cfg, data_root="data", out=out, resume=True)
    a = _load(ref_out / "order0" / "metrics.json")
    b = _load(out / "order0" / "metrics.json")
    assert _comparable(a) == _comparable(b)
    for k in range(5):
        sa = load_image_set(ref_out / "order0" / f"step{k}")
        sb = load_image_set(out / "order0" / f"step{k}")
        assert torch.equal(sa.images, sb.images) and torch.equal(sa.labels, sb.labels)
    wa = torch.load(ref_out / "order0" / "step4" / "model.pt", weights_only=True)["model"]
    wb = torch.load(out / "order0" / "step4" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_existing_output_needs_resume_and_the_same_settings(finished) -> None:
    out, results = finished
    # the same settings again continue the run (here: nothing left to do)
    assert "continuing" in prepare_run(tiny(), data_root="data", out=out).notes[0]
    with pytest.raises(UserError, match="of other settings; pass --resume"):
        prepare_run(tiny(epochs=3), data_root="data", out=out)
    with pytest.raises(UserError, match="settings differ .*epochs"):
        prepare_run(tiny(epochs=3), data_root="data", out=out, resume=True)
    again = run_cl(tiny(), data_root="data", out=out, resume=True)  # everything is done
    assert again["summary"] == results["summary"]


@pytest.mark.parametrize(
    ("scenario", "overrides", "fragment"),
    [
        ("nope-5step", {}, "unknown scenario 'nope-5step'"),
        ("mnist-5step", {}, "mnist data not found"),
        ("digits-5step", {"ipc": 40}, "--ipc 40 is larger than a class"),
        ("digits-5step", {"memory": "kmeans"}, "unknown memory method"),
        ("digits-5step", {"regime": "joint"}, "unknown regime"),
        ("digits-5step", {"model": "vit"}, "unknown model"),
    ],
)
def test_bad_inputs_give_one_line_and_write_nothing(
    scenario: str, overrides: dict, fragment: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(UserError) as err:
        cfg = resolve_cl_config(scenario, "cpu", **{**TINY, **overrides})
        prepare_run(cfg, data_root=tmp_path / "no-data", out=out)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert not out.exists()


@pytest.mark.parametrize("regime", ["scratch", "replay-mix"])
def test_other_regimes_run_end_to_end(regime: str, tmp_path: Path) -> None:
    results = run_cl(tiny(memory="random", regime=regime), data_root="data", out=tmp_path)
    m = _load(tmp_path / "order0" / "metrics.json")
    assert len(m["accuracy"]) == 5 and m["accuracy_matrix"][4][0] is not None
    assert results["config"]["regime"] == regime


def test_orders_run_seeded_class_orders_and_aggregate(tmp_path: Path) -> None:
    results = run_cl(tiny(memory="random", orders=2, seed=5), data_root="data", out=tmp_path)
    orders = [o["class_order"] for o in results["orders"]]
    assert [o["seed"] for o in results["orders"]] == [5, 6] and orders[0] != orders[1]
    assert (tmp_path / "order5" / "metrics.json").is_file()
    assert (tmp_path / "order6" / "metrics.json").is_file()
    final = results["summary"]["final_accuracy"]
    values = [o["final_accuracy"] for o in results["orders"]]
    assert final["n"] == 2 and final["mean"] == pytest.approx(np.mean(values))
    assert final["std"] == pytest.approx(np.std(values))


def test_compare_uses_one_budget_and_order_and_writes_table_and_plot(tmp_path: Path) -> None:
    overrides = {k: v for k, v in TINY.items()}
    record = compare(
        "digits-5step",
        ["random", "herding"],
        preset="cpu",
        overrides=overrides,
        data_root="data",
        out=tmp_path,
    )
    assert record["budget"]["stored_images_final"] == {"random": 20, "herding": 20}
    orders = {
        m: _load(tmp_path / m / "order0" / "scenario.json")["class_order"]
        for m in ("random", "herding")
    }
    assert orders["random"] == orders["herding"]
    table = (tmp_path / "comparison.md").read_text().splitlines()
    assert len(table) == 9 and table[2].startswith("| random | 20 | 20 |")
    assert table[5].startswith("| memory | wall | device time |")  # the cost table
    assert table[7].startswith("| random | ") and "CPU core-h" in table[7]
    png = (tmp_path / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="twice"):
        compare("digits-5step", ["random", "random"], preset="cpu", out=tmp_path / "x")


# -- command line --------------------------------------------------------------------------------
def _cli(*args: object):
    from typer.testing import CliRunner

    from dream_cl.cli import app

    before = torch.get_num_threads()
    try:
        return CliRunner().invoke(app, [str(a) for a in args])
    finally:
        torch.set_num_threads(before)


def _one_line_error(result, needle: str) -> None:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert needle in lines[0], lines[0]


def test_cli_scenarios_lists_registry_and_data(tmp_path: Path) -> None:
    result = _cli("scenarios", "--data-root", tmp_path)
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:-1]}
    assert set(lines) >= {"digits-5step", "cifar100-5step", "tinyimagenet-10step"}
    assert "found" in lines["digits-5step"] and "missing" in lines["cifar100-5step"]


@pytest.mark.slow
def test_cli_run_resume_and_compare(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = (
        "run",
        "--memory",
        "dream",
        "--ipc",
        "2",
        "--epochs",
        "1",
        "--model",
        "convnet",
        "--distill-iterations",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        out,
    )
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    assert "digits-5step: dream memory, ipc 2 (20 stored images, 20 decoded)" in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("       ")]) >= 5
    config = _load(out / "config.json")["config"]
    assert config["preset"] == "cpu" and config["distill_overrides"]["iterations"] == 1
    assert _load(out / "order0" / "metrics.json")["steps"] == 5
    _one_line_error(_cli(*args[:-2], "--epochs", "2", "--out", out), "--resume")
    same = _cli(*args)  # exactly the same command continues the finished run
    lines = same.output.splitlines()
    assert same.exit_code == 0 and "continuing it" in lines[0], same.output
    assert lines[1:8] == result.output.splitlines()[:7]
    again = _cli(*args, "--resume")
    assert again.exit_code == 0 and again.output.splitlines()[:7] == result.output.splitlines()[:7]

    cmp_out = tmp_path / "cmp"
    result = _cli(
        "compare",
        "--memories",
        "random,herding",
        "--ipc",
        "2",
        "--epochs",
        "1",
        "--model",
        "convnet",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        cmp_out,
    )
    assert result.exit_code == 0, result.output
    assert "| random | 20 | 20 |" in result.output and "| herding | 20 | 20 |" in result.output
    assert (cmp_out / "comparison.png").is_file()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "nope-5step"), "unknown scenario"),
        (("run", "mnist-5step"), "mnist data not found"),
        (("run", "--ipc", "500"), "--ipc 500 is larger than a class"),
        (("run", "--class-order", "a,b"), "--class-order"),
        (("run", "--regime", "joint"), "unknown regime"),
        (("compare", "--memories", "dream,magic"), "unknown memory method"),
    ],
)
def test_cli_bad_inputs_one_line_nothing_written(args: tuple, needle: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _one_line_error(_cli(*args, "--data-root", tmp_path / "none", "--out", out), needle)
    assert not out.exists()


@pytest.mark.parametrize("memory", ["dream", "idc"])
def test_cli_compile_flag_reaches_the_memory_distillation(memory: str) -> None:
    from dream_cl.commands.continual import continual_request

    def request(**options: object):
        return continual_request({"resume": False, "download": False, **options}, "auto")

    cfg = request(memory=memory, distill_iterations=3, distill_compile=True).config()
    distill = cfg.memory_config(0).distill_config("digits", 8)
    assert distill.compile and distill.iterations == 3 and distill.formulation == "per-class"
    plain = request(memory=memory).config()
    assert not plain.memory_config(0).distill_config("digits", 8).compile
