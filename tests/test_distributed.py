"""Class-sharded distillation on several processes (Gloo on loopback, CPU, tiny digits).

Each job starts its ranks once and runs several checks in them (process start-up is most
of the cost). ``DREAM_CL_CHECK_SYNC=1`` is on in every job, so every network update of
every job is also checked to be identical on all ranks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from dist_worker import tiny_config, tiny_digits
from disttools import launch

from dream_cl.distill.engine import distill
from dream_cl.distributed import ClassShard, balanced_range


def single(framework: str, **overrides) -> dict:
    """The single-process reference, in this process."""
    result = distill(tiny_config(framework, **overrides), tiny_digits(4, 30))
    return {"images": result.image_set.images, "losses": result.metrics["losses"]}


def test_class_shards_are_balanced_contiguous_blocks_in_rank_order():
    for n, k in [(10, 3), (100, 8), (4, 4), (7, 2)]:
        blocks = [ClassShard(n, r, k).classes for r in range(k)]
        assert [c for b in blocks for c in b] == list(range(n))
        sizes = [len(b) for b in blocks]
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
        assert all(ClassShard(n, r, k).owner(c) == r for r in range(k) for c in blocks[r])
    assert [balanced_range(5, r, 2) for r in range(2)] == [(0, 3), (3, 5)]
    assert [balanced_range(1, r, 2) for r in range(2)] == [(0, 1), (1, 1)]


def test_more_processes_than_classes_is_refused_with_one_line():
    from dream_cl.distributed import DistEnv
    from dream_cl.errors import UserError

    with pytest.raises(UserError, match="at most 3 processes"):
        ClassShard.for_env(3, DistEnv(rank=0, world_size=4))


@pytest.mark.slow
def test_one_process_under_torch_distributed_equals_a_plain_run_bit_for_bit(tmp_path):
    tasks = [{"task": "distill", "framework": "idc"}, {"task": "distill", "framework": "dm"}]
    (ranked,) = launch(tasks, 1, tmp_path)
    for got, framework in zip(ranked, ["idc", "dm"], strict=True):
        want = single(framework)
        assert torch.equal(got["images"], want["images"]), framework
        assert got["losses"] == want["losses"], framework


@pytest.mark.slow
def test_two_processes(tmp_path):
    """K = 2 against one process: bit for bit where the network update is replicated
    (DC, DM; IDC with ``net_update='replicated'``), within float rounding where it is
    data-parallel (IDC's default); replicas equal; resume exact, also on another number of
    processes; the sync check fires on a nudged replica."""
    run = tmp_path / "run"
    tasks = [
        {"task": "distill", "framework": "idc"},
        {"task": "distill", "framework": "idc"},
        {"task": "distill", "framework": "idc", "overrides": {"sampler": "random"}},
        {"task": "distill", "framework": "idc", "overrides": {"net_update": "replicated"}},
        {"task": "distill", "framework": "dm"},
        {"task": "distill", "framework": "dc"},
        {"task": "distill", "framework": "idc", "run_dir": str(run / "idc"), "stop_after": 1},
        {"task": "distill", "framework": "idc", "run_dir": str(run / "idc"), "resume": True},
        {"task": "distill", "framework": "dm", "run_dir": str(run / "dm"), "stop_after": 2},
        {"task": "broken_replica"},
    ]
    rank0, rank1 = launch(tasks, 2, tmp_path / "job")
    # every rank ends with the whole synthetic set, bit for bit the same
    for a, b in zip(rank0[:9], rank1[:9], strict=True):
        assert torch.equal(a["images"], b["images"])
    idc, idc_again, idc_random, idc_replicated, dm, dc, _, idc_resumed, _, broken = rank0
    # deterministic: the same job twice gives the same bits
    assert torch.equal(idc["images"], idc_again["images"])
    # replicated network updates (DM, DC; IDC on request): one process's result, bit for bit
    for got, framework, overrides in (
        (dm, "dm", {}),
        (dc, "dc", {}),
        (idc_replicated, "idc", {"net_update": "replicated"}),
    ):
        want = single(framework, **overrides)
        assert torch.equal(got["images"], want["images"]), framework
        assert got["losses"] == want["losses"], framework
    # IDC's data-parallel update sums two half-batch gradients: float rounding only (with
    # random real batches; representative selection can turn rounding into another pick)
    want = single("idc", sampler="random")
    assert not torch.equal(idc_random["images"], want["images"])
    torch.testing.assert_close(idc_random["images"], want["images"], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        torch.tensor(idc_random["losses"]), torch.tensor(want["losses"]), atol=0, rtol=1e-5
    )
    # resume after one iteration continues exactly
    assert torch.equal(idc_resumed["images"], idc["images"])
    assert idc_resumed["losses"] == idc["losses"]
    # a 2-process checkpoint resumes in one process (DM: the result does not depend on K)
    resumed = distill(tiny_config("dm"), tiny_digits(4, 30), out=run / "dm", resume=True)
    assert torch.equal(resumed.image_set.images, dm["images"])
    # the sync check compares bits and stops every rank with the same message
    assert broken["error"] == rank1[9]["error"] != ""
    assert "rank(s) [1]" in broken["error"]


def _cli(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dream_cl.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_with_one_line_and_resume_finishes_it(tmp_path):
    """``--nproc 2`` through torchrun's launcher; rank 1 dies (SIGKILL) after iteration 3."""
    out = tmp_path / "run"
    args = ["distill", "digits", "--preset", "cpu", "--framework", "dm", "--ipc", "1"]
    args += ["--iterations", "6", "--checkpoint-every", "1", "--out", str(out), "--quiet"]
    faults = str(Path(__file__).parent / "faults")  # the hook lives in the tests only
    pythonpath = os.pathsep.join(filter(None, [faults, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "DREAM_CL_CHECK_SYNC": "1", "DREAM_CL_TEST_KILL": "1:3",
           "PYTHONPATH": pythonpath}  # fmt: skip
    started = time.perf_counter()
    killed = _cli([*args, "--nproc", "2"], env)
    assert time.perf_counter() - started < 60
    assert killed.returncode == 1
    lines = killed.stderr.strip().splitlines()
    assert len(lines) == 1, killed.stderr
    assert lines[0].startswith("error: rank 1 of 2 was killed by SIGKILL")
    assert lines[0].endswith("--nproc 2 --resume")
    assert "Traceback" not in killed.stdout + killed.stderr
    env.pop("DREAM_CL_TEST_KILL")
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    resumed = _cli([*args, "--nproc", "2", "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr
    # said once (rank 0), and only where it continues from
    assert resumed.stderr.splitlines() == [
        f"continuing from iteration 3 of 6 (the checkpoint in {out})"
    ]
    # the uninterrupted result (DM's does not depend on the number of processes)
    whole = _cli([*args[:-3], "--out", str(tmp_path / "whole"), "--quiet"], env)
    assert whole.returncode == 0, whole.stderr
    a = torch.load(out / "images.pt", weights_only=True)
    b = torch.load(tmp_path / "whole" / "images.pt", weights_only=True)
    assert torch.equal(a["images"], b["images"])
    # a user error is decided once and said once, not once per rank
    again = _cli([*args, "--seed", "1", "--nproc", "2"], env)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"error: {out} already holds a `dream-cl distill` of other settings; pass "
        "--resume to continue it or choose another --out"
    ]


@pytest.mark.slow
def test_continual_learning_memories_and_models_are_identical_on_every_rank(tmp_path):
    """Each step's memory is distilled class-sharded and gathered: every rank holds the
    same buffer (coresets: one process's, bit for bit); the model trains data-parallel and
    stays identical on every rank after every step (checked by DREAM_CL_CHECK_SYNC); with
    BatchNorm (ResNet-10) and bit-exact memories the run is one process's exactly."""
    from dist_worker import memory_task

    tasks = [
        {"task": "memory", "method": "dream"},
        {"task": "memory", "method": "herding"},
        {"task": "cl", "run_dir": str(tmp_path / "convnet")},
        {
            "task": "cl",
            "run_dir": str(tmp_path / "resnet"),
            "model": "resnet10",
            "model_options": {},
            "distill": {"net_update": "replicated"},
        },
    ]
    rank0, rank1 = launch(tasks, 2, tmp_path / "job")
    for a, b in zip(rank0[:2], rank1[:2], strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
        assert a["accounting"] == b["accounting"]
    assert rank0[0]["x"].shape[0] == 4 * 2  # the budget counted once: ipc 2 x 4 classes
    herding = memory_task({"method": "herding"})
    assert torch.equal(rank0[1]["x"], herding["x"])
    for i in (2, 3):
        assert rank0[i]["summary"] == rank1[i]["summary"]
    # BatchNorm models train whole batches on every rank and rank 0 evaluates the whole
    # test stream: with bit-exact memories, one process's accuracies exactly
    from dist_worker import cl_task

    alone = cl_task({**tasks[3], "run_dir": str(tmp_path / "alone")})
    assert rank0[3]["summary"] == alone["summary"]
    for name in ("convnet", "resnet"):
        order = tmp_path / name / "order0"
        assert (order / "metrics.json").is_file() and (order / "step1" / "model.pt").is_file()
        assert not list(order.glob("**/*.tmp"))
