"""The statistics each framework normalises with, and the image-gradient scale that makes a
step on [0, 1] images the step the framework's code takes on normalised ones.

DREAM/IDC (``condense.py``) store the synthetic images in [0, 1] and normalise inside the
augmentation, CIFAR-100 with CIFAR-10's statistics (``MEANS['cifar100'] = MEANS['cifar']``,
the dataset's default here).
VICO's DC/DSA/DM (``utils.get_dataset``) store them normalised and use CIFAR-100's own
statistics.
"""

from __future__ import annotations

import dataclasses

import torch

from dream_cl.data.base import DatasetInfo


def idc_normalization(info: DatasetInfo) -> DatasetInfo:
    """DREAM/IDC: the dataset's default statistics (CIFAR-10's for CIFAR-100)."""
    return info


def vico_normalization(info: DatasetInfo) -> DatasetInfo:
    """DC/DSA/DM: CIFAR-100 with its own statistics; every other dataset as IDC."""
    if info.name == "cifar100":
        from dream_cl.data.cifar import CIFAR100_OWN_MEAN, CIFAR100_OWN_STD

        return dataclasses.replace(info, mean=CIFAR100_OWN_MEAN, std=CIFAR100_OWN_STD)
    return info


def idc_grad_scale(info: DatasetInfo, device: torch.device) -> torch.Tensor | None:
    """DREAM/IDC step on the [0, 1] images themselves: no scale."""
    return None


def vico_grad_scale(info: DatasetInfo, device: torch.device) -> torch.Tensor | None:
    """DC/DSA/DM take SGD steps on normalised images z = (x - m)/s; SGD on z with lr equals
    SGD on x with lr * s^2, so the gradient on x is scaled by s^2 per channel."""
    std = torch.tensor(info.std, device=device).view(1, -1, 1, 1)
    return std * std
