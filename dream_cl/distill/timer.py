"""Wall-clock accounting of a run by named section (init, clustering, matching, ...)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class Timer:
    """Accumulates wall seconds per named section (synchronising CUDA for honest numbers).

    ``laps`` keeps each section's individual durations of this call (not checkpointed), so
    a benchmark can drop warm-up laps such as the one that compiles.
    """

    device: torch.device
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    laps: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    @contextmanager
    def section(self, name: str):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            lap = time.perf_counter() - t0
            self.seconds[name] += lap
            self.laps[name].append(lap)
