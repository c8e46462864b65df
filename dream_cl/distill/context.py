"""A framework step's context: a view over the run's state (the synthetic set, optimiser,
sampler and random streams of :class:`~dream_cl.distill.state.RunState`) with the run's
constants (real data, device, gradient scale), the hooks a step fires, and the seeded
networks every framework builds.

Kept apart from the loops (:mod:`dream_cl.distill.frameworks`) and the matching
(:mod:`dream_cl.distill.gradmatch`) so that each reads on its own; both import it, and it
imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.distill.compiled import CompiledFunctions, autocast
from dream_cl.distill.config import DistillConfig
from dream_cl.distill.samplers import EmbedFn, RealSampler
from dream_cl.distill.state import RunState
from dream_cl.distill.streams import RandomStreams
from dream_cl.distill.synthetic import SyntheticSet
from dream_cl.distill.timer import Timer
from dream_cl.distributed import (
    ClassShard,
    check_replicated,
    generator_tensor,
)
from dream_cl.models import build_model


def network_seed(seed: int, iteration: int) -> int:
    """Seed of the network built at ``iteration`` (iteration 0 also serves the k-means init)."""
    return (seed * 1_000_003 + iteration) % (2**63)


HOOK_EVENTS = ("inner",)
"""Where a step fires hooks: ``"inner"`` after each inner step of IDC, DC and DSA."""


class Hooks:
    """Callbacks that framework steps fire at named points (:data:`HOOK_EVENTS`), in the
    order they were registered; the one way code outside a step (the engine's pace
    estimate) hears from inside it."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[], None]]] = {e: [] for e in HOOK_EVENTS}

    def register(self, event: str, fn: Callable[[], None]) -> None:
        self._known(event).append(fn)

    def fire(self, event: str) -> None:
        for fn in self._known(event):
            fn()

    def _known(self, event: str) -> list[Callable[[], None]]:
        if event not in self._callbacks:
            raise ValueError(f"unknown hook event {event!r}; known: {', '.join(HOOK_EVENTS)}")
        return self._callbacks[event]


@dataclass
class Context:
    """What a framework step needs; built once per run by the engine.

    A view over ``state`` (:class:`RunState`, the one home of the run's configuration,
    synthetic set, image optimiser, sampler, random streams, timer and shard: the
    properties below read them there, so replacing one there is seen here) plus the
    run's constants, which are not state: the real data, the device, the gradient scale
    and the class bounds. ``train``, ``syn``, ``opt_img`` and ``sampler`` hold the classes
    of ``shard`` only (every class in a single process); ``real_offsets`` bounds each
    class in the *whole* training split, so that every rank draws the same
    network-update batch.
    """

    state: RunState
    train: DatasetSplit  # on the run's device; the shard's classes
    device: torch.device
    grad_scale: torch.Tensor | None = None
    real_offsets: torch.Tensor | None = None
    hooks: Hooks = field(default_factory=Hooks, repr=False)
    compiled: CompiledFunctions | None = field(default=None, repr=False)
    """Under ``--compile``, the run's compiled functions (built on first use, kept for the
    run); None otherwise."""

    def __post_init__(self) -> None:
        if self.real_offsets is None:
            self.real_offsets = self.train.offsets
        if self.compiled is None and self.cfg.compile:
            self.compiled = CompiledFunctions(self.cfg.precision, self.device)

    def autocast(self):
        """The run's precision for a forward pass (``--precision``)."""
        return autocast(self.device, self.cfg.precision)

    @property
    def cfg(self) -> DistillConfig:
        return self.state.cfg

    @property
    def syn(self) -> SyntheticSet:
        return self.state.syn

    @property
    def opt_img(self) -> torch.optim.Optimizer:
        return self.state.opt_img

    @property
    def sampler(self) -> RealSampler:
        return self.state.sampler

    @property
    def streams(self) -> RandomStreams:
        return self.state.streams

    @property
    def timer(self) -> Timer:
        return self.state.timer

    @property
    def shard(self) -> ClassShard:
        return self.state.shard

    @property
    def info(self):
        return self.train.info

    @property
    def generator(self) -> torch.Generator:
        """The shared stream (network updates), identical on every rank."""
        return self.streams.shared

    @property
    def num_classes(self) -> int:
        """Classes of the whole run (not only the shard's)."""
        return self.info.num_classes

    @property
    def sharded(self) -> bool:
        return self.shard.world_size > 1

    def make_net(self, iteration: int) -> nn.Module:
        """A freshly initialised network, seeded by (seed, iteration)."""
        net = make_net(self.cfg, self.info, self.device, iteration)
        check_replicated(list(net.parameters()), f"network of iteration {iteration}")
        return net

    def embed_fn(self, net: nn.Module) -> EmbedFn:
        return embed_fn(net, self.info, self.device, self.cfg.precision, self.compiled)

    def subsample_syn(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """At most ``batch_syn_max`` decoded images of class ``c`` (official subsampling)."""
        m = self.cfg.batch_syn_max
        if x.shape[0] <= m:
            return x
        idx = torch.randperm(x.shape[0], generator=self.streams.for_class(c))[:m]
        return x[idx.to(x.device)]

    def check_network(self, net: nn.Module, what: str) -> None:
        """``DREAM_CL_CHECK_SYNC=1``: the network and the shared stream equal rank 0's."""
        tensors = [*net.parameters(), *net.buffers(), generator_tensor(self.generator)]
        check_replicated(tensors, what)


def make_net(
    cfg: DistillConfig, info: DatasetInfo, device: torch.device, iteration: int
) -> nn.Module:
    """A freshly initialised network, seeded by (seed, iteration)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(network_seed(cfg.seed, iteration))
        net = build_model(
            cfg.model,
            channels=info.channels,
            num_classes=info.num_classes,
            image_size=info.image_size,
            dataset=info.name,
            **cfg.model_options(),
        )
    return net.to(device)


def embed_fn(
    net: nn.Module,
    info: DatasetInfo,
    device: torch.device,
    precision: str = "fp32",
    compiled: CompiledFunctions | None = None,
) -> EmbedFn:
    """Features of [0,1] images through ``net`` (normalised first; eval mode, no grad), at
    ``precision``; with ``compiled``, through the run's compiled embedding.

    Eager, on CPU, the forward runs in channels-last layout (the network is switched for the
    call and switched back; parameter values and identities are unchanged): the convolutions
    run faster that way, which matters because embedding every real image is most of a
    k-means refresh.
    """
    if compiled is not None:
        return lambda x: compiled.embed(net)(net, info.normalize(x.to(device)))
    channels_last = device.type == "cpu"

    def embed(x: torch.Tensor) -> torch.Tensor:
        was_training = net.training
        net.eval()
        fast = channels_last and x.ndim == 4
        try:
            with torch.no_grad(), autocast(device, precision):
                z = info.normalize(x.to(device))
                if fast:
                    net.to(memory_format=torch.channels_last)
                    z = z.contiguous(memory_format=torch.channels_last)
                out = net.embed(z).float()
        finally:
            if fast:
                net.to(memory_format=torch.contiguous_format)
            net.train(was_training)
        return out.contiguous()

    return embed
