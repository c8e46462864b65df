"""Progress reporting for long loops, decoupled from the terminal.

Library code takes an optional :class:`Progress`; the CLI passes a rich bar on a terminal,
plain lines at an interval otherwise (CI logs, ``nohup``, schedulers), and tests pass
nothing. A reporter sees ``start(task, total)``, ``advance(task, n, **metrics)`` and
``finish(task)``, so loss and rate show beside the bar; :func:`notify` passes a one-line
note (a resumed run, a long-run estimate) to reporters that take notes.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TextIO

from dream_cl.errors import Interrupted


class Progress(Protocol):
    def start(self, task: str, total: int) -> None: ...

    def advance(self, task: str, n: int = 1, **metrics: float) -> None: ...

    def finish(self, task: str) -> None: ...


def notify(progress: Progress | None, text: str) -> None:
    """Give ``text`` to the reporter if it takes notes (``note(text)``); else drop it."""
    note = getattr(progress, "note", None)
    if note is not None:
        note(text)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


@dataclass
class _Pace:
    """One task's counts and the clock, measured from this process's first step."""

    total: int
    started: float
    done: int = 0
    ref_time: float = 0.0
    ref_done: int = 0
    last_line: float = 0.0
    advances: int = 0

    def advance(self, n: int, now: float) -> None:
        if self.advances == 0 and n > 1 and now - self.started < 0.5:
            self.ref_time, self.ref_done = now, self.done + n  # a resumed run's jump
        self.done += n
        self.advances += 1

    def remaining(self, now: float) -> float | None:
        steps = self.done - self.ref_done
        if steps <= 0:
            return None
        return (now - self.ref_time) / steps * max(0, self.total - self.done)


@dataclass
class LongRunHint:
    """Say once, from a task's first steps, that it will take long, and what to do instead."""

    after_seconds: float = 3600.0
    hint: str = ""
    given: bool = False

    def check(self, task: str, pace: _Pace, now: float, emit) -> None:  # noqa: ANN001
        if self.given or pace.advances < 1 or task.endswith("distill"):
            return  # the distillation engine estimates itself, from its first inner steps
        left = pace.remaining(now)
        if left is None or left + (now - pace.started) < self.after_seconds:
            return
        self.given = True
        steps = pace.done - pace.ref_done
        emit(
            f"note: {task} will take about {_duration(left + now - pace.started)} at this "
            f"rate (from its first {steps} of {pace.total} steps){self.hint}"
        )


@dataclass
class _Tracker:
    """What both reporters keep: each task's pace, the last task advanced (where a run
    stopped) and the long-run hint."""

    long_run: LongRunHint | None = None
    tasks: dict[str, _Pace] = field(default_factory=dict)
    last: str = ""

    def start(self, task: str, total: int) -> _Pace:
        now = time.monotonic()
        self.tasks[task] = pace = _Pace(total, now, ref_time=now, last_line=now)
        self.last = task
        return pace

    def advance(self, task: str, n: int, emit) -> _Pace | None:  # noqa: ANN001
        pace = self.tasks.get(task)
        if pace is None:
            return None
        now = time.monotonic()
        pace.advance(n, now)
        self.last = task
        if self.long_run is not None:
            self.long_run.check(task, pace, now, emit)
        return pace

    def finish(self, task: str) -> _Pace | None:
        return self.tasks.pop(task, None)

    def where(self) -> str:
        pace = self.tasks.get(self.last)
        return f"{self.last} {pace.done}/{pace.total}" if pace is not None else ""


