"""Start a small Gloo job on loopback for a test, bounded in time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("dist_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env(rank: int, world: int, port: int, extra: dict[str, str] | None = None) -> dict:
    env = dict(os.environ)
    env.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",
        OMP_NUM_THREADS="1",
        DREAM_CL_CHECK_SYNC="1",
    )
    env.update(extra or {})
    return env


def launch(tasks: list[dict], world: int, out: Path, timeout: float = 120, env=None) -> list:
    """Run ``tasks`` on ``world`` ranks; returns each rank's list of task results."""
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    payload = json.dumps({"tasks": tasks, "out": str(out)})
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), payload],
            env=worker_env(r, world, port, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in range(world)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = [r for r, p in enumerate(procs) if p.returncode != 0]
    report = "\n".join(f"--- rank {r} exited {procs[r].returncode}:\n{logs[r]}" for r in failed)
    assert not failed, report
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(world)]
