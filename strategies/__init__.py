"""Continual learning with distilled memories, on Avalanche (``dream_cl.strategies``).

- :class:`DistilledBuffer`: the storage policy (an Avalanche ``ExemplarsBuffer``) that turns
  each experience's new classes into ``ipc`` stored images per class with ``dream``, ``idc``,
  ``dm``, ``herding`` or ``random``;
- :class:`DistilledReplayPlugin`: trains on it under a regime (``finetune-kd``, ``scratch``,
  ``replay-mix``); :class:`DistilledReplay` is the ready strategy;
- :func:`run_cl` / :func:`compare`: the experiments behind ``dream-cl run`` / ``compare``
  (:mod:`~dream_cl.strategies.experiment`); their numbers in
  :mod:`~dream_cl.strategies.metrics`, their printed lines, table and plots in
  :mod:`~dream_cl.strategies.report` (:func:`summary_lines`, :func:`comparison_lines`).

Stock Avalanche works too: ``Naive(..., plugins=[ReplayPlugin(mem_size=buffer.max_size,
storage_policy=buffer)])`` replays the distilled memory with Avalanche's own replay.
"""

from dream_cl.protocol.continual import default_cl_dsa
from dream_cl.strategies.config import (
    CL_PRESETS,
    MEMORY_METHODS,
    REGIMES,
    CLConfig,
    MemoryConfig,
    TrainConfig,
    derive_seed,
    resolve_cl_config,
)
from dream_cl.strategies.experiment import RunPlan, compare, execute_run, prepare_run, run_cl
from dream_cl.strategies.memory import DistilledBuffer, StepMemory, build_class_memory
from dream_cl.strategies.metrics import summarize
from dream_cl.strategies.plugins import (
    DistilledReplayPlugin,
    MemoryBatches,
    grow_classifier,
    kd_loss,
)
from dream_cl.strategies.report import comparison_lines, summary_lines
from dream_cl.strategies.strategy import DistilledReplay, close_loggers, make_evaluator

__all__ = [
    "CL_PRESETS",
    "MEMORY_METHODS",
    "REGIMES",
    "CLConfig",
    "DistilledBuffer",
    "DistilledReplay",
    "DistilledReplayPlugin",
    "MemoryBatches",
    "MemoryConfig",
    "RunPlan",
    "StepMemory",
    "TrainConfig",
    "build_class_memory",
    "close_loggers",
    "compare",
    "comparison_lines",
    "default_cl_dsa",
    "derive_seed",
    "execute_run",
    "grow_classifier",
    "kd_loss",
    "make_evaluator",
    "prepare_run",
    "resolve_cl_config",
    "run_cl",
    "summarize",
    "summary_lines",
]
