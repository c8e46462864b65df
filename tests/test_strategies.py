"""Storage policy, training plugin and regimes, on the embedded digits with tiny settings."""

from __future__ import annotations

import copy
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from fakedata import TINY_DISTILL
from torch import nn

from dream_cl.errors import UserError
from dream_cl.models import build_model
from dream_cl.scenarios import build_scenario
from dream_cl.strategies import (
    DistilledBuffer,
    DistilledReplayPlugin,
    MemoryBatches,
    MemoryConfig,
    TrainConfig,
    build_class_memory,
    grow_classifier,
    kd_loss,
)

warnings.filterwarnings("ignore", category=UserWarning)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from avalanche.core import SupervisedPlugin
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin, ReplayPlugin

TINY = TINY_DISTILL  # the engine at a size that takes about a second per step on 2 cores
QUIET = TrainConfig(cutmix_p=0.0, dsa_strategy="none")


@pytest.fixture(scope="module")
def digits():
    return build_scenario("digits-5step", seed=0)


def tiny_model(num_classes: int, seed: int = 0) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    return build_model(
        "convnet", channels=1, num_classes=num_classes, image_size=8, width=8, generator=gen
    )


def memory(method: str = "random", ipc: int = 2, **kw) -> MemoryConfig:
    overrides = dict(TINY)
    if method in ("dream", "idc"):
        overrides["factor"] = 2  # multi-formation accounting is checked (digits' default: 1)
    return MemoryConfig(method, ipc, "cpu", overrides=overrides, device="cpu", **kw)


class Probe(SupervisedPlugin):
    """Records what each training epoch saw: sample count and labels."""

    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[dict] = []
        self.lrs: list[float] = []

    def before_training_epoch(self, strategy, **kwargs) -> None:
        self.epochs.append({"exp": strategy.experience.current_experience, "n": 0, "labels": set()})
        self.lrs.append(strategy.optimizer.param_groups[0]["lr"])

    def after_training_iteration(self, strategy, **kwargs) -> None:
        self.epochs[-1]["n"] += int(strategy.mb_y.shape[0])
        self.epochs[-1]["labels"] |= set(strategy.mb_y.tolist())


def naive(model: nn.Module, plugins: list, epochs: int = 1) -> Naive:
    return Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
        train_mb_size=32,
        train_epochs=epochs,
        eval_mb_size=256,
        device="cpu",
        plugins=plugins,
        evaluator=EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loggers=[]),
    )


# -- building blocks ---------------------------------------------------------------------------
def test_grow_classifier_keeps_old_rows_and_draws_new_ones_from_the_generator() -> None:
    model = tiny_model(2)
    old_w = model.classifier.weight.detach().clone()
    old_b = model.classifier.bias.detach().clone()
    assert grow_classifier(model, 5, torch.Generator().manual_seed(1))
    assert model.classifier.out_features == 5
    assert torch.equal(model.classifier.weight[:2], old_w)
    assert torch.equal(model.classifier.bias[:2], old_b)
    other = tiny_model(2)
    grow_classifier(other, 5, torch.Generator().manual_seed(1))
    assert torch.equal(other.classifier.weight[2:], model.classifier.weight[2:])
    assert not grow_classifier(model, 3, torch.Generator())  # never shrinks
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 5)


def test_kd_loss_is_idc_formula_and_zero_for_equal_logits() -> None:
    g = torch.Generator().manual_seed(0)
    out, ref = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    t, beta, n_old = 2.0, 1.0, 3
    idc = nn.KLDivLoss()(
        F.log_softmax(out[:, :n_old] / t, dim=1), F.softmax(ref[:, :n_old] / t, dim=1)
    ) * (t * t * beta * n_old)
    torch.testing.assert_close(kd_loss(out, ref, [0, 1, 2], t, beta), idc)
    assert float(kd_loss(out, out.clone(), [0, 1, 2])) == 0.0
    assert float(kd_loss(out, ref, [])) == 0.0
    # non-contiguous old classes pick those columns
    torch.testing.assert_close(
        kd_loss(out, ref, [1, 3]), kd_loss(out[:, [1, 3]], ref[:, [1, 3]], [0, 1])
    )


