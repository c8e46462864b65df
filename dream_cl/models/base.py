"""Pieces shared by every model family.

Every network is ``features`` (image -> feature map or vector) followed by one ``classifier``
Linear layer. DREAM clusters the ``embed`` output, DM-style losses match it, and continual
learning replaces ``classifier`` with a wider copy, so that split is part of the contract.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dream_cl.errors import UserError

NORMS: tuple[str, ...] = ("instance", "batch", "none")


class ClassifierNet(nn.Module):
    """``features`` -> flatten -> ``classifier``.

    ``embed`` is the network minus the classifier; ``forward`` reads ``self.classifier`` at call
    time, so swapping in a larger Linear (class-incremental learning) needs no other change.
    """

    def __init__(self, features: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier

    @property
    def feature_dim(self) -> int:
        """Width of ``embed`` output; always equal to ``classifier.in_features``."""
        return int(self.classifier.in_features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features, shape (N, feature_dim)."""
        return torch.flatten(self.features(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape (N, num_classes)."""
        return self.classifier(self.embed(x))


def make_norm(kind: str, channels: int) -> nn.Module:
    """Normalisation layer by name.

    'instance' is GroupNorm with one group per channel and an affine transform, which is what
    the official code calls instance norm: it does not depend on the batch, so gradient matching
    on a single class behaves the same as on a mixed batch.
    """
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"unknown norm {kind!r}; use one of: {', '.join(NORMS)}")


def check_choice(option: str, value: object, choices: tuple[str, ...]) -> str:
    """Validate a string option so a typo fails at build time with a readable message."""
    if not isinstance(value, str) or value not in choices:
        raise UserError(f"option {option}={value!r} is invalid; use one of: {', '.join(choices)}")
    return value


def check_positive_int(option: str, value: object) -> int:
    """Validate an integer option (bool is rejected: ``True`` is not a width)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"option {option}={value!r} is invalid; it must be a positive integer")
    return value


def check_geometry(channels: object, num_classes: object, image_size: object) -> None:
    """Validate the three required build arguments."""
    check_positive_int("channels", channels)
    check_positive_int("num_classes", num_classes)
    check_positive_int("image_size", image_size)


class HalvingAvgPool2d(nn.Module):
    """2x2/2 average pooling that leaves maps alone once they are too small to halve.

    Why: a map of 1x1 (or 2x2 -> 1x1 followed by instance norm) either crashes ``avg_pool2d``
    or makes instance norm output its bias alone, which silently cuts every gradient. Tiny
    inputs (8x8 scikit-learn digits) would hit this in the deeper stages, so pooling is skipped
    whenever the result would be smaller than ``min_out`` pixels on a side. For the standard
    28/32/64 pixel inputs this never triggers and the network is the official one.
    """

    def __init__(self, min_out: int = 2) -> None:
        super().__init__()
        self.min_out = min_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2], x.shape[-1]) // 2 < self.min_out:
            return x
        return F.avg_pool2d(x, kernel_size=2, stride=2)

    def extra_repr(self) -> str:
        return f"min_out={self.min_out}"


def init_resnet_weights(module: nn.Module) -> None:
    """He-normal (fan_out) convolutions and identity norms, as the official ResNets do."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
