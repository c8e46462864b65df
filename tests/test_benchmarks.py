"""Smoke tests: every benchmark script runs end to end on a tiny setting, and the report
generator turns their JSON into RESULTS.md. No numbers are asserted beyond sanity: the
benchmarks themselves never run inside the test suite."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.slow
def test_benchmarks_run_and_the_report_is_built_from_their_json(tmp_path):
    results = tmp_path / "results"
    _run("benchmarks/throughput.py", "--quick", "--variants", "pool", "--out-dir", str(results))
    efficiency = (
        "benchmarks/efficiency.py",
        "--quick",
        "--datasets",
        "digits",
        "--out-dir",
        str(results),
        "--work-dir",
        str(tmp_path / "work"),
    )
    _run(*efficiency)
    thr = json.loads((results / "throughput.json").read_text())
    row = thr["results"][0]
    assert row["variant"] == "pool" and row["seconds_per_inner_iteration"] > 0
    assert set(row["breakdown_per_inner_iteration"]) == {
        "clustering",
        "matching",
        "network_update",
    }
    for key in ("commit", "date", "device", "torch", "threads", "settings"):
        assert key in thr
    eff = json.loads((results / "efficiency.json").read_text())
    (entry,) = eff["results"]["summary"]
    assert set(entry["curves"]) == {"baseline", "rm", "init", "dream"}
    assert entry["curves"]["dream"]["iterations"] == [0, 1, 2]
    assert len(eff["results"]["runs"]) == 4

    # a second sweep finds every run finished and starts nothing
    out = _run(*efficiency)
    assert out.count("(") == 4 and "wrote" in out
    # a row from another preset is run again, and the summary holds the new row
    row_path = results / "efficiency" / "digits-ipc1-rm-seed0.json"
    stale = json.loads(row_path.read_text())
    fresh_lr = stale["config"]["lr_img"]
    stale["config"]["lr_img"] = fresh_lr / 3
    row_path.write_text(json.dumps(stale))
    out = _run(*efficiency)
    assert out.count("stale") == 1 and "digits-ipc1-rm-seed0" in out
    assert json.loads(row_path.read_text())["config"]["lr_img"] == fresh_lr
    eff = json.loads((results / "efficiency.json").read_text())
    assert len(eff["results"]["runs"]) == 4

    _run(
        "benchmarks/image_rate.py",
        *("--dataset", "digits", "--ipcs", "1", "--multipliers", "1,100", "--iterations", "1"),
        *("--eval-every", "1", "--eval-epochs", "2", "--eval-repeats", "1", "--jobs", "2"),
        *("--data-root", str(tmp_path), "--out-dir", str(results)),
    )
    rate = json.loads((results / "image-rate-digits.json").read_text())
    lo, hi = rate["results"]["runs"]
    assert hi["lr_img"] == 100 * lo["lr_img"] == 100 * lo["paper_lr_img"]
    assert lo["eval_iterations"] == [0, 1]

    sys.path.insert(0, str(ROOT))
    from benchmarks.image_rate import choose_multiplier

    assert lo["split"] == "val"
    assert rate["results"]["chosen_multiplier"] == choose_multiplier([lo, hi])
    assert rate["settings"]["validation"]["images"] > 0
    assert "cpu_model" in rate and "cpu_count" in rate

    cross = (
        "benchmarks/cross_arch.py",
        *("--datasets", "digits", "--models", "convnet", "--seeds", "0", "--iterations", "1"),
        *("--eval-epochs", "1", "--data-root", str(tmp_path), "--out-dir", str(results)),
        *("--work", str(tmp_path / "xa"), "--jobs", "2"),
    )
    out = _run(*cross)
    assert out.count("%") == 2 and out.count("set digits-") == 2  # two sets, then two cells
    assert _run(*cross).count("%") == 0  # every cell kept: a rerun starts nothing
    sets = results / "cross-arch-sets"
    assert sorted(p.name for p in sets.iterdir()) == [
        "digits-dream-ipc10-s0",
        "digits-idc-ipc10-s0",
    ]
    # a kept set from another config (and no run to finish) is distilled again; the same
    # seed gives the same bytes, so no cell is rerun
    meta_path = sets / "digits-idc-ipc10-s0" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["meta"]["config"]["lr_img"] /= 3
    meta_path.write_text(json.dumps(meta))
    shutil.rmtree(tmp_path / "xa" / "digits-idc-ipc10-s0")
    out = _run(*cross)
    assert out.count("set digits-idc-ipc10-s0") == 1 and out.count("%") == 0
    # a cell trained on another set than the kept one runs again
    xa_path = results / "cross-arch.json"
    xa = json.loads(xa_path.read_text())
    xa["results"]["cells"]["digits|dream|convnet|0"]["images_sha256"] = "0" * 64
    xa_path.write_text(json.dumps(xa))
    out = _run(*cross)
    assert "digits|dream|convnet|0: its set has changed" in out and out.count("%") == 1
    xa = json.loads((results / "cross-arch.json").read_text())
    assert all(c["cpu_model"] and c["commit"] for c in xa["results"]["cells"].values())
    assert {c["images_sha256"] for c in xa["results"]["cells"].values()} == {
        json.loads((sets / name / "meta.json").read_text())["images_sha256"]
        for name in ("digits-dream-ipc10-s0", "digits-idc-ipc10-s0")
    }
    assert {(r["method"], r["model"]) for r in xa["results"]["summary"]} == {
        ("dream", "convnet"),
        ("idc", "convnet"),
    }
    assert xa["results"]["pending"] == []
    assert not any((tmp_path / "xa" / "cells").glob("*")), "a recorded cell's checkpoints go"
    assert not any(c["resumed"] for c in xa["results"]["cells"].values())
    # a cell stopped part-way continues from its checkpoint folder (here: a finished model's
    # record, kept because the stop came before the result file was written)
    from benchmarks.cross_arch import evaluate_cell
    from dream_cl.data import load_train_test

    test = load_train_test("digits", tmp_path)[1]
    ns = argparse.Namespace(device="cpu")
    folder, ckpt = sets / "digits-dream-ipc10-s0", tmp_path / "ckpt"
    first = evaluate_cell(folder, "convnet", 0, ns, test, ckpt)
    again = evaluate_cell(folder, "convnet", 0, ns, test, ckpt)
    assert (first["resumed"], again["resumed"]) == (False, True)
    recorded = xa["results"]["cells"]["digits|dream|convnet|0"]["accuracy"]
    assert first["accuracy"] == again["accuracy"] == recorded

    table1 = (
        "benchmarks/table1.py",
        *("--dataset", "digits", "--ipcs", "1", "--iterations", "1", "--eval-epochs", "1"),
        *("--repeats", "2", "--jobs", "2", "--data-root", str(tmp_path)),
        *("--out-dir", str(results), "--work", str(tmp_path / "t1")),
    )
    assert _run(*table1).count("%") == 5
    assert _run(*table1).count("%") == 0  # every cell kept: a rerun starts nothing
    t1 = json.loads((results / "table1-digits.json").read_text())["results"]
    assert sorted(c["method"] for c in t1["cells"].values()) == sorted(
        ["random", "herding", "k-center", "idc", "dream"]
    )
    assert all(len(c["accuracies"]) == 2 and c["stored_images"] == 10 for c in t1["cells"].values())
    assert t1["pending"] == []

    _run(
        "benchmarks/recipes.py",
        *("--dataset", "digits", "--cases", "idc-f2,dm,dsa", "--iterations", "1"),
        *("--eval-epochs", "1", "--repeats", "1", "--data-root", str(tmp_path)),
        *("--out-dir", str(results), "--work", str(tmp_path / "rc")),
    )
    rc = json.loads((results / "recipes.json").read_text())["results"]
    assert rc["digits-dm"]["before"]["recipe"]["recipe"] == "idc"
    assert rc["digits-dm"]["now"]["recipe"]["batch_size"] == 256
    assert rc["digits-dsa"]["now"]["recipe"]["dsa_mode"] == "one"

    _run(
        "benchmarks/eval_checkpoint.py",
        *("--models", "convnet", "--epochs", "2", "--repeats", "2", "--out-dir", str(results)),
    )
    ec = json.loads((results / "eval-checkpoint.json").read_text())["results"]["convnet"]
    assert ec["same_accuracy"] and ec["save_seconds"] > 0 and ec["file_mib"] > 0

    md = tmp_path / "RESULTS.md"
    _run("benchmarks/report.py", "--results", str(results), "--out", str(md))
    text = md.read_text()
    assert "## digits: the paper's Table 1 row shape" in text and "| K-Center |" in text
    assert "### digits, IPC 1" in text
    assert "| pool |" in text
    assert "### digits, IPC 1 (validation accuracy)" in text and "| 100x |" in text
    assert "Chosen:" in text and "Cross-architecture" in text and "before and after" in text
    checkpoints = text.split("## Evaluation checkpoints: what they cost", 1)[1]
    assert "\n| ConvNet-3 | " in checkpoints and checkpoints.rstrip().endswith("| no |")
    # one seed of one network: the rest of the 3-seed table is pending, each seed's cell shown
    assert "--name cross-arch --seeds 0,1,2 --jobs 2` resume them" in text
    assert "| digits | DREAM | ConvNet-3 | " in text and "| digits | IDC | ConvNet-3 | " in text
    assert (results / "plots" / "efficiency.png").stat().st_size > 0  # written by both scripts


def _efficiency_row(variant: str, seed: int, accs: list[float], its: list[int]) -> dict:
    """One finished efficiency run as the sweep stores it (only what summarize reads)."""
    return {
        "dataset": "d",
        "ipc": 1,
        "variant": variant,
        "seed": seed,
        "eval_iterations": its,
        "accuracy": accs,
        "time_seconds": {"matching": 1.0},
    }


def test_a_complete_cross_arch_table_shows_every_seed_and_no_pending_cell(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks.cross_arch import section

    nets, cells, summary = ("convnet", "resnet10", "densenet121"), {}, []
    for i, (method, net) in enumerate((m, n) for m in ("dream", "idc") for n in nets):
        accs = [0.5 + i / 100 + s / 1000 for s in range(3)]
        for s, acc in enumerate(accs):
            cells[f"d|{method}|{net}|{s}"] = {"accuracy": acc, "seconds": 60.0 * (i + 1)}
        mean = sum(accs) / 3
        std = (sum((a - mean) ** 2 for a in accs) / 3) ** 0.5
        summary.append(
            {"dataset": "d", "method": method, "model": net, "seeds": 3, "mean": mean, "std": std}
        )
    # a cell continued from its checkpoint timed only its last part: no time from it
    cells["d|idc|densenet121|0"] |= {"resumed": True, "seconds": 1.0}
    settings = {"datasets": "d", "methods": "dream,idc", "models": ",".join(nets)}
    record = {
        "settings": {**settings, "seeds": "0,1,2"},
        "results": {"cells": cells, "summary": summary, "pending": []},
        "device": "cpu",
        "cpu_model": "X",
    }
    path = tmp_path / "results" / "cross-arch-d.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    text = section(path.parent)
    assert "pending" not in text and "core-hours" not in text
    assert "--name cross-arch-d --seeds 0,1,2 --jobs 2` reproduce it" in text
    assert "| d | DREAM | 50.10 ± 0.08 | 51.10 ± 0.08 | 52.10 ± 0.08 |" in text
    assert "| d | IDC | DenseNet-121 | 55.00 | 55.10 | 55.20 |" in text  # per seed
    assert "DenseNet-121 3 min on X (n=5)" in text and "ResNet-10 4 min on X (n=6)" in text


def test_efficiency_summary_counts_iterations_to_the_baseline_final():
    sys.path.insert(0, str(ROOT))
    from benchmarks.efficiency import summarize

    def row(variant, seed, accs):
        return _efficiency_row(variant, seed, accs, [0, 5, 10, 15, 20])

    rows = [
        row("baseline", 0, [0.50, 0.60, 0.70, 0.75, 0.80]),
        row("baseline", 1, [0.50, 0.62, 0.72, 0.80, 0.80]),
        row("rm", 0, [0.50, 0.80, 0.85, 0.86, 0.87]),
        row("rm", 1, [0.50, 0.79, 0.85, 0.86, 0.87]),
        *(row("init", s, [0.81, 0.82, 0.83, 0.84, 0.85]) for s in (0, 1)),
        *(row("dream", s, [0.60, 0.62, 0.64, 0.66, 0.68]) for s in (0, 1)),
        *(row("idc", s, [0.50, 0.81, 0.82, 0.83, 0.84]) for s in (0, 1)),
    ]
    (entry,) = summarize(rows)
    assert "runs_waiting_for_their_seed" not in entry
    assert abs(entry["target_accuracy"] - 0.80) < 1e-9
    assert entry["baseline_iterations"] == 20  # mean 0.775 at 15, 0.80 at 20
    reach = entry["to_baseline_final"]
    assert reach["rm"]["iterations"] == 10 and abs(reach["rm"]["ratio"] - 2.0) < 1e-9
    assert not reach["rm"]["ratio_is_lower_bound"]
    assert reach["init"]["at_init"] and reach["init"]["ratio"] is None
    assert reach["dream"]["iterations"] is None
    # reached at the first evaluation after init: 4x is only what the grid can show
    assert reach["idc"]["ratio"] == 4.0 and reach["idc"]["ratio_is_lower_bound"]
    assert entry["baseline_improved"]
    rm = entry["curves"]["rm"]
    assert abs(rm["gain_over_init"] - 0.37) < 1e-9
    # test accuracies are reported, never ranked: no "best" point is computed from them
    assert not any(k.startswith("best") for k in rm)


def test_a_partial_efficiency_summary_compares_only_seeds_every_variant_has():
    """While a sweep is partial, a variant's mean over two seeds is not set against one
    over a single seed: the summary keeps the common seeds and counts the rest."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.efficiency import summarize

    def row(variant, seed, accs):
        return _efficiency_row(variant, seed, accs, [0, 10])

    rows = [row("baseline", 0, [0.5, 0.8]), row("baseline", 1, [0.5, 0.6])]
    rows += [row("dream", 0, [0.6, 0.8])]
    (entry,) = summarize(rows)
    assert entry["curves"]["baseline"]["seeds"] == [0]
    assert abs(entry["target_accuracy"] - 0.8) < 1e-9  # seed 0's, not the 0.7 two-seed mean
    assert entry["runs_waiting_for_their_seed"] == 1


