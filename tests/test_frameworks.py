"""Frameworks as records: one frozen registry, every difference between frameworks in it,
no framework name compared to a string anywhere else, and no setting silently ignored."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from dream_cl.distill.config import DistillConfig, resolve_config
from dream_cl.distill.registry import FRAMEWORKS, LOOP_STEPS, Framework, framework
from dream_cl.errors import UserError
from dream_cl.protocol.evaluation import RECIPES, recipe_for_framework
from dream_cl.protocol.frameworks import FRAMEWORK_RULES, LOOPS, FrameworkRules

ROOT = Path(__file__).resolve().parent.parent
NAMES = ("idc", "dc", "dsa", "dm")
# the registry: the only modules that spell a framework's name
REGISTRY = {
    ROOT / "dream_cl" / "protocol" / "frameworks.py",
    ROOT / "dream_cl" / "distill" / "registry.py",
}


def test_the_registry_is_frozen_and_complete() -> None:
    assert tuple(FRAMEWORKS) == tuple(FRAMEWORK_RULES) == NAMES
    assert isinstance(FRAMEWORKS, MappingProxyType) and isinstance(
        FRAMEWORK_RULES, MappingProxyType
    )
    with pytest.raises(TypeError):
        FRAMEWORKS["new"] = FRAMEWORKS["idc"]  # type: ignore[index]
    for name, record in FRAMEWORKS.items():
        assert isinstance(record, Framework) and isinstance(record, FrameworkRules)
        assert record.name == name and framework(name) is record
        assert record.loop in LOOPS and record.outer is LOOP_STEPS[record.loop]
        assert record.eval_recipe in RECIPES and recipe_for_framework(name) == record.eval_recipe
        assert record.unused <= {f.name for f in dataclasses.fields(DistillConfig)}
        rules = FRAMEWORK_RULES[name]
        assert all(
            getattr(record, f.name) == getattr(rules, f.name) for f in dataclasses.fields(rules)
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.syn_augment = True  # type: ignore[misc]
    # DC and DSA share a step and differ by data
    dc, dsa = framework("dc"), framework("dsa")
    assert dc.outer is dsa.outer
    assert (dc.match_aug, dc.syn_augment, dc.one_aug_group) == ("none", False, False)
    assert (dsa.match_aug, dsa.syn_augment, dsa.one_aug_group) == (None, True, True)
    assert recipe_for_framework(None) == "idc"  # coresets
    with pytest.raises(UserError, match="unknown framework 'mtt'; use one of idc, dc, dsa, dm"):
        framework("mtt")


def _digits(framework_name: str, **overrides):
    return resolve_config(
        "digits", 2, framework=framework_name, preset="cpu", image_size=8, overrides=overrides
    )


# a value no preset gives, for each setting some framework never reads
OTHER = {
    "net_epochs_syn": 3,
    "match_aug": "color_crop",
    "n_data": 7,
    "net_aug": "color",
    "mix_p": 0.25,
    "net_update": "replicated",
    "inner_loop": 5,
    "formulation": "per-class",
    "compile": True,
    "metric": "cos",
    "match_bias": True,
    "match_fc": True,
    "lr_net": 0.5,
    "batch_syn_max": 3,
}


@pytest.mark.parametrize("name", NAMES)
def test_a_setting_the_framework_never_reads_is_refused_with_one_line(name: str) -> None:
    preset = _digits(name)  # the preset itself validates
    assert set(framework(name).unused) <= set(OTHER)
    for setting in sorted(framework(name).unused):
        with pytest.raises(UserError) as err:
            _digits(name, **{setting: OTHER[setting]})
        message = str(err.value)
        assert "\n" not in message and f"--{setting.replace('_', '-')}" in message
        assert f"the {name} framework does not use it" in message
        # the preset's own value, given explicitly, changes nothing and is accepted
        assert _digits(name, **{setting: getattr(preset, setting)}) == preset
    # a saved configuration edited by hand is refused when the run validates it
    if framework(name).unused:
        setting = sorted(framework(name).unused)[0]
        edited = DistillConfig.from_dict({**preset.to_dict(), setting: OTHER[setting]})
        with pytest.raises(UserError, match="does not use it"):
            edited.validate()


def test_dc_refuses_a_matching_augmentation_and_dsa_honours_it() -> None:
    assert _digits("dc").match_aug == "none"
    with pytest.raises(UserError, match=r"--match-aug 'color_crop': the dc framework"):
        _digits("dc", match_aug="color_crop")
    assert _digits("dsa", match_aug="color_crop").match_aug == "color_crop"
    # settings a framework reads are never refused
    assert _digits("dc", inner_loop=3, net_epochs_syn=2).net_epochs_syn == 2
    assert _digits("idc", n_data=64, mix_p=0.0).n_data == 64


def test_a_continual_memory_passes_a_method_only_the_settings_its_framework_reads() -> None:
    from dream_cl.strategies.config import MemoryConfig

    shared = {"inner_loop": 2, "n_data": 32, "compile": True, "iterations": 3}
    dm = MemoryConfig("dm", 2, "cpu", overrides=shared).distill_config("digits", 8)
    dream = MemoryConfig("dream", 2, "cpu", overrides=shared).distill_config("digits", 8)
    assert dm is not None and dream is not None
    assert (dm.iterations, dm.inner_loop, dm.n_data, dm.compile) == (3, 1, 500, False)
    assert (dream.iterations, dream.inner_loop, dream.n_data, dream.compile) == (3, 2, 32, True)


def _literal_names(node: ast.AST) -> set[str]:
    """Framework names a comparison operand spells: a string, or strings in a tuple/list/set."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {i.value for i in items if isinstance(i, ast.Constant) and i.value in NAMES}


def framework_name_comparisons(source: str) -> list[int]:
    """Lines where a framework's name is compared (==, !=, in, not in, match case) to
    anything."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            if any(_literal_names(op) for op in [node.left, *node.comparators]):
                found.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and _literal_names(node.value):
            found.append(node.lineno)
    return sorted(found)


def test_the_checker_sees_the_comparisons_the_registry_replaced() -> None:
    today = (
        'if cfg.framework == "dsa":\n    pass\n'
        'x = framework if framework in ("dc", "dsa", "dm") else "idc"\n'
        'ok = cfg.framework not in ("dsa", "dm")\n'
        'match name:\n    case "dm":\n        pass\n'
    )
    assert framework_name_comparisons(today) == [1, 3, 4, 6]
    assert framework_name_comparisons('x = {"dc": 1}\ny = rules.get(name)\n') == []


def test_no_module_outside_the_registry_compares_a_framework_name_to_a_string() -> None:
    offenders = []
    for folder in ("dream_cl", "strategies", "scenarios"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.is_symlink() or path in REGISTRY:
                continue  # dream_cl/cli.py links to the top-level cli.py
            for line in framework_name_comparisons(path.read_text()):
                offenders.append(f"{path.relative_to(ROOT)}:{line}")
    assert not offenders, f"look the framework's record up instead: {offenders}"


def test_the_long_run_rule_lives_once() -> None:
    from dream_cl.distill import engine
    from dream_cl.protocol.distillation import LONG_RUN_SECONDS, long_run_hint, long_run_note

    assert engine.LONG_RUN_SECONDS == LONG_RUN_SECONDS == 30 * 60
    assert long_run_hint("paper") == "; `--preset cpu` runs in minutes"
    assert long_run_hint("cpu") == "" and long_run_note("cpu", "cpu") is None
    note = long_run_note("paper", "cpu")
    assert note is not None and note.after_seconds == LONG_RUN_SECONDS
    assert note.hint == long_run_hint("paper")
