"""Typed configuration of a distillation run, and the named presets.

``paper`` holds the official per-dataset settings (reference-notes section c, the paper's
section 4.1); ``cpu`` keeps every mechanism but scales width, loop lengths and iterations so
a 10-class IPC-10 run finishes in minutes on 2 cores. The rules of both live in
:mod:`dream_cl.protocol.distillation`, each framework's in its record
(:mod:`dream_cl.protocol.frameworks`). Any field can be overridden; the resolved
configuration is saved with the run. A setting the framework never reads is refused when it
differs from the preset's value (:meth:`DistillConfig.validate`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from dream_cl.errors import UserError
from dream_cl.protocol import distillation as presets
from dream_cl.protocol.evaluation import RECIPES, default_recipe_epochs, recipe_for_framework
from dream_cl.protocol.frameworks import FRAMEWORK_NAMES, framework_rules
from dream_cl.settings import refuse_non_finite

FRAMEWORKS = FRAMEWORK_NAMES
FORMULATIONS = ("per-class", "joint", "batched")
NET_UPDATES = ("data-parallel", "replicated")
PRESETS = ("paper", "cpu")
PRECISIONS = ("fp32", "bf16")
"""``precision``: the forward passes' arithmetic (dream_cl.distill.compiled.autocast)."""


