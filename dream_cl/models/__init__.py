"""Model registry: ConvNet-D, ResNet-10/18 and ResNetAP-10 (CIFAR and ImageNet branches), DenseNet.

Every model has ``forward(x)`` (logits), ``embed(x)`` ((N, feature_dim) penultimate
features), a final ``classifier: nn.Linear`` and ``feature_dim == classifier.in_features``.
Build them by name with ``build_model``.
"""

from dream_cl.models.base import ClassifierNet
from dream_cl.models.convnet import ConvNet
from dream_cl.models.densenet import DenseNetCifar
from dream_cl.models.registry import (
    MODELS,
    build_model,
    model_names,
    model_options,
    official_options,
)
from dream_cl.models.resnet import ResNet
from dream_cl.models.resnet_ap import ResNetAP

__all__ = [
    "MODELS",
    "ClassifierNet",
    "ConvNet",
    "DenseNetCifar",
    "ResNet",
    "ResNetAP",
    "build_model",
    "model_names",
    "model_options",
    "official_options",
]