def test_efficiency_summary_flags_a_baseline_that_falls_below_its_start():
    sys.path.insert(0, str(ROOT))
    from benchmarks.efficiency import summarize

    rows = [
        {
            "dataset": "d",
            "ipc": 10,
            "variant": v,
            "seed": 0,
            "eval_iterations": [0, 10, 20],
            "accuracy": accs,
            "time_seconds": {"matching": 1.0},
        }
        for v, accs in (("baseline", [0.97, 0.96, 0.95]), ("dream", [0.975, 0.98, 0.97]))
    ]
    (entry,) = summarize(rows)
    assert not entry["baseline_improved"]
    assert entry["to_baseline_final"]["baseline"]["at_init"]
    dream = entry["curves"]["dream"]
    assert dream["gain_over_init"] < 0 and dream["final_mean"] == 0.97


@pytest.mark.slow
def test_scaling_equivalence_and_gpu_check_scripts_run_and_report(tmp_path):
    """The multi-process benchmarks on a tiny setting (2 Gloo processes on loopback)."""
    results = tmp_path / "results"
    out = _run("benchmarks/scaling.py", "--quick", "--out-dir", str(results))
    assert "K=2: speed-up" in out
    rows = json.loads((results / "scaling.json").read_text())["results"]
    assert [r["processes"] for r in rows] == [1, 2]
    assert rows[1]["classes_per_process"] == [2, 2] and len(rows[1]["peak_rss_mib_per_rank"]) == 2
    assert rows[0]["speedup"] == 1.0 and rows[1]["efficiency"] == rows[1]["speedup"] / 2
    # a second call measures nothing again
    assert (
        _run("benchmarks/scaling.py", "--quick", "--out-dir", str(results)).count(
            "measured already"
        )
        == 2
    )
    work = tmp_path / "work"
    _run(
        "benchmarks/equivalence.py",
        *("--quick", "--checks", "distill", "--work-dir", str(work), "--out-dir", str(results)),
    )
    eq = json.loads((results / "equivalence.json").read_text())["results"]["distill"]
    assert set(eq["summary"]) == {"k1", "k2"} and eq["runs"][0]["max_pixel_difference"] >= 0
    _run(
        "benchmarks/gpu_check.py",
        *("--quick", "--device", "cpu", "--checks", "agreement,resume,throughput,ensemble"),
        *("--variants", "per-class", "--shapes", "cifar10", "--out-dir", str(results)),
    )
    gpu = json.loads((results / "gpu-check-quick.json").read_text())["results"]
    assert gpu["agreement"]["identical"] and gpu["resume"]["identical"]
    assert gpu["throughput"][0]["seconds_per_inner_iteration"] > 0
    assert gpu["ensemble"]["speedup"] > 0 and len(gpu["ensemble"]["ensemble"]["accuracies"]) == 5

    md = tmp_path / "RESULTS.md"
    _run("benchmarks/report.py", "--results", str(results), "--out", str(md))
    text = md.read_text()
    assert "## Strong scaling on several processes" in text and "| tiny | 2 | 2, 2 |" in text
    assert "## 2 processes against one" in text


