"""Gradient matching, shared by IDC, DC and DSA: per-class and batched formulations, the
siamese augmentation of the two halves, and the image step.

The per-class formulation is the official one (one image step per class, in class order);
the batched one stacks every held class into one vectorised pass (docs/fidelity.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dream_cl.augment import (
    apply_dsa,
    parse_strategy,
    sample_dsa,
)
from dream_cl.distill.context import Context
from dream_cl.distill.matching import (
    class_gradients,
    gradient_distance,
    layer_distance,
)
from dream_cl.distill.samplers import class_batch
from dream_cl.distributed import (
    all_reduce_sum_,
    comm_device,
)
from dream_cl.protocol.frameworks import framework_rules


def image_grad(ctx: Context, loss: torch.Tensor) -> torch.Tensor:
    """d loss / d images only (skips the network's parameter gradients we never use).

    ``ctx.grad_scale`` (DC/DSA/DM) turns the step into the one the original papers take on
    normalised images: SGD on z = (x - m)/s with lr equals SGD on x with lr * s^2.
    """
    (grad,) = torch.autograd.grad(loss, [ctx.syn.images])
    if ctx.grad_scale is not None:
        grad = grad * ctx.grad_scale
    return grad


def set_image_grad(ctx: Context, loss: torch.Tensor) -> None:
    ctx.syn.images.grad = image_grad(ctx, loss)


# ----------------------------------------------------------------------------------------
# gradient matching, shared by IDC / DC / DSA


def augment_strategy(ctx: Context, strategy: str, generator: torch.Generator) -> str:
    """The ops one augmentation call applies.

    IDC/DREAM stack them (flip, colour, one geometric op, cutout). The DSA and DM papers'
    default ('S' mode) applies *one* op group per call, chosen at random among the listed
    ones; for those frameworks this picks that group with ``generator``.
    """
    if not framework_rules(ctx.cfg.framework).one_aug_group:
        return strategy
    groups = parse_strategy(strategy)
    if len(groups) <= 1:
        return strategy
    return groups[int(torch.randint(len(groups), (1,), generator=generator))]


def augment_pair(
    ctx: Context, c: int, x_real: torch.Tensor, x_syn: torch.Tensor, strategy: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise, then one siamese DSA draw for both halves (one draw per class, from the
    class's own stream)."""
    info = ctx.info
    g = ctx.streams.for_class(c)
    zr, zs = info.normalize(x_real), info.normalize(x_syn)
    params = sample_dsa(augment_strategy(ctx, strategy, g), 1, info.image_size, g)
    return apply_dsa(zr, params), apply_dsa(zs, params)


def image_step(ctx: Context, grad: torch.Tensor | None) -> None:
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
    Under ``--compile`` each class's gradient comes from the run's compiled function.
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
                image_step(ctx, None)
            continue
        x_real = class_batch(ctx.train, c, owned[c], ctx.device)
        x_syn = ctx.subsample_syn(syn.class_decoded(c), c)
        z_real, z_syn = augment_pair(ctx, c, x_real, x_syn, strategy)
        y_real = torch.full((z_real.shape[0],), c, device=ctx.device)
        y_syn = torch.full((z_syn.shape[0],), c, device=ctx.device)
        if ctx.compiled is not None:
            distance = lambda r, s: gradient_distance(r, s, cfg.metric)  # noqa: E731
            compiled = ctx.compiled.matching(net, names, distance)
            dz, loss = compiled(net, z_real, y_real, z_syn, y_syn)
            (grad,) = torch.autograd.grad(z_syn, [syn.images], dz)
            if ctx.grad_scale is not None:
                grad = grad * ctx.grad_scale
        else:
            with ctx.autocast():
                g_real = [g.detach() for g in class_gradients(net, params, z_real, y_real, False)]
                g_syn = class_gradients(net, params, z_syn, y_syn, True)
            loss = gradient_distance(g_real, g_syn, cfg.metric)
            grad = image_grad(ctx, loss)
        if step_each:
            image_step(ctx, grad)
        else:
            summed = grad if summed is None else summed + grad
        losses[c] = float(loss.detach())
    if summed is not None:
        image_step(ctx, summed)
    return class_losses_total(ctx, losses)


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
        z_real, z_syn = augment_pair(ctx, c, x_real, x_syn, strategy)
        real.append(z_real)
        fake.append(z_syn)
    z_real, z_syn = torch.stack(real), torch.stack(fake)
    classes = torch.tensor(ctx.shard.classes, device=ctx.device)
    y_real = classes.unsqueeze(1).expand(-1, z_real.shape[1])
    y_syn = classes.unsqueeze(1).expand(-1, z_syn.shape[1])
    grads = batched_class_gradients(net, names)
    with ctx.autocast():
        g_real = {k: v.detach() for k, v in grads(z_real, y_real).items()}
        g_syn = grads(z_syn, y_syn)
    loss = batched_distance(g_real, g_syn, cfg.metric)
    image_step(ctx, image_grad(ctx, loss))
    local = torch.zeros(ctx.num_classes, dtype=torch.float64, device=comm_device())
    local[ctx.shard.start] = float(loss.detach())  # one partial sum per rank
    return float(all_reduce_sum_(local).sum())


class GradientMatcher:
    """The matching step of IDC, DC and DSA: draw the real batches, then match in the
    configured formulation (under ``--compile`` with the run's compiled function,
    ``Context.compiled``)."""

    def match(
        self, ctx: Context, net: nn.Module, names: list[str], step: int, strategy: str
    ) -> float:
        """One matching step: draw the real batches, then match in the configured
        formulation; returns the loss summed over the run's classes."""
        with ctx.timer.section("clustering"):
            batches = ctx.sampler.sample(step, ctx.embed_fn(net), ctx.streams.per_class)
        with ctx.timer.section("matching"):
            if ctx.cfg.formulation == "batched":
                return match_batched(ctx, net, names, batches, strategy)
            step_each = ctx.cfg.formulation == "per-class"
            return match_per_class(ctx, net, names, batches, strategy, step_each)
