"""ConvNet-D: the network DREAM, IDC and DC distill with.

``depth`` blocks of conv3x3(bias) -> norm -> ReLU -> 2x2 pool, then flatten into the
``classifier``. With the defaults (width 128, instance norm, avg pooling) this is ConvNet-3;
its flattened last block is the 2048-d embedding DREAM clusters on.
"""

from __future__ import annotations

from torch import nn

from dream_cl.models.base import (
    NORMS,
    ClassifierNet,
    check_choice,
    check_geometry,
    check_positive_int,
    make_norm,
)

POOLINGS: tuple[str, ...] = ("avg", "max", "none")


def first_conv_padding(channels: int, image_size: int) -> int:
    """Padding of the first conv.

    The official net pads 1-channel inputs by 3, so 28x28 MNIST becomes 32x32 and every later
    shape (and the 2048-d embedding) matches CIFAR. We apply that only to 1-channel 28x28
    input: for other 1-channel sizes (8x8 digits) the official code would compute a wrong
    feature size, and plain padding 1 keeps the shapes simple.
    """
    return 3 if channels == 1 and image_size == 28 else 1


def pooling_plan(image_size: int, padding: int, depth: int, pooling: str) -> tuple[list[bool], int]:
    """Which of the ``depth`` blocks pool, and the final side length, for a square input.

    A block pools unless the map is already too small: a pool that feeds another
    (instance-)normalised block must leave at least 2x2 (instance norm of a 1x1 map is just its
    bias and would kill all gradients), and the last pool must leave at least 1x1. With 28, 32
    or 64 pixel inputs at the official depths every block pools, exactly as in the official
    net; tiny inputs (8x8 at depth 4) simply stop shrinking instead of crashing.
    """
    size = image_size + 2 * padding - 2
    flags: list[bool] = []
    for d in range(depth):
        min_out = 1 if d == depth - 1 else 2
        do_pool = pooling != "none" and size // 2 >= min_out
        flags.append(do_pool)
        if do_pool:
            size //= 2
    return flags, size


class ConvNet(ClassifierNet):
    """ConvNet-D with instance/batch/no norm and avg/max/no pooling.

    Attributes: ``classifier`` (Linear), ``feature_dim`` (int) and ``feature_shape``
    (C, H, W) of the last block's output before flattening.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        image_size: int,
        *,
        width: int = 128,
        depth: int = 3,
        norm: str = "instance",
        pooling: str = "avg",
    ) -> None:
        check_geometry(channels, num_classes, image_size)
        width = check_positive_int("width", width)
        depth = check_positive_int("depth", depth)
        norm = check_choice("norm", norm, NORMS)
        pooling = check_choice("pooling", pooling, POOLINGS)

        padding = first_conv_padding(channels, image_size)
        flags, side = pooling_plan(image_size, padding, depth, pooling)
        blocks: list[nn.Module] = []
        in_ch = channels
        for d, do_pool in enumerate(flags):
            layers: list[nn.Module] = [
                nn.Conv2d(in_ch, width, kernel_size=3, padding=padding if d == 0 else 1),
                make_norm(norm, width),
                nn.ReLU(inplace=True),
            ]
            if do_pool:
                pool_cls = nn.AvgPool2d if pooling == "avg" else nn.MaxPool2d
                layers.append(pool_cls(kernel_size=2, stride=2))
            blocks.append(nn.Sequential(*layers))
            in_ch = width
        feature_shape = (width, side, side)
        classifier = nn.Linear(width * side * side, num_classes)
        super().__init__(nn.Sequential(*blocks), classifier)
        self.feature_shape: tuple[int, int, int] = feature_shape
        self.norm = norm
