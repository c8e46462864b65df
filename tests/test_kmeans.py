"""k-means (seeding, Lloyd, empty-cluster re-seeding) and distinct nearest-sample selection."""

from __future__ import annotations

import pytest
import torch

from dream_cl.distill import kmeans as km
from dream_cl.distill.kmeans import kmeans, kmeans_pp_init, nearest_distinct


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(centres: torch.Tensor, per_blob: int, std: float, seed: int = 0) -> torch.Tensor:
    """``per_blob`` Gaussian points around each row of ``centres`` (blob-major order)."""
    g = gen(seed)
    noise = torch.randn(centres.shape[0], per_blob, centres.shape[1], generator=g) * std
    return (centres.unsqueeze(1) + noise).reshape(-1, centres.shape[1])


def assert_fixpoint(x: torch.Tensor, centers: torch.Tensor, assignment: torch.Tensor) -> None:
    """Every point sits with its nearest centre and every centre is the mean of its points."""
    d = torch.cdist(x.double(), centers.double())
    own = d.gather(1, assignment.view(-1, 1)).squeeze(1)
    assert torch.all(own <= d.min(dim=1).values + 1e-6)
    for j in range(centers.shape[0]):
        members = x[assignment == j]
        assert members.shape[0] > 0, f"cluster {j} is empty"
        torch.testing.assert_close(centers[j], members.mean(0), atol=1e-5, rtol=1e-5)


CENTRES = torch.tensor([[10.0, 10.0], [-10.0, 10.0], [10.0, -10.0], [-10.0, -10.0]])


def test_recovers_well_separated_blob_centres():
    x = blobs(CENTRES, 40, 0.2)
    res = kmeans(x, 4, gen(1))
    assert res.centers.shape == (4, 2) and res.assignment.shape == (160,)
    # each true centre has exactly one found centre next to it
    d = torch.cdist(CENTRES, res.centers)
    match = d.argmin(1)
    assert sorted(match.tolist()) == [0, 1, 2, 3]
    assert float(d.min(1).values.max()) < 0.2
    # the found centres are the blob means, and each blob is one cluster
    blob_of = torch.arange(4).repeat_interleave(40)
    for b in range(4):
        assert torch.all(res.assignment[blob_of == b] == match[b])
        torch.testing.assert_close(res.centers[match[b]], x[blob_of == b].mean(0))


def test_same_seed_same_result_different_seed_different():
    x = torch.rand(200, 6, generator=gen(3))  # no structure: many local optima
    a, b = kmeans(x, 12, gen(7)), kmeans(x, 12, gen(7))
    assert torch.equal(a.centers, b.centers)
    assert torch.equal(a.assignment, b.assignment)
    c = kmeans(x, 12, gen(8))
    assert not torch.equal(a.centers, c.centers)
    # the seeding itself follows the generator
    s1 = kmeans_pp_init(x.unsqueeze(0), 12, gen(7))
    s2 = kmeans_pp_init(x.unsqueeze(0), 12, gen(7))
    s3 = kmeans_pp_init(x.unsqueeze(0), 12, gen(8))
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)


def test_kmeans_pp_seeds_are_data_points_and_distinct():
    x = torch.rand(2, 50, 3, generator=gen(0))
    seeds = kmeans_pp_init(x, 10, gen(1))
    assert seeds.shape == (2, 10, 3)
    for b in range(2):
        same = (seeds[b].unsqueeze(1) == x[b].unsqueeze(0)).all(-1)  # (k, n)
        assert torch.all(same.sum(1) == 1)  # each seed is exactly one data point
        idx = same.float().argmax(1)
        assert len(set(idx.tolist())) == 10  # D^2 weighting never re-picks a chosen point


def test_batched_problems_each_converge_to_a_fixpoint():
    # batched draws interleave the problems' random numbers, so a batch is not bit-equal to
    # separate runs; what must hold is that every problem ends at a proper Lloyd fixpoint
    x = torch.rand(3, 60, 5, generator=gen(4))
    res = kmeans(x, 7, gen(5), max_iter=100, tol=0.0)
    assert res.centers.shape == (3, 7, 5) and res.assignment.shape == (3, 60)
    assert res.iterations < 100
    for b in range(3):
        assert_fixpoint(x[b], res.centers[b], res.assignment[b])


def test_2d_input_gives_unbatched_result():
    x = torch.rand(30, 4, generator=gen(0))
    res = kmeans(x, 3, gen(0), tol=0.0)
    assert res.centers.shape == (3, 4) and res.assignment.shape == (30,)
    assert_fixpoint(x, res.centers, res.assignment)


