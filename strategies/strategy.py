"""A ready Avalanche strategy, and the evaluation plugin dream-cl runs with.

``DistilledReplay`` is Avalanche's ``SupervisedTemplate`` with a
:class:`~dream_cl.strategies.plugins.DistilledReplayPlugin` in front of any other plugins,
the way Avalanche's own ``Replay`` wraps ``ReplayPlugin``. Everything it does can equally be
had from ``Naive(..., plugins=[DistilledReplayPlugin(buffer, regime=...)])``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dream_cl.distributed import DistEnv
from dream_cl.progress import Progress
from dream_cl.strategies.config import TrainConfig
from dream_cl.strategies.plugins import DistilledReplayPlugin, ModelFactory

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from avalanche.logging import BaseLogger
    from avalanche.training.plugins.evaluation import default_evaluator
    from avalanche.training.templates import SupervisedTemplate

__all__ = ["DistilledReplay", "close_loggers", "make_evaluator"]


class DistilledReplay(SupervisedTemplate):
    """Train on a distilled (or coreset) memory under ``regime``; Avalanche keyword API."""

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        storage_policy: Any,
        regime: str = "finetune-kd",
        train_config: TrainConfig = TrainConfig(),
        model_factory: ModelFactory | None = None,
        criterion: Any = None,
        train_mb_size: int = 64,
        train_epochs: int = 1000,
        eval_mb_size: int = 500,
        device: str | torch.device = "cpu",
        plugins: Sequence[Any] | None = None,
        evaluator: Any = default_evaluator,
        eval_every: int = -1,
        progress: Progress | None = None,
        **kwargs: Any,
    ) -> None:
        self.distilled_plugin = DistilledReplayPlugin(
            storage_policy,
            regime=regime,
            config=train_config,
            model_factory=model_factory,
            progress=progress,
        )
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss() if criterion is None else criterion,
            train_mb_size=train_mb_size,
            train_epochs=train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=[self.distilled_plugin, *(plugins or [])],
            evaluator=evaluator,
            eval_every=eval_every,
            **kwargs,
        )

    @property
    def storage_policy(self) -> Any:
        return self.distilled_plugin.storage_policy

    def make_eval_dataloader(
        self,
        num_workers: int = 0,
        shuffle: bool = False,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        **kwargs: Any,
    ) -> None:
        """Avalanche's eval loader, but never split across ranks: under torchrun rank 0
        evaluates the whole test stream once (Avalanche's default would give each rank a
        ``DistributedSampler`` share, and rank 0 would score half the test set)."""
        if not DistEnv.current().distributed:
            super().make_eval_dataloader(
                num_workers, shuffle, pin_memory, persistent_workers, **kwargs
            )
            return
        from avalanche.benchmarks.utils.data_loader import (
            SingleDatasetDataLoader,
            collate_from_data_or_kwargs,
        )

        args = self._obtain_common_dataloader_parameters(
            batch_size=self.eval_mb_size,
            num_workers=num_workers,
            shuffle=shuffle,
            pin_memory=pin_memory,
            persistent_workers=persistent_workers,
        )
        collate_from_data_or_kwargs(self.adapted_dataset, args)
        self.dataloader = SingleDatasetDataLoader(
            self.adapted_dataset, distributed_sampling=False, **args
        )


def make_evaluator(
    log_dir: str | Path | None = None,
    *,
    interactive: bool = False,
    text: bool = True,
    csv: bool = True,
    tensorboard: bool = False,
    wandb: str | None = None,
    run_name: str = "dream-cl",
    config: dict[str, Any] | None = None,
) -> tuple[Any, list[Any]]:
    """Avalanche's ``EvaluationPlugin`` with accuracy (per experience and stream), forgetting
    and epoch loss, and its loggers: interactive (stdout), text (``log.txt``), CSV and,
    optionally, TensorBoard and Weights & Biases (project ``wandb``), all under ``log_dir``.
    Returns (plugin, loggers); close the loggers' files with :func:`close_loggers`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from avalanche.evaluation.metrics import (
            accuracy_metrics,
            forgetting_metrics,
            loss_metrics,
        )
        from avalanche.logging import CSVLogger, InteractiveLogger, TextLogger
        from avalanche.training.plugins import EvaluationPlugin

    loggers: list[Any] = []
    if interactive:
        loggers.append(InteractiveLogger())
    if log_dir is not None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        if text:
            loggers.append(TextLogger(open(log_dir / "log.txt", "a")))  # noqa: SIM115
        if csv:
            loggers.append(CSVLogger(log_folder=str(log_dir)))
        if tensorboard:
            from avalanche.logging import TensorboardLogger

            loggers.append(TensorboardLogger(tb_log_dir=str(log_dir / "tensorboard")))
        if wandb:
            loggers.append(WandBScalars(wandb, run_name, config or {}, log_dir))
    plugin = EvaluationPlugin(
        accuracy_metrics(experience=True, stream=True),
        forgetting_metrics(experience=True, stream=True),
        loss_metrics(epoch=True),
        loggers=loggers,
    )
    return plugin, loggers


class WandBScalars(BaseLogger):
    """Avalanche's metric values (the scalars) to a Weights & Biases run under ``folder``.
    Avalanche 0.6's own ``WandBLogger`` calls wandb APIs that current wandb releases no
    longer have (``wandb.util.generate_id``, ``wandb.viz``)."""

    def __init__(self, project: str, run_name: str, config: dict[str, Any], folder: Path):
        super().__init__()
        import wandb

        self.run = wandb.init(
            project=project, name=run_name, config=config, dir=str(folder), reinit=True
        )

    def log_single_metric(self, name: str, value: Any, x_plot: int) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.run.log({name: float(value), "x": x_plot})

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def close_loggers(loggers: list[Any]) -> None:
    """Flush and close the files the loggers hold (text, CSV, TensorBoard)."""
    for logger in loggers:
        close = getattr(logger, "close", None)
        if callable(close):
            close()
        writer = getattr(logger, "writer", None)
        if writer is not None:
            writer.close()
        handle = getattr(logger, "file", None)
        if handle is not None and handle not in (sys.stdout, sys.stderr) and not handle.closed:
            handle.close()