@dataclass
class DistillConfig:
    """Everything that determines a distillation run (with the seed, bit for bit on CPU)."""

    dataset: str
    ipc: int = 10
    framework: str = "idc"
    sampler: str = "representative"
    init: str = "kmeans"
    factor: int = 2
    # schedule
    iterations: int = 1200
    """Outer iterations: one fresh network each (IDC/DC/DSA); one step each for DM."""
    inner_loop: int = 100
    """IDC: matching steps per network. DC/DSA: matching rounds per network. DM: unused."""
    net_epochs_syn: int = 0
    """DC/DSA: epochs the network trains on the synthetic set after each matching round."""
    # real batches and the representative sampler
    batch_real: int = 128
    """Random sampler batch per class; for representative matching N = n_clusters."""
    n_clusters: int = 128
    per_cluster: int = 1
    interval: int = 10
    candidates: int | None = None
    kmeans_max_iter: int = 100
    batch_syn_max: int = 128
    # image optimiser
    lr_img: float = 1e-4
    momentum_img: float = 0.5
    formulation: str = "per-class"
    """per-class: one image step per class (IDC official); joint: class losses summed, one
    step (DC/DSA official); batched: as joint, all classes in one vectorised pass."""
    compile: bool = False
    """per-class/joint: torch.compile the refresh's embedding, each class's matching gradient
    and the network update's gradient (dream_cl.distill.compiled; equal to the eager run up
    to float rounding)."""
    precision: str = "fp32"
    """fp32, or bf16: the forward passes under bfloat16 autocast (for CPUs with AVX-512 BF16
    or AMX, and GPUs; parameters, optimiser state and images stay float32)."""
    # matching objective
    metric: str = "l1"
    match_bias: bool = False
    match_fc: bool = False
    match_aug: str = "color_crop_cutout"
    # network
    model: str = "convnet"
    width: int = 128
    depth: int = 3
    norm: str = "instance"
    lr_net: float = 0.01
    n_data: int = 500
    """IDC: real samples the network trains on between matching steps."""
    net_aug: str = "color_crop"
    mix_p: float = 0.5
    net_update: str = "data-parallel"
    """Under torchrun, IDC's network update on real data: ``data-parallel`` (each rank a
    share of the batch, gradients summed: one process's update up to float summation
    order) or ``replicated`` (every rank the whole batch: one process's result bit for
    bit, the update's time not divided). One process: no difference."""
    # evaluation during the run
    eval_every: int = 0
    eval_model: str = "convnet"
    eval_epochs: int = 1000
    """The evaluation recipe's E (IDC/DSA/DM 1000; DC 300, MNIST 1000)."""
    eval_repeats: int = 1
    eval_width: int | None = None
    """ConvNet width of the evaluation model (None: the model's default, 128)."""
    eval_recipe: str = "auto"
    """auto: the framework's own (IDC's for idc, VICO's for dc/dsa/dm); or idc, dc, dsa, dm."""
    eval_split: str = "test"
    """What periodic evaluation reports on: test (monitoring only; nothing is chosen on it)
    or val (the validation split held out with val_fraction)."""
    # validation split held out of the training split (never distilled on)
    val_fraction: float = 0.0
    val_seed: int = 0
    # bookkeeping
    checkpoint_every: int = 10
    seed: int = 0
    device: str = "auto"
    preset: str = "paper"

    def model_options(self) -> dict[str, Any]:
        """Options of the distillation network; a ResNet gets ``norm`` (instance by
        default, the official distillation default), everything else the model's own."""
        if self.model == "convnet":
            return {"width": self.width, "depth": self.depth, "norm": self.norm}
        if self.model.startswith("convnet"):
            return {"width": self.width, "depth": self.depth}
        if self.model.startswith("resnet"):
            return {"norm": self.norm}
        return {}

    def resolved_eval_recipe(self) -> str:
        """The evaluation recipe: ``eval_recipe``, or the framework's own for ``auto``."""
        if self.eval_recipe == "auto":
            return recipe_for_framework(self.framework)
        return self.eval_recipe

    def eval_config(self) -> Any:
        """The recipe this run evaluates its set with (``eval_every``), at ``eval_epochs``;
        benchmarks that evaluate a run's set the run's way use it too."""
        from dream_cl.evaluate import eval_recipe

        return eval_recipe(self.resolved_eval_recipe(), self.dataset, epochs=self.eval_epochs)

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise UserError(msg)

        refuse_non_finite(self)
        rules = framework_rules(self.framework)  # an unknown name: one line
        if self.sampler not in ("random", "representative"):
            bad(f"unknown sampler '{self.sampler}'; use random or representative")
        if self.init not in ("kmeans", "random", "noise"):
            bad(f"unknown init '{self.init}'; use kmeans, random or noise")
        if self.formulation not in FORMULATIONS:
            bad(f"unknown formulation '{self.formulation}'; use {', '.join(FORMULATIONS)}")
        for name in (
            "ipc",
            "factor",
            "iterations",
            "inner_loop",
            "interval",
            "batch_real",
            "n_clusters",
            "per_cluster",
            "batch_syn_max",
            "checkpoint_every",
            "eval_epochs",
            "eval_repeats",
            "width",
            "depth",
            "n_data",
            "kmeans_max_iter",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(f"--{name.replace('_', '-')} must be at least 1, got {value!r}")
        if self.candidates is not None and self.candidates < 1:
            bad(
                f"--candidates must be at least 1 (or left out: every image), got {self.candidates}"
            )
        if self.eval_every < 0 or self.net_epochs_syn < 0:
            bad("--eval-every and the network's epochs on the synthetic set cannot be negative")
        if not 0.0 <= self.mix_p <= 1.0 or not 0.0 <= self.momentum_img < 1.0:
            bad("mix_p must be in [0, 1] and the image momentum in [0, 1)")
        if self.net_update not in NET_UPDATES:
            bad(f"unknown --net-update '{self.net_update}'; use {' or '.join(NET_UPDATES)}")
        if self.precision not in PRECISIONS:
            bad(f"unknown precision '{self.precision}'; use {' or '.join(PRECISIONS)}")
        if self.compile and self.formulation == "batched":
            bad("--compile applies to the per-class and joint formulations; drop one of them")
        if self.eval_width is not None and self.eval_width < 1:
            bad("--eval-width must be at least 1")
        if self.lr_img <= 0 or self.lr_net <= 0:
            bad("learning rates must be positive")
        from dream_cl.data.validation import SPLITS, ValidationSpec

        if self.eval_recipe != "auto" and self.eval_recipe not in RECIPES:
            bad(f"unknown --eval-recipe '{self.eval_recipe}'; use auto, {', '.join(RECIPES)}")
        if self.eval_split not in SPLITS:
            bad(f"unknown --eval-split '{self.eval_split}'; use {' or '.join(SPLITS)}")
        ValidationSpec(self.val_fraction, self.val_seed)
        if self.eval_split == "val" and not self.val_fraction > 0:
            bad("--eval-split val needs a validation split: pass --val-fraction (e.g. 0.1)")
        from dream_cl.augment import parse_strategy
        from dream_cl.distill.matching import METRICS
        from dream_cl.models import model_names

        if self.metric not in METRICS:
            bad(f"unknown matching metric '{self.metric}'; use one of {', '.join(METRICS)}")
        for name in (self.model, self.eval_model):
            if name not in model_names():
                bad(f"unknown model '{name}'; use one of {', '.join(model_names())}")
        parse_strategy(self.match_aug)
        parse_strategy(self.net_aug)
        self._refuse_unused(rules.name, rules.unused)

    def _refuse_unused(self, framework: str, unused: frozenset[str]) -> None:
        """A setting ``framework`` never reads must keep its preset's value.

        The preset's value is what :func:`resolve_config` put there; another one was set
        by the user, and would be silently ignored, so it is refused with one line. (The
        values compared depend on the dataset, IPC, factor and preset, never on the image
        size, so the preset is rebuilt at a nominal size.)
        """
        preset = cpu_config if self.preset == "cpu" else paper_config
        expected = preset(self.dataset, self.ipc, framework, 32, self.factor)
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name in sorted(unused):
            value, wanted = getattr(self, name), expected.get(name, defaults[name])
            if value != wanted:
                raise UserError(
                    f"--{name.replace('_', '-')} {value!r}: the {framework} framework does "
                    f"not use it (its preset keeps {wanted!r}); leave it out or use a "
                    "framework that does"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistillConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def paper_config(
    dataset: str, ipc: int, framework: str, image_size: int, factor: int | None = None
) -> dict[str, Any]:
    """The official settings for ``dataset`` at ``ipc`` under ``framework``
    (:func:`dream_cl.protocol.distillation.paper_preset` with the framework's rule).

    ``factor`` is the multi-formation factor the run will use when the user sets one (None:
    the preset's); the rules that depend on it (MNIST's) follow the factor actually run.
    """
    rules = framework_rules(framework)
    epochs = default_recipe_epochs(rules.eval_recipe, dataset)
    return presets.paper_preset(
        dataset, ipc, framework, image_size, factor, eval_epochs=epochs, rule=rules.paper
    )


def cpu_config(
    dataset: str, ipc: int, framework: str, image_size: int, factor: int | None = None
) -> dict[str, Any]:
    """Every mechanism of the paper preset at a size 2 CPU cores finish in minutes."""
    cfg = paper_config(dataset, ipc, framework, image_size, factor)
    return presets.cpu_preset(cfg, dataset, framework_rules(framework).cpu)


def resolve_config(
    dataset: str,
    ipc: int,
    *,
    framework: str = "idc",
    preset: str = "paper",
    image_size: int = 32,
    overrides: dict[str, Any] | None = None,
) -> DistillConfig:
    """Preset values for (dataset, ipc, framework), then the user's overrides on top."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}'; use one of {', '.join(PRESETS)}")
    framework_rules(framework)  # an unknown name: one line
    factor = (overrides or {}).get("factor")
    base = (paper_config if preset == "paper" else cpu_config)(
        dataset, ipc, framework, image_size, factor
    )
    values = {"dataset": dataset, "preset": preset, **base}
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    recipe = values.get("eval_recipe", "auto")
    # an explicit recipe ("auto" is none) brings its own E; an unknown name is for validate()
    if preset == "paper" and (overrides or {}).get("eval_epochs") is None and recipe in RECIPES:
        values["eval_epochs"] = default_recipe_epochs(recipe, dataset)
    names = {f.name for f in dataclasses.fields(DistillConfig)}
    unknown = set(values) - names
    if unknown:
        raise UserError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    cfg = DistillConfig(**values)
    cfg.validate()
    return cfg


__all__ = ["DistillConfig", "FRAMEWORKS", "PRESETS", "resolve_config", "field"]
