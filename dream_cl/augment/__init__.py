"""Differentiable siamese augmentation (DSA) and CutMix, as used by IDC/DREAM."""

from dream_cl.augment.cutmix import (
    cutmix,
    cutmix_box,
    cutmix_loss,
    maybe_cutmix,
    sample_beta,
    traced_cutmix_loss,
)
from dream_cl.augment.dsa import (
    GEOMETRIC_OPS,
    KNOWN_OPS,
    DSAParams,
    apply_dsa,
    crop_shift,
    cutout_size,
    dsa,
    parse_strategy,
    sample_dsa,
)

__all__ = [
    "GEOMETRIC_OPS",
    "KNOWN_OPS",
    "DSAParams",
    "apply_dsa",
    "crop_shift",
    "cutmix",
    "cutmix_box",
    "cutmix_loss",
    "traced_cutmix_loss",
    "cutout_size",
    "dsa",
    "maybe_cutmix",
    "parse_strategy",
    "sample_beta",
    "sample_dsa",
]
