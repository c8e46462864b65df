"""Evaluation recipes and their augmentation and CutMix rules.

- ``idc``: IDC's ``train.py`` (DREAM reuses it): the recipe of IDC and DREAM sets and of
  every coreset. Its DSA strategy and CutMix follow IDC's ``misc/reproduce.py`` per dataset,
  factor and IPC (:func:`eval_augmentation`).
- ``dc``, ``dsa``, ``dm``: VICO's ``utils.evaluate_synset`` with ``main.py``'s per-method
  epochs and augmentation.

A recipe here is the settings of :class:`dream_cl.evaluate.EvalConfig` (a dict of its
fields), so the evaluation loop stays in :mod:`dream_cl.evaluate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from dream_cl.augment.dcaug import DC_MNIST_STRATEGY
from dream_cl.protocol.datasets import DSA_STRATEGY, dataset_key, without_flip
from dream_cl.protocol.frameworks import FRAMEWORK_RULES

FULL_EVAL_DSA = DSA_STRATEGY
"""IDC's evaluation strategy before its dataset rules (:func:`default_eval_dsa`) and the
DSA/DM evaluation augmentation."""


@dataclass(frozen=True)
class Recipe:
    """One official evaluation recipe: its epoch count E per dataset and its settings."""

    epochs: Callable[[str], int]
    """E on a dataset (the official ``main.py`` / reproduce value)."""
    settings: Callable[[str, int], dict[str, Any]]
    """(dataset, E) -> the recipe's ``EvalConfig`` fields."""


def _idc_settings(dataset: str, e: int) -> dict[str, Any]:
    # IDC train.py: EvalConfig's defaults; the DSA strategy is left to eval_augmentation
    return {"epochs": e}


def _vico_settings(
    name: str, e: int, *, dsa_strategy: str, mode: str, dc_augment: str
) -> dict[str, Any]:
    """VICO ``evaluate_synset``: batch 256, E + 1 passes, lr x0.1 after pass E // 2 + 1 with
    the optimiser rebuilt there, no CutMix."""
    return {
        "epochs": e + 1,
        "batch_size": 256,
        "gamma": 0.1,
        "lr_epochs": (e // 2 + 2,),
        "restart_optimizer": True,
        "dsa_strategy": dsa_strategy,
        "cutmix_p": 0.0,
        "recipe": name,
        "dsa_mode": mode,
        "dc_augment": dc_augment,
    }


def _is_mnist(dataset: str) -> bool:
    return dataset_key(dataset) == "mnist"


def _dc_settings(dataset: str, e: int) -> dict[str, Any]:
    # DC (VICO main.py): augments MNIST only (one of crop/scale/rotate per image), no DSA
    aug = DC_MNIST_STRATEGY if _is_mnist(dataset) else "none"
    return _vico_settings("dc", e, dsa_strategy="none", mode="stack", dc_augment=aug)


def _dsa_like(name: str) -> Callable[[str, int], dict[str, Any]]:
    # DSA and DM (VICO main.py / main_DM.py): DSA in its 'S' mode, one op group per call
    def settings(dataset: str, e: int) -> dict[str, Any]:
        return _vico_settings(name, e, dsa_strategy=FULL_EVAL_DSA, mode="one", dc_augment="none")

    return settings


def _dc_epochs(dataset: str) -> int:
    # VICO main.py: 300 epochs without augmentation; 1000 where DC augments (MNIST)
    return 1000 if _is_mnist(dataset) else 300


def _e1000(dataset: str) -> int:
    return 1000


RECIPE_RULES: MappingProxyType[str, Recipe] = MappingProxyType(
    {
        "idc": Recipe(_e1000, _idc_settings),
        "dc": Recipe(_dc_epochs, _dc_settings),
        "dsa": Recipe(_e1000, _dsa_like("dsa")),
        "dm": Recipe(_e1000, _dsa_like("dm")),
    }
)
RECIPES: tuple[str, ...] = tuple(RECIPE_RULES)
"""Evaluation recipes, one per framework (coresets take IDC's)."""

CORESET_RECIPE = "idc"
"""Coresets (and sets of no known framework) are evaluated as IDC/DREAM evaluate theirs."""


def recipe_for_framework(framework: str | None) -> str:
    """The recipe a set distilled by ``framework`` is evaluated with: its own official
    code's (the framework's record, :mod:`dream_cl.protocol.frameworks`); a coreset (None)
    or a set of no known framework takes IDC's."""
    rules = FRAMEWORK_RULES.get(framework or "")
    return CORESET_RECIPE if rules is None else rules.eval_recipe


def default_recipe_epochs(recipe: str, dataset: str) -> int:
    """The official epoch count E of ``recipe`` on ``dataset``.

    IDC, DSA and DM: 1000. DC: 300, except MNIST, which DC trains with augmentation and
    VICO's ``main.py`` then gives 1000.
    """
    return RECIPE_RULES[recipe].epochs(dataset)


def recipe_settings(recipe: str, dataset: str, epochs: int | None = None) -> dict[str, Any]:
    """The ``EvalConfig`` fields of the known recipe ``recipe`` on ``dataset`` with E =
    ``epochs`` (None: the official E)."""
    rule = RECIPE_RULES[recipe]
    return rule.settings(dataset, epochs if epochs is not None else rule.epochs(dataset))


def official_eval_cutmix(dataset: str, factor: int = 1, ipc: int = 10) -> bool:
    """Whether the official IDC recipe evaluates with CutMix ('cut') or without ('vanilla').

    The reproduce settings (IDC ``misc/reproduce.py``) use 'vanilla' for MNIST with factor
    > 1 and for SVHN with factor 1 at one image per class; everything else uses CutMix.
    """
    name = dataset_key(dataset)
    if name == "mnist" and factor > 1:
        return False
    return not (name == "svhn" and factor == 1 and ipc == 1)


def default_eval_dsa(dataset: str, factor: int = 1, ipc: int = 10, cutmix: bool = True) -> str:
    """The official IDC evaluation DSA strategy for ``dataset`` (IDC ``misc/reproduce.py``).

    Start from 'color_crop_cutout_flip_scale_rotate'; drop 'flip' for MNIST, SVHN and digits;
    drop 'cutout' when CutMix is used (CutMix already cuts a box). CutMix is used when
    ``cutmix`` is True and the official recipe does not switch it off (MNIST factor > 1, SVHN
    factor 1 ipc 1, see :func:`official_eval_cutmix`); then cutout stays, except for MNIST
    at factor > 1, whose reproduce rule sets 'color_crop_scale_rotate' outright.
    """
    if dataset_key(dataset) == "mnist" and factor > 1:
        return "color_crop_scale_rotate"
    use_cutmix = cutmix and official_eval_cutmix(dataset, factor, ipc)
    ops = without_flip(FULL_EVAL_DSA.split("_"), dataset)
    if use_cutmix:
        ops.remove("cutout")
    return "_".join(ops)


def eval_augmentation(dataset: str, factor: int, ipc: int, cutmix_p: float) -> tuple[str, float]:
    """IDC's per-dataset choice for a recipe that leaves it open: (DSA strategy, CutMix
    probability), the probability kept where the official code uses CutMix, else 0."""
    use_cutmix = cutmix_p > 0 and official_eval_cutmix(dataset, factor, ipc)
    return default_eval_dsa(dataset, factor, ipc, cutmix=use_cutmix), (
        cutmix_p if use_cutmix else 0.0
    )
