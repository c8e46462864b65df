"""DSA augmentation and CutMix: shapes, gradients, siamese draws, official constants."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from dream_cl.augment import (
    DSAParams,
    apply_dsa,
    crop_shift,
    cutmix,
    cutmix_loss,
    cutout_size,
    dsa,
    maybe_cutmix,
    parse_strategy,
    sample_dsa,
)
from dream_cl.errors import UserError

SINGLE_OPS = ("flip", "color", "crop", "scale", "rotate", "cutout")
FULL = "color_crop_cutout_flip_scale_rotate"


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def params_equal(a: DSAParams, b: DSAParams) -> bool:
    for f in dataclasses.fields(DSAParams):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if isinstance(va, torch.Tensor) or isinstance(vb, torch.Tensor):
            if va is None or vb is None or not torch.equal(va, vb):
                return False
        elif va != vb:
            return False
    return True


# ---------------------------------------------------------------- strategy parsing


def test_parse_strategy() -> None:
    assert parse_strategy("color_crop_cutout") == ("color", "crop", "cutout")
    assert parse_strategy("Color_Crop") == ("color", "crop")
    assert parse_strategy("none") == ()
    assert parse_strategy("") == ()
    assert parse_strategy(("crop", "scale")) == ("crop", "scale")


@pytest.mark.parametrize("bad", ["color_blur", "color__crop", "translate", "crop_none"])
def test_unknown_token_raises_user_error(bad: str) -> None:
    with pytest.raises(UserError, match="DSA strategy"):
        parse_strategy(bad)
    with pytest.raises(UserError):
        dsa(torch.zeros(2, 1, 8, 8), bad, gen())


@pytest.mark.parametrize("strategy", ["none", "", "NONE"])
def test_none_is_identity(strategy: str) -> None:
    x = torch.randn(4, 3, 32, 32)
    params = sample_dsa(strategy, 4, 32, gen())
    assert params.is_identity
    assert torch.equal(apply_dsa(x, params), x)
    assert torch.equal(dsa(x, strategy, gen(), per_sample=False), x)


# ---------------------------------------------------------------- shapes and gradients


@pytest.mark.parametrize("size", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_preserved_every_op(size: int, channels: int) -> None:
    x = torch.randn(5, channels, size, size)
    for strategy in (*SINGLE_OPS, FULL):
        for per_sample in (True, False):
            out = dsa(x, strategy, gen(1), per_sample=per_sample)
            assert out.shape == x.shape and out.dtype == x.dtype
            assert torch.isfinite(out).all()
    x64 = x.double()
    assert dsa(x64, FULL, gen(2)).dtype == torch.float64


@pytest.mark.parametrize("op", SINGLE_OPS)
@pytest.mark.parametrize("per_sample", [True, False])
def test_gradients_flow_through_every_op(op: str, per_sample: bool) -> None:
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    weights = torch.randn(4, 3, 32, 32)
    out = dsa(x, op, gen(3), per_sample=per_sample)
    assert out.requires_grad
    (out * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_cutout_gradient_is_zero_inside_box() -> None:
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    params = sample_dsa("cutout", 1, 32, gen(4))
    apply_dsa(x, params).sum().backward()
    zeroed = (x.grad == 0).sum().item()
    assert 0 < zeroed <= cutout_size(32) ** 2


# ---------------------------------------------------------------- siamese property


@pytest.mark.parametrize(
    "strategy", ["color_crop_cutout", "color_scale_flip_cutout", "flip_rotate_color_cutout"]
)
def test_shared_draw_gives_same_output_across_batches(strategy: str) -> None:
    real = torch.randn(6, 3, 32, 32)
    syn = torch.randn(4, 3, 32, 32)
    syn[1] = real[3]
    for seed in range(5):
        params = sample_dsa(strategy, 1, 32, gen(seed))
        out_real = apply_dsa(real, params)
        out_syn = apply_dsa(syn, params)
        assert torch.allclose(out_real[3], out_syn[1], atol=1e-6)
        assert not torch.allclose(out_real[3], real[3], atol=1e-3)  # really augmented
        # ... and the concatenated batch sees the same augmentation as each part.
        out_cat = apply_dsa(torch.cat([real, syn]), params)
        assert torch.allclose(out_cat[:6], out_real, atol=1e-6)


def test_per_sample_draw_differs_on_identical_inputs() -> None:
    x = torch.randn(1, 3, 32, 32).expand(8, 3, 32, 32).contiguous()
    shared = dsa(x, "color_crop_cutout", gen(5), per_sample=False)
    assert torch.allclose(shared, shared[:1].expand_as(shared))
    per = dsa(x, "color_crop_cutout", gen(5), per_sample=True)
    diffs = (per[1:] - per[0]).flatten(1).abs().amax(1)
    assert (diffs > 1e-4).all()


def test_per_sample_batch_mismatch_raises() -> None:
    params = sample_dsa("color_crop", 4, 32, gen())
    with pytest.raises(ValueError, match="n=4"):
        apply_dsa(torch.zeros(5, 3, 32, 32), params)
    with pytest.raises(ValueError, match="32x32"):
        apply_dsa(torch.zeros(4, 3, 28, 28), params)
    # a single draw broadcasts over any batch size
    shared = sample_dsa("color_crop", 1, 32, gen())
    assert apply_dsa(torch.zeros(7, 3, 32, 32), shared).shape == (7, 3, 32, 32)


# ---------------------------------------------------------------- composition


def test_exactly_one_geometric_op_per_call() -> None:
    g = gen(6)
    seen = set()
    for i in range(60):
        p = sample_dsa("crop_scale_rotate", 1 if i % 2 else 5, 32, g)
        present = {
            "crop": p.shift is not None,
            "scale": p.scale is not None,
            "rotate": p.angle is not None,
        }
        assert sum(present.values()) == 1
        assert present[p.geometric]
        seen.add(p.geometric)
    assert seen == {"crop", "scale", "rotate"}
    only_crop = sample_dsa("color_crop_cutout", 3, 32, gen())
    assert only_crop.geometric == "crop" and only_crop.cutout_centre is not None
    no_geo = sample_dsa("color_flip_cutout", 3, 32, gen())
    assert no_geo.geometric is None


def test_same_seed_same_params() -> None:
    for n in (1, 16):
        a = sample_dsa(FULL, n, 32, gen(11))
        b = sample_dsa(FULL, n, 32, gen(11))
        c = sample_dsa(FULL, n, 32, gen(12))
        assert params_equal(a, b)
        assert not params_equal(a, c)
    x = torch.randn(16, 3, 32, 32)
    assert torch.equal(dsa(x, FULL, gen(13)), dsa(x, FULL, gen(13)))


def test_flip_is_horizontal() -> None:
    x = torch.randn(2, 3, 8, 8)
    params = DSAParams(n=2, image_size=8, flip=torch.tensor([True, False]))
    out = apply_dsa(x, params)
    assert torch.equal(out[0], x[0].flip(-1))
    assert torch.equal(out[1], x[1])
    flips = sample_dsa("flip", 2000, 8, gen()).flip
    assert 0.45 < flips.float().mean() < 0.55


# ---------------------------------------------------------------- official constants


def test_crop_shift_bounded_and_zero_filled() -> None:
    assert [crop_shift(s) for s in (28, 32, 64)] == [4, 4, 8]
    size, n = 32, 300
    s = crop_shift(size)
    params = sample_dsa("crop", n, size, gen(7))
    assert params.shift.abs().max() == s
    assert params.shift.min() == -s  # both extremes are drawn
    one_hot = torch.zeros(n, 1, size, size)
    one_hot[:, :, 16, 16] = 1.0
    out = apply_dsa(one_hot, params)
    for i in range(n):
        nz = out[i, 0].nonzero()
        assert nz.shape[0] == 1 and out[i].sum() == 1.0
        dr, dc = params.shift[i].tolist()
        assert nz[0].tolist() == [16 - dr, 16 - dc]
        assert abs(nz[0, 0] - 16) <= s and abs(nz[0, 1] - 16) <= s
    ones = apply_dsa(torch.ones(n, 1, size, size), params)
    for i in range(n):
        dr, dc = params.shift[i].abs().tolist()
        assert ones[i].sum() == (size - dr) * (size - dc)  # the rest is zero fill
    # explicit shift: rows come from below, columns from the left; the border is zero
    x = torch.randn(1, 2, size, size)
    out = apply_dsa(
        x, DSAParams(n=1, image_size=size, geometric="crop", shift=torch.tensor([[s, -s]]))
    )
    assert torch.equal(out[:, :, : size - s, s:], x[:, :, s:, : size - s])
    assert (out[:, :, size - s :, :] == 0).all() and (out[:, :, :, :s] == 0).all()


@pytest.mark.parametrize("size", [28, 32, 64])
def test_cutout_square_side(size: int) -> None:
    side = cutout_size(size)
    assert side == int(0.5 * size + 0.5)
    n = 200
    params = sample_dsa("cutout", n, size, gen(8))
    out = apply_dsa(torch.ones(n, 1, size, size), params)
    inside = 0
    for i in range(n):
        zero = out[i, 0] == 0
        rows = zero.any(1).nonzero().flatten()
        cols = zero.any(0).nonzero().flatten()
        # the zeroed region is a (possibly clipped) axis-aligned rectangle
        assert zero.sum() == len(rows) * len(cols)
        assert len(rows) <= side and len(cols) <= side
        assert rows.max() - rows.min() + 1 == len(rows)
        assert cols.max() - cols.min() + 1 == len(cols)
        start = params.cutout_centre[i] - side // 2
        if (start >= 0).all() and (start + side <= size).all():
            inside += 1
            assert zero.sum() == side * side
            assert rows.min() == start[0] and cols.min() == start[1]
    assert inside > 0


def test_brightness_adds_scalar_in_range() -> None:
    n = 500
    color = sample_dsa("color", n, 32, gen(9))
    bright = dataclasses.replace(color, saturation=None, contrast=None)
    x = torch.randn(n, 3, 32, 32)
    delta = apply_dsa(x, bright) - x
    per_image = delta.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-5)
    assert torch.allclose(per_image[:, 0], color.brightness, atol=1e-5)
    assert color.brightness.min() >= -0.5 and color.brightness.max() <= 0.5
    assert color.brightness.min() < -0.45 and color.brightness.max() > 0.45
    assert color.saturation.min() >= 0 and color.saturation.max() <= 2
    assert color.contrast.min() >= 0.5 and color.contrast.max() <= 1.5


def test_saturation_and_contrast_preserve_their_means() -> None:
    color = sample_dsa("color", 6, 32, gen(10))
    x = torch.randn(6, 3, 32, 32)
    sat = apply_dsa(x, dataclasses.replace(color, brightness=None, contrast=None))
    assert torch.allclose(sat.mean(1), x.mean(1), atol=1e-5)
    assert not torch.allclose(sat, x, atol=1e-3)
    gray = torch.randn(6, 1, 32, 32)  # one channel: saturation is the identity, as in DSA
    assert torch.allclose(
        apply_dsa(gray, dataclasses.replace(color, brightness=None, contrast=None)), gray
    )
    con = apply_dsa(x, dataclasses.replace(color, brightness=None, saturation=None))
    assert torch.allclose(con.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-5)
    centred = x - x.mean((1, 2, 3), keepdim=True)
    ratio = (con - con.mean((1, 2, 3), keepdim=True)).flatten(1).norm(dim=1) / centred.flatten(
        1
    ).norm(dim=1)
    assert torch.allclose(ratio, color.contrast, atol=1e-4)


def test_scale_and_rotate_ranges_and_identity() -> None:
    scale = sample_dsa("scale", 1000, 32, gen(11)).scale
    assert scale.min() >= 1 / 1.2 and scale.max() <= 1.2
    assert scale.min() < 0.85 and scale.max() > 1.15
    angle = sample_dsa("rotate", 1000, 32, gen(12)).angle
    assert angle.abs().max() <= math.radians(15) + 1e-6
    assert angle.abs().max() > math.radians(14)
    x = torch.randn(2, 3, 32, 32)
    unit = DSAParams(n=1, image_size=32, geometric="scale", scale=torch.ones(1, 2))
    assert torch.allclose(apply_dsa(x, unit), x, atol=1e-5)
    zero = DSAParams(n=1, image_size=32, geometric="rotate", angle=torch.zeros(1))
    assert torch.allclose(apply_dsa(x, zero), x, atol=1e-5)
    # 90 degrees maps the image onto a rotated copy (checks the rotation matrix layout)
    quarter = DSAParams(n=1, image_size=32, geometric="rotate", angle=torch.tensor([math.pi / 2]))
    rotated = apply_dsa(x, quarter)
    assert torch.allclose(rotated, torch.rot90(x, 1, (2, 3)), atol=1e-4) or torch.allclose(
        rotated, torch.rot90(x, -1, (2, 3)), atol=1e-4
    )


# ---------------------------------------------------------------- CutMix


def _labelled_batch(b: int = 8, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    # image i is the constant (i + 1), label 10 * i, so every pixel says where it came from
    x = (torch.arange(b, dtype=torch.float32) + 1).view(b, 1, 1, 1).expand(b, 3, size, size)
    return x.contiguous(), torch.arange(b) * 10


def test_cutmix_lam_is_box_area_and_labels_consistent() -> None:
    x, y = _labelled_batch()
    nontrivial = 0
    for seed in range(20):
        mixed, y_a, y_b, lam = cutmix(x, y, gen(seed))
        assert torch.equal(y_a, y) and 0.0 <= lam <= 1.0
        assert sorted(y_b.tolist()) == sorted(y.tolist())  # a permutation
        assert torch.equal(x, _labelled_batch()[0])  # input untouched
        partner = y_b // 10
        box = mixed[0, 0] != x[0, 0, 0, 0] if partner[0] != 0 else None
        for i in range(x.shape[0]):
            values = set(mixed[i].unique().tolist())
            assert values <= {float(i + 1), float(partner[i] + 1)}
            if partner[i] != i:
                pasted = mixed[i, 0] == partner[i] + 1
                assert math.isclose(1.0 - pasted.float().mean().item(), lam, abs_tol=1e-6)
                if box is not None:
                    assert torch.equal(pasted, box)  # same box for every image
                    nontrivial += lam < 1.0
    assert nontrivial > 0


def test_cutmix_is_seeded_and_differentiable() -> None:
    x = torch.randn(6, 3, 28, 28, requires_grad=True)
    y = torch.arange(6)
    a = cutmix(x, y, gen(3), beta=0.5)
    b = cutmix(x, y, gen(3), beta=0.5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2]) and a[3] == b[3]
    a[0].sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))  # each pixel is used exactly once


def test_cutmix_loss() -> None:
    logits = torch.randn(5, 4)
    y_a = torch.tensor([0, 1, 2, 3, 0])
    y_b = torch.tensor([1, 1, 3, 0, 2])
    assert torch.equal(cutmix_loss(logits, y_a, y_b, 1.0), F.cross_entropy(logits, y_a))
    expected = 0.3 * F.cross_entropy(logits, y_a) + 0.7 * F.cross_entropy(logits, y_b)
    assert torch.allclose(cutmix_loss(logits, y_a, y_b, 0.3), expected)


def test_maybe_cutmix() -> None:
    x, y = _labelled_batch()
    out, y_a, y_b, lam = maybe_cutmix(x, y, 0.0, gen())
    assert out is x and y_a is y and y_b is y and lam == 1.0
    applied = 0
    g = gen(1)
    for _ in range(40):
        out, _, _, lam = maybe_cutmix(x, y, 0.5, g)
        applied += not torch.equal(out, x)
    assert 5 < applied < 35
    out, _, _, lam = maybe_cutmix(x, y, 1.0, gen(2))
    assert lam <= 1.0
