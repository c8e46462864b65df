"""CIFAR-style ResNets (strided convs, 3x3 stem, no max-pool).

ResNet-10 here is the evaluation / continual-learning network of IDC and DREAM: one BasicBlock
per stage, 32-64-128-256 channels, BatchNorm. ResNet-18 is the usual CIFAR ResNet-18.
Global pooling is adaptive, so any input size (8 to 64+ pixels) gives the same embedding width.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dream_cl.models.base import (
    ClassifierNet,
    check_choice,
    check_geometry,
    init_resnet_weights,
    make_norm,
)

RESNET_NORMS: tuple[str, ...] = ("batch", "instance")


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv without bias: every conv is followed by a norm that has its own shift."""
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3(stride) -> norm -> ReLU -> conv3x3 -> norm, plus shortcut, then ReLU.

    The shortcut is a strided 1x1 conv + norm whenever the shape changes, identity otherwise.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, norm: str) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = make_norm(norm, out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)
        self.bn2 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False),
                make_norm(norm, out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(ClassifierNet):
    """Stem conv3x3 -> norm -> ReLU, four stages (first stride 1, others 2), global avg pool.

    ``stage_channels`` is kept as an attribute so callers and tests can see the widths.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        *,
        stem_channels: int,
        stage_channels: tuple[int, int, int, int],
        blocks_per_stage: tuple[int, int, int, int],
        norm: str = "batch",
    ) -> None:
        norm = check_choice("norm", norm, RESNET_NORMS)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = nn.Sequential(
            conv3x3(channels, stem_channels), make_norm(norm, stem_channels), nn.ReLU(inplace=True)
        )
        in_ch = stem_channels
        for i, (out_ch, n_blocks) in enumerate(zip(stage_channels, blocks_per_stage, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = []
            for b in range(n_blocks):
                blocks.append(BasicBlock(in_ch, out_ch, stride if b == 0 else 1, norm))
                in_ch = out_ch
            layers[f"layer{i + 1}"] = nn.Sequential(*blocks)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        super().__init__(nn.Sequential(layers), nn.Linear(in_ch, num_classes))
        self.stage_channels: tuple[int, ...] = tuple(stage_channels)
        self.norm = norm
        init_resnet_weights(self.features)


def resnet10(channels: int, num_classes: int, image_size: int, *, norm: str = "batch") -> ResNet:
    """ResNet-10 (CIFAR variant): 32-64-128-256 channels, one block per stage."""
    check_geometry(channels, num_classes, image_size)
    return ResNet(
        channels,
        num_classes,
        stem_channels=32,
        stage_channels=(32, 64, 128, 256),
        blocks_per_stage=(1, 1, 1, 1),
        norm=norm,
    )


def resnet18(channels: int, num_classes: int, image_size: int, *, norm: str = "batch") -> ResNet:
    """ResNet-18 (CIFAR variant): 64-128-256-512 channels, two blocks per stage."""
    check_geometry(channels, num_classes, image_size)
    return ResNet(
        channels,
        num_classes,
        stem_channels=64,
        stage_channels=(64, 128, 256, 512),
        blocks_per_stage=(2, 2, 2, 2),
        norm=norm,
    )
