"""The named class-incremental scenarios: which dataset, how many steps.

A scenario name fixes the dataset and the number of steps; the class order is not part of the
name but of the seed (default 0) it is built with, and is recorded with every run. Anything not
registered is built with :func:`dream_cl.scenarios.build_scenario` from a dataset name (or an
image folder) plus a number of steps and, optionally, an explicit class order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dream_cl.data import get_dataset
from dream_cl.errors import UserError


@dataclass(frozen=True)
class ScenarioSpec:
    """One registered scenario: ``steps`` equal class-incremental steps over ``dataset``."""

    name: str
    dataset: str
    steps: int
    description: str

    def available(self, root: str | Path, **options: Any) -> bool:
        """Whether the dataset's files are present under ``root`` (no download, no decoding)."""
        return get_dataset(self.dataset).available(root, **options)

    def expected_path(self, root: str | Path, **options: Any) -> Path:
        return get_dataset(self.dataset).expected_path(root, **options)


def _registry() -> MappingProxyType[str, ScenarioSpec]:
    specs = (
        ScenarioSpec(
            "digits-5step", "digits", 5, "scikit-learn digits, 5 steps x 2 classes (embedded)"
        ),
        ScenarioSpec(
            "cifar100-5step", "cifar100", 5, "CIFAR-100, 5 steps x 20 classes (paper sec. 4.5)"
        ),
        ScenarioSpec("cifar100-10step", "cifar100", 10, "CIFAR-100, 10 steps x 10 classes"),
        ScenarioSpec("cifar10-5step", "cifar10", 5, "CIFAR-10, 5 steps x 2 classes"),
        ScenarioSpec("svhn-5step", "svhn", 5, "SVHN, 5 steps x 2 classes"),
        ScenarioSpec("mnist-5step", "mnist", 5, "MNIST, 5 steps x 2 classes"),
        ScenarioSpec("fmnist-5step", "fashion_mnist", 5, "Fashion-MNIST, 5 steps x 2 classes"),
        ScenarioSpec(
            "tinyimagenet-10step", "tinyimagenet", 10, "TinyImageNet, 10 steps x 20 classes"
        ),
    )
    return MappingProxyType({s.name: s for s in specs})


SCENARIOS: MappingProxyType[str, ScenarioSpec] = _registry()
DEFAULT_SCENARIO = "digits-5step"


def scenario_names() -> tuple[str, ...]:
    """Registered names, in listing order."""
    return tuple(SCENARIOS)


def get_scenario(name: str) -> ScenarioSpec:
    """The spec registered as ``name``; unknown -> one-line UserError listing the known ones."""
    spec = SCENARIOS.get(str(name).strip().lower())
    if spec is None:
        raise UserError(
            f"unknown scenario '{name}'; known: {', '.join(scenario_names())} "
            "(or a dataset name with --steps, or an image folder path)"
        )
    return spec
