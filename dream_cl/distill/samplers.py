"""Real-batch samplers: which real images of each class a matching step compares against.

This is the paper's central abstraction. Every framework loop asks a sampler for one batch
of indices per class and hands it an ``embed`` function (the current network's features);
the sampler never knows which framework is calling.

- :class:`RandomSampler`: the baseline, a fresh random mini-batch per class and step.
- :class:`RepresentativeSampler`: DREAM. Per class, k-means with ``n_clusters`` centres on
  the current network's embedding of the class's real images, then the ``per_cluster``
  samples nearest each centre; refreshed every ``interval`` steps and reused in between.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from dream_cl.data.base import DatasetSplit
from dream_cl.distill.kmeans import kmeans, nearest_distinct

EmbedFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps a batch of real images (float [0,1], on the run's device) to features (N, D)."""

ClassGenerators = torch.Generator | Mapping[int, torch.Generator]
"""One generator for all classes, or one stream per class (so that a class's draws do not
depend on which other classes a process holds)."""


def generator_for(generators: ClassGenerators, c: int) -> torch.Generator:
    return generators if isinstance(generators, torch.Generator) else generators[c]


class RealSampler(Protocol):
    """One batch of class-local indices per owned class (in ``classes`` order) for step
    ``step`` of the current network."""

    name: str
    classes: Sequence[int] | None

    def sample(
        self, step: int, embed: EmbedFn, generator: ClassGenerators
    ) -> list[torch.Tensor]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


