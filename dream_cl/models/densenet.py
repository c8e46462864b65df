"""DenseNet-BC for small images ("DenseNet-121" of the IDC/DREAM cross-architecture tables).

Blocks [6, 12, 24, 16] with growth rate 12 (not ImageNet's 32), compression 0.5, bottleneck
4*growth, pre-activation norm-ReLU-conv. Channels for the defaults:
24 -> 96 -> 48 -> 192 -> 96 -> 384 -> 192 -> 384, so the classifier is Linear(384, C).
Unlike the official net it accepts any channel count and any input size (adaptive head pool).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from dream_cl.models.base import (
    ClassifierNet,
    HalvingAvgPool2d,
    check_choice,
    check_geometry,
    make_norm,
)

DENSE_NORMS: tuple[str, ...] = ("batch", "instance")


class DenseLayer(nn.Module):
    """Bottleneck: norm-ReLU-conv1x1(4g) -> norm-ReLU-conv3x3(g), output concatenated [new, x]."""

    def __init__(self, in_ch: int, growth: int, norm: str) -> None:
        super().__init__()
        self.norm1 = make_norm(norm, in_ch)
        self.conv1 = nn.Conv2d(in_ch, 4 * growth, kernel_size=1, bias=False)
        self.norm2 = make_norm(norm, 4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, kernel_size=3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.norm1(x)))
        out = self.conv2(self.relu(self.norm2(out)))
        return torch.cat([out, x], dim=1)


class Transition(nn.Sequential):
    """norm-ReLU-conv1x1 (compression) then 2x2 avg pool (skipped on maps too small to halve)."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        super().__init__(
            make_norm(norm, in_ch),
            nn.ReLU(),
            nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False),
            HalvingAvgPool2d(),
        )


class DenseNetCifar(ClassifierNet):
    """DenseNet-BC: stem conv3x3 -> (dense block, transition) x3 -> dense block -> head."""

    def __init__(
        self,
        channels: int,
        num_classes: int,
        *,
        blocks: tuple[int, ...] = (6, 12, 24, 16),
        growth: int = 12,
        compression: float = 0.5,
        norm: str = "batch",
    ) -> None:
        norm = check_choice("norm", norm, DENSE_NORMS)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        n_ch = 2 * growth
        layers["stem"] = nn.Conv2d(channels, n_ch, kernel_size=3, padding=1, bias=False)
        for i, n_layers in enumerate(blocks):
            dense = []
            for _ in range(n_layers):
                dense.append(DenseLayer(n_ch, growth, norm))
                n_ch += growth
            layers[f"dense{i + 1}"] = nn.Sequential(*dense)
            if i < len(blocks) - 1:
                out_ch = int(math.floor(n_ch * compression))
                layers[f"trans{i + 1}"] = Transition(n_ch, out_ch, norm)
                n_ch = out_ch
        layers["norm"] = make_norm(norm, n_ch)
        layers["relu"] = nn.ReLU()
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        super().__init__(nn.Sequential(layers), nn.Linear(n_ch, num_classes))
        self.norm = norm


def densenet121(
    channels: int, num_classes: int, image_size: int, *, norm: str = "batch"
) -> DenseNetCifar:
    """DenseNet-BC-121 for CIFAR-sized inputs (growth 12)."""
    check_geometry(channels, num_classes, image_size)
    return DenseNetCifar(channels, num_classes, norm=norm)
