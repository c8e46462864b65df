"""CutMix as in IDC/DREAM's network training and evaluation (``mixup='cut'``).

A box of a randomly permuted partner image is pasted into each image; the loss mixes the two
labels by the exact pasted area. All randomness comes from one CPU ``torch.Generator``.

The mixing weight lam ~ Beta(beta, beta) is drawn with NumPy because torch's Beta/Gamma
samplers take no generator: a 62-bit seed is drawn from the torch generator and seeds a fresh
``numpy.random.default_rng``, whose ``beta(beta, beta)`` gives lam. This is deterministic per
torch seed and exact for any beta (for beta=1 it is U(0, 1), as in the official default).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cutmix", "cutmix_box", "cutmix_loss", "maybe_cutmix", "sample_beta"]


def sample_beta(beta: float, generator: torch.Generator | None = None) -> float:
    """lam ~ Beta(beta, beta), reproducible from the torch generator (see module docstring)."""
    if not beta > 0:
        raise ValueError(f"CutMix beta must be > 0, got {beta}")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return float(np.random.default_rng(seed).beta(beta, beta))


def cutmix_box(
    height: int, width: int, lam: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """Box (top, left, bottom, right), half-open, as the official ``rand_bbox``.

    Sides are int(size * sqrt(1 - lam)); the centre is uniform over pixels and the box is
    [c - side // 2, c + side // 2) clipped to the image (so odd sides lose one pixel, as there).
    """
    cut_ratio = float(np.sqrt(1.0 - lam))
    cut_h, cut_w = int(height * cut_ratio), int(width * cut_ratio)
    cy = int(torch.randint(height, (1,), generator=generator))
    cx = int(torch.randint(width, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, left, bottom, right


def cutmix(
    x: Tensor, y: Tensor, generator: torch.Generator | None = None, beta: float = 1.0
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Mix each image with a permuted partner's box; returns (x_mixed, y_a, y_b, lam).

    lam is corrected to 1 - (box area / image area), the weight of ``y_a`` in the loss.
    ``x`` is not modified; gradients flow to it.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
    lam = sample_beta(beta, generator)
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    h, w = x.shape[-2:]
    top, left, bottom, right = cutmix_box(h, w, lam, generator)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[perm, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (h * w)
    return mixed, y, y[perm.to(y.device)], lam


def cutmix_loss(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: float) -> Tensor:
    """lam * CE(logits, y_a) + (1 - lam) * CE(logits, y_b), both mean-reduced."""
    loss = F.cross_entropy(logits, y_a)
    if lam == 1.0:
        return loss
    return loss * lam + F.cross_entropy(logits, y_b) * (1.0 - lam)


def traced_cutmix_loss(logits: Tensor, y_a: Tensor, y_b: Tensor, lam: Tensor) -> Tensor:
    """:func:`cutmix_loss` for a tensor ``lam``, without the Python branch, for compiled and
    vmapped code: with ``lam = 1`` the second term is multiplied by an exact zero."""
    return F.cross_entropy(logits, y_a) * lam + F.cross_entropy(logits, y_b) * (1 - lam)


def maybe_cutmix(
    x: Tensor,
    y: Tensor,
    p: float,
    generator: torch.Generator | None = None,
    beta: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor, float]:
    """CutMix with probability ``p`` (official ``mix_p``); else (x, y, y, 1.0).

    One uniform is always drawn first, so the generator advances the same way for any ``p``
    up to the decision.
    """
    r = float(torch.rand(1, generator=generator))
    if r < p:
        return cutmix(x, y, generator, beta)
    return x, y, y, 1.0