def test_a_partial_efficiency_sweep_says_so() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.efficiency import partial_note as _partial_note

    settings = {"datasets": "cifar10", "ipcs": "10", "variants": "baseline,dream", "seeds": "0,1"}
    record = {"settings": settings | {"name": "e"}, "results": {"runs": [{}] * 3}}
    (note, _) = _partial_note(record)
    assert note.startswith("**Partial: 3 of 4 runs finished**") and "resumes" in note
    assert "resumes" not in _partial_note(record, resumable=False)[0]
    assert "not run yet: cifar10 IPC 10" in note  # no summary entry for it
    record["results"]["summary"] = [{"dataset": "cifar10", "ipc": 10}]
    assert "not run yet" not in _partial_note(record)[0]
    record["results"]["runs"] = [{}] * 4
    assert _partial_note(record) == []


def test_an_efficiency_run_lock_left_by_a_killed_sweep_does_not_skip_the_run(
    tmp_path, monkeypatch
) -> None:
    """A sweep killed mid-run leaves its lock file; the next sweep must still take the run,
    while a live sweep's lock keeps a second one off it."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import efficiency
    from dream_cl.runfolder import FolderLock

    setting = {"dataset": "digits", "ipc": 1, "variant": "rm", "seed": 0}
    setting |= {"iterations": 2, "eval_every": 1, "eval_epochs": 1}
    key = efficiency.run_key("digits", 1, "rm", 0)
    row = setting | {"accuracy": [1.0]}
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(row) + "\n", stderr="")

    monkeypatch.setattr(efficiency.subprocess, "run", fake_run)
    (tmp_path / f".{key}.lock").write_text("28181\n")  # the dead sweep's PID, no holder
    assert efficiency._child(setting, tmp_path) == row and len(calls) == 1
    assert json.loads((tmp_path / f"{key}.json").read_text()) == row

    (tmp_path / f"{key}.json").unlink()
    with FolderLock(tmp_path, name=f".{key}.lock"):
        assert efficiency._child(setting, tmp_path) is None
    assert len(calls) == 1


def test_an_efficiency_row_from_another_config_or_recipe_runs_again(tmp_path, monkeypatch):
    """A finished row is reused only at the config and evaluation recipe the current code
    resolves; one from an older preset (another lr_img) or recipe is run again."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import efficiency

    setting = {"dataset": "mnist", "ipc": 1, "variant": "dream", "seed": 0, "extra": {}}
    setting |= {"iterations": 2, "eval_every": 1, "eval_epochs": 1, "device": "cpu"}
    identity = efficiency.run_identity(efficiency.run_config(setting, 28))
    assert identity["config"]["sampler"] == "representative"
    assert identity["eval_config"]["dsa_strategy"]  # resolved, not left to the evaluator
    key = efficiency.run_key("mnist", 1, "dream", 0)
    fresh = setting | identity | {"accuracy": [0.5]}
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps(fresh) + "\n", stderr="")

    monkeypatch.setattr(efficiency.subprocess, "run", fake_run)
    old_preset = {**identity["config"], "lr_img": identity["config"]["lr_img"] / 3}
    old_recipe = {**identity["eval_config"], "dsa_strategy": "color_crop_cutout"}
    for stale in ({"config": old_preset}, {"eval_config": old_recipe}):
        (tmp_path / f"{key}.json").write_text(json.dumps(fresh | stale | {"accuracy": [0.9]}))
        assert efficiency._child(setting, tmp_path, identity) == fresh
    assert len(calls) == 2
    assert efficiency._child(setting, tmp_path, identity) == fresh and len(calls) == 2
    legacy = {k: v for k, v in fresh.items() if k != "eval_config"}  # before rows kept it
    assert efficiency.is_current(legacy, identity)
    assert not efficiency.is_current(legacy | {"config": old_preset}, identity)


