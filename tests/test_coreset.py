"""Coreset selection: herding and k-center on hand-checked examples, random, and the wrapper."""

from __future__ import annotations

import pytest
import torch

from dream_cl.coreset import class_features, herding_select, kcenter_select, select_coreset
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.errors import UserError
from dream_cl.models import build_model

INFO = DatasetInfo("toy", 1, 8, ("a", "b", "c"), (0.5,), (0.25,))


def toy_split(per_class: tuple[int, ...] = (12, 15, 9)) -> DatasetSplit:
    g = torch.Generator().manual_seed(1)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    images = torch.randint(0, 256, (len(labels), 1, 8, 8), generator=g, dtype=torch.uint8)
    return DatasetSplit(images, labels, INFO)


def test_herding_follows_greedy_mean_matching_in_1d() -> None:
    # Values 10, 0, 2, 1 (rows 0..3); mean mu = 13/4 = 3.25.
    # t=1: target 1*mu = 3.25 -> nearest value 2 (row 2).
    # t=2: target 2*mu - 2 = 4.5 -> |1-4.5|=3.5, |0-4.5|=4.5, |10-4.5|=5.5 -> value 1 (row 3).
    # t=3: target 3*mu - 3 = 6.75 -> |10-6.75|=3.25 beats |0-6.75|=6.75 -> value 10 (row 0).
    # t=4: value 0 (row 1). Sorting by distance to the mean would give 2, 1, 0, 10 instead.
    x = torch.tensor([[10.0], [0.0], [2.0], [1.0]])
    assert herding_select(x, 4) == [2, 3, 0, 1]
    assert herding_select(x, 2) == [2, 3]


def test_herding_in_2d_matches_the_mean_matching_definition() -> None:
    # Rows: A=(4,0) B=(0,3) C=(1,1) D=(-3,-1) E=(2,2); mu = (4/5, 5/5) = (0.8, 1.0).
    # t=1: |mu - x|: C=(0.2,0)->0.2 is nearest.            -> C (row 2)
    # t=2: target 2mu - C = (0.6, 1.0): E=(1.4,1)->1.61, B=(0.6,2)->2.09, A=(3.4,1)->3.54,
    #      D=(3.6,2)->4.12                                  -> E (row 4)
    # t=3: target 3mu - C - E = (-0.6, 0): B=(0.6,3)->3.06, D=(2.4,1)->2.6, A=(4.6,0)->4.6
    #                                                       -> D (row 3)
    # t=4: target 4mu - C - E - D = (3.2, 2): A=(0.8,2)->2.15, B=(3.2,1)->3.35 -> A (row 0)
    x = torch.tensor([[4.0, 0.0], [0.0, 3.0], [1.0, 1.0], [-3.0, -1.0], [2.0, 2.0]])
    assert herding_select(x, 5) == [2, 4, 3, 0, 1]


def test_herding_agrees_with_a_brute_force_reference() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    mu = x.mean(0)
    ref: list[int] = []
    for t in range(1, 11):
        best = min(
            (i for i in range(40) if i not in ref),
            key=lambda i: float(torch.linalg.vector_norm(mu - (x[ref].sum(0) + x[i]) / t)),
        )
        ref.append(best)
    assert herding_select(x, 10) == ref


def test_kcenter_picks_the_covering_points() -> None:
    # Four far corners plus a tight cluster of five around (6, 6.25), which is the overall mean.
    # First centre: the cluster point at the mean (row 4). Distances from it:
    #   (0,0) 8.66, (10,0) 7.42, (0,11) 7.65, (14,14) 11.14        -> (14,14) (row 3)
    # nearest-centre distances then: (0,0) 8.66, (10,0) 7.42, (0,11) 7.65 -> (0,0) (row 0)
    # then (0,11): min(7.65, 11) = 7.65 beats (10,0): min(7.42, 10) = 7.42  -> (0,11) (row 2)
    # then (10,0) (row 1): 7.42 beats the cluster points' 0.2.
    pts = torch.tensor(
        [
            [0.0, 0.0],
            [10.0, 0.0],
            [0.0, 11.0],
            [14.0, 14.0],
            [6.0, 6.25],
            [6.2, 6.25],
            [5.8, 6.25],
            [6.0, 6.45],
            [6.0, 6.05],
        ]
    )
    assert torch.allclose(pts.mean(0), torch.tensor([6.0, 6.25]))
    assert kcenter_select(pts, 5) == [4, 3, 0, 2, 1]
    # Asking for every point still yields each row exactly once.
    assert sorted(kcenter_select(pts, 9)) == list(range(9))


def test_kcenter_never_repeats_with_duplicate_points() -> None:
    pts = torch.zeros(5, 3)
    pts[4] = 1.0
    chosen = kcenter_select(pts, 5)
    assert sorted(chosen) == [0, 1, 2, 3, 4]


def test_select_k_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError):
        herding_select(torch.zeros(3, 2), 4)
    with pytest.raises(ValueError):
        kcenter_select(torch.zeros(3, 2), 0)


def test_random_coreset_is_distinct_per_class_and_seeded() -> None:
    train = toy_split()
    a = select_coreset(train, "random", 4, seed=7)
    b = select_coreset(train, "random", 4, seed=7)
    c = select_coreset(train, "random", 4, seed=8)
    assert a.method == "random" and a.factor == 1 and a.ipc == 4
    assert a.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    idx = a.meta["indices"]
    assert idx == b.meta["indices"] and idx != c.meta["indices"]
    assert torch.equal(a.images, b.images)
    for cls in range(3):
        chunk = idx[cls * 4 : (cls + 1) * 4]
        assert len(set(chunk)) == 4
        assert all(int(train.labels[i]) == cls for i in chunk)
    # The stored images are the chosen real images, as floats in [0, 1].
    assert torch.equal(a.images, train.images[idx].float() / 255)
    assert a.meta["ipc"] == 4 and a.meta["seed"] == 7


def test_herding_and_kcenter_coresets_use_seeded_random_features() -> None:
    train = toy_split()
    for method, select in (("herding", herding_select), ("k-center", kcenter_select)):
        s = select_coreset(train, method, 3, seed=2, model_options={"width": 16})
        assert s.method == method and s.meta["feature_model"] == "convnet"
        model = build_model(
            "convnet",
            channels=1,
            num_classes=3,
            image_size=8,
            generator=torch.Generator().manual_seed(2),
            width=16,
        )
        expected = []
        for cls in range(3):
            local = select(class_features(model, train, cls, batch_size=5), 3)
            expected += [int(train.offsets[cls]) + i for i in local]
        assert s.meta["indices"] == expected
        assert torch.equal(s.images, train.images[expected].float() / 255)


def test_ipc_larger_than_a_class_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"class 2 \(c\) has only 9 images; use --ipc <= 9"):
        select_coreset(toy_split(), "random", 10)


def test_unknown_method_and_bad_ipc_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown coreset method"):
        select_coreset(toy_split(), "kmeans", 2)
    with pytest.raises(UserError, match="ipc"):
        select_coreset(toy_split(), "random", 0)
