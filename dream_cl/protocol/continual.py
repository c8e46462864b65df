"""The continual-learning presets and augmentation: section 4.5 of the paper in IDC's
continual-learning protocol (IDC ``continual-learning/``, which DREAM's maintainer points to
in DREAM issue #6)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from dream_cl.protocol.datasets import without_flip

CL_DSA = "color_crop_flip_scale_rotate"
"""IDC ``continual-learning/``: the per-sample DiffAug of every step's training."""

ENGINE_METHOD: MappingProxyType[str, tuple[str, str, str]] = MappingProxyType(
    {
        "dream": ("idc", "representative", "kmeans"),
        "idc": ("idc", "random", "random"),
        "dm": ("dm", "random", "random"),
    }
)
"""Memory method -> (engine framework, sampler, init); DREAM is IDC + representative
sampler + k-means init (DREAM ``condense.py``), IDC's and DM's memories their own loops."""


def default_cl_dsa(dataset: str) -> str:
    """IDC's continual-learning augmentation, minus flip for digits and house numbers."""
    return "_".join(without_flip(CL_DSA.split("_"), dataset))


CL_PRESET_SETTINGS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        # IDC continual-learning/: IPC 20 (factor 2 via the engine's paper preset),
        # ResNet-10, 1000 epochs per step
        "paper": MappingProxyType(
            {
                "ipc": 20,
                "epochs_by_regime": {"finetune-kd": 1000, "scratch": 1000, "replay-mix": 100},
                "model": "resnet10",
                "distill_overrides": {},
                "distill_overrides_by_method": {},
            }
        ),
        # every mechanism at a size the embedded digits-5step finishes in about a minute
        "cpu": MappingProxyType(
            {
                "ipc": 10,
                "epochs_by_regime": {"finetune-kd": 40, "scratch": 40, "replay-mix": 10},
                "model": "resnet10",
                "distill_overrides": {"checkpoint_every": 2},
                # the engine's cpu preset, shortened again: five distillations must fit in
                # about half a minute on 2 cores
                "distill_overrides_by_method": {
                    "dream": {"iterations": 8, "inner_loop": 10, "interval": 5},
                    "idc": {"iterations": 8, "inner_loop": 10, "interval": 5},
                    "dm": {"iterations": 100},
                },
            }
        ),
    }
)
"""Preset -> run settings; epochs are per regime (see ``CLConfig.epochs``)."""
