"""What the paper and the official code fix per distillation framework, as one frozen table.

Each :class:`FrameworkRules` record says how its framework's official code differs from the
others: which outer loop it runs, the evaluation recipe its sets take, the statistics it
normalises with and the image step that follows from them, how it augments, its ``paper`` and
``cpu`` preset rules, and the settings its loop never reads. IDC is IDC's ``condense.py``
(DREAM's loop, ``lyq312318224/DREAM``); DC, DSA and DM are VICO's ``main.py`` and
``main_DM.py`` (``VICO-UoE/DatasetCondensation``).

The distillation registry (:mod:`dream_cl.distill.registry`) pairs every record with its
loop's step function; the layers below the loops (the configuration, evaluation) read the
rules here. No other module names a framework to compare it: they look its record up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType

import torch

from dream_cl.data.base import DatasetInfo
from dream_cl.errors import UserError
from dream_cl.protocol import distillation as presets
from dream_cl.protocol import normalization
from dream_cl.protocol.datasets import DSA_STRATEGY

LOOP_REAL = "match-then-train-on-real"
"""IDC/DREAM: a fresh network; matching steps, each followed by training it on real data."""
LOOP_SYNTHETIC = "match-then-train-on-synthetic"
"""DC/DSA: a fresh network; matching rounds, each followed by training it on the set."""
LOOP_DISTRIBUTION = "match-distribution"
"""DM: a fresh frozen network; one step matching mean embeddings."""
LOOPS = (LOOP_REAL, LOOP_SYNTHETIC, LOOP_DISTRIBUTION)

# what the network update on real data reads (only IDC's loop has one)
_REAL_UPDATE = frozenset({"n_data", "net_aug", "mix_p", "net_update"})
# what gradient matching reads (DM matches embeddings instead)
_GRADIENT_MATCHING = frozenset(
    {"formulation", "compile", "metric", "match_bias", "match_fc", "batch_syn_max"}
)


@dataclass(frozen=True)
class FrameworkRules:
    """Everything that differs between frameworks except the step function itself."""

    name: str
    loop: str
    """Which outer loop runs (one of :data:`LOOPS`)."""
    eval_recipe: str
    """The evaluation recipe its sets take (:mod:`dream_cl.protocol.evaluation`)."""
    normalize: Callable[[DatasetInfo], DatasetInfo]
    """The dataset statistics it normalises with (:mod:`dream_cl.protocol.normalization`)."""
    grad_scale: Callable[[DatasetInfo, torch.device], torch.Tensor | None]
    """The image-gradient scale that makes a step on [0, 1] images its own step."""
    match_aug: str | None
    """The augmentation its matching uses: None for the configured ``match_aug``; DC's is
    fixed ('none'), and another configured value is refused."""
    syn_augment: bool
    """Whether the network's training on the synthetic set is augmented (DSA)."""
    one_aug_group: bool
    """Whether each augmentation call applies one op group chosen at random among the
    listed ones (the DSA and DM papers' 'S' mode) rather than stacking them (IDC)."""
    paper: presets.PaperRule
    """Its rule on top of the settings every framework shares in the paper preset."""
    cpu: presets.CpuRule
    """Its rule turning its paper settings into the cpu preset's."""
    unused: frozenset[str]
    """Settings its loop never reads: a value other than its preset's is refused."""


FRAMEWORK_RULES: MappingProxyType[str, FrameworkRules] = MappingProxyType(
    {
        "idc": FrameworkRules(
            name="idc",
            loop=LOOP_REAL,
            eval_recipe="idc",
            normalize=normalization.idc_normalization,
            grad_scale=normalization.idc_grad_scale,
            match_aug=None,
            syn_augment=False,
            one_aug_group=False,
            paper=presets.idc_paper,
            cpu=presets.idc_cpu,
            unused=frozenset({"net_epochs_syn"}),
        ),
        "dc": FrameworkRules(
            name="dc",
            loop=LOOP_SYNTHETIC,
            eval_recipe="dc",
            normalize=normalization.vico_normalization,
            grad_scale=normalization.vico_grad_scale,
            match_aug=presets.DC_MATCH_AUG,
            syn_augment=False,
            one_aug_group=False,
            paper=partial(presets.dc_paper, match_aug=presets.DC_MATCH_AUG),
            cpu=presets.dc_cpu,
            unused=_REAL_UPDATE | {"match_aug"},
        ),
        "dsa": FrameworkRules(
            name="dsa",
            loop=LOOP_SYNTHETIC,
            eval_recipe="dsa",
            normalize=normalization.vico_normalization,
            grad_scale=normalization.vico_grad_scale,
            match_aug=None,
            syn_augment=True,
            one_aug_group=True,
            paper=partial(presets.dc_paper, match_aug=DSA_STRATEGY),
            cpu=presets.dc_cpu,
            unused=_REAL_UPDATE,
        ),
        "dm": FrameworkRules(
            name="dm",
            loop=LOOP_DISTRIBUTION,
            eval_recipe="dm",
            normalize=normalization.vico_normalization,
            grad_scale=normalization.vico_grad_scale,
            match_aug=None,
            syn_augment=False,
            one_aug_group=True,
            paper=presets.dm_paper,
            cpu=presets.dm_cpu,
            unused=_REAL_UPDATE | _GRADIENT_MATCHING | {"inner_loop", "net_epochs_syn", "lr_net"},
        ),
    }
)
"""Framework name -> its rules; the one place the names are spelt."""

FRAMEWORK_NAMES: tuple[str, ...] = tuple(FRAMEWORK_RULES)


def framework_rules(name: str) -> FrameworkRules:
    """The rules of framework ``name``; an unknown name is one clear line."""
    try:
        return FRAMEWORK_RULES[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown framework '{name}'; use one of {', '.join(FRAMEWORK_NAMES)}"
        ) from None
