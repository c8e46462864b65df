"""Framework loops: IDC (the default), DC, DSA and DM, each taking any real-batch sampler.

A framework owns one *outer iteration*: for IDC/DC/DSA a fresh network and its matching
steps; for DM one step against a fresh frozen network. Everything random comes from the
run's generator or from seeds derived from (seed, iteration), so a run resumed from a
checkpoint at an iteration boundary replays exactly.

DREAM = any framework + ``RepresentativeSampler`` + k-means init; the random-sampling
baseline of the same framework is ``RandomSampler`` + random init.

The step's context lives in :mod:`dream_cl.distill.context`, gradient matching in
:mod:`dream_cl.distill.gradmatch`, the timer in :mod:`dream_cl.distill.timer`; this module
holds the network updates and the four loops.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dream_cl.augment import (
    cutmix_loss,
    dsa,
    maybe_cutmix,
)
from dream_cl.data.base import to_float
from dream_cl.distill.context import Context, embed_fn, make_net, network_seed
from dream_cl.distill.gradmatch import (
    GradientMatcher,
    augment_pair,
    augment_strategy,
    class_losses_total,
    image_grad,
    image_step,
)
from dream_cl.distill.matching import (
    distribution_distance,
    matched_parameter_names,
)
from dream_cl.distill.samplers import class_batch
from dream_cl.distill.timer import Timer
from dream_cl.distributed import (
    all_reduce_gradients,
    all_reduce_sum_,
    balanced_range,
    gather_blocks,
)
from dream_cl.protocol.frameworks import framework_rules

__all__ = [
    "Context",
    "OuterLoop",
    "OuterStep",
    "Timer",
    "embed_fn",
    "make_net",
    "network_seed",
]


# ----------------------------------------------------------------------------------------
# network updates


def real_batch(ctx: Context, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images and labels at *global* training indices ``idx``, on every rank.

    In a single process this indexes the split. A rank holds only its classes' images: it
    fills the rows it owns and an all-reduce (sum) completes the batch; every row has one
    owner, so the sum adds exact zeros and the batch equals the single-process one.
    """
    train = ctx.train
    if not ctx.sharded:
        idx_dev = idx.to(train.images.device)
        x = to_float(train.images[idx_dev].to(ctx.device))
        return x, train.labels[idx_dev].to(ctx.device)
    assert ctx.shard is not None and ctx.real_offsets is not None
    offsets = ctx.real_offsets
    y = torch.searchsorted(offsets[1:], idx, right=True)
    mine = (y >= ctx.shard.start) & (y < ctx.shard.stop)
    local_idx = (idx - offsets[y] + train.offsets[y])[mine]
    x = torch.zeros((idx.numel(), *train.images.shape[1:]), device=ctx.device)
    rows = to_float(train.images[local_idx.to(train.images.device)].to(ctx.device))
    x[mine.to(ctx.device)] = rows
    return all_reduce_sum_(x), y.to(ctx.device)


def _data_parallel_step(
    ctx: Context,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float,
) -> None:
    """One SGD step on a batch every rank holds whole.

    Ranks split the rows, each back-propagates its rows' share of the mean loss, and the
    gradients are summed: the single-process gradient up to float summation order. With
    ``net_update = "replicated"``, and for a network with buffers (BatchNorm: per-rank
    batch statistics would change the update and let the buffers drift apart), every rank
    computes the whole batch instead: the single-process update bit for bit.
    """
    assert ctx.shard is not None
    data_parallel = (
        ctx.sharded
        and ctx.cfg.net_update == "data-parallel"
        and not any(True for _ in net.buffers())
    )
    opt.zero_grad(set_to_none=True)
    if not data_parallel:
        _backward(ctx, net, x, y_a, y_b, lam, 1.0)
    else:
        n = x.shape[0]
        lo, hi = balanced_range(n, ctx.shard.rank, ctx.shard.world_size)
        if hi > lo:
            _backward(ctx, net, x[lo:hi], y_a[lo:hi], y_b[lo:hi], lam, (hi - lo) / n)
        all_reduce_gradients(list(net.parameters()))
    opt.step()


def _backward(
    ctx: Context,
    net: nn.Module,
    x: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float,
    scale: float,
) -> None:
    """Parameter gradients of ``scale`` x the CutMix loss (compiled under ``--compile``)."""
    if ctx.compiled is not None:
        ctx.compiled.update(net).backward(net, x, y_a, y_b, lam, scale)
        return
    with ctx.autocast():
        logits = net(x)
    loss = cutmix_loss(logits.float(), y_a, y_b, lam)
    (loss * scale if scale != 1.0 else loss).backward()


def train_net_on_real(ctx: Context, net: nn.Module, opt: torch.optim.Optimizer) -> None:
    """IDC: random real batches (all classes) until ``n_data`` samples, DSA + CutMix."""
    cfg, info = ctx.cfg, ctx.info
    assert ctx.real_offsets is not None
    total = int(ctx.real_offsets[-1])
    seen = 0
    net.train()
    while seen < cfg.n_data:
        idx = torch.randperm(total, generator=ctx.generator)[: cfg.batch_real]
        x, y = real_batch(ctx, idx)
        x = dsa(info.normalize(x), cfg.net_aug, ctx.generator, per_sample=True)
        x, y_a, y_b, lam = maybe_cutmix(x, y, cfg.mix_p, ctx.generator)
        _data_parallel_step(ctx, net, opt, x, y_a, y_b, lam)
        seen += idx.numel()
    ctx.check_network(net, "network after a real-data update")


