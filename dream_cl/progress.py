"""Progress reporting for long loops, decoupled from the terminal.

Library code takes an optional :class:`Progress`; the CLI passes a rich bar, tests pass
nothing. A reporter sees ``start(task, total)``, ``advance(task, n, **metrics)`` and
``finish(task)``, so loss and rate show beside the bar.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    def start(self, task: str, total: int) -> None: ...

    def advance(self, task: str, n: int = 1, **metrics: float) -> None: ...

    def finish(self, task: str) -> None: ...


class NullProgress:
    """Reports nothing (the default for library calls)."""

    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, task: str, n: int = 1, **metrics: float) -> None:
        pass

    def finish(self, task: str) -> None:
        pass


class RichProgress:
    """A rich progress display: one bar per task, with metrics, rate and ETA."""

    def __init__(self, transient: bool = False) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as _RichProgress

        self._bar = _RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=transient,
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, task: str, total: int) -> None:
        if task in self._tasks:
            self._bar.reset(self._tasks[task], total=total, metrics="")
        else:
            self._tasks[task] = self._bar.add_task(task, total=total, metrics="")

    def advance(self, task: str, n: int = 1, **metrics: float) -> None:
        if task not in self._tasks:
            return
        text = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        if text:
            self._bar.update(self._tasks[task], advance=n, metrics=text)
        else:
            self._bar.update(self._tasks[task], advance=n)

    def finish(self, task: str) -> None:
        if task in self._tasks:
            self._bar.remove_task(self._tasks.pop(task))


@contextmanager
def rich_progress(enabled: bool = True):
    """Yield a RichProgress when ``enabled``, else a NullProgress."""
    if not enabled:
        yield NullProgress()
        return
    with RichProgress() as p:
        yield p