@pytest.mark.slow
def test_a_longer_efficiency_sweep_continues_the_shorter_ones_runs(tmp_path) -> None:
    """--continue-from: a 40-iteration sweep starts from the 20-iteration sweep's run of the
    same settings, and ends where a fresh long run ends; a run of other settings is not
    taken."""
    import torch
    from fakedata import tiny_digits, tiny_distill_config

    sys.path.insert(0, str(ROOT))
    from benchmarks import efficiency
    from dream_cl.distill.engine import distill

    train, test = tiny_digits(3, 30), tiny_digits(3, 30)
    short = tiny_distill_config("idc", iterations=2, eval_every=1, eval_epochs=2)
    long = tiny_distill_config("idc", iterations=4, eval_every=1, eval_epochs=2)
    distill(short, train, test, out=tmp_path / "short" / "run")
    out = tmp_path / "long" / "run"
    efficiency._start_from(tmp_path / "short", out, long)
    assert (out / "checkpoint.pt").is_file() and not list(out.glob("*.lock"))
    continued = distill(long, train, test, out=out, resume=True)
    fresh = distill(long, train, test)
    assert torch.equal(continued.image_set.images, fresh.image_set.images)
    assert continued.metrics["evals"] == fresh.metrics["evals"]

    other = tiny_distill_config("idc", iterations=4, eval_every=1, eval_epochs=2, seed=5)
    efficiency._start_from(tmp_path / "short", tmp_path / "other" / "run", other)
    assert not (tmp_path / "other" / "run").exists()


