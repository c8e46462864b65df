"""Real-batch samplers: random baseline and DREAM's representative (k-means) sampler."""

from __future__ import annotations

import io

import torch

from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.distill import engine
from dream_cl.distill.config import resolve_config
from dream_cl.distill.samplers import RandomSampler, RepresentativeSampler

# 4 well-separated blob centres in the 4-pixel (1x2x2) image space, all inside [0,1]
BLOB_CENTRES = torch.tensor(
    [[0.1, 0.1, 0.1, 0.1], [0.9, 0.1, 0.9, 0.1], [0.1, 0.9, 0.1, 0.9], [0.9, 0.9, 0.9, 0.9]]
)


def blob_split(sizes: list[list[int]], std: float = 0.02, seed: int = 0) -> DatasetSplit:
    """Float [0,1] 1x2x2 images; class c has ``sizes[c][b]`` points around blob b."""
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for c, per_blob in enumerate(sizes):
        for b, n in enumerate(per_blob):
            pts = BLOB_CENTRES[b] + torch.randn(n, 4, generator=g) * std
            images.append(pts.clamp(0, 1).view(n, 1, 2, 2))
            labels.append(torch.full((n,), c))
    info = DatasetInfo("blobs", 1, 2, tuple(f"c{c}" for c in range(len(sizes))), (0.5,), (0.5,))
    return DatasetSplit(torch.cat(images), torch.cat(labels), info)


def flat_embed(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


class CountingEmbed:
    """An embed function that records how often (and on which images) it is called."""

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.clone())
        return x.flatten(1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_sampler_distinct_in_range_and_small_class_whole():
    data = blob_split([[10, 10, 10, 10], [3, 0, 0, 0], [5, 5, 5, 5]])
    sampler = RandomSampler(data, batch_size=8)
    g = gen()
    first = sampler.sample(0, flat_embed, g)
    assert len(first) == 3
    for c, idx in enumerate(first):
        n = data.class_count(c)
        assert idx.dtype == torch.int64
        assert idx.numel() == min(8, n)
        assert len(set(idx.tolist())) == idx.numel()
        assert int(idx.min()) >= 0 and int(idx.max()) < n
    assert sorted(first[1].tolist()) == [0, 1, 2]  # the 3-image class gives all of them
    second = sampler.sample(1, flat_embed, g)
    assert not torch.equal(first[0], second[0])  # fresh draw each step
    assert sampler.state_dict() == {}


def test_representative_refreshes_on_schedule_and_caches_between():
    data = blob_split([[10, 10, 10, 10], [8, 8, 8, 8]])
    embed = CountingEmbed()
    sampler = RepresentativeSampler(data, n_clusters=4, interval=10)
    g = gen()
    refresh_steps, batches = [], []
    for step in range(25):
        before = len(embed.calls)
        batches.append(sampler.sample(step, embed, g))
        if len(embed.calls) > before:
            assert len(embed.calls) - before == 2  # one embedding pass per class
            refresh_steps.append(step)
    assert refresh_steps == [0, 10, 20]
    assert sampler.stats.refreshes == 3
    for step in range(1, 10):
        assert batches[step] is batches[0]  # the cached batch, not a recomputation
    # reset() forces a refresh at any step
    sampler.reset()
    before = len(embed.calls)
    sampler.sample(23, embed, g)
    assert len(embed.calls) == before + 2
    before = len(embed.calls)
    sampler.sample(24, embed, g)
    assert len(embed.calls) == before


def test_representative_batch_sizes_and_small_class():
    data = blob_split([[12, 12, 12, 12], [2, 1, 1, 1], [6, 0, 0, 0]])
    embed = CountingEmbed()
    sampler = RepresentativeSampler(data, n_clusters=3, per_cluster=2, interval=5)
    batches = sampler.sample(0, embed, gen())
    assert sampler.batch_size == 6
    assert len(batches) == 3
    first = batches[0]
    assert first.numel() == 6 and len(set(first.tolist())) == 6
    assert int(first.min()) >= 0 and int(first.max()) < 48
    assert torch.equal(batches[1], torch.arange(5))  # fewer than N images: all of them
    assert torch.equal(batches[2], torch.arange(6))  # exactly N images: all of them
    assert len(embed.calls) == 1  # only the class that needs clustering is embedded


def test_representative_with_candidates_stays_inside_the_subset():
    data = blob_split([[10, 10, 10, 10], [10, 10, 10, 10]], seed=3)
    embed = CountingEmbed()
    sampler = RepresentativeSampler(data, n_clusters=4, candidates=12)
    batches = sampler.sample(0, embed, gen(1))
    assert len(embed.calls) == 2
    for c, idx in enumerate(batches):
        seen = embed.calls[c].flatten(1)
        assert seen.shape[0] == 12  # only the candidate subset was embedded
        assert len(set(idx.tolist())) == 4
        picked = data.class_images(c)[idx].flatten(1)
        for row in picked:
            assert bool((seen == row).all(1).any()), "a pick outside the candidate subset"


def test_representative_picks_one_sample_per_blob_nearest_its_centre():
    sizes = [[30, 12, 20, 8], [9, 25, 15, 11]]
    data = blob_split(sizes, seed=5)
    sampler = RepresentativeSampler(data, n_clusters=4, per_cluster=1)
    batches = sampler.sample(0, flat_embed, gen(2))
    for c, per_blob in enumerate(sizes):
        feats = data.class_images(c).flatten(1)
        blob_of = torch.arange(4).repeat_interleave(torch.tensor(per_blob))
        idx = batches[c]
        assert sorted(blob_of[idx].tolist()) == [0, 1, 2, 3]  # one representative per blob
        for b in range(4):
            members = (blob_of == b).nonzero().flatten()
            mean = feats[members].mean(0)
            nearest = members[(feats[members] - mean).norm(dim=1).argmin()]
            assert int(nearest) in idx.tolist()  # the sample nearest the blob's centre


def test_random_batches_are_less_even_than_representative_ones():
    # the paper's premise, on blobs: a random batch of 4 often misses a blob, DREAM's rarely
    # does (k-means++ can still, with small probability, seed two centres in one blob and
    # Lloyd then keeps that local optimum)
    data = blob_split([[40, 10, 10, 10]], std=0.005, seed=7)
    blob_of = torch.arange(4).repeat_interleave(torch.tensor([40, 10, 10, 10]))
    rnd = RandomSampler(data, batch_size=4)
    g = gen(0)
    covered = [len(set(blob_of[rnd.sample(s, flat_embed, g)[0]].tolist())) for s in range(20)]
    assert sum(c == 4 for c in covered) <= 10
    rep = RepresentativeSampler(data, n_clusters=4, interval=1)
    covered = [len(set(blob_of[rep.sample(s, flat_embed, g)[0]].tolist())) for s in range(20)]
    assert sum(c == 4 for c in covered) >= 19


def test_state_dict_round_trip_restores_the_cache():
    data = blob_split([[10, 10, 10, 10], [10, 10, 10, 10]])
    a = RepresentativeSampler(data, n_clusters=4, interval=10)
    first = a.sample(0, flat_embed, gen())
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)

    b = RepresentativeSampler(data, n_clusters=4, interval=10)
    b.load_state_dict(state)
    embed = CountingEmbed()
    restored = b.sample(3, embed, gen(99))  # between refreshes: the cache, no clustering
    assert embed.calls == []
    assert all(torch.equal(x, y) for x, y in zip(first, restored, strict=True))

    # an empty state means "no cache": the next sample refreshes
    c = RepresentativeSampler(data, n_clusters=4, interval=10)
    c.load_state_dict(RepresentativeSampler(data).state_dict())
    c.sample(3, embed, gen())
    assert len(embed.calls) == 2


