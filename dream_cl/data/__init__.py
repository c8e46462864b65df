"""Dataset registry: every dataset by name, read from its official on-disk format.

Each split comes back as a :class:`DatasetSplit` of uint8 (N, C, H, W) images sorted by class.
Nothing is written under the data root unless ``download=True`` and the files are absent, so a
shared read-only folder works. Problems the user can fix (unknown name, missing or malformed
files) raise :class:`~dream_cl.errors.UserError` with a one-line message.

Names, in listing order: ``digits`` (default for quick runs; ships with scikit-learn),
``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``tinyimagenet``,
``imagefolder``. Lookups ignore case, ``-`` and ``_`` (``FashionMNIST``, ``cifar-10`` work).
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from dream_cl.data.base import DatasetInfo, DatasetSplit, to_float
from dream_cl.data.cifar import CIFAR10, CIFAR100, RestrictedUnpickler
from dream_cl.data.digits import DIGITS
from dream_cl.data.imagefolder import IMAGEFOLDER
from dream_cl.data.mnist import FASHION_MNIST, MNIST
from dream_cl.data.spec import DatasetSpec
from dream_cl.data.svhn import SVHN
from dream_cl.data.tinyimagenet import TINYIMAGENET
from dream_cl.data.validation import ValidationSpec, hold_out
from dream_cl.errors import UserError

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DatasetInfo",
    "DatasetSpec",
    "DatasetSplit",
    "RestrictedUnpickler",
    "check_out_outside_data",
    "ValidationSpec",
    "dataset_names",
    "get_dataset",
    "hold_out",
    "load_dataset",
    "load_splits",
    "load_train_test",
    "to_float",
]

DEFAULT_DATASET = "digits"


def _registry() -> MappingProxyType[str, DatasetSpec]:
    specs = (DIGITS, MNIST, FASHION_MNIST, CIFAR10, CIFAR100, SVHN, TINYIMAGENET, IMAGEFOLDER)
    return MappingProxyType({s.name: s for s in specs})


DATASETS: MappingProxyType[str, DatasetSpec] = _registry()


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def dataset_names() -> tuple[str, ...]:
    """Registered names, in listing order."""
    return tuple(DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    """The spec for ``name`` (case, ``-`` and ``_`` ignored); unknown -> UserError."""
    spec = DATASETS.get(name)
    if spec is None:
        spec = next((s for n, s in DATASETS.items() if _key(n) == _key(str(name))), None)
    if spec is None:
        raise UserError(f"unknown dataset '{name}'; known: {', '.join(dataset_names())}")
    return spec


def load_dataset(
    name: str,
    root: str | Path,
    *,
    train: bool = True,
    download: bool = False,
    **options: Any,
) -> DatasetSplit:
    """One split of dataset ``name`` under data root ``root``."""
    return get_dataset(name).load(root, train=train, download=download, **options)


def load_train_test(
    name: str, root: str | Path, download: bool = False, **options: Any
) -> tuple[DatasetSplit, DatasetSplit]:
    """(train, test) of dataset ``name``; both share one ``DatasetInfo``'s statistics."""
    return get_dataset(name).load_train_test(root, download=download, **options)


def load_splits(
    name: str,
    root: str | Path,
    val: ValidationSpec = ValidationSpec(),
    download: bool = False,
    **options: Any,
) -> tuple[DatasetSplit, DatasetSplit, DatasetSplit]:
    """(train, validation, test): ``val`` is held out of the training split, and the
    returned train is the rest (what distillation and evaluation may train on). With the
    default spec the validation split is empty and train is the whole training split."""
    train, test = load_train_test(name, root, download=download, **options)
    rest, held = hold_out(train, val)
    return rest, held, test


def check_out_outside_data(out: str | Path, name: str, root: str | Path, **options: Any) -> None:
    """Refuse an output folder inside a dataset's own folder: what a command writes there
    would be read as data by the next load (a new class of an image folder, a broken class
    folder of CIFAR-10)."""
    spec = get_dataset(name)
    data = spec.expected_path(root, **options)
    if not data.is_dir():
        return  # an archive, a single file or no data yet: nothing reads a folder beside it
    if not spec.reads_folder and data.resolve() == Path(root).expanduser().resolve():
        return  # named files in the data root itself (SVHN's .mat): other folders are free
    where, inside = Path(out).expanduser().resolve(), data.resolve()
    if where == inside or inside in where.parents:
        raise UserError(
            f"--out {out} is inside the {spec.name} data ({data}), where the next load would "
            "read what this command writes as data; choose a folder outside it"
        )
