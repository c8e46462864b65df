"""Several processes on torch.distributed: who runs where, which classes each one owns, and
the few collectives the engine needs.

dream-cl scales by *class sharding*: rank r of K owns a balanced, contiguous block of classes
and holds only their real images, synthetic images, optimiser rows, sampler and random
streams. What every rank must agree on (the network, the stream of the network updates)
is replicated and checked equal with ``DREAM_CL_CHECK_SYNC=1``.

There is no module-level state: the process group that ``torch.distributed`` keeps is the
one source of truth, and :class:`DistEnv` is a plain value read from it and passed on.
Outside ``torchrun`` (no ``WORLD_SIZE`` in the environment) nothing here starts anything
and every helper is the identity.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from dream_cl.errors import UserError

SYNC_CHECK_ENV = "DREAM_CL_CHECK_SYNC"
"""Set to 1 to verify after every network update that all ranks hold equal parameters."""
TIMEOUT_ENV = "DREAM_CL_DIST_TIMEOUT_MINUTES"
"""How long a collective may wait on a live rank (default 180: rank 0 may evaluate)."""

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files, logs and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()

    @classmethod
    def current(cls) -> DistEnv:
        """The process group's view (the single-process default when there is none)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", 1)),
        )


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def init_from_env(device: str = "auto", timeout_minutes: float = 180.0) -> DistEnv:
    """Join the process group that torchrun describes in the environment.

    NCCL with one GPU per local rank when CUDA is present (and not refused by ``device``),
    Gloo on CPU otherwise. Returns the single-process env outside torchrun. The timeout
    bounds a collective that waits on a rank that is alive but stuck (rank 0 evaluating
    for long is not stuck; a dead rank is detected at once by the transport).
    """
    if not launched_by_torchrun():
        return DistEnv()
    if dist.is_initialized():
        return DistEnv.current()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    minutes = float(os.environ.get(TIMEOUT_ENV, timeout_minutes))
    dist.init_process_group(
        backend="nccl" if use_cuda else "gloo",
        timeout=datetime.timedelta(minutes=minutes),
        device_id=torch.device("cuda", local_rank) if use_cuda else None,
    )
    return DistEnv.current()


def local_device(env: DistEnv, name: str = "auto") -> str:
    """The device name a rank uses: ``cuda:LOCAL_RANK`` under torchrun on GPUs."""
    under_torchrun = env.world_size > 1 or dist.is_initialized()
    if under_torchrun and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{env.local_rank}"
    return name


def split_threads(env: DistEnv) -> int:
    """Torch threads per rank: the machine's cores shared evenly by this node's ranks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, env.local_world_size))


def shutdown(sync: bool = True) -> None:
    """Leave the process group. ``sync``: wait for every rank first (call it only where
    every rank arrives), so that no rank tears its connections down while a peer is still
    finishing a collective on them."""
    if dist.is_available() and dist.is_initialized():
        if sync and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def exit_process(code: int = 0) -> None:
    """End a rank of a torchrun job: flush, then exit without interpreter finalization.

    Gloo's worker threads can outlive ``destroy_process_group`` and abort the process when
    the interpreter tears down the tensors they hold (seen here about once in 15 runs as
    "terminate called without an active exception"), which the launcher reports as a
    failed rank. Everything a rank writes is written and renamed before this point.
    """
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


# ----------------------------------------------------------------------------------------
# class sharding


class AgreedError(UserError):
    """A user error every rank raises together (rank 0 alone prints it)."""


@dataclass(frozen=True)
class ClassShard:
    """Rank ``rank`` of ``world_size`` owns the contiguous class block ``[start, stop)``.

    Blocks are balanced (sizes differ by at most one, the larger ones first) and in rank
    order, so gathering per-rank blocks in rank order gives class order.
    """

    num_classes: int
    rank: int = 0
    world_size: int = 1

    def bounds(self, rank: int) -> tuple[int, int]:
        base, extra = divmod(self.num_classes, self.world_size)
        start = rank * base + min(rank, extra)
        return start, start + base + (1 if rank < extra else 0)

    @property
    def start(self) -> int:
        return self.bounds(self.rank)[0]

    @property
    def stop(self) -> int:
        return self.bounds(self.rank)[1]

    @property
    def classes(self) -> list[int]:
        return list(range(self.start, self.stop))

    def owns(self, c: int) -> bool:
        return self.start <= c < self.stop

    def owner(self, c: int) -> int:
        return next(r for r in range(self.world_size) if self.bounds(r)[0] <= c < self.bounds(r)[1])

    def sizes(self) -> list[int]:
        return [b - a for a, b in (self.bounds(r) for r in range(self.world_size))]

    @classmethod
    def for_env(cls, num_classes: int, env: DistEnv) -> ClassShard:
        if env.world_size > num_classes:
            raise AgreedError(
                f"{env.world_size} processes for {num_classes} classes: each process needs a "
                f"class of its own; use at most {num_classes} processes"
            )
        return cls(num_classes, env.rank, env.world_size)


def balanced_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of ``n`` that ``rank`` takes in a data-parallel step."""
    return ClassShard(n, rank, world_size).bounds(rank)


