"""Differentiable siamese augmentation (DSA), as IDC/DREAM's ``DiffAug`` with ``single_aug=True``.

Drawing parameters is split from applying them (kornia-style): gradient matching needs the
*same* random augmentation on the real and the synthetic batch (the siamese property), so one
draw (``n=1``) is applied to both, while network training draws per sample (``n=batch``).
Parameters are drawn on the CPU from an explicit generator so a seed gives the same
augmentation on any device.

Composition per call: flip, then colour (brightness, saturation, contrast), then exactly one of
the listed geometric ops {crop, scale, rotate} chosen at random (one choice per call, shared by
the batch even for per-sample draws), then cutout. Each runs only if listed in the strategy.
Inputs are already normalised, so nothing is clamped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dream_cl.errors import UserError

__all__ = [
    "BRIGHTNESS",
    "CONTRAST",
    "CROP_PAD_RATIO",
    "CUTOUT_RATIO",
    "FLIP_PROB",
    "GEOMETRIC_OPS",
    "KNOWN_OPS",
    "ROTATE_DEGREES",
    "SATURATION",
    "SCALE_RATIO",
    "DSAParams",
    "apply_dsa",
    "crop_shift",
    "cutout_size",
    "dsa",
    "parse_strategy",
    "sample_dsa",
]

# Constants of the official DiffAug (u ~ U(0, 1) below).
FLIP_PROB = 0.5  # horizontal flip probability
BRIGHTNESS = 1.0  # x + (u - 0.5) * BRIGHTNESS
SATURATION = 2.0  # (x - mean_c) * (u * SATURATION) + mean_c
CONTRAST = 0.5  # (x - mean_chw) * (u + CONTRAST) + mean_chw
SCALE_RATIO = 1.2  # sx, sy ~ U(1/ratio, ratio)
ROTATE_DEGREES = 15.0  # angle ~ U(-15, 15) degrees
CROP_PAD_RATIO = 0.125  # integer shift in [-s, s], s = int(ratio * H + 0.5)
CUTOUT_RATIO = 0.5  # zeroed square of side int(ratio * H + 0.5)

GEOMETRIC_OPS: tuple[str, ...] = ("crop", "scale", "rotate")
KNOWN_OPS: frozenset[str] = frozenset({"flip", "color", "cutout", *GEOMETRIC_OPS})


def crop_shift(image_size: int) -> int:
    """Largest crop translation in pixels (4 at 28/32 px, 8 at 64 px)."""
    return int(image_size * CROP_PAD_RATIO + 0.5)


def cutout_size(image_size: int) -> int:
    """Side of the cutout square in pixels (14 at 28 px, 16 at 32 px, 32 at 64 px)."""
    return int(image_size * CUTOUT_RATIO + 0.5)


def parse_strategy(strategy: str | Sequence[str]) -> tuple[str, ...]:
    """Split an underscore-joined strategy into validated lower-case ops, keeping their order.

    '' and 'none' mean no augmentation (empty tuple). Repeats are dropped. The order of the
    geometric ops is kept because the random choice indexes into it, as in the official code.
    """
    if isinstance(strategy, str):
        text = strategy.strip().lower()
        if text in ("", "none"):
            return ()
        tokens: Sequence[str] = text.split("_")
    else:
        tokens = [str(t).strip().lower() for t in strategy]
    ops: list[str] = []
    for token in tokens:
        if token not in KNOWN_OPS:
            raise UserError(
                f"unknown augmentation {token!r} in DSA strategy {strategy!r}; use "
                f"'_'-joined ops from {', '.join(sorted(KNOWN_OPS))} (or 'none')"
            )
        if token not in ops:
            ops.append(token)
    return tuple(ops)


@dataclass(frozen=True, eq=False)
class DSAParams:
    """One draw of DSA parameters (CPU tensors with leading dim ``n``); ``None`` = op not used.

    ``n == 1`` is a single draw shared by any batch (siamese); otherwise one draw per sample.
    Stored values are the quantities applied, not the raw uniforms.
    """

    n: int
    image_size: int
    ops: tuple[str, ...] = ()
    flip: Tensor | None = None  # (n,) bool: mirror horizontally
    brightness: Tensor | None = None  # (n,) additive offset in [-0.5, 0.5]
    saturation: Tensor | None = None  # (n,) factor in [0, 2]
    contrast: Tensor | None = None  # (n,) factor in [0.5, 1.5]
    geometric: str | None = None  # the one geometric op chosen for this call
    shift: Tensor | None = None  # (n, 2) int64 (row, col): out[i, j] = x[i + row, j + col]
    scale: Tensor | None = None  # (n, 2) (sx, sy) affine scale factors
    angle: Tensor | None = None  # (n,) rotation in radians
    cutout_centre: Tensor | None = None  # (n, 2) int64 (row, col) centre of the zeroed square

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"DSAParams.n must be >= 1, got {self.n}")
        if self.geometric is not None and self.geometric not in GEOMETRIC_OPS:
            raise ValueError(f"unknown geometric op {self.geometric!r}")
        expected = {"crop": self.shift, "scale": self.scale, "rotate": self.angle}
        for op, value in expected.items():
            if (value is not None) != (self.geometric == op):
                raise ValueError(f"geometric={self.geometric!r} inconsistent with {op} params")

    @property
    def is_identity(self) -> bool:
        """True when applying these parameters returns the input unchanged."""
        return all(
            v is None
            for v in (self.flip, self.brightness, self.saturation, self.contrast)
            + (self.geometric, self.cutout_centre)
        )


def sample_dsa(
    strategy: str | Sequence[str],
    n: int,
    image_size: int,
    generator: torch.Generator | None = None,
) -> DSAParams:
    """Draw DSA parameters on the CPU: ``n=1`` shared by a batch, ``n=batch`` per sample.

    Draw order (flip, brightness, saturation, contrast, geometric choice and its parameters,
    cutout) is fixed, so a seeded generator gives the same parameters every time.
    """
    ops = parse_strategy(strategy)
    if n < 1:
        raise ValueError(f"number of draws n must be >= 1, got {n}")
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    g = generator
    f32 = torch.float32
    fields: dict[str, object] = {}
    if "flip" in ops:
        fields["flip"] = torch.rand(n, generator=g, dtype=f32) < FLIP_PROB
    if "color" in ops:
        fields["brightness"] = (torch.rand(n, generator=g, dtype=f32) - 0.5) * BRIGHTNESS
        fields["saturation"] = torch.rand(n, generator=g, dtype=f32) * SATURATION
        fields["contrast"] = torch.rand(n, generator=g, dtype=f32) + CONTRAST
    geometric = [op for op in ops if op in GEOMETRIC_OPS]
    if geometric:
        choice = geometric[int(torch.randint(len(geometric), (1,), generator=g))]
        fields["geometric"] = choice
        if choice == "crop":
            s = crop_shift(image_size)
            fields["shift"] = torch.randint(-s, s + 1, (n, 2), generator=g)
        elif choice == "scale":
            lo = 1.0 / SCALE_RATIO
            fields["scale"] = torch.rand(n, 2, generator=g, dtype=f32) * (SCALE_RATIO - lo) + lo
        else:
            max_rad = math.radians(ROTATE_DEGREES)
            fields["angle"] = (torch.rand(n, generator=g, dtype=f32) - 0.5) * 2.0 * max_rad
    if "cutout" in ops:
        side = cutout_size(image_size)
        # Official range: centres 0..H-1, plus H when the side is even (so the square can
        # hang off the bottom/right edge by the same amount as the top/left).
        high = image_size + (1 - side % 2)
        fields["cutout_centre"] = torch.randint(0, high, (n, 2), generator=g)
    return DSAParams(n=n, image_size=image_size, ops=ops, **fields)  # type: ignore[arg-type]


def _per_image(t: Tensor, x: Tensor) -> Tensor:
    """(n,) parameter -> (n, 1, 1, 1) on x's device/dtype; n=1 broadcasts over the batch."""
    return t.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _expand(t: Tensor, batch: int) -> Tensor:
    return t.expand(batch, *t.shape[1:]) if t.shape[0] == 1 else t


