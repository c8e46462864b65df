"""Typed configuration of continual-learning runs, and the ``paper`` / ``cpu`` presets.

Three records, each passed explicitly to the part that needs it:

- :class:`MemoryConfig`: what a step's memory is made of (method, IPC, the engine's preset and
  overrides, the network that distils or extracts coreset features);
- :class:`TrainConfig`: how a model trains on it (schedule shape, augmentation, KD);
- :class:`CLConfig`: one run of ``dream-cl run``, i.e. both of the above plus the scenario,
  regime, model, epochs and orders. It is saved as ``config.json`` with the run.

``paper`` is section 4.5 of the paper in IDC's continual-learning protocol (reference-notes
section g): IPC 20, factor 2, the engine's paper preset, ResNet-10 trained 1000 epochs per
step with SGD lr 0.01, momentum 0.9, wd 5e-4, x0.2 at 60% and 80% of the epochs, batch 64,
per-sample DSA + CutMix p=0.5, KD with T=2, beta=1. ``cpu`` keeps every mechanism and scales
the sizes so the embedded ``digits-5step`` finishes in about a minute on 2 cores. Both presets,
the augmentation and the method -> framework table live in :mod:`dream_cl.protocol.continual`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from dream_cl.errors import UserError
from dream_cl.protocol.continual import CL_PRESET_SETTINGS, ENGINE_METHOD
from dream_cl.protocol.frameworks import framework_rules

REGIMES = ("finetune-kd", "scratch", "replay-mix")
MEMORY_METHODS = ("dream", "idc", "dm", "herding", "random")
DISTILL_METHODS = ("dream", "idc", "dm")

CL_PRESETS = tuple(CL_PRESET_SETTINGS)


def derive_seed(seed: int, *parts: object) -> int:
    """A 62-bit seed from ``seed`` and labels, identical in every process (unlike ``hash``).

    Each step, and each use within a step, gets its own stream, so a resumed run draws exactly
    what an uninterrupted one would.
    """
    text = "/".join([str(int(seed)), *(str(p) for p in parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 2


@dataclass(frozen=True)
class MemoryConfig:
    """How a step's new classes become a memory of ``ipc`` stored images per class.

    ``preset`` and ``overrides`` go to :func:`dream_cl.distill.config.resolve_config` for the
    distillation methods; ``distill_model`` also extracts the herding features. The same
    overrides serve every method of a comparison, so a setting the method's framework never
    reads (DM's inner loop, say) is not passed to it: it keeps its preset's value.
    """

    method: str = "dream"
    ipc: int = 20
    preset: str = "paper"
    distill_model: str = "convnet"
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.method not in MEMORY_METHODS:
            raise UserError(
                f"unknown memory method '{self.method}'; use one of {', '.join(MEMORY_METHODS)}"
            )
        if isinstance(self.ipc, bool) or not isinstance(self.ipc, int) or self.ipc < 1:
            raise UserError(f"--ipc must be a positive integer, got {self.ipc!r}")
        if self.preset not in CL_PRESETS:
            raise UserError(f"unknown preset '{self.preset}'; use one of {', '.join(CL_PRESETS)}")

    @property
    def distilled(self) -> bool:
        return self.method in DISTILL_METHODS

    def distill_config(self, dataset: str, image_size: int, seed: int | None = None):
        """The engine configuration for this method (None for the coreset methods)."""
        if not self.distilled:
            return None
        from dream_cl.distill.config import resolve_config

        framework, sampler, init = ENGINE_METHOD[self.method]
        skip = framework_rules(framework).unused | {"framework"}
        overrides = {
            **{k: v for k, v in self.overrides.items() if k not in skip},
            "sampler": sampler,
            "init": init,
            "model": self.distill_model,
            "seed": self.seed if seed is None else seed,
            "device": self.device,
        }
        return resolve_config(
            dataset,
            self.ipc,
            framework=framework,
            preset=self.preset,
            image_size=image_size,
            overrides=overrides,
        )

    def factor(self, dataset: str, image_size: int) -> int:
        """Decoded images per stored image side: f, so each stored image trains as f*f."""
        cfg = self.distill_config(dataset, image_size)
        return 1 if cfg is None else int(cfg.factor)

    def images_needed(self, dataset: str, image_size: int) -> int:
        """Real images a class must have: ipc * f^2 for distillation (its init), else ipc."""
        return self.ipc * self.factor(dataset, image_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    """How the model trains on each step's data; the lr/momentum/wd live in the optimizer.

    ``milestones`` are fractions of the strategy's ``train_epochs`` at which the lr is
    multiplied by ``gamma``. ``dsa_strategy=None`` means
    :func:`dream_cl.protocol.continual.default_cl_dsa` of the dataset;
    ``'none'`` switches DSA off. KD applies only to the ``finetune-kd`` regime.
    """

    milestones: tuple[float, ...] = (0.6, 0.8)
    gamma: float = 0.2
    dsa_strategy: str | None = None
    cutmix_p: float = 0.5
    cutmix_beta: float = 1.0
    kd_temperature: float = 2.0
    kd_beta: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if any(not 0.0 < f < 1.0 for f in self.milestones):
            raise UserError(f"milestones {self.milestones} must be fractions in (0, 1)")
        if not 0.0 <= self.cutmix_p <= 1.0:
            raise UserError(f"cutmix_p={self.cutmix_p} must lie in [0, 1]")
        if self.kd_temperature <= 0:
            raise UserError(f"kd_temperature={self.kd_temperature} must be positive")

    def milestone_epochs(self, epochs: int) -> list[int]:
        """Epochs after which the lr drops: 600 and 800 of 1000, as IDC's continual learning."""
        return [int(epochs * f + 1e-9) for f in self.milestones]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass(frozen=True)
class CLConfig:
    """One continual-learning run (all class orders), as resolved from a preset + flags."""

    scenario: str = "digits-5step"
    memory: str = "dream"
    ipc: int = 20
    regime: str = "finetune-kd"
    model: str = "resnet10"
    model_options: dict[str, Any] = field(default_factory=dict)
    distill_model: str = "convnet"
    preset: str = "paper"
    epochs: int = 1000
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = (0.6, 0.8)
    gamma: float = 0.2
    dsa_strategy: str | None = None
    cutmix_p: float = 0.5
    kd_temperature: float = 2.0
    kd_beta: float = 1.0
    eval_batch_size: int = 500
    distill_overrides: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    class_order: tuple[int, ...] | None = None
    orders: int = 1
    seed: int = 0
    device: str = "auto"

    def validate(self) -> None:
        from dream_cl.models import model_names, model_options
        from dream_cl.settings import refuse_non_finite

        refuse_non_finite(self)
        if self.regime not in REGIMES:
            raise UserError(f"unknown regime '{self.regime}'; use one of {', '.join(REGIMES)}")
        if self.memory not in MEMORY_METHODS:
            raise UserError(
                f"unknown memory method '{self.memory}'; use one of {', '.join(MEMORY_METHODS)}"
            )
        if self.preset not in CL_PRESETS:
            raise UserError(f"unknown preset '{self.preset}'; use one of {', '.join(CL_PRESETS)}")
        for name in (self.model, self.distill_model):
            if name not in model_names():
                raise UserError(f"unknown model '{name}'; use one of {', '.join(model_names())}")
        unknown = sorted(set(self.model_options) - set(model_options(self.model)))
        if unknown:
            raise UserError(f"model '{self.model}' has no option(s) {', '.join(unknown)}")
        for key in ("ipc", "epochs", "batch_size", "eval_batch_size", "orders"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--{key.replace('_', '-')} must be at least 1, got {value!r}")
        if self.class_order is not None and self.orders > 1:
            raise UserError("--orders draws seeded class orders; it cannot go with --class-order")
        if self.lr <= 0:
            raise UserError("--lr must be positive")
        self.train_config(0)  # validates the schedule and augmentation numbers

    def memory_config(self, seed: int) -> MemoryConfig:
        return MemoryConfig(
            method=self.memory,
            ipc=self.ipc,
            preset=self.preset,
            distill_model=self.distill_model,
            overrides=dict(self.distill_overrides),
            seed=seed,
            device=self.device,
        )

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(
            milestones=tuple(self.milestones),
            gamma=self.gamma,
            dsa_strategy=self.dsa_strategy,
            cutmix_p=self.cutmix_p,
            kd_temperature=self.kd_temperature,
            kd_beta=self.kd_beta,
            seed=seed,
        )

    def order_seeds(self) -> list[int]:
        """One seed per class order; each seeds both the order and the run's training."""
        return [self.seed + j for j in range(self.orders)]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        d["class_order"] = None if self.class_order is None else list(self.class_order)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CLConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        if values.get("milestones") is not None:
            values["milestones"] = tuple(values["milestones"])
        if values.get("class_order") is not None:
            values["class_order"] = tuple(values["class_order"])
        return cls(**values)


def resolve_cl_config(
    scenario: str = "digits-5step", preset: str = "paper", **overrides: Any
) -> CLConfig:
    """Preset values for the run, then every override that is not None on top, validated."""
    if preset not in CL_PRESETS:
        raise UserError(f"unknown preset '{preset}'; use one of {', '.join(CL_PRESETS)}")
    base = CL_PRESET_SETTINGS[preset]
    regime = overrides.get("regime") or "finetune-kd"
    memory = overrides.get("memory") or "dream"
    epochs_by_regime = base["epochs_by_regime"]
    values: dict[str, Any] = {
        "scenario": scenario,
        "preset": preset,
        "ipc": base["ipc"],
        "model": base["model"],
        "epochs": epochs_by_regime.get(regime, epochs_by_regime["finetune-kd"]),
        "distill_overrides": {
            **base["distill_overrides"],
            **base["distill_overrides_by_method"].get(memory, {}),
        },
    }
    names = {f.name for f in dataclasses.fields(CLConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"unknown setting(s): {', '.join(unknown)}")
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "distill_overrides":
            values[key] = {**values["distill_overrides"], **value}
        elif key == "model_options":
            values[key] = dict(value)
        elif key in ("milestones", "class_order"):
            values[key] = tuple(value)
        else:
            values[key] = value
    cfg = CLConfig(**values)
    cfg.validate()
    return cfg
