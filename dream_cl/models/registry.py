"""Name -> builder registry, so configs and the CLI pick networks by string.

Each builder is a module-level function taking keyword-only ``channels``, ``num_classes``,
``image_size`` and its own options with defaults. ``build_model`` checks the options against
the builder's signature, so a misspelt option fails loudly instead of being ignored. Given
the ``dataset`` name, it first fills the options the official ``define_model`` derives from
the dataset (:func:`dream_cl.protocol.models.official_options`); explicit options always win.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from dream_cl.errors import UserError
from dream_cl.models.convnet import ConvNet
from dream_cl.models.densenet import DenseNetCifar, densenet121
from dream_cl.models.resnet import ResNet, resnet10, resnet18
from dream_cl.models.resnet_ap import ResNetAP, resnet10_ap
from dream_cl.protocol.models import official_options

_REQUIRED = ("channels", "num_classes", "image_size")


def _convnet(
    *,
    channels: int,
    num_classes: int,
    image_size: int,
    width: int = 128,
    depth: int = 3,
    norm: str = "instance",
    pooling: str = "avg",
) -> ConvNet:
    return ConvNet(
        channels, num_classes, image_size, width=width, depth=depth, norm=norm, pooling=pooling
    )


def _convnet_bn(
    *,
    channels: int,
    num_classes: int,
    image_size: int,
    width: int = 128,
    depth: int = 3,
    pooling: str = "avg",
) -> ConvNet:
    return ConvNet(
        channels, num_classes, image_size, width=width, depth=depth, norm="batch", pooling=pooling
    )


def _convnet_nonorm(
    *,
    channels: int,
    num_classes: int,
    image_size: int,
    width: int = 128,
    depth: int = 3,
    pooling: str = "avg",
) -> ConvNet:
    return ConvNet(
        channels, num_classes, image_size, width=width, depth=depth, norm="none", pooling=pooling
    )


def _resnet10(
    *, channels: int, num_classes: int, image_size: int, norm: str = "batch", branch: str = "cifar"
) -> ResNet:
    return resnet10(channels, num_classes, image_size, norm=norm, branch=branch)


def _resnet10_ap(
    *,
    channels: int,
    num_classes: int,
    image_size: int,
    width: float = 1.0,
    norm: str = "instance",
    branch: str = "imagenet",
) -> ResNetAP:
    return resnet10_ap(channels, num_classes, image_size, width=width, norm=norm, branch=branch)


def _resnet18(
    *, channels: int, num_classes: int, image_size: int, norm: str = "batch", branch: str = "cifar"
) -> ResNet:
    return resnet18(channels, num_classes, image_size, norm=norm, branch=branch)


def _densenet121(
    *, channels: int, num_classes: int, image_size: int, norm: str = "batch"
) -> DenseNetCifar:
    return densenet121(channels, num_classes, image_size, norm=norm)


MODELS: MappingProxyType[str, Callable[..., nn.Module]] = MappingProxyType(
    {
        "convnet": _convnet,
        "convnet-bn": _convnet_bn,
        "convnet-nonorm": _convnet_nonorm,
        "resnet10": _resnet10,
        "resnet10-ap": _resnet10_ap,
        "resnet18": _resnet18,
        "densenet121": _densenet121,
    }
)


def model_names() -> list[str]:
    """Registered model names, in registration order."""
    return list(MODELS)


def model_options(name: str) -> dict[str, Any]:
    """The options ``name`` accepts (beyond channels/num_classes/image_size) and their defaults."""
    builder = _lookup(name)
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.name not in _REQUIRED
    }


def _lookup(name: str) -> Callable[..., nn.Module]:
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown model {name!r}; known models: {', '.join(model_names())}"
        ) from None


def build_model(
    name: str,
    *,
    channels: int,
    num_classes: int,
    image_size: int,
    generator: torch.Generator | None = None,
    dataset: str | None = None,
    **options: Any,
) -> nn.Module:
    """Build a freshly initialised model (on CPU) by registry name.

    With ``dataset``, the options the official code derives from it
    (:func:`official_options`) are the defaults; ``options`` override them.

    Raises ``UserError`` for an unknown name, an option the model does not take, or an
    invalid option value. With ``generator`` (a CPU ``torch.Generator``) the initial weights
    are drawn from it alone and torch's global RNG is left untouched, so a run that builds a
    fresh network every outer iteration is reproducible; without it torch's global RNG is used.
    """
    builder = _lookup(name)
    if dataset is not None:
        options = {**official_options(name, dataset), **options}
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(f"{k}={v!r}" for k, v in allowed.items()) or "none"
        raise UserError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; accepted options: {accepted}"
        )
    if generator is None:
        return builder(channels=channels, num_classes=num_classes, image_size=image_size, **options)
    # torch's layer constructors only draw from the global RNG: seed a forked copy of it.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder(channels=channels, num_classes=num_classes, image_size=image_size, **options)