def train_net_on_syn(ctx: Context, net: nn.Module, opt: torch.optim.Optimizer, epochs: int) -> None:
    """DC/DSA: train the network on the (detached) synthetic set, batch 256.

    Every rank gathers the whole synthetic set and takes the same steps (the set is
    small; this keeps the network replicated without a gradient all-reduce).
    """
    info, cfg = ctx.info, ctx.cfg
    augment = framework_rules(cfg.framework).syn_augment  # DSA
    assert ctx.shard is not None
    x_all = gather_blocks(ctx.syn.images.detach(), ctx.shard, ctx.syn.ipc)
    y_all = torch.arange(ctx.num_classes, device=x_all.device).repeat_interleave(ctx.syn.ipc)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(x_all.shape[0], generator=ctx.generator).to(x_all.device)
        for i in range(0, x_all.shape[0], 256):
            idx = order[i : i + 256]
            x = info.normalize(x_all[idx])
            if augment:
                strategy = augment_strategy(ctx, cfg.match_aug, ctx.generator)
                x = dsa(x, strategy, ctx.generator, per_sample=True)
            with ctx.autocast():
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    ctx.check_network(net, "network after a synthetic-data update")


# ----------------------------------------------------------------------------------------
# the outer iterations


def idc_outer(ctx: Context, iteration: int, matcher: GradientMatcher | None = None) -> float:
    """IDC/DREAM: fresh network; inner loop of matching steps with real-data updates.

    ``matcher``: the run's; a fresh one if none.
    """
    cfg = ctx.cfg
    matcher = GradientMatcher() if matcher is None else matcher
    net = ctx.make_net(iteration)
    opt_net = torch.optim.SGD(net.parameters(), lr=cfg.lr_net, momentum=0.9, weight_decay=5e-4)
    with torch.no_grad():
        ctx.syn.images.clamp_(0, 1)
    reset = getattr(ctx.sampler, "reset", None)
    if reset is not None:
        reset()
    names = matched_parameter_names(net, cfg.match_bias, cfg.match_fc)
    total = 0.0
    for step in range(cfg.inner_loop):
        total += matcher.match(ctx, net, names, step, cfg.match_aug)
        with ctx.timer.section("network_update"):
            train_net_on_real(ctx, net, opt_net)
        ctx.hooks.fire("inner")
    return total / (cfg.inner_loop * ctx.num_classes)


def dc_outer(ctx: Context, iteration: int, matcher: GradientMatcher | None = None) -> float:
    """DC / DSA: fresh network; rounds of (match all classes, train net on synthetic).

    ``matcher``: the run's; a fresh one if none.
    """
    cfg = ctx.cfg
    matcher = GradientMatcher() if matcher is None else matcher
    net = ctx.make_net(iteration)
    opt_net = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
    reset = getattr(ctx.sampler, "reset", None)
    if reset is not None:
        reset()
    names = matched_parameter_names(net, cfg.match_bias, cfg.match_fc)
    fixed = framework_rules(cfg.framework).match_aug  # DC: 'none'; DSA: the configured one
    strategy = cfg.match_aug if fixed is None else fixed
    total = 0.0
    for step in range(cfg.inner_loop):
        total += matcher.match(ctx, net, names, step, strategy)
        ctx.hooks.fire("inner")
        if step == cfg.inner_loop - 1:
            break
        with ctx.timer.section("network_update"):
            train_net_on_syn(ctx, net, opt_net, cfg.net_epochs_syn)
    return total / (cfg.inner_loop * ctx.num_classes)


def dm_outer(ctx: Context, iteration: int, matcher: GradientMatcher | None = None) -> float:
    """DM: a fresh frozen network; match per-class mean embeddings (one step, all classes).

    DM matches distributions, not gradients: ``matcher`` (the loops' common signature) is
    unused.
    """
    cfg, syn = ctx.cfg, ctx.syn
    assert ctx.shard is not None
    net = ctx.make_net(iteration)
    for p in net.parameters():
        p.requires_grad_(False)
    with ctx.timer.section("clustering"):
        batches = ctx.sampler.sample(iteration, ctx.embed_fn(net), ctx.streams.per_class)
    with ctx.timer.section("matching"):
        decoded = syn.all_decoded()
        net.train()
        terms = []
        for pos, (c, idx) in enumerate(zip(ctx.shard.classes, batches, strict=True)):
            z_real, z_syn = augment_pair(
                ctx, c, class_batch(ctx.train, c, idx, ctx.device), decoded[pos], cfg.match_aug
            )
            # one forward per class, as DM's code: a class's numbers never depend on which
            # other classes share its process (a joint batch changes the kernels' rounding)
            with torch.no_grad(), ctx.autocast():
                f_real = net.embed(z_real).float()
            with ctx.autocast():
                f_syn = net.embed(z_syn).float()
            terms.append(distribution_distance(f_real, f_syn))
        loss = sum(terms, start=torch.zeros((), device=ctx.device))
        image_step(ctx, image_grad(ctx, loss))
    losses = {c: float(t.detach()) for c, t in zip(ctx.shard.classes, terms, strict=True)}
    return class_losses_total(ctx, losses) / ctx.num_classes


OuterLoop = Callable[[Context, int, GradientMatcher | None], float]
"""One outer iteration of a framework: (context, iteration, the run's matcher) -> loss."""

# the frameworks' records (which pairs each with its loop) are in dream_cl.distill.registry


class OuterStep:
    """A run's outer iteration of one framework, made once per run by the engine: the loop
    and its :class:`GradientMatcher`."""

    def __init__(self, loop: OuterLoop) -> None:
        self.loop = loop
        self.matcher = GradientMatcher()

    def __call__(self, ctx: Context, iteration: int) -> float:
        return self.loop(ctx, iteration, self.matcher)