def _translate(x: Tensor, shift: Tensor) -> Tensor:
    """Integer translation with zero fill: out[b, :, i, j] = x[b, :, i + dr_b, j + dc_b]."""
    b, _, h, w = x.shape
    s = _expand(shift.to(x.device), b)
    rows = (torch.arange(h, device=x.device)[None, :] + s[:, :1] + 1).clamp(0, h + 1)
    cols = (torch.arange(w, device=x.device)[None, :] + s[:, 1:] + 1).clamp(0, w + 1)
    padded = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # index 0 and h+1 are the zero border
    batch_idx = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch_idx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


def _affine(x: Tensor, theta: Tensor) -> Tensor:
    """Bilinear resampling with zero padding, as DiffAug (PyTorch defaults, align_corners=False)."""
    theta = _expand(theta.to(device=x.device, dtype=x.dtype), x.shape[0])
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _scale_theta(scale: Tensor) -> Tensor:
    theta = torch.zeros(scale.shape[0], 2, 3, dtype=scale.dtype)
    theta[:, 0, 0] = scale[:, 0]
    theta[:, 1, 1] = scale[:, 1]
    return theta


def _rotate_theta(angle: Tensor) -> Tensor:
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(angle.shape[0], 2, 3, dtype=angle.dtype)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = cos
    return theta