def test_kd_term_is_zero_when_the_model_equals_its_previous_copy(digits) -> None:
    buffer = DistilledBuffer(memory(), info=digits.info, source=digits.train)
    plugin = DistilledReplayPlugin(buffer, regime="finetune-kd", config=QUIET)
    model = tiny_model(2)
    exp = digits.benchmark.train_stream[1]
    strategy = SimpleNamespace(experience=exp, model=model, device="cpu")
    plugin.before_train_dataset_adaptation(strategy)
    assert plugin.old_classes == [0, 1] and plugin.ref_model is not None
    assert strategy.model.classifier.out_features == 4  # grown, teacher kept the old head

    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([2, 3] * 4)
    strategy.mbatch = [x, y, torch.zeros_like(y)]
    strategy.mb_x, strategy.mb_y = x, y
    strategy.mb_output = strategy.model(x)
    strategy.loss = torch.zeros(())
    plugin.before_backward(strategy)
    assert abs(float(strategy.loss)) < 1e-6

    width = strategy.model.classifier.in_features
    drift = torch.randn(2, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # the student's old-class rows drift from the teacher's
        strategy.model.classifier.weight[:2].add_(drift)
    strategy.mb_output = strategy.model(x)
    strategy.loss = torch.zeros(())
    plugin.before_backward(strategy)
    assert float(strategy.loss) > 1e-4


def test_memory_batches_cover_each_sample_once_per_epoch() -> None:
    x, y = torch.arange(65.0).view(65, 1, 1, 1), torch.arange(65)
    loader = MemoryBatches(x, y, 32, torch.Generator().manual_seed(0), "cpu")
    batches = list(loader)
    assert [b[1].numel() for b in batches] == [32, 33]  # a lone trailing sample joins
    assert len(loader) == 2
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(65))
    assert not torch.equal(torch.cat([b[1] for b in batches]), torch.cat([b[1] for b in loader]))


@pytest.mark.parametrize("method", ["dream", "idc", "dm", "herding", "random"])
def test_each_method_gives_ipc_images_per_class(method: str, digits) -> None:
    split = digits.train.subset_classes([0, 1], relabel=True)
    cfg = memory(method, ipc=2)
    s = build_class_memory(split, cfg, seed=0)
    assert s.class_counts() == [2, 2]
    assert s.factor == (2 if method in ("dream", "idc") else 1)
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
    again = build_class_memory(split, cfg, seed=0)
    assert torch.equal(again.images, s.images)  # seeded


def test_ipc_larger_than_a_class_is_a_one_line_user_error(digits) -> None:
    split = digits.train.subset_classes([0, 1], relabel=True)
    with pytest.raises(UserError) as err:
        build_class_memory(split, memory("dream", ipc=100), seed=0)
    assert "--ipc 100" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="positive"):
        MemoryConfig("random", 0)
    with pytest.raises(UserError, match="unknown memory method"):
        MemoryConfig("kmeans", 2)


# -- the storage policy ------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dream", "random"])
def test_buffer_keeps_exactly_the_budget_class_balanced_after_every_step(
    method: str, digits
) -> None:
    ipc = 3
    buffer = DistilledBuffer(memory(method, ipc=ipc), info=digits.info, source=digits.train)
    assert buffer.max_size == ipc * 10
    f2 = 4 if method == "dream" else 1
    for k, exp in enumerate(digits.benchmark.train_stream):
        buffer.post_adapt(None, exp)
        buffer.post_adapt(None, exp)  # idempotent: ReplayPlugin and a plugin may both call it
        seen = digits.seen_classes(k)
        assert buffer.class_counts() == {c: ipc for c in range(seen)}
        assert buffer.num_stored == ipc * seen <= buffer.max_size
        assert buffer.num_decoded == ipc * seen * f2
        _, labels = buffer.tensors()
        assert torch.bincount(labels, minlength=seen).tolist() == [ipc * f2] * seen
        assert len(buffer.buffer) == ipc * seen * f2
        x, y, t = buffer.buffer[0]
        assert t == 0 and x.shape == (1, 8, 8)
    acc = buffer.accounting()
    assert acc["stored_images"] == 30 and acc["decoded_images"] == 30 * f2


def test_buffer_resize_shrinks_per_class(digits) -> None:
    buffer = DistilledBuffer(memory("random", ipc=4), info=digits.info, source=digits.train)
    buffer.post_adapt(None, digits.benchmark.train_stream[0])
    buffer.resize(None, 20)
    assert buffer.ipc == 2 and buffer.class_counts() == {0: 2, 1: 2} and buffer.max_size == 20
    with pytest.raises(ValueError, match="grow"):
        buffer.resize(None, 40)


# -- stock Avalanche routes --------------------------------------------------------------------
def test_stock_naive_with_replay_plugin_replays_the_distilled_buffer(digits) -> None:
    buffer = DistilledBuffer(memory("random", ipc=2), info=digits.info)  # no source: generic path
    probe = Probe()
    strategy = naive(
        tiny_model(10), [ReplayPlugin(mem_size=buffer.max_size, storage_policy=buffer), probe]
    )
    stream = digits.benchmark.train_stream
    for k in range(3):
        before = [p.detach().clone() for p in strategy.model.parameters()]
        strategy.train(stream[k], eval_streams=[])
        after = list(strategy.model.parameters())
        assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
        assert sorted(buffer.class_counts()) == list(range(2 * (k + 1)))  # updated after exp
    # at step 2 the batches mixed the current classes with the memory of steps 0 and 1
    assert probe.epochs[-1]["labels"] == set(range(6))
    # the generic route read the same pixels the source route would
    direct = DistilledBuffer(memory("random", ipc=2), info=digits.info, source=digits.train)
    direct.post_adapt(None, stream[0])
    generic = buffer.stored_set().images[:4]
    torch.testing.assert_close(direct.stored_set().images, generic, atol=1e-6, rtol=0)
    results = strategy.eval(digits.benchmark.test_stream[:3])
    assert "Top1_Acc_Stream/eval_phase/test_stream" in results


