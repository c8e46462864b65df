"""The run's random streams: one shared by every process, one per class.

A distillation run draws two kinds of random numbers. The network updates (which real
images train the network, their augmentation, CutMix) are the same on every rank, so they
come from one *shared* stream that every rank advances identically. Everything that
belongs to one class (its k-means seeding and candidate pool, its synthetic subsample, its
siamese augmentation draw, its initial images) comes from that class's own stream, so a
class's result does not depend on which rank owns it or how many ranks there are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

_CLASS_STREAM = 0x5EED_C1A55


def class_seed(seed: int, c: int) -> int:
    """A 63-bit seed for class ``c``'s stream, well mixed and distinct from the shared one."""
    words = np.random.SeedSequence([seed % 2**32, seed // 2**32, _CLASS_STREAM, c])
    hi, lo = (int(w) for w in words.generate_state(2, dtype=np.uint32))
    return ((hi << 32) | lo) & (2**63 - 1)


@dataclass
class RandomStreams:
    """The shared generator and the per-class generators of the classes held here."""

    shared: torch.Generator
    per_class: dict[int, torch.Generator] = field(default_factory=dict)

    @classmethod
    def create(cls, seed: int, classes: Iterable[int]) -> RandomStreams:
        return cls(
            shared=torch.Generator().manual_seed(seed),
            per_class={c: torch.Generator().manual_seed(class_seed(seed, c)) for c in classes},
        )

    def for_class(self, c: int) -> torch.Generator:
        return self.per_class[c]

    def class_states(self) -> dict[int, torch.Tensor]:
        return {c: g.get_state() for c, g in self.per_class.items()}

    def load_class_states(self, states: Mapping[int, torch.Tensor]) -> None:
        for c, g in self.per_class.items():
            if c not in states:
                raise KeyError(f"no random-stream state for class {c}")
            g.set_state(states[c])