def _cutout(x: Tensor, centre: Tensor, side: int) -> Tensor:
    """Zero a side x side square starting at centre - side // 2, clipped to the image."""
    _, _, h, w = x.shape
    start = centre.to(x.device) - side // 2  # (n, 2)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + side)  # (n, H)
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + side)  # (n, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (n, H, W)
    return x * keep[:, None].to(x.dtype)


def apply_dsa(x: Tensor, params: DSAParams) -> Tensor:
    """Apply drawn parameters to a batch (B, C, H, W); differentiable with respect to ``x``.

    A 1-draw ``params`` applies to any batch size (siamese use); per-sample params need
    ``B == params.n``. The images must be ``params.image_size`` square.
    """
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
    batch, _, h, w = x.shape
    if (h, w) != (params.image_size, params.image_size):
        raise ValueError(
            f"DSA params were drawn for {params.image_size}x{params.image_size} images, got {h}x{w}"
        )
    if params.n != 1 and params.n != batch:
        raise ValueError(f"per-sample DSA params have n={params.n} draws but batch is {batch}")
    if params.is_identity:
        return x
    if params.flip is not None:
        x = torch.where(params.flip.to(x.device).view(-1, 1, 1, 1), x.flip(3), x)
    if params.brightness is not None:
        x = x + _per_image(params.brightness, x)
    if params.saturation is not None:
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * _per_image(params.saturation, x) + mean
    if params.contrast is not None:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * _per_image(params.contrast, x) + mean
    if params.shift is not None:
        x = _translate(x, params.shift)
    elif params.scale is not None:
        x = _affine(x, _scale_theta(params.scale))
    elif params.angle is not None:
        x = _affine(x, _rotate_theta(params.angle))
    if params.cutout_centre is not None:
        x = _cutout(x, params.cutout_centre, cutout_size(params.image_size))
    return x.contiguous()


def dsa(
    x: Tensor,
    strategy: str | Sequence[str],
    generator: torch.Generator | None = None,
    per_sample: bool = True,
) -> Tensor:
    """Draw and apply in one go: per-sample draws (training) or one shared draw (matching)."""
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
    n = x.shape[0] if per_sample else 1
    params = sample_dsa(strategy, max(n, 1), x.shape[-1], generator)
    return apply_dsa(x, params)
