"""k-means in torch, on the run's device, for representative sampling and k-means init.

Replaces the unpinned ``fast_pytorch_kmeans`` of the official code (whose seeding changed
between versions and could leave empty clusters at the zero vector) with:

- k-means++ seeding driven by an explicit generator (deterministic under a seed);
- Lloyd iterations until the assignment stops changing (then the centres cannot move, so
  stopping there is exact) or ``max_iter`` / ``tol`` is reached;
- an empty cluster is re-seeded at the point farthest from its current centre;
- :func:`nearest_distinct` picks the samples nearest each centre with no sample taken twice.

All functions take a leading batch dimension (one problem per class), so a whole refresh of
equally sized classes is one set of batched matrix products instead of a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KMeansResult:
    centers: torch.Tensor  # (B, k, D)
    assignment: torch.Tensor  # (B, n) int64
    iterations: int


def _sq_dists(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (B, n, k) via one batched matmul."""
    c_sq = (c * c).sum(-1)
    d = x_sq.unsqueeze(-1) - 2.0 * torch.bmm(x, c.transpose(1, 2)) + c_sq.unsqueeze(1)
    return d.clamp_min_(0.0)


def _cluster_sums(
    x: torch.Tensor, assignment: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums (B, k, D) and counts (B, k) of ``x`` (B, n, D) under ``assignment``.

    One indexed add over the points (n x D additions), not a one-hot matrix product, which
    costs as much as the distance product itself (n x k x D)."""
    b, n, d = x.shape
    flat = (assignment + torch.arange(b, device=x.device).unsqueeze(1) * k).reshape(-1)
    sums = torch.zeros(b * k, d, device=x.device, dtype=x.dtype)
    sums.index_add_(0, flat, x.reshape(b * n, d))
    counts = torch.bincount(flat, minlength=b * k).to(x.dtype)
    return sums.view(b, k, d), counts.view(b, k)


Generators = torch.Generator | Sequence[torch.Generator]
"""One generator for every problem of a batch, or one per problem (per-class streams)."""


def _per_problem(generator: Generators, b: int) -> list[torch.Generator]:
    if isinstance(generator, torch.Generator):
        return [generator] * b
    gens = list(generator)
    if len(gens) != b:
        raise ValueError(f"{b} k-means problems but {len(gens)} generators")
    return gens


def kmeans_pp_init(x: torch.Tensor, k: int, generator: Generators) -> torch.Tensor:
    """k-means++ seeding for a batch of problems ``x`` (B, n, D); returns centres (B, k, D).

    Each problem draws all its random numbers up front from its own generator (CPU), so a
    problem's centres are the same whether it is seeded alone or batched with others, on
    any device: the property class sharding relies on.
    """
    b, n, _ = x.shape
    draws = []
    for g in _per_problem(generator, b):
        first = torch.randint(n, (1,), generator=g)
        u = torch.rand(k - 1, generator=g, dtype=torch.float64)
        uniform = torch.randint(n, (k - 1,), generator=g)
        draws.append((first, u, uniform))
    first = torch.cat([d[0] for d in draws]).to(x.device)
    u_all = torch.stack([d[1] for d in draws], 1).to(x.device)  # (k-1, B)
    uniform_all = torch.stack([d[2] for d in draws], 1).to(x.device)
    x_sq = (x * x).sum(-1)
    rows = torch.arange(b, device=x.device)
    centers = [x[rows, first]]
    closest = _sq_dists(x, centers[0].unsqueeze(1), x_sq).squeeze(-1)  # (B, n)
    for j in range(1, k):
        weights = closest.double()
        total = weights.sum(-1)
        cum = weights.cumsum(-1)
        target = (u_all[j - 1] * total).unsqueeze(-1)
        idx = torch.searchsorted(cum, target).squeeze(-1).clamp_(max=n - 1)
        # all points coincide with a centre: fall back to a uniform draw
        idx = torch.where(total > 0, idx, uniform_all[j - 1])
        new = x[rows, idx]
        centers.append(new)
        closest = torch.minimum(closest, _sq_dists(x, new.unsqueeze(1), x_sq).squeeze(-1))
    return torch.stack(centers, dim=1)


def kmeans(
    x: torch.Tensor,
    k: int,
    generator: Generators,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> KMeansResult:
    """Lloyd's k-means on ``x`` (B, n, D) or (n, D) with ``k <= n`` clusters.

    Problems of a batch stop independently (assignment unchanged, or their own centre
    shift within ``tol``), so each problem's result equals the one it gets alone.
    """
    squeeze = x.ndim == 2
    if squeeze:
        x = x.unsqueeze(0)
    x = x.float()
    b, n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n, got k={k}, n={n}")
    x_sq = (x * x).sum(-1)
    centers = kmeans_pp_init(x, k, generator)
    assignment = torch.full((b, n), -1, dtype=torch.int64, device=x.device)
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    iterations = 0
    dist = _sq_dists(x, centers, x_sq)
    for it in range(1, max_iter + 1):
        iterations = it
        dist = _sq_dists(x, centers, x_sq)
        new_assignment = dist.argmin(-1)
        unchanged = (new_assignment == assignment).all(-1)
        active &= ~unchanged
        if not bool(active.any()):
            break
        assignment = torch.where(active.unsqueeze(-1), new_assignment, assignment)
        sums, counts = _cluster_sums(x, new_assignment, k)
        new_centers = sums / counts.clamp_min(1.0).unsqueeze(-1)
        empty = (counts == 0) & active.unsqueeze(-1)
        if bool(empty.any()):
            # re-seed each empty cluster at the point farthest from its assigned centre
            own = dist.gather(2, new_assignment.unsqueeze(-1)).squeeze(-1)  # (B, n)
            for bi, ki in empty.nonzero().tolist():
                far = int(own[bi].argmax())
                new_centers[bi, ki] = x[bi, far]
                own[bi, far] = -1.0
        shift = ((new_centers - centers) ** 2).sum(dim=(1, 2))
        centers = torch.where(active.view(b, 1, 1), new_centers, centers)
        active &= shift > tol
        if not bool(active.any()):
            break
    result = KMeansResult(
        centers, assignment if assignment.min() >= 0 else dist.argmin(-1), iterations
    )
    if squeeze:
        return KMeansResult(result.centers[0], result.assignment[0], iterations)
    return result


def nearest_distinct(x: torch.Tensor, centers: torch.Tensor, per_center: int = 1) -> torch.Tensor:
    """Indices of the ``per_center`` samples nearest each centre, never the same sample twice.

    ``x`` (n, D), ``centers`` (k, D); returns (k * per_center,) int64, centre-major. Centres
    choose greedily in rounds: in each round every centre takes its nearest free sample,
    centres with the closest candidates first. Needs ``k * per_center <= n``.
    """
    k, n = centers.shape[0], x.shape[0]
    need = k * per_center
    if need > n:
        raise ValueError(f"cannot take {need} distinct samples from {n}")
    dist = torch.cdist(centers.float(), x.float())  # (k, n)
    # a centre never needs more than `need` candidates: at most need-1 are taken by others
    cand_dist, cand_idx = dist.topk(min(n, need), dim=1, largest=False)
    cand_dist, cand_idx = cand_dist.tolist(), cand_idx.tolist()
    taken: set[int] = set()
    pointer = [0] * k
    picks = [[0] * per_center for _ in range(k)]
    for r in range(per_center):
        for c in sorted(range(k), key=lambda c: cand_dist[c][pointer[c]]):
            while cand_idx[c][pointer[c]] in taken:
                pointer[c] += 1
            idx = cand_idx[c][pointer[c]]
            taken.add(idx)
            picks[c][r] = idx
    return torch.tensor(picks, dtype=torch.int64, device=x.device).reshape(-1)