@pytest.mark.slow
def test_rewritten_result_files_do_not_mark_the_commit_dirty(tmp_path) -> None:
    """A sweep rewrites result files as it goes; only a change to code is "-dirty"."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import git_commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "a.json").write_text("{}")
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("# r")
    (tmp_path / "code.py").write_text("x = 1")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    clean = git_commit(tmp_path / "benchmarks")
    assert clean != "unknown" and not clean.endswith("-dirty")
    (tmp_path / "benchmarks" / "results" / "a.json").write_text('{"b": 1}')
    (tmp_path / "benchmarks" / "RESULTS.md").write_text("# r2")
    assert git_commit(tmp_path / "benchmarks") == clean
    (tmp_path / "code.py").write_text("x = 2")
    assert git_commit(tmp_path / "benchmarks") == clean + "-dirty"


def test_the_continual_benchmark_sums_step_seconds_over_orders_and_calls(tmp_path) -> None:
    """The comparison's cost comes from every order's per-step seconds, not from the one
    resumed call that wrote the summary."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.continual import step_seconds
    from benchmarks.continual import step_seconds_lines as _step_seconds_lines

    steps = {
        ("dream", 0): [{"memory": 10.0, "train": 5.0, "eval": 1.0}] * 2,
        ("dream", 1): [{"memory": 20.0, "train": 5.0, "eval": 1.0}],
        ("random", 0): [{"memory": 0.5, "train": 4.0, "eval": 1.0}],
    }
    for (memory, order), seconds in steps.items():
        folder = tmp_path / memory / f"order{order}"
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"seconds": seconds}))
    totals = step_seconds(tmp_path)
    assert totals["dream"] == {"memory": 40.0, "train": 15.0, "eval": 3.0, "total": 58.0}
    assert totals["random"]["total"] == 5.5
    lines = _step_seconds_lines(totals, 1)
    assert "| dream | 40 | 15 | 3 | 58 |" in lines and lines[-1] == "All memories: 0.02 h."
    assert _step_seconds_lines(None, 1) == []


