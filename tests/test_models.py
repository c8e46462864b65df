"""Model registry: shapes, gradients, official sizes and error handling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dream_cl.errors import UserError
from dream_cl.models import MODELS, build_model, model_names, model_options
from dream_cl.models.base import HalvingAvgPool2d

GEOMETRIES = [(1, 28), (3, 32), (3, 64), (1, 8)]
NUM_CLASSES = 7


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names_and_read_only() -> None:
    assert model_names() == [
        "convnet",
        "convnet-bn",
        "convnet-nonorm",
        "resnet10",
        "resnet10-ap",
        "resnet18",
        "densenet121",
    ]
    with pytest.raises(TypeError):
        MODELS["mine"] = MODELS["convnet"]  # type: ignore[index]


@pytest.mark.parametrize("channels,size", GEOMETRIES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", model_names())
def test_shapes_and_gradients(name: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, channels=channels, num_classes=NUM_CLASSES, image_size=size)
    x = torch.randn(2, channels, size, size)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    emb = model.embed(x)
    assert emb.shape == (2, model.feature_dim)
    assert isinstance(model.feature_dim, int)
    assert isinstance(model.classifier, nn.Linear)
    assert model.classifier.in_features == model.feature_dim
    assert model.classifier.out_features == NUM_CLASSES
    # the output must depend on the input (a 1x1 instance-normalised map would make it constant)
    assert (logits[0] - logits[1]).abs().max() > 1e-3
    # embed really is "the network minus the classifier"
    torch.testing.assert_close(model.classifier(emb), logits)

    logits.logsumexp(dim=1).sum().backward()
    grad = _first_conv(model).weight.grad
    assert grad is not None
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


def test_convnet_official_sizes() -> None:
    m32 = build_model("convnet", channels=3, num_classes=10, image_size=32)
    assert _count(m32) == 320_010
    assert m32.feature_dim == 2048
    assert m32.feature_shape == (128, 4, 4)

    m28 = build_model("convnet", channels=1, num_classes=10, image_size=28)
    assert _first_conv(m28).padding == (3, 3)
    assert m28.feature_dim == 2048
    assert m28.embed(torch.randn(2, 1, 28, 28)).shape == (2, 2048)

    m64 = build_model("convnet", channels=3, num_classes=10, image_size=64, depth=4)
    assert m64.feature_dim == 2048
    assert m64.embed(torch.randn(1, 3, 64, 64)).shape == (1, 2048)

    # 3-channel 28 px keeps padding 1: 28 -> 14 -> 7 -> 3
    m28rgb = build_model("convnet", channels=3, num_classes=10, image_size=28)
    assert _first_conv(m28rgb).padding == (1, 1)
    assert m28rgb.feature_dim == 128 * 3 * 3


def test_convnet_tiny_inputs_stop_pooling() -> None:
    m8 = build_model("convnet", channels=1, num_classes=10, image_size=8)
    assert m8.feature_shape == (128, 1, 1)
    pools = [m for m in m8.modules() if isinstance(m, nn.AvgPool2d)]
    assert len(pools) == 3
    # depth 4 on 8x8: one pool is dropped instead of crashing or normalising a 1x1 map
    deep = build_model("convnet", channels=1, num_classes=10, image_size=8, depth=4)
    assert len([m for m in deep.modules() if isinstance(m, nn.AvgPool2d)]) == 3
    x = torch.randn(2, 1, 8, 8)
    out = deep(x)
    assert (out[0] - out[1]).abs().max() > 1e-3
    out.sum().backward()
    assert _first_conv(deep).weight.grad.abs().sum() > 0


def test_convnet_options() -> None:
    m = build_model(
        "convnet", channels=3, num_classes=5, image_size=32, width=16, pooling="max", norm="none"
    )
    assert m.feature_dim == 16 * 4 * 4
    assert any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    assert not any(isinstance(x, nn.GroupNorm | nn.BatchNorm2d) for x in m.modules())
    flat = build_model("convnet", channels=3, num_classes=5, image_size=8, pooling="none")
    assert flat.feature_dim == 128 * 8 * 8


def test_convnet_norm_variants() -> None:
    inst = build_model("convnet", channels=3, num_classes=10, image_size=32)
    gns = [m for m in inst.modules() if isinstance(m, nn.GroupNorm)]
    assert len(gns) == 3
    assert all(g.num_groups == 128 and g.num_channels == 128 and g.affine for g in gns)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in inst.modules())

    bn = build_model("convnet-bn", channels=3, num_classes=10, image_size=32)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 3
    assert not any(isinstance(m, nn.GroupNorm) for m in bn.modules())

    nonorm = build_model("convnet-nonorm", channels=3, num_classes=10, image_size=32)
    assert not any(isinstance(m, nn.GroupNorm | nn.BatchNorm2d) for m in nonorm.modules())
    assert _count(nonorm) == 320_010 - 3 * 256


def test_resnet10_structure() -> None:
    m = build_model("resnet10", channels=3, num_classes=10, image_size=32)
    assert m.stage_channels == (32, 64, 128, 256)
    assert m.classifier.in_features == 256
    stem = _first_conv(m)
    assert (stem.in_channels, stem.out_channels, stem.kernel_size) == (3, 32, (3, 3))
    assert stem.bias is None
    assert not any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    stage_out = [m.features.get_submodule(f"layer{i}")[-1].conv2.out_channels for i in range(1, 5)]
    assert stage_out == [32, 64, 128, 256]
    strides = [m.features.get_submodule(f"layer{i}")[0].conv1.stride for i in range(1, 5)]
    assert strides == [(1, 1), (2, 2), (2, 2), (2, 2)]
    assert sum(isinstance(x, nn.BatchNorm2d) for x in m.modules()) > 0
    for x in m.modules():
        if isinstance(x, nn.BatchNorm2d):
            assert torch.all(x.weight == 1) and torch.all(x.bias == 0)
    assert 1_200_000 < _count(m) < 1_260_000

    inst = build_model("resnet10", channels=3, num_classes=10, image_size=32, norm="instance")
    assert not any(isinstance(x, nn.BatchNorm2d) for x in inst.modules())
    assert any(isinstance(x, nn.GroupNorm) for x in inst.modules())


def test_resnet18_structure() -> None:
    m = build_model("resnet18", channels=3, num_classes=10, image_size=32)
    assert m.stage_channels == (64, 128, 256, 512)
    assert [len(m.features.get_submodule(f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert m.classifier.in_features == 512


def test_resnet10_ap_structure() -> None:
    m = build_model("resnet10-ap", channels=3, num_classes=10, image_size=32)
    assert m.intro == "small"
    assert m.stage_channels == (64, 128, 256, 512)
    assert all(c.stride == (1, 1) for c in m.modules() if isinstance(c, nn.Conv2d))
    assert not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert any(isinstance(x, nn.GroupNorm) for x in m.modules())
    # downsampling by pooling: 32 -> 32 -> 16 -> 8 -> 4 before the global pool
    x = torch.randn(1, 3, 32, 32)
    sizes = []
    h = m.features.stem(x)
    for i in range(1, 5):
        h = m.features.get_submodule(f"layer{i}")(h)
        sizes.append(h.shape[-1])
    assert sizes == [32, 16, 8, 4]

    half = build_model("resnet10-ap", channels=3, num_classes=10, image_size=32, width=0.5)
    assert half.stage_channels == (32, 64, 128, 256)
    assert half.feature_dim == 256
    mid = build_model("resnet10-ap", channels=3, num_classes=10, image_size=128, width=0.25)
    assert mid.intro == "mid"
    assert mid(torch.randn(1, 3, 128, 128)).shape == (1, 10)
    large = build_model("resnet10-ap", channels=3, num_classes=10, image_size=224, width=0.125)
    assert large.intro == "large"
    assert _first_conv(large).kernel_size == (7, 7)


def test_densenet121_structure() -> None:
    m = build_model("densenet121", channels=3, num_classes=10, image_size=32)
    assert m.classifier.in_features == 384
    stem = _first_conv(m)
    assert (stem.in_channels, stem.out_channels) == (3, 24)
    dense_sizes = [len(m.features.get_submodule(f"dense{i}")) for i in range(1, 5)]
    assert dense_sizes == [6, 12, 24, 16]
    trans_out = [m.features.get_submodule(f"trans{i}")[2].out_channels for i in range(1, 4)]
    assert trans_out == [48, 96, 192]
    gray = build_model("densenet121", channels=1, num_classes=10, image_size=28)
    assert _first_conv(gray).in_channels == 1


def test_halving_pool_skips_small_maps() -> None:
    pool = HalvingAvgPool2d()
    assert pool(torch.randn(1, 2, 8, 8)).shape[-1] == 4
    assert pool(torch.randn(1, 2, 4, 4)).shape[-1] == 2
    assert pool(torch.randn(1, 2, 3, 3)).shape[-1] == 3
    assert pool(torch.randn(1, 2, 1, 1)).shape[-1] == 1


def test_classifier_can_be_grown() -> None:
    m = build_model("resnet10", channels=3, num_classes=4, image_size=8)
    old = m.classifier
    m.classifier = nn.Linear(m.feature_dim, 6)
    with torch.no_grad():
        m.classifier.weight[:4] = old.weight
        m.classifier.bias[:4] = old.bias
    m.eval()
    x = torch.randn(3, 3, 8, 8)
    out = m(x)
    assert out.shape == (3, 6)
    torch.testing.assert_close(out[:, :4], old(m.embed(x)))
    assert m.feature_dim == 256


def test_generator_makes_init_reproducible() -> None:
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    state = torch.get_rng_state()
    a = build_model("convnet", channels=1, num_classes=3, image_size=8, generator=g1)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    b = build_model("convnet", channels=1, num_classes=3, image_size=8, generator=g2)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = build_model("convnet", channels=1, num_classes=3, image_size=8, generator=g1)
    assert not torch.equal(_first_conv(a).weight, _first_conv(c).weight)


def test_unknown_name_raises_user_error() -> None:
    with pytest.raises(UserError) as info:
        build_model("vgg11", channels=3, num_classes=10, image_size=32)
    message = str(info.value)
    assert "\n" not in message
    assert "vgg11" in message
    for name in model_names():
        assert name in message


def test_unknown_option_raises_user_error() -> None:
    with pytest.raises(UserError, match="widht"):
        build_model("convnet", channels=3, num_classes=10, image_size=32, widht=64)
    # convnet-bn fixes its norm, so passing one is an error rather than silently ignored
    with pytest.raises(UserError, match="norm"):
        build_model("convnet-bn", channels=3, num_classes=10, image_size=32, norm="instance")
    assert set(model_options("convnet")) == {"width", "depth", "norm", "pooling"}


@pytest.mark.parametrize(
    "name,options",
    [
        ("convnet", {"norm": "layer"}),
        ("convnet", {"pooling": "sum"}),
        ("convnet", {"depth": 0}),
        ("convnet", {"width": True}),
        ("resnet10", {"norm": "none"}),
        ("resnet10-ap", {"width": 0.001}),
        ("densenet121", {"norm": "group"}),
    ],
)
def test_invalid_option_values_raise_user_error(name: str, options: dict) -> None:
    with pytest.raises(UserError):
        build_model(name, channels=3, num_classes=10, image_size=32, **options)


def test_invalid_geometry_raises_user_error() -> None:
    with pytest.raises(UserError):
        build_model("resnet18", channels=0, num_classes=10, image_size=32)
    with pytest.raises(UserError):
        build_model("convnet", channels=3, num_classes=10, image_size=-1)
