"""Scenarios: every registered one from files in the official formats, orders, custom builds."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, needs_real_data
from fakedata import (
    fake_image,
    write_cifar10,
    write_cifar100,
    write_fashion_mnist,
    write_image_folder,
    write_mnist,
    write_svhn,
    write_tinyimagenet,
)

from dream_cl.errors import UserError
from dream_cl.scenarios import (
    DEFAULT_SCENARIO,
    SCENARIOS,
    build_scenario,
    get_scenario,
    resolve_scenario_source,
    scenario_from_splits,
    scenario_names,
    seeded_class_order,
    step_sizes,
)

# scenario -> (writer, total classes, classes per step, whether pixels are exact fake_image)
WRITERS = {
    "digits-5step": (None, 10, 2, False),
    "cifar100-5step": (lambda r: write_cifar100(r, 2, 1, num_classes=100), 100, 20, True),
    "cifar100-10step": (lambda r: write_cifar100(r, 2, 1, num_classes=100), 100, 10, True),
    "cifar10-5step": (lambda r: write_cifar10(r, 2, 1), 10, 2, True),
    "svhn-5step": (lambda r: write_svhn(r, 2, 1), 10, 2, True),
    "mnist-5step": (lambda r: write_mnist(r, 2, 1), 10, 2, True),
    "fmnist-5step": (lambda r: write_fashion_mnist(r, 2, 1), 10, 2, True),
    "tinyimagenet-10step": (lambda r: write_tinyimagenet(r, 200, 1, 1), 200, 20, False),
}


def test_registry_is_read_only_and_complete() -> None:
    assert isinstance(SCENARIOS, MappingProxyType)
    assert set(scenario_names()) == set(WRITERS)
    assert DEFAULT_SCENARIO == "digits-5step"
    with pytest.raises(TypeError):
        SCENARIOS["x"] = SCENARIOS["digits-5step"]  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_scenario_builds_with_right_classes_per_step(name: str, tmp_path: Path) -> None:
    writer, total, per_step, exact = WRITERS[name]
    spec = get_scenario(name)
    if writer is not None:
        assert not spec.available(tmp_path)
        writer(tmp_path)
        assert spec.available(tmp_path)
    s = build_scenario(name, tmp_path, seed=0)
    assert s.num_steps == spec.steps and s.num_classes == total
    assert all(len(step) == per_step for step in s.steps)
    flat = [c for step in s.steps for c in step]
    assert sorted(flat) == list(range(total))  # every class exactly once
    assert all(list(step) == sorted(step) for step in s.steps)  # sorted within a step

    train_stream = list(s.benchmark.train_stream)
    test_stream = list(s.benchmark.test_stream)
    assert len(train_stream) == len(test_stream) == spec.steps
    train_counts, test_counts = s.train.class_counts(), s.test.class_counts()
    for k, (tr, te) in enumerate(zip(train_stream, test_stream, strict=True)):
        labels = s.step_labels(k)
        assert tr.current_experience == k
        assert sorted(tr.classes_in_this_experience) == labels
        assert sorted(te.classes_in_this_experience) == labels
        assert len(tr.dataset) == sum(train_counts[i] for i in labels)
        assert len(te.dataset) == sum(test_counts[i] for i in labels)
        # model label i is dataset class class_order[i], with that class's name
        for i in labels:
            assert s.info.class_names[i] == s.dataset_info.class_names[s.class_order[i]]

    # items are (normalised image, model label, task 0) and carry the dataset's pixels
    x, y, t = train_stream[0].dataset[0]
    assert t == 0 and y in s.step_labels(0)
    assert x.dtype == torch.float32 and tuple(x.shape) == (
        s.info.channels,
        s.info.image_size,
        s.info.image_size,
    )
    if exact:
        data = train_stream[0].dataset
        first = next(i for i in range(len(data)) if data[i][1] == 0)
        x0 = data[first][0]
        size = s.info.image_size
        raw = torch.from_numpy(fake_image(s.class_order[0], 0, s.info.channels, size).copy())
        expected = s.info.normalize(raw.float().div(255).unsqueeze(0))[0]
        torch.testing.assert_close(x0, expected, atol=1e-5, rtol=0)
    recorded = s.to_dict()
    assert recorded["class_order"] == flat and recorded["order_seed"] == 0
    assert [st["classes"] for st in recorded["steps"]] == [list(st) for st in s.steps]


def test_seeded_orders_are_numpy_permutations_recorded_and_distinct() -> None:
    perm = np.random.RandomState(3).permutation(100).tolist()
    order = seeded_class_order(100, 5, seed=3)
    assert [sorted(perm[20 * k : 20 * (k + 1)]) for k in range(5)] == [list(g) for g in order]
    assert seeded_class_order(100, 5, 3) == order
    assert seeded_class_order(100, 5, 4) != order


def test_orders_flag_gives_different_digit_orders() -> None:
    a = build_scenario("digits-5step", seed=0)
    b = build_scenario("digits-5step", seed=1)
    assert a.class_order != b.class_order
    assert sorted(a.class_order) == sorted(b.class_order) == list(range(10))


def test_dataset_name_with_steps_and_explicit_order() -> None:
    s = build_scenario("digits", steps=3, class_order=[9, 8, 7, 1, 2, 3, 4])
    assert s.steps == ((9, 8, 7), (1, 2), (3, 4))  # uneven: earlier steps take the extra class
    assert s.seed is None and s.num_classes == 7
    assert s.name == "digits-3step"
    assert sorted(s.benchmark.train_stream[0].classes_in_this_experience) == [0, 1, 2]
    # the model labels follow the given order
    assert s.info.class_names[:3] == ("9", "8", "7")
    assert step_sizes(10, 4) == [3, 3, 2, 2]


def test_image_folder_scenario(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "pets", ("cat", "dog", "fish", "owl"), per_class=4)
    s = build_scenario(str(folder), steps=2, seed=0)
    assert s.dataset == "imagefolder" and s.num_steps == 2
    assert sorted(c for step in s.steps for c in step) == [0, 1, 2, 3]
    assert len(s.benchmark.train_stream[0].dataset) + len(s.benchmark.train_stream[1].dataset) == (
        len(s.train)
    )


def test_splits_api_matches_registered_build() -> None:
    from dream_cl.data import load_train_test

    train, test = load_train_test("digits", "data")
    a = scenario_from_splits(train, test, 5, seed=2)
    b = build_scenario("digits-5step", seed=2)
    assert a.steps == b.steps
    assert torch.equal(a.train.images, b.train.images)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("nope-5step",), "unknown scenario 'nope-5step'"),
        (("cifar100-5step",), "cifar100 data not found"),
        (("digits", 11), "more than the 10 classes"),
        (("cifar100-5step", 10), "has 5 steps"),
        (("./no/such/folder",), "does not exist"),
    ],
)
def test_bad_inputs_are_one_line_user_errors(args: tuple, fragment: str, tmp_path: Path) -> None:
    name = args[0]
    steps = args[1] if len(args) > 1 else None
    with pytest.raises(UserError) as err:
        build_scenario(name, tmp_path / "empty", steps=steps)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "empty").exists()  # nothing written


def test_bad_class_orders() -> None:
    with pytest.raises(UserError, match="twice"):
        build_scenario("digits", steps=2, class_order=[1, 1, 2])
    with pytest.raises(UserError, match="classes 0..9"):
        build_scenario("digits", steps=2, class_order=[1, 12])


def test_resolve_source_reads_nothing(tmp_path: Path) -> None:
    assert resolve_scenario_source("CIFAR100-5step") == ("cifar100-5step", "cifar100", 5, {})
    assert resolve_scenario_source("cifar-10", 2) == ("cifar10-2step", "cifar10", 2, {})
    folder = tmp_path / "imgs"
    folder.mkdir()
    name, dataset, steps, options = resolve_scenario_source(str(folder), 3)
    assert (name, dataset, steps) == ("imagefolder-3step", "imagefolder", 3)
    assert Path(options["path"]) == folder.resolve()


@pytest.mark.slow
@needs_real_data("MNIST")
def test_real_mnist_5step() -> None:
    s = build_scenario("mnist-5step", SHARED_DATA, seed=0)
    sizes = [len(e.dataset) for e in s.benchmark.train_stream]
    assert sum(sizes) == 60000 and all(11000 < n < 13500 for n in sizes)
    assert sum(len(e.dataset) for e in s.benchmark.test_stream) == 10000
    assert s.dataset_info.name == "mnist" and s.num_classes == 10
