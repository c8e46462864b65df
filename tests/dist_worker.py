"""One rank of a multi-process test job (started by ``disttools.launch``).

Usage: python dist_worker.py JSON with {"out": folder, "tasks": [{"task": name, ...}]}.
Joins the Gloo process group that the environment describes (loopback), runs the tasks
in order (one process start serves several checks) and, on every rank, writes the list
of what each task returned to ``OUT/rank{r}.pt``, so a test can compare ranks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from fakedata import TINY_DISTILL, tiny_digits, tiny_distill_config


def tiny_config(framework: str, **overrides):
    """The unit tests' tiny run, three iterations long, checkpointed after each."""
    return tiny_distill_config(framework, **{"iterations": 3, "checkpoint_every": 1, **overrides})


def distill_task(args: dict) -> dict:
    from dream_cl.distill.engine import distill, shard_train

    cfg = tiny_config(args.get("framework", "idc"), **args.get("overrides", {}))
    train = shard_train(tiny_digits(args.get("classes", 4), 30))
    result = distill(
        cfg,
        train,
        out=args.get("run_dir"),
        resume=args.get("resume", False),
        stop_after=args.get("stop_after"),
    )
    return {"images": result.image_set.images, "losses": result.metrics["losses"]}


def broken_replica_task(args: dict) -> dict:
    """Rank 1's network is nudged: the sync check must stop every rank with one message."""
    from dream_cl.distill.context import make_net
    from dream_cl.distributed import DistEnv, ReplicaMismatch, check_replicated

    cfg = tiny_config("idc")
    net = make_net(cfg, tiny_digits(4, 30).info, torch.device("cpu"), 0)
    check_replicated(list(net.parameters()), "network")  # equal: passes
    if DistEnv.current().rank == 1:
        with torch.no_grad():
            next(net.parameters()).view(-1)[0] += 1e-6
    try:
        check_replicated(list(net.parameters()), "network")
    except ReplicaMismatch as err:
        return {"error": str(err)}
    return {"error": ""}


def memory_task(args: dict) -> dict:
    """Two steps of a distilled (or coreset) memory: every rank's buffer, as tensors."""
    from dream_cl.strategies.config import MemoryConfig
    from dream_cl.strategies.memory import DistilledBuffer

    train = tiny_digits(4, 40)
    config = MemoryConfig(
        args["method"], ipc=2, preset="cpu", overrides=TINY_DISTILL, seed=1, device="cpu"
    )
    policy = DistilledBuffer(config, info=train.info, source=train)
    policy.add_classes([0, 1], 0)
    policy.add_classes([2, 3], 1)
    x, y = policy.tensors()
    return {"x": x, "y": y, "accounting": json.dumps(policy.accounting(), sort_keys=True)}


def cl_task(args: dict) -> dict:
    """A whole class-incremental run on digits (2 steps); what rank 0 wrote is the result."""
    from dream_cl.strategies import resolve_cl_config, run_cl

    cfg = resolve_cl_config(
        "digits",
        "cpu",
        steps=2,
        ipc=2,
        epochs=args.get("epochs", 2),
        batch_size=args.get("batch_size", 16),
        device="cpu",
        model=args.get("model", "convnet"),
        model_options=args.get("model_options", {"width": 8}),
        distill_overrides={**TINY_DISTILL, **args.get("distill", {})},
    )
    results = run_cl(cfg, data_root="data", out=args["run_dir"])
    return {"summary": json.dumps(results["summary"], sort_keys=True)}


TASKS = {
    "distill": distill_task,
    "broken_replica": broken_replica_task,
    "memory": memory_task,
    "cl": cl_task,
}


def main() -> None:
    import dream_cl.strategies  # noqa: F401 - Avalanche before the group (docs/distributed.md)
    from dream_cl.distributed import exit_process, init_from_env, shutdown

    args = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    env = init_from_env("cpu")
    results = [TASKS[task.pop("task")](task) for task in args["tasks"]]
    torch.save(results, Path(args["out"]) / f"rank{env.rank}.pt")
    shutdown()
    exit_process(0)


if __name__ == "__main__":
    main()
