"""Experiment loggers: which ones a command writes to (:class:`LogOptions`), and the
per-iteration log of a distillation (:class:`IterationLog`).

``run`` and ``compare`` log through Avalanche's loggers (text, CSV, and on request
TensorBoard and Weights & Biases) under ``OUT/order{s}/logs/``; ``distill`` writes
``OUT/iterations.csv`` always and, on request, TensorBoard events under ``OUT/tensorboard/``
and a W&B run. W&B follows its own environment (``WANDB_MODE=offline`` logs to disk only,
``wandb sync`` uploads later); nothing here needs the network unless W&B is asked to sync.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ITERATIONS_FILE", "IterationLog", "LogOptions"]

ITERATIONS_FILE = "iterations.csv"


@dataclass(frozen=True)
class LogOptions:
    """Loggers beside the always-on text and CSV ones (rank 0 only)."""

    interactive: bool = False
    """Avalanche's InteractiveLogger instead of progress bars (``run``)."""
    tensorboard: bool = False
    wandb: str | None = None
    """A W&B project name: log there too (``pip install dream-cl[wandb]``)."""


@dataclass
class IterationLog:
    """One row per outer iteration of a distillation: the loss, the evaluation if one ran,
    and the seconds each phase took in that iteration. A resumed run first drops the rows
    past its checkpoint, so the file always matches the run's state."""

    folder: Path
    options: LogOptions = field(default_factory=LogOptions)
    config: dict[str, Any] = field(default_factory=dict)
    name: str = "distill"
    _columns: list[str] | None = None
    _tensorboard: Any = None
    _wandb: Any = None

    @property
    def path(self) -> Path:
        return self.folder / ITERATIONS_FILE

    def start(self, iteration: int) -> None:
        """Keep the rows up to ``iteration`` (the checkpoint's) and open the loggers."""
        from dream_cl.utils import atomic_write

        rows = self._read() if iteration else []
        kept = [r for r in rows if int(r["iteration"]) <= iteration]
        self._columns = list(kept[0]) if kept else None
        text = io.StringIO()
        if kept:
            writer = csv.DictWriter(text, fieldnames=self._columns)
            writer.writeheader()
            writer.writerows(kept)
        atomic_write(self.path, lambda p: p.write_text(text.getvalue()))
        if self.options.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(  # events past the checkpoint are dropped
                log_dir=str(self.folder / "tensorboard"),
                purge_step=iteration + 1 if iteration else None,
            )
        if self.options.wandb:
            import wandb

            self._wandb = wandb.init(
                project=self.options.wandb, name=self.name, config=self.config,
                dir=str(self.folder), reinit=True,
            )  # fmt: skip

    def _read(self) -> list[dict[str, str]]:
        try:
            with self.path.open(newline="") as f:
                return [r for r in csv.DictReader(f) if (r.get("iteration") or "").isdigit()]
        except OSError:
            return []

    def log(self, iteration: int, values: dict[str, float | None]) -> None:
        """Append one iteration's row (and send it to TensorBoard and W&B)."""
        row = {"iteration": iteration, **values}
        if self._columns is None:
            self._columns = list(row)
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writeheader()
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._columns, extrasaction="ignore").writerow(row)
        present = {k: v for k, v in values.items() if v is not None}
        if self._tensorboard is not None:
            for key, value in present.items():
                self._tensorboard.add_scalar(key, value, iteration)
        if self._wandb is not None:
            self._wandb.log(present, step=iteration)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
