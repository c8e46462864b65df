"""The model options the official ``define_model`` derives from the dataset (IDC
``misc/utils.py`` / DREAM, and the ResNet of IDC ``models/resnet.py``); the models
themselves stay in :mod:`dream_cl.models`, which fills these in as defaults."""

from __future__ import annotations

from typing import Any


def official_branch(dataset: str) -> str:
    """The official rule: names starting with 'cifar' take the CIFAR branch."""
    return "cifar" if dataset.lower().startswith("cifar") else "imagenet"


def official_options(name: str, dataset: str) -> dict[str, Any]:
    """What the official ``define_model`` derives from the dataset for model ``name``.

    ResNets and ResNetAP: the CIFAR branch for ``cifar*`` names, the ImageNet branch for
    every other dataset. ConvNets: depth 4 on TinyImageNet (64x64), 3 elsewhere.
    """
    if name.startswith("resnet"):
        return {"branch": official_branch(dataset)}
    if name.startswith("convnet"):
        return {"depth": 4 if dataset.lower() == "tinyimagenet" else 3}
    return {}