def test_empty_cluster_is_reseeded_not_left_at_zero(monkeypatch):
    centres = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0]])
    x = blobs(centres, 20, 0.1)

    def bad_init(points: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        # two good seeds and one so far away that its cluster is empty after the first step
        return torch.stack([points[:, 0], points[:, 20], torch.full_like(points[:, 0], 1e3)], 1)

    monkeypatch.setattr(km, "kmeans_pp_init", bad_init)
    res = kmeans(x, 3, gen(0), tol=0.0)
    assert not torch.any(res.centers.abs().sum(1) == 0)  # no centre at the zero vector
    assert float(res.centers.abs().max()) < 100  # the far seed did not survive
    # the empty cluster moved to the uncovered blob: all three blobs recovered
    d = torch.cdist(centres, res.centers)
    assert sorted(d.argmin(1).tolist()) == [0, 1, 2]
    assert float(d.min(1).values.max()) < 0.1
    assert torch.bincount(res.assignment, minlength=3).min() > 0
    assert_fixpoint(x, res.centers, res.assignment)


def test_duplicate_points_more_clusters_than_distinct_values():
    # 3 distinct points (away from the origin), k = 4: one seed must be a duplicate, its
    # cluster is empty and must be re-seeded onto a data point rather than zeroed
    base = torch.tensor([[1.0, 2.0], [3.0, -1.0], [-2.0, 4.0]])
    x = base.repeat_interleave(5, dim=0)
    res = kmeans(x, 4, gen(0))
    assert not torch.any(res.centers.abs().sum(1) == 0)
    assert torch.all(torch.cdist(res.centers, base).min(1).values < 1e-5)
    picks = nearest_distinct(x, res.centers)
    assert len(set(picks.tolist())) == 4


def test_k_must_be_between_one_and_n():
    x = torch.rand(5, 2)
    with pytest.raises(ValueError):
        kmeans(x, 6, gen())
    with pytest.raises(ValueError):
        kmeans(x, 0, gen())
    with pytest.raises(ValueError):
        nearest_distinct(x, torch.rand(3, 2), per_center=2)


def _check_greedy_nearest(x: torch.Tensor, centers: torch.Tensor, picks: torch.Tensor) -> None:
    """Every sample nearer to centre c than c's pick must have been taken by another centre."""
    d = torch.cdist(centers.double(), x.double())
    pick_list = picks.tolist()
    for c, p in enumerate(pick_list):
        closer = (d[c] < d[c, p]).nonzero().flatten().tolist()
        others = set(pick_list[:c] + pick_list[c + 1 :])
        assert set(closer) <= others, f"centre {c} skipped a free nearer sample"


def test_nearest_distinct_picks_nearest_free_samples():
    x = torch.rand(40, 4, generator=gen(1))
    centers = torch.rand(6, 4, generator=gen(2))
    centers[3] = centers[1]  # two coincident centres must still get two different samples
    picks = nearest_distinct(x, centers)
    assert picks.shape == (6,) and picks.dtype == torch.int64
    assert len(set(picks.tolist())) == 6
    assert int(picks.min()) >= 0 and int(picks.max()) < 40
    _check_greedy_nearest(x, centers, picks)
    # on a line: two centres at 0.1 share the samples 0 and 1; the centre at 9 keeps 9
    line = torch.arange(10.0).unsqueeze(1)
    picks = nearest_distinct(line, torch.tensor([[0.1], [9.0], [0.1]]))
    assert {int(picks[0]), int(picks[2])} == {0, 1} and int(picks[1]) == 9


def test_nearest_distinct_all_centres_coincide():
    x = torch.rand(30, 3, generator=gen(5))
    centre = torch.rand(1, 3, generator=gen(6))
    picks = nearest_distinct(x, centre.repeat(5, 1))
    nearest5 = torch.cdist(centre, x)[0].topk(5, largest=False).indices
    assert set(picks.tolist()) == set(nearest5.tolist())


def test_nearest_distinct_per_center_rounds():
    x = torch.rand(50, 3, generator=gen(7))
    centers = torch.rand(4, 3, generator=gen(8))
    picks = nearest_distinct(x, centers, per_center=3)
    assert picks.shape == (12,)
    assert len(set(picks.tolist())) == 12
    # centre-major: the first pick of each centre is a greedy nearest-free choice
    firsts = picks.view(4, 3)
    d = torch.cdist(centers, x)
    for c in range(4):
        mine = firsts[c].tolist()
        # within one centre, picks come in non-decreasing distance order
        assert d[c, mine].tolist() == sorted(d[c, mine].tolist())
    # one centre alone: its picks are exactly its nearest samples
    solo = nearest_distinct(x, centers[:1], per_center=5)
    assert solo.tolist() == d[0].topk(5, largest=False).indices.tolist()


def test_nearest_distinct_closest_centre_chooses_first():
    # both centres want sample 0; the closer centre (index 1) gets it, centre 0 takes the next
    line = torch.tensor([[0.0], [10.0], [20.0]])
    picks = nearest_distinct(line, torch.tensor([[0.5], [0.1]]))
    assert picks.tolist() == [1, 0]
