"""A validation split carved from the training split: the only data anything is chosen on.

Anything tuned, compared for selection or early-stopped (a learning-rate multiple, a "best"
iteration) must be judged on data that neither the distillation nor the evaluated model
trained on, and not on the test split. :func:`hold_out` takes a deterministic,
class-balanced part of the training split for that: the same ``(fraction, seed)`` gives the
same images on any machine, and the rest of the split is what distillation and evaluation
train on. The spec is recorded with every run that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dream_cl.data._common import stratified_split
from dream_cl.data.base import DatasetSplit
from dream_cl.errors import UserError

SPLITS = ("test", "val")
"""Which split a run's periodic evaluation reports on."""


@dataclass(frozen=True)
class ValidationSpec:
    """``fraction`` of every class held out of the training split, drawn with ``seed``.

    ``fraction == 0`` means no validation split (the whole training split is used, as the
    paper does). Every class with at least two images gets at least one validation image
    and keeps at least one training image.
    """

    fraction: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.fraction, bool) or not 0.0 <= float(self.fraction) < 1.0:
            raise UserError(f"--val-fraction must be in [0, 1), got {self.fraction!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"--val-seed must be a non-negative integer, got {self.seed!r}")

    @property
    def enabled(self) -> bool:
        return self.fraction > 0

    def to_dict(self) -> dict[str, Any]:
        return {"fraction": float(self.fraction), "seed": int(self.seed)}


def hold_out(train: DatasetSplit, spec: ValidationSpec) -> tuple[DatasetSplit, DatasetSplit]:
    """(rest, validation) of ``train``: disjoint, together exactly ``train``, both sorted
    by class. With ``spec.fraction == 0`` the validation split is empty."""
    if not spec.enabled:
        return train, DatasetSplit(train.images[:0], train.labels[:0], train.info)
    keep, val = stratified_split(train.labels, train.num_classes, spec.fraction, spec.seed)
    tag = (float(spec.fraction), int(spec.seed))
    rest = DatasetSplit(train.images[keep], train.labels[keep], train.info, ("rest", *tag))
    held = DatasetSplit(train.images[val], train.labels[val], train.info, ("val", *tag))
    return rest, held


def check_parts(
    spec: ValidationSpec, train: DatasetSplit, evaluated: DatasetSplit | None, split: str
) -> None:
    """Refuse a run whose recorded validation split does not match the data it was given:
    training on a split that still holds its validation part would leak it."""
    tag = (float(spec.fraction), int(spec.seed))
    if spec.enabled and train.held_out != ("rest", *tag):
        raise UserError(
            f"the run records a validation split (fraction {spec.fraction}, seed {spec.seed}) "
            "but was given a training split that still holds it; pass the rest from "
            "dream_cl.data.hold_out (or load_splits)"
        )
    if not spec.enabled and train.held_out is not None:
        raise UserError(
            "the training split had a validation part held out, but the run records none; "
            "set val_fraction and val_seed to the split's"
        )
    if split == "val" and evaluated is not None and evaluated.held_out != ("val", *tag):
        raise UserError(
            "eval_split val needs the validation part that dream_cl.data.hold_out returned "
            "for the same fraction and seed"
        )


def validation_indices(train: DatasetSplit, spec: ValidationSpec) -> list[int]:
    """Positions (in ``train``) of the held-out images; tests use them to prove the split
    never reaches distillation or training."""
    _, val = stratified_split(train.labels, train.num_classes, spec.fraction, spec.seed)
    return val.tolist()


__all__ = ["SPLITS", "ValidationSpec", "check_parts", "hold_out", "validation_indices"]