def _digits_like_split(num_classes: int = 3, per_class: int = 24) -> DatasetSplit:
    g = gen(11)
    x = (torch.rand(num_classes * per_class, 1, 8, 8, generator=g) * 255).to(torch.uint8)
    y = torch.arange(num_classes).repeat_interleave(per_class)
    info = DatasetInfo("digits", 1, 8, tuple(str(c) for c in range(num_classes)), (0.3,), (0.4,))
    return DatasetSplit(x, y, info)


def test_one_sampler_object_serves_two_frameworks(monkeypatch):
    """The sampler only sees (step, embed, generator): IDC and DM can share one instance."""
    train = _digits_like_split()
    shared = RepresentativeSampler(train, n_clusters=4, interval=2)
    embeds: list[int] = []
    original = shared.features

    def spy(c, idx, embed):
        embeds.append(id(embed))
        return original(c, idx, embed)

    monkeypatch.setattr(shared, "features", spy)
    monkeypatch.setattr(engine, "make_sampler", lambda cfg, data, classes=None: shared)
    common = {
        "device": "cpu",
        "iterations": 1,
        "width": 4,
        "init": "random",
        "n_clusters": 4,
        "interval": 2,
    }
    idc = resolve_config(
        "digits",
        1,
        framework="idc",
        preset="cpu",
        image_size=8,
        overrides={**common, "inner_loop": 3, "n_data": 8, "batch_real": 8, "batch_syn_max": 4},
    )
    dm = resolve_config("digits", 1, framework="dm", preset="cpu", image_size=8, overrides=common)
    r1 = engine.distill(idc, train)
    after_idc = shared.stats.refreshes
    assert after_idc == 2  # steps 0 and 2 of the one inner loop
    r2 = engine.distill(dm, train)
    assert shared.stats.refreshes == after_idc + 1
    assert all(torch.isfinite(torch.tensor(r.metrics["losses"])).all() for r in (r1, r2))
    assert len(embeds) == 3 * train.num_classes  # every refresh embedded every class


def test_embed_fn_matches_plain_forward_and_leaves_the_net_as_it_was():
    from dream_cl.distill.context import embed_fn
    from dream_cl.models import build_model

    info = DatasetInfo("t", 3, 16, ("a", "b"), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3))
    net = build_model("convnet", channels=3, num_classes=2, image_size=16, width=8, depth=2)
    net.train()
    params_before = {n: p for n, p in net.named_parameters()}
    values_before = {n: p.detach().clone() for n, p in net.named_parameters()}
    x = torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = embed_fn(net, info, torch.device("cpu"))(x)
    net.eval()
    with torch.no_grad():
        ref = net.embed(info.normalize(x))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous()
    net.train()
    for n, p in net.named_parameters():
        assert p is params_before[n]
        assert p.is_contiguous()
        assert torch.equal(p, values_before[n])
