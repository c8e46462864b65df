"""ResNets with strided convs, in IDC/DREAM's two branches.

ResNet-10 is the evaluation / continual-learning network of IDC and DREAM: one BasicBlock per
stage, BatchNorm. The official ``models/resnet.py`` picks its branch by dataset name:
``cifar*`` takes the CIFAR branch (32-64-128-256 channels); every other dataset (SVHN, MNIST,
FashionMNIST, TinyImageNet, ...) the ImageNet branch (64-128-256-512), whose stem follows the
input size (<= 64 px: conv3x3; 65-128: conv3x3 + 3x3/2 max-pool; larger: conv7x7/2 +
max-pool). ``models.build_model(..., dataset=...)`` fills the branch as the official code
does; ``branch=`` picks one explicitly. ResNet-18 here is the usual CIFAR ResNet-18
(64-128-256-512, two blocks per stage) in both branches' stem rules.
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
BRANCHES: tuple[str, ...] = ("cifar", "imagenet")


def _stem(channels: int, planes: int, image_size: int, branch: str, norm: str) -> nn.Sequential:
    """conv3x3 -> norm -> ReLU; the ImageNet branch adds its size-dependent downsampling."""
    big = branch == "imagenet" and image_size > 128
    kernel, stride = (7, 2) if big else (3, 1)
    layers: list[nn.Module] = [
        nn.Conv2d(channels, planes, kernel, stride=stride, padding=kernel // 2, bias=False),
        make_norm(norm, planes),
        nn.ReLU(inplace=True),
    ]
    if branch == "imagenet" and image_size > 64:
        layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(*layers)


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
        image_size: int = 32,
        branch: str = "cifar",
    ) -> None:
        norm = check_choice("norm", norm, RESNET_NORMS)
        branch = check_choice("branch", branch, BRANCHES)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["stem"] = _stem(channels, stem_channels, image_size, branch, norm)
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
        self.branch = branch
        init_resnet_weights(self.features)


def resnet10(
    channels: int, num_classes: int, image_size: int, *, norm: str = "batch", branch: str = "cifar"
) -> ResNet:
    """ResNet-10: one block per stage; CIFAR branch 32-64-128-256, ImageNet 64-128-256-512."""
    check_geometry(channels, num_classes, image_size)
    base = 32 if check_choice("branch", branch, BRANCHES) == "cifar" else 64
    return ResNet(
        channels,
        num_classes,
        stem_channels=base,
        stage_channels=(base, base * 2, base * 4, base * 8),
        blocks_per_stage=(1, 1, 1, 1),
        norm=norm,
        image_size=image_size,
        branch=branch,
    )


def resnet18(
    channels: int, num_classes: int, image_size: int, *, norm: str = "batch", branch: str = "cifar"
) -> ResNet:
    """ResNet-18: 64-128-256-512 channels, two blocks per stage (the branch sets the stem)."""
    check_geometry(channels, num_classes, image_size)
    return ResNet(
        channels,
        num_classes,
        stem_channels=64,
        stage_channels=(64, 128, 256, 512),
        blocks_per_stage=(2, 2, 2, 2),
        norm=norm,
        image_size=image_size,
        branch=branch,
    )
