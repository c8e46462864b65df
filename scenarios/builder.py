"""Build class-incremental scenarios as Avalanche (0.6.0) benchmarks.

Labels. The dataset's classes are put in the scenario's class order and relabelled by their
position in it ("model labels"): the classes of step 0 become 0..k-1, those of step 1 follow,
and so on. That is what a classifier that grows with the new classes needs (IDC's continual
learning re-indexes labels by its order the same way), and what Avalanche's
``classes_in_this_experience`` then reports. :class:`ClassMap` converts back to the dataset's
own labels, which is how memories are saved, so a saved memory is a normal image set of the
dataset.

Class orders. A seeded order is ``numpy.random.RandomState(seed).permutation(num_classes)``
cut into equal steps (earlier steps take one more class when it does not divide), each step
sorted, as in IDC's continual-learning order file (DM's order, sorted within steps). An
explicit order is used as given and may name a subset of the classes. Either way the order is
recorded in :meth:`Scenario.to_dict`.

What the Avalanche streams yield: ``(x, y, t)`` with ``x`` the normalised float image (the
dataset's mean/std), ``y`` the model label and ``t = 0``, so a stock strategy trains on them
as they are.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dream_cl.data import get_dataset, load_train_test
from dream_cl.data.base import DatasetInfo, DatasetSplit, to_float
from dream_cl.errors import UserError
from dream_cl.scenarios.registry import SCENARIOS, get_scenario

__all__ = [
    "ClassMap",
    "NormalizedImages",
    "Scenario",
    "build_scenario",
    "resolve_scenario_source",
    "scenario_from_splits",
    "seeded_class_order",
    "split_order",
    "step_sizes",
]


def step_sizes(num_classes: int, steps: int) -> list[int]:
    """Classes per step: as equal as possible, earlier steps take the remainder."""
    if steps < 1:
        raise UserError(f"--steps must be at least 1, got {steps}")
    if steps > num_classes:
        raise UserError(f"--steps {steps} is more than the {num_classes} classes; use fewer steps")
    base, extra = divmod(num_classes, steps)
    return [base + (1 if k < extra else 0) for k in range(steps)]


def split_order(order: Sequence[int], steps: int, sort_within: bool) -> tuple[tuple[int, ...], ...]:
    """Cut ``order`` into ``steps`` consecutive groups (each sorted when ``sort_within``)."""
    groups, start = [], 0
    for size in step_sizes(len(order), steps):
        group = [int(c) for c in order[start : start + size]]
        groups.append(tuple(sorted(group) if sort_within else group))
        start += size
    return tuple(groups)


def seeded_class_order(num_classes: int, steps: int, seed: int = 0) -> tuple[tuple[int, ...], ...]:
    """The seeded order: a NumPy permutation of all classes, cut into steps, sorted per step."""
    perm = np.random.RandomState(int(seed) % (2**32)).permutation(num_classes).tolist()
    return split_order(perm, steps, sort_within=True)


@dataclass(frozen=True)
class ClassMap:
    """Model label ``i`` is dataset label ``classes[i]`` of the dataset described by ``info``."""

    info: DatasetInfo
    classes: tuple[int, ...]

    def to_dataset(self, labels: torch.Tensor) -> torch.Tensor:
        table = torch.tensor(self.classes, dtype=torch.int64)
        return table[labels.cpu().to(torch.int64)]

    def to_model(self, labels: torch.Tensor) -> torch.Tensor:
        inverse = torch.full((self.info.num_classes,), -1, dtype=torch.int64)
        inverse[torch.tensor(self.classes, dtype=torch.int64)] = torch.arange(len(self.classes))
        out = inverse[labels.cpu().to(torch.int64)]
        if bool((out < 0).any()):
            raise ValueError("labels outside the scenario's classes")
        return out


class NormalizedImages(Dataset):
    """A split as ``(normalised float image, label)`` items, converted one image at a time.

    The split stays uint8 (CIFAR-100's training set is 150 MB rather than 600 MB as float).
    """

    def __init__(self, split: DatasetSplit) -> None:
        self.images = split.images
        self.labels = split.labels
        shape = (-1, 1, 1)
        self.mean = torch.tensor(split.info.mean, dtype=torch.float32).view(shape)
        self.std = torch.tensor(split.info.std, dtype=torch.float32).view(shape)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = (to_float(self.images[i]) - self.mean) / self.std
        return x, int(self.labels[i])


def _avalanche_dataset(split: DatasetSplit) -> Any:
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset

    return _make_taskaware_classification_dataset(
        NormalizedImages(split), targets=split.labels.tolist(), task_labels=0
    )


@dataclass
class Scenario:
    """A class-incremental scenario: class order, splits in model labels, Avalanche benchmark.

    ``train``/``test`` hold every scenario class with model labels (sorted by label, uint8);
    ``info`` names the classes in model-label order; ``dataset_info`` is the dataset's own.
    ``benchmark.train_stream[k]`` / ``benchmark.test_stream[k]`` are step ``k``.
    """

    name: str
    dataset: str
    steps: tuple[tuple[int, ...], ...]
    seed: int | None
    dataset_info: DatasetInfo
    train: DatasetSplit
    test: DatasetSplit
    benchmark: Any = field(repr=False)
    dataset_options: dict[str, Any] = field(default_factory=dict)

    @property
    def info(self) -> DatasetInfo:
        return self.train.info

    @property
    def class_order(self) -> tuple[int, ...]:
        return tuple(c for step in self.steps for c in step)

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    @property
    def num_classes(self) -> int:
        return len(self.class_order)

    @property
    def class_map(self) -> ClassMap:
        return ClassMap(self.dataset_info, self.class_order)

    def step_labels(self, k: int) -> list[int]:
        """Model labels of the classes new at step ``k``."""
        start = sum(len(s) for s in self.steps[:k])
        return list(range(start, start + len(self.steps[k])))

    def seen_classes(self, k: int) -> int:
        """How many classes have been seen after step ``k``."""
        return sum(len(s) for s in self.steps[: k + 1])

    def to_dict(self) -> dict[str, Any]:
        names = self.dataset_info.class_names
        train_counts, test_counts = self.train.class_counts(), self.test.class_counts()
        return {
            "name": self.name,
            "dataset": self.dataset,
            "dataset_options": {k: str(v) for k, v in self.dataset_options.items()},
            "order_seed": self.seed,
            "num_steps": self.num_steps,
            "num_classes": self.num_classes,
            "class_order": list(self.class_order),
            "steps": [
                {
                    "step": k,
                    "classes": list(step),
                    "class_names": [names[c] for c in step],
                    "model_labels": self.step_labels(k),
                    "train_images": sum(train_counts[i] for i in self.step_labels(k)),
                    "test_images": sum(test_counts[i] for i in self.step_labels(k)),
                }
                for k, step in enumerate(self.steps)
            ],
        }


def _check_order(order: Sequence[int], num_classes: int) -> list[int]:
    out = []
    for c in order:
        if isinstance(c, bool) or not isinstance(c, int | np.integer):
            raise UserError(f"class order entry {c!r} is not a class index")
        if not 0 <= int(c) < num_classes:
            raise UserError(
                f"class order names class {c}, but the dataset has classes 0..{num_classes - 1}"
            )
        out.append(int(c))
    if len(set(out)) != len(out):
        raise UserError("the class order names a class twice; give each class once")
    if not out:
        raise UserError("the class order is empty")
    return out


def scenario_from_splits(
    train: DatasetSplit,
    test: DatasetSplit,
    steps: int,
    *,
    class_order: Sequence[int] | None = None,
    seed: int = 0,
    name: str | None = None,
    dataset_options: dict[str, Any] | None = None,
) -> Scenario:
    """The scenario over already loaded splits (both in the dataset's own labels)."""
    num_classes = train.num_classes
    if num_classes < 2:
        raise UserError(
            f"{train.info.name} has {num_classes} class; class-incremental learning needs at "
            "least 2 (a folder needs one sub-folder of images per class)"
        )
    if class_order is None:
        groups = seeded_class_order(num_classes, steps, seed)
        order_seed: int | None = seed
    else:
        order = _check_order(class_order, num_classes)
        if steps > len(order):
            raise UserError(
                f"--class-order names {len(order)} classes, fewer than the {steps} steps of "
                f"{name or 'the scenario'}; give the dataset name with --steps {len(order)} "
                f"or fewer (e.g. dream-cl run {train.info.name} --steps {len(order)} "
                "--class-order ...), or name more classes"
            )
        groups = split_order(order, steps, sort_within=False)
        order_seed = None
    order = [c for g in groups for c in g]
    names = train.info.class_names
    for c in order:
        if train.class_count(c) == 0:
            raise UserError(
                f"class {c} ({names[c]}) has no training images; drop it from the order"
            )
        if test.class_count(c) == 0:
            raise UserError(f"class {c} ({names[c]}) has no test images; drop it from the order")
    model_train = train.subset_classes(order, relabel=True)
    model_test = test.subset_classes(order, relabel=True)
    # the same DatasetInfo object for both, so anything keyed on it agrees
    model_test = DatasetSplit(model_test.images, model_test.labels, model_train.info)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark

        benchmark = class_incremental_benchmark(
            {"train": _avalanche_dataset(model_train), "test": _avalanche_dataset(model_test)},
            class_order=list(range(len(order))),
            num_classes_per_exp=[len(g) for g in groups],
        )
    return Scenario(
        name=name or f"{train.info.name}-{len(groups)}step",
        dataset=train.info.name,
        steps=groups,
        seed=order_seed,
        dataset_info=train.info,
        train=model_train,
        test=model_test,
        benchmark=benchmark,
        dataset_options=dict(dataset_options or {}),
    )


def resolve_scenario_source(
    scenario: str, steps: int | None = None
) -> tuple[str, str, int, dict[str, Any]]:
    """(scenario name, dataset, steps, dataset options) for a name, a dataset or a folder.

    ``scenario`` is a registered scenario, a registered dataset name (with ``steps``, default
    5) or the path of an image folder (one sub-folder per class). Checks names only; reads
    nothing.
    """
    if scenario.strip().lower() in SCENARIOS:
        spec = get_scenario(scenario)
        if steps is not None and steps != spec.steps:
            raise UserError(
                f"scenario '{spec.name}' has {spec.steps} steps; drop --steps or use the "
                f"dataset name '{spec.dataset}' with --steps {steps}"
            )
        return spec.name, spec.dataset, spec.steps, {}
    n = 5 if steps is None else steps
    if n < 1:
        raise UserError(f"--steps must be at least 1, got {n}")
    path = Path(scenario).expanduser()
    if ("/" in scenario or path.is_dir()) and not _is_dataset(scenario):
        if not path.is_dir():
            raise UserError(
                f"image folder {path} does not exist; give a scenario, dataset or folder"
            )
        return f"imagefolder-{n}step", "imagefolder", n, {"path": str(path.resolve())}
    if not _is_dataset(scenario):
        get_scenario(scenario)  # raises the readable unknown-scenario error
    dataset = get_dataset(scenario).name
    return f"{dataset}-{n}step", dataset, n, {}


def _is_dataset(name: str) -> bool:
    try:
        get_dataset(name)
    except UserError:
        return False
    return True


def build_scenario(
    scenario: str,
    root: str | Path = "data",
    *,
    steps: int | None = None,
    class_order: Sequence[int] | None = None,
    seed: int = 0,
    download: bool = False,
    dataset_options: dict[str, Any] | None = None,
) -> Scenario:
    """Load the data and build ``scenario`` (a registered name, a dataset or a folder).

    Missing data, unknown names and impossible step counts raise one-line ``UserError``s.
    """
    name, dataset, n_steps, options = resolve_scenario_source(scenario, steps)
    options = {**options, **(dataset_options or {})}
    train, test = load_train_test(dataset, root, download=download, **options)
    return scenario_from_splits(
        train,
        test,
        n_steps,
        class_order=class_order,
        seed=seed,
        name=name,
        dataset_options=options,
    )
