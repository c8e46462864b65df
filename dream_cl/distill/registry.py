"""The frameworks' registry: each framework's rules paired with its outer step function.

One frozen table, name -> :class:`Framework`. A record is the framework's
:class:`~dream_cl.protocol.frameworks.FrameworkRules` (what its official code fixes: loop,
evaluation recipe, normalisation, image-gradient scale, augmentation, ``paper``/``cpu``
preset rules, the settings it never reads) plus ``outer``, the step function of its loop.
DC and DSA share a step (the loop that trains the network on the synthetic set) and differ
by data: DSA's record augments that training and matches with the configured
augmentation, one op group per call; DC's matches without augmentation.

The rules live one layer down, in :mod:`dream_cl.protocol.frameworks`, because the
configuration and the evaluation need them and sit below the step functions (which import
the run's context, which imports the configuration); this module adds only the steps, so
the names are spelt there alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import MappingProxyType

from dream_cl.distill.frameworks import OuterLoop, dc_outer, dm_outer, idc_outer
from dream_cl.errors import UserError
from dream_cl.protocol.frameworks import (
    FRAMEWORK_NAMES,
    FRAMEWORK_RULES,
    LOOP_DISTRIBUTION,
    LOOP_REAL,
    LOOP_SYNTHETIC,
    FrameworkRules,
)

LOOP_STEPS: MappingProxyType[str, OuterLoop] = MappingProxyType(
    {LOOP_REAL: idc_outer, LOOP_SYNTHETIC: dc_outer, LOOP_DISTRIBUTION: dm_outer}
)
"""Loop -> its outer-iteration step."""


@dataclass(frozen=True)
class Framework(FrameworkRules):
    """A framework: its rules and ``outer``, one outer iteration of its loop."""

    outer: OuterLoop


def _record(rules: FrameworkRules) -> Framework:
    values = {f.name: getattr(rules, f.name) for f in dataclasses.fields(FrameworkRules)}
    return Framework(**values, outer=LOOP_STEPS[rules.loop])


FRAMEWORKS: MappingProxyType[str, Framework] = MappingProxyType(
    {name: _record(rules) for name, rules in FRAMEWORK_RULES.items()}
)
"""Framework name -> its record, in the order the rules list them."""


def framework(name: str) -> Framework:
    """The record of framework ``name``; an unknown name is one clear line."""
    try:
        return FRAMEWORKS[name]
    except (KeyError, TypeError):
        raise UserError(
            f"unknown framework '{name}'; use one of {', '.join(FRAMEWORK_NAMES)}"
        ) from None


def framework_names() -> list[str]:
    """Registered framework names, in registration order."""
    return list(FRAMEWORKS)