# ----------------------------------------------------------------------------------------
# collectives (each is the identity in a single process)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def comm_device() -> torch.device:
    """Where a small tensor for a collective must live: the rank's GPU under NCCL, else
    the CPU (Gloo)."""
    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_blocks(local: torch.Tensor, shard: ClassShard, rows_per_class: int) -> torch.Tensor:
    """Concatenate every rank's class block (``rows_per_class`` rows per class) in class
    order, on every rank. Blocks may differ in size by one class: they are padded."""
    if not _active():
        return local
    sizes = [s * rows_per_class for s in shard.sizes()]
    longest = max(sizes)
    pad = local.new_zeros((longest - local.shape[0], *local.shape[1:]))
    padded = torch.cat([local, pad]) if pad.shape[0] else local.contiguous()
    parts = [torch.empty_like(padded) for _ in range(shard.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (identical bits on every rank afterwards)."""
    if _active():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(*flags: bool) -> list[bool]:
    """For each flag, whether it holds on any rank (one collective; every rank gets the
    same answer, so every rank takes the same branch)."""
    counts = torch.tensor([float(f) for f in flags], dtype=torch.float64)
    return [bool(c) for c in all_reduce_sum_(counts.to(comm_device())).cpu().tolist()]


def all_reduce_gradients(params: Sequence[torch.nn.Parameter], fill_missing: bool = True) -> None:
    """Sum the parameters' gradients over ranks in one flat buffer.

    ``fill_missing``: a missing gradient counts as zeros (a rank whose share of the batch
    was empty); otherwise parameters without a gradient are left out, which every rank
    must agree on (the same graph on every rank).
    """
    if not _active():
        return
    if not fill_missing:
        params = [p for p in params if p.grad is not None]
        if not params:
            return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).clone()
        offset += n


def all_gather_objects(obj: T) -> list[T]:
    """Every rank's ``obj`` (small, plain state: per-class caches and stream states), in
    rank order, on every rank."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s object on every rank. Used for state that rank 0 read with
    ``weights_only=True`` (tensors and plain containers) or for a short message."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def is_peer_failure(err: BaseException) -> bool:
    """Whether ``err`` is a collective failing because another rank of the job died."""
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(
        key in text
        for key in ("connection closed", "connection reset", "gloo", "nccl", "broken pipe")
    )


def agree(check: Callable[[], T]) -> T:
    """Run ``check`` on rank 0 and give every rank its result, or its UserError.

    File-system checks (is ``--out`` occupied?) are decided once, so that every rank stops
    together with the same one-line message instead of some ranks waiting on the others.
    """
    if not _active():
        return check()
    outcome: tuple[str, Any]
    if dist.get_rank() == 0:
        try:
            outcome = ("ok", check())
        except UserError as err:
            outcome = ("error", str(err))
    else:
        outcome = ("ok", None)
    outcome = broadcast_object(outcome)
    if outcome[0] == "error":
        raise AgreedError(outcome[1])
    return outcome[1]


# ----------------------------------------------------------------------------------------
# starting processes on one machine


def run_local_workers(nproc: int, args: Sequence[str], env: dict[str, str] | None = None) -> None:
    """Run ``python ARGS`` as ``nproc`` ranks on this machine with torchrun's launcher
    (c10d rendezvous on loopback, no restarts, failures stop the job at once).

    Raises torch's ``ChildFailedError`` (its ``failures`` name each failed rank).
    """
    import logging
    import sys
    import uuid

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # torch's elastic modules give their loggers levels of their own: quiet each one (the
    # launcher's caller reports failures and interrupts in one line)
    for name in [*logging.Logger.manager.loggerDict, "torch.distributed.elastic"]:
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # each rank sets its own share
    if sys.platform.startswith("linux"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ.update(env or {})
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"dream-cl-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",
        local_addr="127.0.0.1",
        max_restarts=0,
        monitor_interval=0.2,
        start_method="spawn",
    )
    elastic_launch(config, sys.executable)(*args)


# ----------------------------------------------------------------------------------------
# checks


def sync_check_enabled() -> bool:
    return os.environ.get(SYNC_CHECK_ENV, "") not in ("", "0")


class ReplicaMismatch(RuntimeError):
    """Replicated state differs between ranks: a bug, never a user error."""


def check_replicated(tensors: Sequence[torch.Tensor], what: str) -> None:
    """With ``DREAM_CL_CHECK_SYNC=1``: every rank's ``tensors`` equal rank 0's, bit for bit.

    All ranks learn the verdict together (every rank's flag is gathered), so a mismatch
    stops the job on every rank with the same message.
    """
    if not (_active() and sync_check_enabled()):
        return
    device = comm_device()
    flat = torch.cat([t.detach().reshape(-1).to(device, torch.float64) for t in tensors])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    bad = torch.tensor([0.0 if torch.equal(flat, reference) else 1.0], device=device)
    flags = [torch.zeros_like(bad) for _ in range(dist.get_world_size())]
    dist.all_gather(flags, bad)
    ranks = [r for r, f in enumerate(flags) if float(f) > 0]
    if ranks:
        raise ReplicaMismatch(f"{what} differs from rank 0 on rank(s) {ranks}")


def generator_tensor(generator: torch.Generator) -> torch.Tensor:
    """A generator's state as a tensor, for :func:`check_replicated`."""
    return generator.get_state().to(torch.float64)
