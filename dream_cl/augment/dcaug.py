"""DC's evaluation augmentation (VICO ``utils.augment``): one random op per image.

DC trains its evaluation networks with a non-differentiable augmentation, and only on MNIST
(``get_daparam``: crop 4 px, scale +-20 %, rotate +-45 degrees; every other dataset trains
without augmentation). Each image gets exactly one op, chosen uniformly among the listed ones.
The official code draws from NumPy's global state; here every draw comes from one CPU
``torch.Generator``. Rotation uses ``scipy.ndimage.rotate`` (cubic spline, the image's mean
as fill), as the official code does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import rotate as _scipy_rotate
from torch import Tensor

DC_MNIST_STRATEGY = "crop_scale_rotate"
DC_CROP = 4
DC_SCALE = 0.2
DC_ROTATE = 45
DC_OPS = ("crop", "scale", "rotate")


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(low, high, (1,), generator=generator))


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand(1, generator=generator, dtype=torch.float64))


def dc_augment(x: Tensor, strategy: str, generator: torch.Generator | None = None) -> Tensor:
    """Augment a normalised batch (B, C, H, W) image by image, as DC's evaluation does."""
    ops = [op for op in strategy.split("_") if op and op != "none"]
    unknown = sorted(set(ops) - set(DC_OPS))
    if unknown:
        raise ValueError(f"unknown DC augmentation op(s) {unknown}; known: {', '.join(DC_OPS)}")
    if not ops:
        return x
    b, c, h, w = x.shape
    mean = [float(x[:, ch].mean()) for ch in range(c)]
    pad = torch.tensor(mean, dtype=x.dtype, device=x.device).view(c, 1, 1)
    out = x.clone()
    for i in range(b):
        op = ops[_randint(0, len(ops), generator)]
        if op == "crop":
            canvas = pad.expand(c, h + 2 * DC_CROP, w + 2 * DC_CROP).clone()
            canvas[:, DC_CROP : DC_CROP + h, DC_CROP : DC_CROP + w] = x[i]
            r, s = _randint(0, 2 * DC_CROP, generator), _randint(0, 2 * DC_CROP, generator)
            out[i] = canvas[:, r : r + h, s : s + w]
        elif op == "scale":
            nh = int(_uniform(1 - DC_SCALE, 1 + DC_SCALE, generator) * h)
            nw = int(_uniform(1 - DC_SCALE, 1 + DC_SCALE, generator) * h)
            tmp = F.interpolate(x[i : i + 1], [nh, nw])[0]
            m = max(nh, nw, h, w)
            canvas = torch.zeros(c, m, m, dtype=x.dtype, device=x.device)
            r, s = (m - nh) // 2, (m - nw) // 2
            canvas[:, r : r + nh, s : s + nw] = tmp
            r, s = (m - h) // 2, (m - w) // 2
            out[i] = canvas[:, r : r + h, s : s + w]
        else:
            angle = _randint(-DC_ROTATE, DC_ROTATE, generator)
            img = x[i].detach().cpu().numpy()
            rot = _scipy_rotate(img, angle=angle, axes=(-2, -1), cval=float(np.mean(mean)))
            r, s = (rot.shape[-2] - h) // 2, (rot.shape[-1] - w) // 2
            out[i] = torch.as_tensor(
                np.ascontiguousarray(rot[:, r : r + h, s : s + w]), dtype=x.dtype
            ).to(x.device)
    return out


__all__ = ["DC_MNIST_STRATEGY", "DC_OPS", "dc_augment"]
