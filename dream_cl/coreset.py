"""Coreset baselines of the paper's Table 1: random, herding and k-center selection.

Each picks ``ipc`` real training images per class and returns them as an :class:`ImageSet`
(factor 1), so they are saved, loaded and evaluated exactly like a distilled set.

Herding and k-center work on features: ``embed()`` of a randomly initialised network (seeded),
applied to normalised images, class by class. DC/DM compute herding features the same way
with a randomly initialised ConvNet; IDC instead uses a *pretrained* network, which we do not
have a checkpoint for, so numbers can differ from IDC's herding rows.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from dream_cl.artifact import ImageSet
from dream_cl.data.base import DatasetSplit, to_float
from dream_cl.distributed import ClassShard, DistEnv, all_gather_objects
from dream_cl.errors import UserError
from dream_cl.models import build_model


def herding_select(features: torch.Tensor, k: int) -> list[int]:
    """Greedy mean matching (Welling 2009; iCaRL/DC-style herding), no repeats.

    With ``mu`` the mean of all rows and ``S`` the sum of the rows chosen so far, step
    ``t = 1..k`` picks the unchosen row ``x`` minimising ``|| mu - (S + x) / t ||``. Ties go to
    the lowest index. Returns row indices in selection order.
    """
    n = _check_k(features, k)
    f = features.detach().to(torch.float64).flatten(1)
    mu = f.mean(0)
    current = torch.zeros_like(mu)
    taken = torch.zeros(n, dtype=torch.bool, device=f.device)
    chosen: list[int] = []
    for t in range(1, k + 1):
        # || mu - (S + x)/t || = || t*mu - S - x || / t: same argmin, no division needed.
        dist = torch.linalg.vector_norm(t * mu - current - f, dim=1)
        dist[taken] = torch.inf
        i = int(torch.argmin(dist))
        chosen.append(i)
        taken[i] = True
        current += f[i]
    return chosen


def kcenter_select(features: torch.Tensor, k: int) -> list[int]:
    """Greedy farthest-first traversal (the k-center 2-approximation), no repeats.

    The first centre is the row nearest the mean; each next one is the unchosen row whose
    distance to its nearest chosen centre is largest. Ties go to the lowest index. Returns row
    indices in selection order.
    """
    n = _check_k(features, k)
    f = features.detach().to(torch.float64).flatten(1)
    first = int(torch.argmin(torch.linalg.vector_norm(f - f.mean(0), dim=1)))
    chosen = [first]
    min_dist = torch.linalg.vector_norm(f - f[first], dim=1)
    taken = torch.zeros(n, dtype=torch.bool, device=f.device)
    taken[first] = True
    for _ in range(k - 1):
        # Masking chosen rows matters only when the rest are duplicates of centres (all zero).
        i = int(torch.argmax(min_dist.masked_fill(taken, -torch.inf)))
        chosen.append(i)
        taken[i] = True
        min_dist = torch.minimum(min_dist, torch.linalg.vector_norm(f - f[i], dim=1))
    return chosen


def _check_k(features: torch.Tensor, k: int) -> int:
    if features.ndim < 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    n = int(features.shape[0])
    if not 1 <= k <= n:
        raise ValueError(f"cannot select {k} of {n} rows")
    return n


def _random_select(
    _features: torch.Tensor | None, k: int, n: int, generator: torch.Generator
) -> list[int]:
    return torch.randperm(n, generator=generator)[:k].tolist()


def _herding(
    features: torch.Tensor | None, k: int, n: int, generator: torch.Generator
) -> list[int]:
    assert features is not None
    return herding_select(features, k)


def _kcenter(
    features: torch.Tensor | None, k: int, n: int, generator: torch.Generator
) -> list[int]:
    assert features is not None
    return kcenter_select(features, k)


# method -> (needs features, selector(features, k, class size, generator) -> indices)
_Selector = Callable[[torch.Tensor | None, int, int, torch.Generator], list[int]]
METHODS: MappingProxyType[str, tuple[bool, _Selector]] = MappingProxyType(
    {
        "random": (False, _random_select),
        "herding": (True, _herding),
        "k-center": (True, _kcenter),
    }
)


@torch.no_grad()
def class_features(
    model: nn.Module,
    train: DatasetSplit,
    c: int,
    device: torch.device | str = "cpu",
    batch_size: int = 512,
) -> torch.Tensor:
    """``model.embed`` of class ``c``'s normalised images, in batches (eval mode)."""
    model.eval()
    images = train.class_images(c)
    parts = []
    for start in range(0, images.shape[0], batch_size):
        x = train.info.normalize(to_float(images[start : start + batch_size].to(device)))
        parts.append(model.embed(x))
    return torch.cat(parts)


def select_coreset(
    train: DatasetSplit,
    method: str,
    ipc: int,
    *,
    seed: int = 0,
    feature_model: str = "convnet",
    device: torch.device | str = "cpu",
    model_options: dict[str, Any] | None = None,
    batch_size: int = 512,
) -> ImageSet:
    """Pick ``ipc`` real images per class with ``method`` ('random', 'herding', 'k-center').

    Deterministic for a fixed ``seed``: it seeds the random choice and the feature network.
    ``meta`` records ipc, seed, the feature model and the chosen indices into ``train``.
    """
    if method not in METHODS:
        raise UserError(f"unknown coreset method {method!r}; use one of: {', '.join(METHODS)}")
    if isinstance(ipc, bool) or not isinstance(ipc, int) or ipc < 1:
        raise UserError(f"--ipc must be a positive integer, got {ipc!r}")
    for c in range(train.num_classes):
        count = train.class_count(c)
        if count < ipc:
            raise UserError(
                f"class {c} ({train.info.class_names[c]}) has only {count} images; "
                f"use --ipc <= {count}"
            )
    needs_features, selector = METHODS[method]
    gen = torch.Generator().manual_seed(seed)
    model = None
    if needs_features:
        info = train.info
        model = build_model(
            feature_model,
            channels=info.channels,
            num_classes=info.num_classes,
            image_size=info.image_size,
            generator=torch.Generator().manual_seed(seed),
            dataset=info.name,
            **(model_options or {}),
        ).to(device)
    # under torchrun each rank selects its block of classes (the random method still
    # draws every class's numbers, so the shared stream stays as in one process)
    shard = ClassShard.for_env(train.num_classes, DistEnv.current())
    chosen: dict[int, list[int]] = {}
    for c in range(train.num_classes):
        if not shard.owns(c):
            if not needs_features:
                selector(None, ipc, train.class_count(c), gen)
            continue
        feats = class_features(model, train, c, device, batch_size) if model is not None else None
        chosen[c] = list(selector(feats, ipc, train.class_count(c), gen))
    for part in all_gather_objects(chosen):
        chosen.update(part)
    picked: list[int] = []
    images, labels = [], []
    for c in range(train.num_classes):
        local = torch.tensor(chosen[c], dtype=torch.int64)
        images.append(to_float(train.class_images(c)[local]))
        labels.append(torch.full((ipc,), c, dtype=torch.int64))
        picked.extend((local + int(train.offsets[c])).tolist())
    meta = {
        "ipc": ipc,
        "seed": seed,
        "feature_model": feature_model if needs_features else None,
        "model_options": dict(model_options or {}) if needs_features else {},
        "indices": picked,
        "source_split_size": len(train),
    }
    return ImageSet(
        torch.cat(images), torch.cat(labels), train.info, factor=1, method=method, meta=meta
    )