def test_an_efficiency_sweep_run_on_two_cpu_models_names_both() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.efficiency import run_machines as _run_machines

    runs = [{"cpu_model": "Zen 3"}, {"cpu_model": "Zen 3"}, {"cpu_model": "Zen 5"}]
    (line, _) = _run_machines({"results": {"runs": runs}})
    assert "2 on Zen 3" in line and "1 on Zen 5" in line
    assert (
        "No two runs that share an initial set" in line
    )  # nothing to compare: no pair shares a start
    assert _run_machines({"results": {"runs": runs[:2]}}) == []

    # init and dream start from one set: on two CPU models its score differs, on one it is equal
    def run(variant: str, seed: int, cpu: str, acc0: float) -> dict:
        return {"dataset": "d", "ipc": 10, "seed": seed, "variant": variant, "cpu_model": cpu,
                "accuracy": [acc0, 0.9]}  # fmt: skip

    runs = [run("init", 0, "Zen 3", 0.7337), run("dream", 0, "Zen 5", 0.7291)]
    runs += [run("init", 1, "Zen 5", 0.75), run("dream", 1, "Zen 5", 0.75)]
    (line, _) = _run_machines({"results": {"runs": runs}})
    assert "up to 0.46 points apart" in line and "(1 pair(s))" in line
    assert "identically on one model (1 pair(s))" in line


