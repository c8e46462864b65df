"""Framework loops: IDC (the default), DC, DSA and DM, each taking any real-batch sampler.

A framework owns one *outer iteration*: for IDC/DC/DSA a fresh network and its matching
steps; for DM one step against a fresh frozen network. Everything random comes from the
run's generator or from seeds derived from (seed, iteration), so a run resumed from a
checkpoint at an iteration boundary replays exactly.

DREAM = any framework + ``RepresentativeSampler`` + k-means init; the random-sampling
baseline of the same framework is ``RandomSampler`` + random init.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from dream_cl.augment import (
    apply_dsa,
    cutmix_loss,
    dsa,
    maybe_cutmix,
    parse_strategy,
    sample_dsa,
)
from dream_cl.data.base import DatasetInfo, DatasetSplit, to_float
from dream_cl.distill.config import DistillConfig
from dream_cl.distill.matching import (
    class_gradients,
    distribution_distance,
    gradient_distance,
    layer_distance,
    matched_parameter_names,
)
from dream_cl.distill.samplers import EmbedFn, RealSampler, class_batch
from dream_cl.distill.streams import RandomStreams
from dream_cl.distill.synthetic import SyntheticSet
from dream_cl.distill.timer import Timer
from dream_cl.distributed import (
    ClassShard,
    all_reduce_gradients,
    all_reduce_sum_,
    balanced_range,
    check_replicated,
    comm_device,
    gather_blocks,
    generator_tensor,
)
from dream_cl.errors import UserError
from dream_cl.models import build_model

__all__ = ["Context", "FRAMEWORK_STEPS", "Timer", "embed_fn", "make_net", "network_seed"]


def network_seed(seed: int, iteration: int) -> int:
    """Seed of the network built at ``iteration`` (iteration 0 also serves the k-means init)."""
    return (seed * 1_000_003 + iteration) % (2**63)


@dataclass
class Context:
    """What a framework step needs; built once per run by the engine.

    ``train``, ``syn``, ``opt_img`` and ``sampler`` hold the classes of ``shard`` only
    (every class in a single process); ``real_offsets`` bounds each class in the *whole*
    training split, so that every rank draws the same network-update batch.
    """

    cfg: DistillConfig
    train: DatasetSplit  # on the run's device; the shard's classes
    syn: SyntheticSet
    opt_img: torch.optim.Optimizer
    sampler: RealSampler
    streams: RandomStreams
    device: torch.device
    timer: Timer
    grad_scale: torch.Tensor | None = None
    shard: ClassShard | None = None
    real_offsets: torch.Tensor | None = None
    compiled: CompiledMatching | None = field(default=None)
    on_inner: Callable[[], None] | None = field(default=None, repr=False)
    """Called after each inner step (IDC, DC, DSA): how the engine times a long run early."""

    def __post_init__(self) -> None:
        if self.shard is None:
            self.shard = ClassShard(self.train.num_classes)
        if self.real_offsets is None:
            self.real_offsets = self.train.offsets

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
        assert self.shard is not None
        return self.shard.world_size > 1

    def make_net(self, iteration: int) -> nn.Module:
        """A freshly initialised network, seeded by (seed, iteration)."""
        net = make_net(self.cfg, self.info, self.device, iteration)
        check_replicated(list(net.parameters()), f"network of iteration {iteration}")
        return net

    def embed_fn(self, net: nn.Module) -> EmbedFn:
        return embed_fn(net, self.info, self.device)

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


def embed_fn(net: nn.Module, info: DatasetInfo, device: torch.device) -> EmbedFn:
    """Features of [0,1] images through ``net`` (normalised first; eval mode, no grad).

    On CPU the forward runs in channels-last layout (the network is switched for the call
    and switched back; parameter values and identities are unchanged): the instance norm,
    ReLU and pooling of a 128-wide net are memory-bound and run about 1.3x faster that way,
    which matters because embedding every real image is most of a k-means refresh.
    """
    channels_last = device.type == "cpu"

    def embed(x: torch.Tensor) -> torch.Tensor:
        was_training = net.training
        net.eval()
        fast = channels_last and x.ndim == 4
        try:
            with torch.no_grad():
                z = info.normalize(x.to(device))
                if fast:
                    net.to(memory_format=torch.channels_last)
                    z = z.contiguous(memory_format=torch.channels_last)
                out = net.embed(z)
        finally:
            if fast:
                net.to(memory_format=torch.contiguous_format)
            net.train(was_training)
        return out.contiguous()

    return embed


def _image_grad(ctx: Context, loss: torch.Tensor) -> torch.Tensor:
    """d loss / d images only (skips the network's parameter gradients we never use).

    ``ctx.grad_scale`` (DC/DSA/DM) turns the step into the one the original papers take on
    normalised images: SGD on z = (x - m)/s with lr equals SGD on x with lr * s^2.
    """
    (grad,) = torch.autograd.grad(loss, [ctx.syn.images])
    if ctx.grad_scale is not None:
        grad = grad * ctx.grad_scale
    return grad


def _set_image_grad(ctx: Context, loss: torch.Tensor) -> None:
    ctx.syn.images.grad = _image_grad(ctx, loss)


# ----------------------------------------------------------------------------------------
# gradient matching, shared by IDC / DC / DSA


def augment_strategy(ctx: Context, strategy: str, generator: torch.Generator) -> str:
    """The ops one augmentation call applies.

    IDC/DREAM stack them (flip, colour, one geometric op, cutout). The DSA and DM papers'
    default ('S' mode) applies *one* op group per call, chosen at random among the listed
    ones; for those frameworks this picks that group with ``generator``.
    """
    if ctx.cfg.framework not in ("dsa", "dm"):
        return strategy
    groups = parse_strategy(strategy)
    if len(groups) <= 1:
        return strategy
    return groups[int(torch.randint(len(groups), (1,), generator=generator))]


def _augment_pair(
    ctx: Context, c: int, x_real: torch.Tensor, x_syn: torch.Tensor, strategy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise, then one siamese DSA draw for both halves (one draw per class, from the
    class's own stream)."""
    info = ctx.info
    g = ctx.streams.for_class(c)
    zr, zs = info.normalize(x_real), info.normalize(x_syn)
    params = sample_dsa(augment_strategy(ctx, strategy, g), 1, info.image_size, g)
    return apply_dsa(zr, params), apply_dsa(zs, params)


def _image_step(ctx: Context, grad: torch.Tensor | None) -> None:
    """One optimiser step on the held images; ``None`` is a step with zero gradient.

    A per-class step of the official code moves *every* class's images by their momentum;
    a rank replays the steps of classes it does not own as zero-gradient steps, so its
    images see the same sequence of updates as in a single process.
    """
    ctx.opt_img.zero_grad(set_to_none=True)
    ctx.syn.images.grad = torch.zeros_like(ctx.syn.images) if grad is None else grad
    ctx.opt_img.step()


def class_losses_total(ctx: Context, losses: dict[int, float]) -> float:
    """Sum of one loss per class of the whole run, added in class order on every rank (so
    the logged loss does not depend on the number of ranks)."""
    values = torch.zeros(ctx.num_classes, dtype=torch.float64)
    for c, v in losses.items():
        values[c] = v
    values = all_reduce_sum_(values.to(comm_device())).cpu()  # one owner per entry: exact
    total = 0.0
    for v in values.tolist():
        total += v
    return total


def match_per_class(
    ctx: Context,
    net: nn.Module,
    names: list[str],
    batches: list[torch.Tensor],
    strategy: str,
    step_each: bool = True,
) -> float:
    """Class by class: one matching loss per class.

    ``step_each`` (IDC/DREAM official) takes one image step per class, in class order over
    the whole run (a rank replays other ranks' classes as momentum-only steps); otherwise
    (DC/DSA official, "joint") the class gradients are summed and one step is taken.
    """
    cfg, syn = ctx.cfg, ctx.syn
    assert ctx.shard is not None
    params_by_name = dict(net.named_parameters())
    params = [params_by_name[n] for n in names]
    losses: dict[int, float] = {}
    summed: torch.Tensor | None = None
    owned = dict(zip(ctx.shard.classes, batches, strict=True))
    for c in range(ctx.num_classes):
        if c not in owned:
            if step_each:
                _image_step(ctx, None)
            continue
        x_real = class_batch(ctx.train, c, owned[c], ctx.device)
        x_syn = ctx.subsample_syn(syn.class_decoded(c), c)
        z_real, z_syn = _augment_pair(ctx, c, x_real, x_syn, strategy)
        y_real = torch.full((z_real.shape[0],), c, device=ctx.device)
        y_syn = torch.full((z_syn.shape[0],), c, device=ctx.device)
        if cfg.compile:
            if ctx.compiled is None:
                ctx.compiled = CompiledMatching(net, names, cfg.metric)
            dz, loss = ctx.compiled(net, z_real, y_real, z_syn, y_syn)
            (grad,) = torch.autograd.grad(z_syn, [syn.images], dz)
            if ctx.grad_scale is not None:
                grad = grad * ctx.grad_scale
        else:
            g_real = [g.detach() for g in class_gradients(net, params, z_real, y_real, False)]
            g_syn = class_gradients(net, params, z_syn, y_syn, True)
            loss = gradient_distance(g_real, g_syn, cfg.metric)
            grad = _image_grad(ctx, loss)
        if step_each:
            _image_step(ctx, grad)
        else:
            summed = grad if summed is None else summed + grad
        losses[c] = float(loss.detach())
    if summed is not None:
        _image_step(ctx, summed)
    return class_losses_total(ctx, losses)


class CompiledMatching:
    """One class's matching loss and its gradient w.r.t. the augmented synthetic batch, as a
    single torch.func function compiled by ``torch.compile`` (``--compile``).

    The arithmetic is the per-class step's (same parameters, distance and image step); the
    network's parameters are inputs, so every fresh network of the run reuses the compiled
    code. The fused kernels reorder floating-point sums, so results agree with the eager
    step to about 1e-3 relative, not bit for bit (measured in docs/performance.md).
    Networks with buffers (BatchNorm) are refused: their train-mode statistics updates are
    side effects a pure function cannot carry.
    """

    def __init__(self, net: nn.Module, names: list[str], metric: str) -> None:
        from torch.func import functional_call, grad, grad_and_value

        if any(True for _ in net.buffers()):
            raise UserError(
                "--compile needs a network without buffers (instance norm or none); "
                "drop --compile for BatchNorm networks"
            )
        self.names = names
        # a private copy fixes the architecture and train mode the compiled code was traced
        # with (the run's own networks switch modes, which would force recompilation)
        template = copy.deepcopy(net).train()

        def ce(matched: dict, rest: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(functional_call(template, {**rest, **matched}, (x,)), y)

        def loss(
            z_syn: torch.Tensor,
            matched: dict,
            rest: dict,
            z_real: torch.Tensor,
            y_real: torch.Tensor,
            y_syn: torch.Tensor,
        ) -> torch.Tensor:
            g_real = grad(ce)(matched, rest, z_real, y_real)
            g_syn = grad(ce)(matched, rest, z_syn, y_syn)
            return gradient_distance(
                [g_real[n].detach() for n in names], [g_syn[n] for n in names], metric
            )

        self._fn = torch.compile(grad_and_value(loss))

    def __call__(
        self,
        net: nn.Module,
        z_real: torch.Tensor,
        y_real: torch.Tensor,
        z_syn: torch.Tensor,
        y_syn: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        params = {n: p.detach() for n, p in net.named_parameters()}
        matched = {n: params.pop(n) for n in self.names}
        return self._fn(z_syn.detach(), matched, params, z_real, y_real, y_syn)


def _pad_batch(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Cycle a short class batch up to ``size`` so all classes stack into one tensor."""
    if idx.numel() >= size:
        return idx[:size]
    reps = -(-size // idx.numel())
    return idx.repeat(reps)[:size]


def batched_class_gradients(
    net: nn.Module, names: list[str]
) -> Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]:
    """Per-class gradients of the matched parameters in one vectorised call (torch.func).

    Returns f(x (C, B, ...), y (C, B)) -> {name: (C, *param.shape)}; differentiable w.r.t.
    ``x`` so the synthetic side can be back-propagated to the images.
    """
    from torch.func import functional_call, grad, vmap

    fixed = {n: p.detach() for n, p in net.named_parameters() if n not in names}
    buffers = dict(net.named_buffers())

    def loss_fn(
        matched: dict[str, torch.Tensor],
        x: torch.Tensor,
        y: torch.Tensor,
        bufs: dict[str, torch.Tensor],
    ):
        out = functional_call(net, ({**fixed, **matched}, bufs), (x,))
        return F.cross_entropy(out, y)

    per_class = vmap(grad(loss_fn), in_dims=(None, 0, 0, 0))
    matched = {n: p.detach() for n, p in net.named_parameters() if n in names}

    def run(x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        # one private copy of the buffers per class: a BatchNorm net's running-statistics
        # update in train mode would otherwise mutate captured tensors, which torch.func
        # refuses; the per-class batch statistics (what the gradients use) are unchanged
        bufs = {n: b.unsqueeze(0).repeat(x.shape[0], *([1] * b.ndim)) for n, b in buffers.items()}
        return per_class(matched, x, y, bufs)

    return run


def batched_distance(
    g_real: dict[str, torch.Tensor], g_syn: dict[str, torch.Tensor], metric: str
) -> torch.Tensor:
    """Sum over classes and parameters of the official per-tensor distance."""
    total = None
    for name, r in g_real.items():
        s = g_syn[name]
        c = r.shape[0]
        if metric in ("mse", "l1"):
            d = layer_distance(r, s, metric)
        elif r.ndim == 2:  # 1-D parameter per class: one row per class
            d = layer_distance(r.reshape(c, -1), s.reshape(c, -1), metric)
        else:  # rows = (class, output unit)
            d = layer_distance(r.reshape(c * r.shape[1], -1), s.reshape(c * s.shape[1], -1), metric)
        total = d if total is None else total + d
    assert total is not None
    return total


def match_batched(
    ctx: Context, net: nn.Module, names: list[str], batches: list[torch.Tensor], strategy: str
) -> float:
    """All held classes in one vectorised pass and one image step (see docs/fidelity.md)."""
    cfg, syn, train = ctx.cfg, ctx.syn, ctx.train
    assert ctx.shard is not None
    size = max(b.numel() for b in batches)
    real, fake = [], []
    decoded = syn.all_decoded()
    for pos, (c, idx) in enumerate(zip(ctx.shard.classes, batches, strict=True)):
        x_real = class_batch(train, c, _pad_batch(idx, size), ctx.device)
        x_syn = ctx.subsample_syn(decoded[pos], c)
        z_real, z_syn = _augment_pair(ctx, c, x_real, x_syn, strategy)
        real.append(z_real)
        fake.append(z_syn)
    z_real, z_syn = torch.stack(real), torch.stack(fake)
    classes = torch.tensor(ctx.shard.classes, device=ctx.device)
    y_real = classes.unsqueeze(1).expand(-1, z_real.shape[1])
    y_syn = classes.unsqueeze(1).expand(-1, z_syn.shape[1])
    grads = batched_class_gradients(net, names)
    g_real = {k: v.detach() for k, v in grads(z_real, y_real).items()}
    g_syn = grads(z_syn, y_syn)
    loss = batched_distance(g_real, g_syn, cfg.metric)
    _image_step(ctx, _image_grad(ctx, loss))
    local = torch.zeros(ctx.num_classes, dtype=torch.float64, device=comm_device())
    local[ctx.shard.start] = float(loss.detach())  # one partial sum per rank
    return float(all_reduce_sum_(local).sum())


def match(ctx: Context, net: nn.Module, names: list[str], step: int, strategy: str) -> float:
    with ctx.timer.section("clustering"):
        batches = ctx.sampler.sample(step, ctx.embed_fn(net), ctx.streams.per_class)
    with ctx.timer.section("matching"):
        if ctx.cfg.formulation == "batched":
            return match_batched(ctx, net, names, batches, strategy)
        step_each = ctx.cfg.formulation == "per-class"
        return match_per_class(ctx, net, names, batches, strategy, step_each)


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
        cutmix_loss(net(x), y_a, y_b, lam).backward()
    else:
        n = x.shape[0]
        lo, hi = balanced_range(n, ctx.shard.rank, ctx.shard.world_size)
        if hi > lo:
            share = cutmix_loss(net(x[lo:hi]), y_a[lo:hi], y_b[lo:hi], lam) * ((hi - lo) / n)
            share.backward()
        all_reduce_gradients(list(net.parameters()))
    opt.step()


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
    assert ctx.shard is not None
    x_all = gather_blocks(ctx.syn.images.detach(), ctx.shard, ctx.syn.ipc)
    y_all = torch.arange(ctx.num_classes, device=x_all.device).repeat_interleave(ctx.syn.ipc)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(x_all.shape[0], generator=ctx.generator).to(x_all.device)
        for i in range(0, x_all.shape[0], 256):
            idx = order[i : i + 256]
            x = info.normalize(x_all[idx])
            if cfg.framework == "dsa":
                strategy = augment_strategy(ctx, cfg.match_aug, ctx.generator)
                x = dsa(x, strategy, ctx.generator, per_sample=True)
            loss = F.cross_entropy(net(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    ctx.check_network(net, "network after a synthetic-data update")


# ----------------------------------------------------------------------------------------
# the outer iterations


def idc_outer(ctx: Context, iteration: int) -> float:
    """IDC/DREAM: fresh network; inner loop of matching steps with real-data updates."""
    cfg = ctx.cfg
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
        total += match(ctx, net, names, step, cfg.match_aug)
        with ctx.timer.section("network_update"):
            train_net_on_real(ctx, net, opt_net)
        if ctx.on_inner is not None:
            ctx.on_inner()
    return total / (cfg.inner_loop * ctx.num_classes)


def dc_outer(ctx: Context, iteration: int) -> float:
    """DC / DSA: fresh network; rounds of (match all classes, train net on synthetic)."""
    cfg = ctx.cfg
    net = ctx.make_net(iteration)
    opt_net = torch.optim.SGD(net.parameters(), lr=cfg.lr_net)
    reset = getattr(ctx.sampler, "reset", None)
    if reset is not None:
        reset()
    names = matched_parameter_names(net, cfg.match_bias, cfg.match_fc)
    strategy = cfg.match_aug if cfg.framework == "dsa" else "none"
    total = 0.0
    for step in range(cfg.inner_loop):
        total += match(ctx, net, names, step, strategy)
        if ctx.on_inner is not None:
            ctx.on_inner()
        if step == cfg.inner_loop - 1:
            break
        with ctx.timer.section("network_update"):
            train_net_on_syn(ctx, net, opt_net, cfg.net_epochs_syn)
    return total / (cfg.inner_loop * ctx.num_classes)


def dm_outer(ctx: Context, iteration: int) -> float:
    """DM: a fresh frozen network; match per-class mean embeddings (one step, all classes)."""
    cfg, syn = ctx.cfg, ctx.syn
    assert ctx.shard is not None
    net = ctx.make_net(iteration)
    for p in net.parameters():
        p.requires_grad_(False)
    with ctx.timer.section("clustering"):
        batches = ctx.sampler.sample(iteration, ctx.embed_fn(net), ctx.streams.per_class)
    with ctx.timer.section("matching"):
        real, fake, sizes_r, sizes_s = [], [], [], []
        decoded = syn.all_decoded()
        for pos, (c, idx) in enumerate(zip(ctx.shard.classes, batches, strict=True)):
            z_real, z_syn = _augment_pair(
                ctx, c, class_batch(ctx.train, c, idx, ctx.device), decoded[pos], cfg.match_aug
            )
            real.append(z_real)
            fake.append(z_syn)
            sizes_r.append(z_real.shape[0])
            sizes_s.append(z_syn.shape[0])
        net.train()
        with torch.no_grad():
            f_real = net.embed(torch.cat(real)).split(sizes_r)
        f_syn = net.embed(torch.cat(fake)).split(sizes_s)
        terms = [distribution_distance(r, s) for r, s in zip(f_real, f_syn, strict=True)]
        loss = sum(terms, start=torch.zeros((), device=ctx.device))
        _image_step(ctx, _image_grad(ctx, loss))
    losses = {c: float(t.detach()) for c, t in zip(ctx.shard.classes, terms, strict=True)}
    return class_losses_total(ctx, losses) / ctx.num_classes


FRAMEWORK_STEPS: dict[str, Callable[[Context, int], float]] = {
    "idc": idc_outer,
    "dc": dc_outer,
    "dsa": dc_outer,
    "dm": dm_outer,
}
