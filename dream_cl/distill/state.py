"""The one home of a run's state: the synthetic set, the image optimiser, the real-batch
sampler, the random streams, the timer, the loss curve and the evaluations, and the
checkpoint format they are saved in.

:class:`dream_cl.distill.context.Context` is a view over it for the framework steps;
:class:`dream_cl.distill.engine.DistillRun` drives it, saves it and resumes it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from dream_cl.artifact import ImageSet
from dream_cl.distill.config import DistillConfig
from dream_cl.distill.samplers import RealSampler
from dream_cl.distill.streams import RandomStreams
from dream_cl.distill.synthetic import SyntheticSet
from dream_cl.distill.timer import Timer
from dream_cl.distributed import ClassShard, all_gather_objects, gather_blocks

CHECKPOINT_FORMAT = "dream-cl-distill-checkpoint"
CHECKPOINT_VERSION = 3
"""3: the official per-dataset protocol (normalisation constants, ResNet branch and norm,
the MNIST rule only at factor > 1), which a version-2 run's config does not record;
2: per-class random streams and class-keyed state (version 1 used one stream)."""


@dataclass
class RunState:
    """Everything a run carries from one outer iteration to the next: the one home of a
    run's state, shared by checkpoints, resume and class sharding.

    ``cfg`` is the run's configuration's one home: the steps' :class:`Context` and the
    engine's :class:`~dream_cl.distill.engine.DistillRun` read it here.

    Each process holds its shard's classes. :meth:`state_dict` is collective (every rank
    calls it) and returns the whole run's state keyed by dataset class, the same whatever
    the number of processes; :meth:`load_state_dict` takes back this shard's part, so a
    checkpoint resumes on any number of processes.
    """

    cfg: DistillConfig
    shard: ClassShard
    syn: SyntheticSet
    opt_img: torch.optim.Optimizer
    streams: RandomStreams
    sampler: RealSampler
    timer: Timer
    iteration: int = 0
    losses: list[float] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)

    def full_images(self) -> torch.Tensor:
        """Every class's stored images (detached), on every rank."""
        return gather_blocks(self.syn.images.detach(), self.shard, self.syn.ipc)

    def full_set(self, method: str, meta: dict | None = None) -> ImageSet:
        full = SyntheticSet(self.full_images(), self.syn.info, self.syn.ipc, self.syn.factor)
        return full.to_image_set(method, meta)

    def _momentum(self) -> torch.Tensor | None:
        buf = self.opt_img.state.get(self.syn.images, {}).get("momentum_buffer")
        if buf is None:
            return None
        return gather_blocks(buf, self.shard, self.syn.ipc).cpu()

    def state_dict(self) -> dict[str, Any]:
        sampler = self.sampler.state_dict()
        merged_cache: dict[int, torch.Tensor] | None = None
        caches = all_gather_objects(sampler.get("cached"))
        if caches[0] is not None:
            merged_cache = {c: b for part in caches for c, b in part.items()}
        class_states: dict[int, torch.Tensor] = {}
        for part in all_gather_objects(self.streams.class_states()):
            class_states.update(part)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "iteration": self.iteration,
            "images": self.full_images().cpu(),
            "momentum": self._momentum(),
            "generator": self.streams.shared.get_state(),
            "class_generators": class_states,
            "sampler": {"cached": merged_cache},
            "losses": list(self.losses),
            "evals": list(self.evals),
            "config": self.cfg.to_dict(),
        }

    def timing_dict(self) -> dict[str, Any]:
        """Wall-clock accounting, kept out of :meth:`state_dict` so that equal runs write
        byte-identical checkpoints; saved beside them and restored on resume."""
        stats = getattr(self.sampler, "stats", None)
        return {
            "timer": dict(self.timer.seconds),
            "sampler_stats": None if stats is None else dataclasses.asdict(stats),
        }

    def load_timing_dict(self, timing: dict[str, Any]) -> None:
        for k, v in timing.get("timer", {}).items():
            self.timer.seconds[k] = float(v)
        stats = timing.get("sampler_stats")
        if stats and hasattr(self.sampler, "stats"):
            self.sampler.stats = type(self.sampler.stats)(**stats)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ipc, device = self.syn.ipc, self.syn.images.device
        rows = slice(self.shard.start * ipc, self.shard.stop * ipc)
        with torch.no_grad():
            self.syn.images.copy_(state["images"][rows].to(device))
        if state.get("momentum") is not None:
            buf = state["momentum"][rows].to(device).clone()
            self.opt_img.state[self.syn.images]["momentum_buffer"] = buf
        self.streams.shared.set_state(state["generator"])
        self.streams.load_class_states(state["class_generators"])
        self.sampler.load_state_dict(state.get("sampler", {}))
        self.losses = list(state["losses"])
        self.evals = list(state["evals"])
        self.load_timing_dict(state)  # checkpoints written before timing.json held it
        self.iteration = int(state["iteration"])
