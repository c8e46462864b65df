"""Pictures a person would rather look at than read: image grids and accuracy plots."""

from __future__ import annotations

from pathlib import Path

import torch

from dream_cl.utils import atomic_write


def class_grid(images: torch.Tensor, labels: torch.Tensor, max_classes: int = 100) -> torch.Tensor:
    """Arrange images (float [0,1], N,C,H,W) one row per class; returns a (C, H', W') grid."""
    from torchvision.utils import make_grid

    if images.shape[-1] < 32:  # tiny images (digits): enlarge so the grid is visible
        scale = -(-32 // images.shape[-1])
        images = torch.nn.functional.interpolate(images, scale_factor=scale, mode="nearest")
    classes = torch.unique(labels).tolist()[:max_classes]
    rows = [images[labels == c] for c in classes]
    per_row = max(r.shape[0] for r in rows)
    blank = images.new_ones((1, *images.shape[1:]))
    tiles = [torch.cat([r, blank.expand(per_row - r.shape[0], -1, -1, -1)]) for r in rows]
    return make_grid(torch.cat(tiles).clamp(0, 1), nrow=per_row, padding=1, pad_value=1.0)


def save_class_grid(
    images: torch.Tensor, labels: torch.Tensor, path: str | Path, max_classes: int = 100
) -> Path:
    """Write :func:`class_grid` as a PNG, atomically."""
    from PIL import Image

    grid = class_grid(images.detach().cpu().float(), labels.cpu(), max_classes)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    return atomic_write(path, lambda p: Image.fromarray(array).save(p, format="PNG"))