def class_batch(
    data: DatasetSplit, c: int, idx: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Float [0,1] images of class ``c`` at class-local indices ``idx``, on ``device``."""
    from dream_cl.data.base import to_float

    images = data.class_images(c)
    return to_float(images[idx.to(images.device)].to(device, non_blocking=True))


@dataclass
class RandomSampler:
    """A uniformly random batch per class and step (without replacement within a batch).

    A class with fewer than ``batch_size`` images contributes all of them.
    """

    data: DatasetSplit
    batch_size: int
    classes: Sequence[int] | None = None
    """The classes to sample (None: all of ``data``'s)."""
    name: str = "random"

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def sample(self, step: int, embed: EmbedFn, generator: ClassGenerators) -> list[torch.Tensor]:
        out = []
        for c in owned_classes(self.data, self.classes):
            n = self.data.class_count(c)
            g = generator_for(generator, c)
            out.append(torch.randperm(n, generator=g)[: min(self.batch_size, n)])
        return out


def owned_classes(data: DatasetSplit, classes: Sequence[int] | None) -> list[int]:
    return list(range(data.num_classes)) if classes is None else list(classes)


@dataclass
class SamplerStats:
    """Where the representative sampler's time went (seconds), for the time breakdown."""

    refreshes: int = 0
    embed_seconds: float = 0.0
    kmeans_seconds: float = 0.0
    select_seconds: float = 0.0
    distinct_counts: list[int] = field(default_factory=list)


@dataclass
class RepresentativeSampler:
    """DREAM's representative matching.

    ``n_clusters`` = N (the official code uses the real batch size, 128), ``per_cluster`` = n
    (1), ``interval`` = I_int (10). Features are computed on *normalised* images through the
    ``embed`` function the caller provides (the official code embedded raw [0,1] images while
    training on normalised ones; see docs/fidelity.md).

    A class with at most ``n_clusters * per_cluster`` images has nothing to choose between:
    all its images form the batch (clustering them would return each image once anyway).
    ``candidates`` limits clustering to a random subset of each class per refresh (None =
    the whole class, as the paper does); it trades representativeness for speed.
    """

    data: DatasetSplit
    classes: Sequence[int] | None = None
    """The classes to sample (None: all of ``data``'s)."""
    n_clusters: int = 128
    per_cluster: int = 1
    interval: int = 10
    max_iter: int = 100
    tol: float = 1e-4
    candidates: int | None = None
    embed_batch: int = 256
    name: str = "representative"
    stats: SamplerStats = field(default_factory=SamplerStats)
    _cached: list[torch.Tensor] | None = field(default=None, repr=False)

    @property
    def batch_size(self) -> int:
        return self.n_clusters * self.per_cluster

    def reset(self) -> None:
        """Forget the cached batch (a new network is coming)."""
        self._cached = None

    def state_dict(self) -> dict:
        """The cached batch by class, so a checkpoint taken between refreshes resumes
        exactly (and per-rank states merge into one by taking the union of classes)."""
        cached = None
        if self._cached is not None:
            classes = owned_classes(self.data, self.classes)
            cached = {c: b.cpu() for c, b in zip(classes, self._cached, strict=True)}
        return {"cached": cached, "stats": dataclasses.asdict(self.stats)}

    def load_state_dict(self, state: dict) -> None:
        cached = state.get("cached")
        if cached is None:
            self._cached = None
        else:
            self._cached = [cached[c] for c in owned_classes(self.data, self.classes)]
        if "stats" in state:
            self.stats = SamplerStats(**state["stats"])

    def sample(self, step: int, embed: EmbedFn, generator: ClassGenerators) -> list[torch.Tensor]:
        if self._cached is None or step % self.interval == 0:
            self._cached = self.refresh(embed, generator)
        return self._cached

    @torch.no_grad()
    def features(self, c: int, idx: torch.Tensor | None, embed: EmbedFn) -> torch.Tensor:
        """Embeddings of class ``c`` (optionally a subset), in chunks to bound memory."""
        import time

        from dream_cl.data.base import to_float

        images = self.data.class_images(c)
        if idx is not None:
            images = images[idx.to(images.device)]
        t0 = time.perf_counter()
        feats = [
            embed(to_float(images[i : i + self.embed_batch])).float()
            for i in range(0, images.shape[0], self.embed_batch)
        ]
        self.stats.embed_seconds += time.perf_counter() - t0
        return torch.cat(feats)

    def refresh(self, embed: EmbedFn, generator: ClassGenerators) -> list[torch.Tensor]:
        """Re-cluster every owned class with the current network; returns the new batches.

        Each class draws from its own stream (``generator_for``), and batched k-means
        solves each class's problem as if alone, so a class's batch does not depend on
        which other classes share the process.
        """
        import time

        need = self.batch_size
        classes = owned_classes(self.data, self.classes)
        batches: dict[int, torch.Tensor] = {}
        pending: list[tuple[int, torch.Tensor | None]] = []
        for c in classes:
            n = self.data.class_count(c)
            if n <= need:
                batches[c] = torch.arange(n)
                continue
            subset = None
            if self.candidates is not None and self.candidates < n:
                g = generator_for(generator, c)
                subset = torch.randperm(n, generator=g)[: max(self.candidates, need)]
                subset = subset.sort().values
            pending.append((c, subset))
        # classes of equal size are clustered together in one batched problem; their
        # features are written straight into the group's tensor (no second copy)
        by_size: dict[int, list[int]] = {}
        for j, (c, subset) in enumerate(pending):
            size = subset.numel() if subset is not None else self.data.class_count(c)
            by_size.setdefault(size, []).append(j)
        for size, group in by_size.items():
            feats: torch.Tensor | None = None
            for gi, j in enumerate(group):
                c, subset = pending[j]
                f = self.features(c, subset, embed)
                if feats is None:
                    feats = f.new_empty((len(group), size, f.shape[1]))
                feats[gi] = f
                del f
            assert feats is not None
            t0 = time.perf_counter()
            gens = [generator_for(generator, pending[j][0]) for j in group]
            result = kmeans(feats, self.n_clusters, gens, self.max_iter, self.tol)
            t1 = time.perf_counter()
            for gi, j in enumerate(group):
                c, subset = pending[j]
                local = nearest_distinct(feats[gi], result.centers[gi], self.per_cluster).cpu()
                batches[c] = subset[local] if subset is not None else local
            del feats, result
            self.stats.kmeans_seconds += t1 - t0
            self.stats.select_seconds += time.perf_counter() - t1
        self.stats.refreshes += 1
        return [batches[c] for c in classes]


SAMPLERS = ("random", "representative")