def test_a_finished_cell_is_skipped_and_a_changed_setting_runs_it_again(tmp_path) -> None:
    """The one resumable-cell mechanism: a cell kept under today's settings is done; one kept
    under other settings (file-wide or its own) is not; a cell from before a field was kept
    is judged by the rest."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.cells import Cells

    path = tmp_path / "r.json"
    cells = Cells(path, settings={"epochs": 3, "jobs": 1}, shaping=["epochs"], expect={"v": 1})
    assert not cells.done("a") and cells.get("a") is None and not cells.stale("a")
    stored = cells.put("a", {"acc": 0.5})
    assert stored == {"acc": 0.5, "v": 1} and cells.get("a") == stored
    record = json.loads(path.read_text())
    assert record == {"settings": {"epochs": 3, "jobs": 1}, "cells": {"a": stored}}

    def again(**kwargs) -> Cells:
        kwargs = {"settings": {"epochs": 3, "jobs": 2}, "expect": {"v": 1}} | kwargs
        return Cells(path, shaping=["epochs"], **kwargs)

    assert again().done("a") and not again().done("b")  # jobs shapes nothing
    assert not again(settings={"epochs": 4}).done("a")  # a file-wide setting changed
    changed = again(expect={"v": 2})  # the cell's own setting changed: stale, runs again
    assert changed.stale("a") and not changed.done("a") and changed.finished() == {}
    changed.put("a", {"acc": 0.6})
    assert again(expect={"v": 2}).get("a") == {"acc": 0.6, "v": 2}
    # a field kept only since: optional for older cells, still compared where present
    assert again(expect={"v": 2, "w": 0}, optional=["w"]).done("a")
    assert not again(expect={"v": 2, "w": 0}).done("a")

    # one file per cell, under a record the benchmark writes itself
    rows = Cells(tmp_path / "rows", per_cell_files=True, expect=lambda key: {"k": key})
    rows.put("x-1", {"acc": 1.0})
    assert json.loads((tmp_path / "rows" / "x-1.json").read_text()) == {"acc": 1.0, "k": "x-1"}
    assert rows.recorded() == ["x-1"] and rows.done("x-1")
    written = []
    nested = Cells(tmp_path / "n.json", where=("results", "cells"), write=written.append)
    nested.put("c", {"acc": 0.1})
    assert written == [{"c": {"acc": 0.1}}]


def test_an_interrupted_cell_write_leaves_the_previous_file(tmp_path, monkeypatch) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.cells import Cells

    path = tmp_path / "r.json"
    cells = Cells(path)
    cells.put("a", {"acc": 0.5})
    before = path.read_bytes()

    def killed(self, text, *args, **kwargs):
        Path.write_bytes(self, text[: len(text) // 2].encode())  # half written, then a kill
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", killed)
    with pytest.raises(KeyboardInterrupt):
        cells.put("b", {"acc": 0.7})
    monkeypatch.undo()
    assert path.read_bytes() == before and Cells(path).recorded() == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left


@pytest.mark.slow
def test_the_report_is_the_header_and_every_benchmarks_section_in_order(tmp_path) -> None:
    """report.py only puts the benchmarks' sections together: it drops none, adds nothing."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import report

    # the committed results (their plots are drawn again: into a copy, not the repository)
    results = tmp_path / "results"
    skip = shutil.ignore_patterns("*.pt", "*.png")
    shutil.copytree(ROOT / "benchmarks" / "results", results, ignore=skip)
    parts = report.sections(results)
    assert len(parts) == len(report.SECTIONS) and all(parts)  # every benchmark has results
    out = report.build(results)
    assert out.read_text() == "\n".join([report.HEADER, *parts]).rstrip() + "\n"
    assert out.read_text() == (ROOT / "benchmarks" / "RESULTS.md").read_text()