def test_plugin_finetune_kd_trains_stock_naive_on_memory_only(digits) -> None:
    ipc = 2
    buffer = DistilledBuffer(memory("dream", ipc=ipc), info=digits.info, source=digits.train)
    cfg = TrainConfig(milestones=(0.5,), gamma=0.1)
    probe = Probe()
    strategy = naive(tiny_model(2), [DistilledReplayPlugin(buffer, config=cfg), probe], epochs=2)
    for k in range(3):
        strategy.train(digits.benchmark.train_stream[k], eval_streams=[])
        seen = digits.seen_classes(k)
        assert strategy.model.classifier.out_features == seen
        for epoch in probe.epochs[-2:]:
            assert epoch["n"] == ipc * 4 * seen  # decoded memory, nothing else
            assert epoch["labels"] <= set(range(seen))
    # each step restarts the schedule at the optimizer's lr; x0.1 after epoch 1 of 2
    assert probe.lrs == pytest.approx([0.01, 0.001] * 3)
    results = strategy.eval(digits.benchmark.test_stream[:3])
    assert 0.0 <= results["Top1_Acc_Stream/eval_phase/test_stream"] <= 1.0


def test_plugin_scratch_starts_each_step_from_a_fresh_model(digits) -> None:
    buffer = DistilledBuffer(memory("random", ipc=2), info=digits.info, source=digits.train)
    made: list[nn.Module] = []

    def factory(num_classes: int, step: int) -> nn.Module:
        made.append(tiny_model(num_classes, seed=100 + step))
        return copy.deepcopy(made[-1])

    plugin = DistilledReplayPlugin(buffer, regime="scratch", config=QUIET, model_factory=factory)
    probe = Probe()
    strategy = naive(tiny_model(2), [plugin, probe])
    for k in range(2):
        strategy.train(digits.benchmark.train_stream[k], eval_streams=[])
    assert [m.classifier.out_features for m in made] == [2, 4]
    assert strategy.model.classifier.out_features == 4
    assert probe.epochs[-1]["n"] == 2 * 4  # memory only: 4 classes x ipc 2
    # trained from the fresh step-1 network, not from step 0's weights
    first = next(strategy.model.features.parameters())
    assert not torch.equal(first, next(made[1].features.parameters()))


def test_plugin_replay_mix_mixes_current_data_with_memory(digits) -> None:
    buffer = DistilledBuffer(memory("random", ipc=2), info=digits.info, source=digits.train)
    probe = Probe()
    strategy = naive(
        tiny_model(2), [DistilledReplayPlugin(buffer, regime="replay-mix", config=QUIET), probe]
    )
    stream = digits.benchmark.train_stream
    strategy.train(stream[0], eval_streams=[])
    assert probe.epochs[-1]["n"] == len(stream[0].dataset)  # no memory yet: real data only
    assert sorted(buffer.class_counts()) == [0, 1]  # filled after the experience
    strategy.train(stream[1], eval_streams=[])
    assert probe.epochs[-1]["labels"] == {0, 1, 2, 3}
    assert probe.epochs[-1]["n"] > len(stream[1].dataset)  # current data plus memory batches


def test_no_deprecation_warning_from_dream_cl_code_paths(digits) -> None:
    """#31 item 6: the stock ReplayPlugin with a DistilledBuffer (the README's example) and
    the DistilledReplay strategy train and evaluate without any deprecation warning; Avalanche
    0.6's ReplayPlugin calls the deprecated ``ExemplarsBuffer.update``, which the buffer
    overrides."""
    from dream_cl.strategies import DistilledReplay

    stream, tests = digits.benchmark.train_stream, digits.benchmark.test_stream
    buffer = DistilledBuffer(memory("random", ipc=2), info=digits.info)
    evaluator = EvaluationPlugin(accuracy_metrics(stream=True), loggers=[])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stock = naive(
            tiny_model(10), [ReplayPlugin(mem_size=buffer.max_size, storage_policy=buffer)]
        )
        model = tiny_model(2)
        ours = DistilledReplay(
            model=model,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
            storage_policy=DistilledBuffer(memory("random", ipc=2), info=digits.info),
            train_config=QUIET,
            train_epochs=1,
            evaluator=evaluator,
        )
        for strategy in (stock, ours):
            for k in range(2):
                strategy.train(stream[k], eval_streams=[])
                strategy.eval(tests[: k + 1])
    deprecated = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    found = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught
             if issubclass(w.category, deprecated)]  # fmt: skip
    assert not found, found
