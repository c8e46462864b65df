"""Class-incremental scenarios as Avalanche benchmarks (``dream_cl.scenarios``).

``build_scenario("cifar100-5step", root)`` loads the data and returns a :class:`Scenario`
whose ``benchmark`` is an Avalanche 0.6.0 ``CLScenario`` (``train_stream`` / ``test_stream``,
one experience per step). A dataset name plus ``steps`` or an image-folder path builds any
other split; ``class_order=`` fixes the order, otherwise ``seed`` (default 0) draws it.
"""

from dream_cl.scenarios.builder import (
    ClassMap,
    NormalizedImages,
    Scenario,
    build_scenario,
    resolve_scenario_source,
    scenario_from_splits,
    seeded_class_order,
    split_order,
    step_sizes,
)
from dream_cl.scenarios.registry import (
    DEFAULT_SCENARIO,
    SCENARIOS,
    ScenarioSpec,
    get_scenario,
    scenario_names,
)

__all__ = [
    "DEFAULT_SCENARIO",
    "SCENARIOS",
    "ClassMap",
    "NormalizedImages",
    "Scenario",
    "ScenarioSpec",
    "build_scenario",
    "get_scenario",
    "resolve_scenario_source",
    "scenario_from_splits",
    "scenario_names",
    "seeded_class_order",
    "split_order",
    "step_sizes",
]