def test_an_equivalence_run_made_with_another_command_starts_over(tmp_path, monkeypatch) -> None:
    """equivalence.py's runs are cells too: a finished one is skipped, one made with another
    command is run again from scratch, and where the data is does not shape a run."""
    sys.path.insert(0, str(ROOT))
    from benchmarks import equivalence

    calls = []

    def fake_cli(args: list[str], procs: int, started: bool) -> None:
        out = Path(args[args.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        assert not any(out.glob("old*"))  # a stale run's folder was cleared first
        (out / "done.json").write_text(json.dumps({"n": len(calls)}))
        calls.append(args)

    monkeypatch.setattr(equivalence, "_cli", fake_cli)

    def cell(seed: int, where: tuple[str, ...] = ()) -> dict:
        def read(out: Path) -> dict:
            return json.loads((out / "done.json").read_text())

        cmd = ["distill", "--seed", str(seed)]
        return equivalence.cli_cell(tmp_path, "r", cmd, 2, ("s", "done.json"), read, where)

    first = cell(0)
    assert cell(0, ("--data-root", "elsewhere")) == first and len(calls) == 1
    (tmp_path / "r" / "old-file").write_text("")
    assert cell(1)["n"] == 1 and len(calls) == 2  # another command: started over
    # a finished run folder from before cells were kept is taken as it is
    (tmp_path / "cells" / "r.json").unlink()
    assert cell(1)["n"] == 1 and len(calls) == 2


def test_the_evaluation_ways_are_compared_on_their_steady_epoch_cost() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.eval_ensemble import steady

    # 10 s to start, then 2 s an epoch: runs of 4 and 12 epochs take 18 and 34 s
    cells = [{"epochs": 4, "seconds": 18.0}, {"epochs": 12, "seconds": 34.0}]
    assert steady(cells) == (2.0, 10.0)
    cells.append({"epochs": 4, "seconds": 20.0})  # a second round: means per epoch count
    per_epoch, startup = steady(cells)
    assert per_epoch == pytest.approx(15 / 8) and startup == pytest.approx(19 - 4 * 15 / 8)


def test_the_side_by_side_table_sets_each_variant_against_the_official_code() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.versus_official import label, table_lines

    def cell(impl: str, seconds: float, r: int = 0) -> dict:
        parts = {"clustering": seconds / 2, "matching": seconds / 4, "network_update": seconds / 4}
        return {"shape": "cifar10", "impl": impl, "round": r, "peak_gib": 1.0,
                "seconds_per_inner_iteration": seconds,
                "breakdown_per_inner_iteration": parts}  # fmt: skip

    cells = [cell("official", 30.0), cell("compiled", 10.0), cell("compiled", 20.0, 1),
             cell("per-class@abc123", 24.0)]  # fmt: skip
    record = {"cells": {str(k): c for k, c in enumerate(cells)}}
    rows = table_lines(record)[2:]
    assert rows[0].startswith("| cifar10 | official | 30.00 |") and rows[0].endswith("| - | 1.00 |")
    compiled = next(r for r in rows if "`--compile`" in r)
    assert "| 15.00 | 7.50 | 3.75 | 3.75 | 2.00x |" in compiled  # the mean of the two rounds
    assert label("per-class@abc123") == "dream-cl faithful at abc123 (before)"
    assert "| 1.25x |" in next(r for r in rows if "abc123" in r)


def test_the_parity_table_compares_the_means_within_the_faithful_seed_std(tmp_path) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.fast_parity import section

    accs = {"faithful": (0.50, 0.52, 0.54), "fast": (0.51, 0.53, 0.49)}
    cells = {
        f"d/{way}/{s}": {"dataset": "d", "way": way, "seed": s, "validation_accuracy": a,
                         "precision": "fp32", "device": "cpu", "cpu_model": "X"}
        for way, per_seed in accs.items() for s, a in enumerate(per_seed)
    }  # fmt: skip

    def write() -> None:
        record = {"cells": cells, "settings": {"seeds": "0,1,2"}}
        (tmp_path / "fast-parity.json").write_text(json.dumps(record))

    write()
    row = next(r for r in section(tmp_path).splitlines() if r.startswith("| d |"))
    # faithful 52 +- 2, fast 51 +- 2: 1 point apart, within the faithful std
    assert row.startswith(
        "| d | 52.00 +- 2.00 % (3 seeds) | 51.00 +- 2.00 % (3 seeds) | -1.00 | yes |"
    )
    assert "| 0: 50.00/51.00, 1: 52.00/53.00, 2: 54.00/49.00 | compile, fp32 |" in row
    del cells["d/fast/2"]
    write()
    text = section(tmp_path)
    assert "2: 54.00/- |" in text and "Partial:" in text
    for s in (0, 1):  # 10 points below: outside the faithful std
        cells[f"d/fast/{s}"]["validation_accuracy"] -= 0.10
    write()
    assert "| -10.00 | no |" in section(tmp_path) and "commits" not in section(tmp_path)
    cells["d/fast/0"]["commit"], cells["d/fast/1"]["commit"] = "abc", "def"
    write()
    assert "The cells ran at commits abc, def." in section(tmp_path)


def test_a_warm_refresh_times_the_second_of_two_refreshes() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.throughput import one_setting

    common = {"shape": "mnist:2", "ipc": 1, "variant": "per-class", "width": 8, "interval": 10}
    common |= {"steps": 3, "factor": 1, "device": "cpu"}
    cold = one_setting(**common)
    assert cold["sampler"]["refreshes"] == 1
    warm = one_setting(**common, warm_refresh=True)
    assert warm["sampler"]["refreshes"] == 2 and warm["interval"] == 10
    assert warm["refresh_seconds"] != warm["first_refresh_seconds"]
    assert warm["breakdown_per_inner_iteration"]["clustering"] == warm["refresh_seconds"] / 10
