"""Matching distances, parameter selection, and the vectorised per-class gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dream_cl.distill.gradmatch import batched_class_gradients, batched_distance
from dream_cl.distill.matching import (
    METRICS,
    distribution_distance,
    gradient_distance,
    layer_distance,
    matched_parameter_names,
)
from dream_cl.errors import UserError
from dream_cl.models import build_model

A = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
B = torch.tensor([[0.0, 2.0], [3.0, 0.0]])


def tiny_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("convnet", channels=1, num_classes=4, image_size=8, width=6, depth=3)


def test_mse_is_a_sum_of_squares():
    assert float(layer_distance(A, B, "mse")) == pytest.approx(1.0 + 16.0)


def test_l1_is_a_sum():
    assert float(layer_distance(A, B, "l1")) == pytest.approx(1.0 + 4.0)


def test_l1_mean_is_row_mean_summed():
    # row 0: mean(|1|, |0|) = 0.5; row 1: mean(|0|, |4|) = 2
    assert float(layer_distance(A, B, "l1_mean")) == pytest.approx(2.5)


def test_cos_is_one_minus_cosine_per_row_summed():
    row0 = 1 - 4.0 / (math.sqrt(5.0) * 2.0 + 1e-6)
    row1 = 1 - 9.0 / (5.0 * 3.0 + 1e-6)
    assert float(layer_distance(A, B, "cos")) == pytest.approx(row0 + row1, rel=1e-6)
    # rows are output units: a 4-D kernel (out, in, kh, kw) has `out` rows
    a = torch.randn(3, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    assert float(layer_distance(a, a, "cos")) == pytest.approx(0.0, abs=1e-5)
    assert float(layer_distance(a, -a, "cos")) == pytest.approx(6.0, abs=1e-5)
    # a 1-D tensor is a single row; a zero gradient gives 1 per row thanks to eps, not NaN
    v = torch.tensor([1.0, 0.0, 0.0])
    assert float(layer_distance(v, torch.tensor([0.0, 1.0, 0.0]), "cos")) == pytest.approx(1.0)
    assert float(layer_distance(A, torch.zeros_like(A), "cos")) == pytest.approx(2.0)


def test_unknown_metric_is_a_user_error():
    with pytest.raises(UserError, match="l2"):
        layer_distance(A, B, "l2")


def test_gradient_distance_sums_tensors():
    g1 = [A, torch.ones(3)]
    g2 = [B, torch.zeros(3)]
    assert float(gradient_distance(g1, g2, "l1")) == pytest.approx(5.0 + 3.0)
    assert float(gradient_distance(g1, g2, "mse")) == pytest.approx(17.0 + 3.0)
    with pytest.raises(ValueError):
        gradient_distance(g1, g2[:1], "l1")  # mismatched lists are an error, not a truncation


def test_matched_parameter_names_follow_official_rules():
    net = tiny_net()
    params = dict(net.named_parameters())
    default = matched_parameter_names(net)
    assert len(default) == 3
    assert all(params[n].ndim == 4 for n in default)
    assert [n for n, p in net.named_parameters() if p.ndim == 4] == default  # parameter order

    with_bias = matched_parameter_names(net, bias=True)
    one_d = {n for n, p in params.items() if p.ndim == 1}
    assert set(with_bias) == set(default) | one_d
    assert "classifier.bias" in with_bias and "classifier.weight" not in with_bias
    assert [n for n in params if n in with_bias] == with_bias

    with_fc = matched_parameter_names(net, fc=True)
    assert set(with_fc) == set(default) | {"classifier.weight"}
    everything = matched_parameter_names(net, bias=True, fc=True)
    assert everything == list(params)


@pytest.mark.parametrize("metric", METRICS)
def test_batched_distance_equals_sum_of_per_class_distances(metric):
    g = torch.Generator().manual_seed(1)
    shapes = {"conv": (5, 3, 3, 3), "bias": (5,), "fc": (4, 20)}
    c = 3
    real = {k: torch.randn(c, *s, generator=g) for k, s in shapes.items()}
    syn = {k: torch.randn(c, *s, generator=g) for k, s in shapes.items()}
    batched = batched_distance(real, syn, metric)
    per_class = sum(
        float(gradient_distance([real[k][i] for k in shapes], [syn[k][i] for k in shapes], metric))
        for i in range(c)
    )
    assert float(batched) == pytest.approx(per_class, rel=1e-5)


def test_batched_class_gradients_match_autograd_and_are_differentiable():
    net = tiny_net(1)
    names = matched_parameter_names(net, bias=True, fc=True)
    params = dict(net.named_parameters())
    g = torch.Generator().manual_seed(2)
    n_cls, batch = 3, 5
    x = torch.randn(n_cls, batch, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (n_cls, batch), generator=g)

    x_b = x.clone().requires_grad_(True)
    grads = batched_class_gradients(net, names)(x_b, y)
    assert list(grads) == names
    x_r = x.clone().requires_grad_(True)
    reference = []
    for c in range(n_cls):
        loss = F.cross_entropy(net(x_r[c]), y[c])
        gs = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
        reference.append(gs)
        for n, gr in zip(names, gs, strict=True):
            assert grads[n].shape == (n_cls, *params[n].shape)
            torch.testing.assert_close(grads[n][c], gr, atol=1e-5, rtol=1e-4)

    # second order: a function of the gradients back-propagates to the inputs identically
    obj_b = sum((v**2).sum() for v in grads.values())
    obj_r = sum((gr**2).sum() for gs in reference for gr in gs)
    (dx_b,) = torch.autograd.grad(obj_b, [x_b])
    (dx_r,) = torch.autograd.grad(obj_r, [x_r])
    assert float(dx_b.abs().sum()) > 0
    torch.testing.assert_close(dx_b, dx_r, atol=1e-5, rtol=1e-4)
    # the network's own parameters are not touched (no .grad accumulated)
    assert all(p.grad is None for p in net.parameters())


def test_distribution_distance_is_squared_mean_difference():
    real = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 2.0], [2.0, 6.0, 2.0]])
    syn = torch.tensor([[0.0, 0.0, 0.0], [2.0, 2.0, 2.0]])
    # means: real (2, 3, 2), syn (1, 1, 1) -> 1 + 4 + 1
    assert float(distribution_distance(real, syn)) == pytest.approx(6.0)
    assert float(distribution_distance(real, real[[2, 3, 0, 1]])) == pytest.approx(0.0)


def test_batched_class_gradients_with_batchnorm_use_per_class_batch_statistics():
    import copy

    torch.manual_seed(0)
    net = build_model("convnet-bn", channels=1, num_classes=4, image_size=8, width=6, depth=3)
    net.train()
    names = matched_parameter_names(net)
    running = {n: b.clone() for n, b in net.named_buffers()}
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 6, 1, 8, 8, generator=g) * 2 + 1
    y = torch.randint(0, 4, (3, 6), generator=g)
    grads = batched_class_gradients(net, names)(x, y)
    # the network's running statistics are left alone (no mutation under the transform)
    assert all(torch.equal(b, running[n]) for n, b in net.named_buffers())
    for c in range(3):
        ref = copy.deepcopy(net)  # train-mode BN: normalise with this class's batch statistics
        params = dict(ref.named_parameters())
        loss = F.cross_entropy(ref(x[c]), y[c])
        gs = torch.autograd.grad(loss, [params[n] for n in names])
        for n, gr in zip(names, gs, strict=True):
            torch.testing.assert_close(grads[n][c], gr, atol=1e-5, rtol=1e-4)
