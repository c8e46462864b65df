"""Matching objectives: gradient matching (DC/IDC/DREAM) and distribution matching (DM).

Distances follow the official code exactly:

- ``mse``: sum of squared differences (a sum, not a mean);
- ``l1``: sum of absolute differences;
- ``l1_mean``: per output unit (first dimension), mean |a-b|, summed over units;
- ``cos``: per output unit, 1 - cosine(a, b) with eps 1e-6, summed over units (DC's distance).

Which parameters are matched follows the official defaults: conv kernels (>2-D tensors)
always; 1-D tensors (biases, norm affine) only with ``bias=True``; the 2-D classifier weight
only with ``fc=True``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dream_cl.errors import UserError

METRICS = ("mse", "l1", "l1_mean", "cos")


def _rows(t: torch.Tensor) -> torch.Tensor:
    """View a parameter gradient as (output units, rest); 1-D tensors become one row."""
    return t.reshape(1, -1) if t.ndim == 1 else t.reshape(t.shape[0], -1)


def layer_distance(a: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """Distance between two gradients of one parameter tensor (batched over a leading dim ok)."""
    if metric == "mse":
        return ((a - b) ** 2).sum()
    if metric == "l1":
        return (a - b).abs().sum()
    if metric == "l1_mean":
        return (_rows(a) - _rows(b)).abs().mean(dim=1).sum()
    if metric == "cos":
        ra, rb = _rows(a), _rows(b)
        dots = (ra * rb).sum(dim=1)
        norms = ra.norm(dim=1) * rb.norm(dim=1) + 1e-6
        return (1.0 - dots / norms).sum()
    raise UserError(f"unknown matching metric '{metric}'; use one of {', '.join(METRICS)}")


def gradient_distance(
    g_real: Sequence[torch.Tensor], g_syn: Sequence[torch.Tensor], metric: str
) -> torch.Tensor:
    """Sum of per-tensor distances, in parameter order."""
    return sum(
        (layer_distance(r, s, metric) for r, s in zip(g_real, g_syn, strict=True)),
        start=torch.zeros((), device=g_syn[0].device),
    )


def matched_parameter_names(model: nn.Module, bias: bool = False, fc: bool = False) -> list[str]:
    """Names of the parameters gradient matching compares (official selection rules)."""
    names = []
    classifier = {f"classifier.{n}" for n, _ in model.classifier.named_parameters()}
    for name, p in model.named_parameters():
        if p.ndim == 1:
            if bias:
                names.append(name)
        elif name in classifier or p.ndim == 2:
            if fc:
                names.append(name)
        else:
            names.append(name)
    return names


def class_gradients(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor,
    create_graph: bool,
) -> tuple[torch.Tensor, ...]:
    """Gradients of the mean cross-entropy w.r.t. ``params`` for one batch."""
    loss = F.cross_entropy(model(images), labels)
    return torch.autograd.grad(loss, params, create_graph=create_graph)


def distribution_distance(real_features: torch.Tensor, syn_features: torch.Tensor) -> torch.Tensor:
    """DM's loss: squared distance between the mean embeddings, summed over features."""
    return ((real_features.mean(0) - syn_features.mean(0)) ** 2).sum()