@dataclass
class PlainProgress:
    """Plain progress lines, at most one per task every ``interval`` seconds, and notes.

    For output that is not a terminal: ``distill: 40/1200 (3%)  loss 0.0213  elapsed
    2m10s  eta 1h05m``. ``lines=False`` prints notes only (``--quiet``).
    """

    interval: float = 30.0
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    lines: bool = True
    long_run: LongRunHint | None = None

    def __post_init__(self) -> None:
        self._tracker = _Tracker(self.long_run)

    def note(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def where(self) -> str:
        return self._tracker.where()

    def start(self, task: str, total: int) -> None:
        self._tracker.start(task, total)

    def advance(self, task: str, n: int = 1, **metrics: float) -> None:
        pace = self._tracker.advance(task, n, self.note)
        if pace is None or not self.lines:
            return
        now = time.monotonic()
        if now - pace.last_line >= self.interval:
            pace.last_line = now
            self.note(self._line(task, pace, now, metrics))

    def finish(self, task: str) -> None:
        pace = self._tracker.finish(task)
        if pace is not None and self.lines and pace.last_line > pace.started:
            now = time.monotonic()
            self.note(f"{task}: done {pace.done}/{pace.total} in {_duration(now - pace.started)}")

    @staticmethod
    def _line(task: str, pace: _Pace, now: float, metrics: dict[str, float]) -> str:
        share = f" ({100 * pace.done / pace.total:.0f}%)" if pace.total else ""
        parts = [f"{task}: {pace.done}/{pace.total}{share}"]
        parts += [f"{k} {v:.4g}" for k, v in metrics.items()]
        parts.append(f"elapsed {_duration(now - pace.started)}")
        left = pace.remaining(now)
        if left is not None:
            parts.append(f"eta {_duration(left)}")
        return "  ".join(parts)


@dataclass
class Labelled:
    """Prefix every task name, e.g. ``step 2 distill`` for a continual-learning step."""

    inner: Progress
    prefix: str

    def note(self, text: str) -> None:
        notify(self.inner, text)

    def start(self, task: str, total: int) -> None:
        self.inner.start(f"{self.prefix} {task}", total)

    def advance(self, task: str, n: int = 1, **metrics: float) -> None:
        self.inner.advance(f"{self.prefix} {task}", n, **metrics)

    def finish(self, task: str) -> None:
        self.inner.finish(f"{self.prefix} {task}")


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

    def __init__(self, transient: bool = False, long_run: LongRunHint | None = None) -> None:
        from rich.console import Console
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
            console=Console(stderr=True),
        )
        self._tasks: dict[str, int] = {}
        self._tracker = _Tracker(long_run)

    def where(self) -> str:
        return self._tracker.where()

    def note(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)

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
        self._tracker.start(task, total)

    def advance(self, task: str, n: int = 1, **metrics: float) -> None:
        if task not in self._tasks:
            return
        self._tracker.advance(task, n, self.note)
        text = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        if text:
            self._bar.update(self._tasks[task], advance=n, metrics=text)
        else:
            self._bar.update(self._tasks[task], advance=n)

    def finish(self, task: str) -> None:
        if task in self._tasks:
            self._bar.remove_task(self._tasks.pop(task))
            self._tracker.finish(task)


PROGRESS_SECONDS_ENV = "DREAM_CL_PROGRESS_SECONDS"
"""Seconds between plain progress lines when output is not a terminal (default 30)."""


@contextmanager
def cli_progress(
    enabled: bool = True, long_run: LongRunHint | None = None, stream: TextIO | None = None
):
    """The command line's reporter: a bar on a terminal, plain lines otherwise; with
    ``enabled`` False (``--quiet``) notes only. Progress goes to stderr."""
    stream = stream or sys.stderr
    if enabled and stream.isatty():
        with RichProgress(long_run=long_run) as p, _interruptible(p):
            yield p
        return
    try:
        interval = float(os.environ.get(PROGRESS_SECONDS_ENV, "30"))
    except ValueError:
        interval = 30.0
    plain = PlainProgress(interval=interval, stream=stream, lines=enabled, long_run=long_run)
    with _interruptible(plain):
        yield plain


@contextmanager
def _interruptible(progress: PlainProgress | RichProgress):
    """Turn Ctrl-C (and SIGTERM's :class:`Interrupted`) into ``Interrupted`` saying where."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("SIGINT", progress.where()) from None
    except Interrupted as err:
        raise Interrupted(err.signal_name, err.where or progress.where()) from None
