"""IDC multi-formation: one stored image decodes into an f x f grid of training images.

The budget counts stored images; with factor f each stored image is cut into f*f tiles and
each tile is upsampled back to full size, carrying its parent's label. Sizes not divisible by
f are padded right/bottom with 0.5 first (as the official code does).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def decode(
    images: torch.Tensor, labels: torch.Tensor, factor: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode stored images (N, C, H, W) into N*f^2 images of the same size.

    Output order follows the official code: tile (0,0) of every image, then tile (0,1), ...
    Differentiable in ``images``.
    """
    if factor == 1:
        return images, labels
    n, c, h, w = images.shape
    s_h, s_w = -(-h // factor), -(-w // factor)
    pad_h, pad_w = s_h * factor - h, s_w * factor - w
    x = F.pad(images, (0, pad_w, 0, pad_h), value=0.5) if (pad_h or pad_w) else images
    tiles = []
    for i in range(factor):
        for j in range(factor):
            tiles.append(x[:, :, i * s_h : (i + 1) * s_h, j * s_w : (j + 1) * s_w])
    stacked = torch.cat(tiles)
    out = F.interpolate(stacked, size=(h, w), mode="bilinear", align_corners=False)
    return out, labels.repeat(factor * factor)


def tile_sizes(size: int, factor: int) -> list[int]:
    """Rows (or columns) per tile when encoding real images into the grid at init.

    The first ``size % factor`` tiles get one extra pixel, so the tiles sum to ``size``.
    """
    base, extra = divmod(size, factor)
    return [base + 1 if k < extra else base for k in range(factor)]


def encode(tiles: torch.Tensor, factor: int, size: int) -> torch.Tensor:
    """Build stored images from f^2 groups of real images (k-means init for f > 1).

    ``tiles`` is (f*f, n, C, H, W): group ``k = i*f + j`` fills tile (i, j) of all n stored
    images. Each image is downsampled with nearest-neighbour (the official default mode).
    """
    k, n, c, _, _ = tiles.shape
    if k != factor * factor:
        raise ValueError(f"expected {factor * factor} tile groups, got {k}")
    sizes = tile_sizes(size, factor)
    out = tiles.new_zeros(n, c, size, size)
    y = 0
    for i in range(factor):
        x = 0
        for j in range(factor):
            small = F.interpolate(tiles[i * factor + j], size=(sizes[i], sizes[j]), mode="nearest")
            out[:, :, y : y + sizes[i], x : x + sizes[j]] = small
            x += sizes[j]
        y += sizes[i]
    return out
