"""The one "finished cell" mechanism every resumable benchmark uses.

A benchmark is a grid of cells (a run, a (dataset, method, network, seed) evaluation, a
(shape, K) timing); each is kept as soon as it finishes, so the same command run again skips
what is done and a stop loses at most the cells in flight. :class:`Cells` keeps them in one
JSON file (under ``where``, beside whatever else the benchmark writes there) or, with
``per_cell_files``, one JSON file per cell. Every write is atomic
(:func:`dream_cl.utils.atomic_write_json`): a stop mid-write leaves the previous file.

A stored cell counts as finished only while it was made under the settings asked for now:

- ``settings`` and ``shaping`` (a file store): the benchmark-wide settings, compared on the
  ``shaping`` keys with the settings recorded in the file; one differs, every cell is stale;
- ``expect``: what each cell must carry (a dict, or ``key -> dict``): its own settings, the
  digest of the set it trained on. Fields named in ``optional`` may be missing from cells
  recorded before they were kept (those are judged by the rest).

``put`` stores a cell with its ``expect`` fields and, when a ``device`` is given, the
provenance of the machine that recorded it (:func:`benchmarks.common.provenance`; fields the
cell carries itself win).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

Cell = dict[str, Any]


class Cells:
    """A benchmark's finished cells by key: ``done``, ``get``, ``put`` (see the module)."""

    def __init__(
        self,
        path: Path,
        *,
        settings: Mapping[str, Any] | None = None,
        shaping: Sequence[str] = (),
        where: Sequence[str] = ("cells",),
        expect: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None,
        optional: Collection[str] = (),
        write: Callable[[dict[str, Cell]], Any] | None = None,
        device: Any = None,
        per_cell_files: bool = False,
    ) -> None:
        """Cells kept under ``where`` in the JSON file ``path``, which ``write(cells)`` writes
        (default: ``{"settings": settings, <where>: cells}``, atomically); or, with
        ``per_cell_files``, one file per cell, ``path/<key>.json`` (a key is a file name)."""
        self.path, self.settings, self.where = Path(path), dict(settings or {}), tuple(where)
        self._expect, self.optional = expect, frozenset(optional)
        self._write, self.device, self._folder = write, device, per_cell_files
        self._stored: dict[str, Cell] = {} if per_cell_files else self._read_file(shaping)

    def _read_file(self, shaping: Sequence[str]) -> dict[str, Cell]:
        if not self.path.is_file():
            return {}
        record = json.loads(self.path.read_text())
        recorded = record.get("settings") or {}
        if any(recorded.get(k) != self.settings.get(k) for k in shaping):
            return {}  # made under other settings: every cell runs again
        for name in self.where:
            record = record.get(name) or {}
        return dict(record)

    def expected(self, key: str) -> dict[str, Any]:
        """The fields ``key``'s cell must carry."""
        e = self._expect
        return dict((e(key) if callable(e) else e) or {})

    def stored(self, key: str) -> Cell | None:
        """The cell recorded for ``key``, current or not."""
        if not self._folder:
            return self._stored.get(key)
        path = self.path / f"{key}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def current(self, key: str, cell: Mapping[str, Any]) -> bool:
        """Whether ``cell`` was made under today's settings for ``key``."""
        return all(
            cell[k] == v if k in cell else k in self.optional for k, v in self.expected(key).items()
        )

    def get(self, key: str) -> Cell | None:
        """``key``'s finished cell, or None (never run, or stale)."""
        cell = self.stored(key)
        return cell if cell is not None and self.current(key, cell) else None

    def done(self, key: str) -> bool:
        return self.get(key) is not None

    def stale(self, key: str) -> bool:
        """Recorded, but under other settings than today's: it runs again."""
        cell = self.stored(key)
        return cell is not None and not self.current(key, cell)

    def recorded(self) -> list[str]:
        """Every recorded key, current or not."""
        if self._folder:
            return sorted(p.stem for p in self.path.glob("*.json"))
        return list(self._stored)

    def finished(self, keys: Iterable[str] | None = None) -> dict[str, Cell]:
        """Every finished cell (of ``keys``, in their order; a file store: all it holds)."""
        keys = self.recorded() if keys is None else keys
        return {k: c for k in keys if (c := self.get(k)) is not None}

    def drop(self, key: str) -> None:
        """Forget ``key``'s cell (a file store: from the next write on)."""
        if self._folder:
            (self.path / f"{key}.json").unlink(missing_ok=True)
        else:
            self._stored.pop(key, None)

    def put(self, key: str, value: Mapping[str, Any]) -> Cell:
        """Record ``key``'s finished cell and write it at once; returns what was stored."""
        from dream_cl.utils import atomic_write_json

        cell: Cell = {}
        if self.device is not None:
            from benchmarks.common import provenance

            cell |= provenance(self.device)
        cell |= {**value, **self.expected(key)}
        if self._folder:
            atomic_write_json(cell, self.path / f"{key}.json")
            return cell
        self._stored[key] = cell
        if self._write is not None:
            self._write(self.finished())
        else:
            record: dict[str, Any] = self.finished()
            for name in reversed(self.where):
                record = {name: record}
            atomic_write_json({"settings": self.settings, **record}, self.path)
        return cell
