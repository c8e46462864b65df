"""ResNetAP: a ResNet that downsamples by average pooling instead of strided convs.

IDC/DREAM condense ImageNet subsets with ResNetAP-10 and instance norm: strided convs alias
the high frequencies that synthetic images are free to exploit, while 2x2 average pooling
keeps the gradient signal smooth. Every conv has stride 1.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from dream_cl.errors import UserError
from dream_cl.models.base import (
    ClassifierNet,
    HalvingAvgPool2d,
    check_choice,
    check_geometry,
    init_resnet_weights,
    make_norm,
)
from dream_cl.models.resnet import BRANCHES

AP_NORMS: tuple[str, ...] = ("instance", "batch")


def intro_size(image_size: int) -> str:
    """Stem variant by input size: 'small' (<= 64), 'mid' (65-128), 'large' (> 128)."""
    if image_size <= 64:
        return "small"
    if image_size <= 128:
        return "mid"
    return "large"


def make_intro(channels: int, planes: int, image_size: int, norm: str) -> nn.Sequential:
    """Stem: 'small' is conv3x3 only, 'mid' adds 2x2 avg pool, 'large' is conv7x7 + 4x4 pool."""
    size = intro_size(image_size)
    kernel = 7 if size == "large" else 3
    layers: list[nn.Module] = [
        nn.Conv2d(channels, planes, kernel_size=kernel, padding=kernel // 2, bias=False),
        make_norm(norm, planes),
        nn.ReLU(inplace=True),
    ]
    if size == "mid":
        layers.append(nn.AvgPool2d(kernel_size=2, stride=2))
    elif size == "large":
        layers.append(nn.AvgPool2d(kernel_size=4, stride=4))
    return nn.Sequential(*layers)


class BasicBlockAP(nn.Module):
    """conv3x3 -> norm -> ReLU -> [2x2 avg pool] -> conv3x3 -> norm, plus shortcut, ReLU.

    When the shape changes the shortcut is 1x1 conv -> [2x2 avg pool] -> norm. Both pools
    skip maps that are too small to halve (see ``HalvingAvgPool2d``), and they see the same
    size, so the two branches always agree.
    """

    def __init__(self, in_ch: int, out_ch: int, downsample: bool, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn1 = make_norm(norm, out_ch)
        self.pool: nn.Module = HalvingAvgPool2d() if downsample else nn.Identity()
        self.conv2 = nn.Conv2d(out_ch, out_ch, kernel_size=3, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if downsample or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False),
                HalvingAvgPool2d() if downsample else nn.Identity(),
                make_norm(norm, out_ch),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNetAP(ClassifierNet):
    """ResNetAP with a size-dependent intro, stages of 64w-128w-256w-512w channels (imagenet
    branch) or 32-64-128-256 (cifar branch).

    ``stage_channels`` is kept as an attribute so callers and tests can see the widths.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        *,
        width: float = 1.0,
        norm: str = "instance",
        blocks_per_stage: tuple[int, int, int, int] = (1, 1, 1, 1),
        branch: str = "imagenet",
    ) -> None:
        check_geometry(channels, num_classes, image_size)
        norm = check_choice("norm", norm, AP_NORMS)
        branch = check_choice("branch", branch, BRANCHES)
        if isinstance(width, bool) or not isinstance(width, int | float) or int(64 * width) < 1:
            raise UserError(
                f"option width={width!r} is invalid; it must be a positive channel multiplier"
            )
        if branch == "cifar" and width != 1.0:
            raise UserError(
                "option width applies to ResNetAP's imagenet branch only (the official CIFAR "
                "branch is fixed at 32-64-128-256); pass branch=imagenet or drop width"
            )
        base = 32 if branch == "cifar" else int(64 * width)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        # the official CIFAR branch always takes the 'small' stem
        layers["stem"] = make_intro(channels, base, 32 if branch == "cifar" else image_size, norm)
        in_ch = base
        stage_channels = (base, base * 2, base * 4, base * 8)
        for i, (out_ch, n_blocks) in enumerate(zip(stage_channels, blocks_per_stage, strict=True)):
            blocks = []
            for b in range(n_blocks):
                blocks.append(BasicBlockAP(in_ch, out_ch, downsample=(i > 0 and b == 0), norm=norm))
                in_ch = out_ch
            layers[f"layer{i + 1}"] = nn.Sequential(*blocks)
        layers["pool"] = nn.AdaptiveAvgPool2d(1)
        super().__init__(nn.Sequential(layers), nn.Linear(in_ch, num_classes))
        self.stage_channels: tuple[int, ...] = stage_channels
        self.intro = "small" if branch == "cifar" else intro_size(image_size)
        self.norm = norm
        self.branch = branch
        init_resnet_weights(self.features)


def resnet10_ap(
    channels: int,
    num_classes: int,
    image_size: int,
    *,
    width: float = 1.0,
    norm: str = "instance",
    branch: str = "imagenet",
) -> ResNetAP:
    """ResNetAP-10: one block per stage. The official ``resnet_ap.py`` sets the widths by
    dataset: ``cifar*`` 32-64-128-256 (``width`` unused), others 64w-128w-256w-512w."""
    return ResNetAP(channels, num_classes, image_size, width=width, norm=norm, branch=branch)
