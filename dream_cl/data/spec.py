"""``DatasetSpec``: one registry entry, i.e. how to find, check, download and read a dataset.

A spec is a frozen record of plain functions, so the registry can be an immutable mapping and
every loader stays a testable module-level function. The spec owns what is common to all of
them: option checking, the "is it there?" test and the one-line missing-data error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from dream_cl.data._common import one_line
from dream_cl.data.base import DatasetSplit
from dream_cl.errors import UserError

Options = Mapping[str, Any]
# For one split: groups of alternative paths; a group is satisfied when any of its paths exists.
Required = tuple[tuple[Path, ...], ...]


def _empty_options() -> Mapping[str, Any]:
    return MappingProxyType({})


def _coerce(dataset: str, key: str, value: Any, default: Any) -> Any:
    """Bring an option to its default's type, so CLI strings like "0.25" or "true" work."""
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        kind = type(default).__name__
        raise UserError(
            f"option {key}={value!r} of dataset '{dataset}' is not a valid {kind}"
        ) from None
    return value


@dataclass(frozen=True)
class DatasetSpec:
    """How to find, check, download and read one dataset.

    ``load`` / ``available`` / ``expected_path`` are the public face; the callable fields are
    the per-dataset parts. ``options`` maps each accepted option to its default (and type).
    """

    name: str
    description: str
    how_to_get: str
    locate: Callable[[Path, Options], Path]
    required: Callable[[Path, Options, bool], Required]
    reader: Callable[[Path, bool, Options], DatasetSplit]
    downloader: Callable[[Path, bool], None] | None = None
    pair_reader: Callable[[Path, Options], tuple[DatasetSplit, DatasetSplit]] | None = None
    options: Mapping[str, Any] = field(default_factory=_empty_options)
    folders: bool = False
    """The required paths are folders: a file of that name does not count as found."""
    describe: Callable[[Path, Options], str] | None = None
    """Which copy was found, in words (for ``dream-cl datasets``), when there are several."""
    reads_folder: bool = False
    """Every sub-folder of ``locate``'s folder is read (an image folder's classes), so an
    output folder there would become data; other datasets read only named files."""

    # -- options ---------------------------------------------------------------------------
    def resolve_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``options``; unknown keys and bad types are user errors."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(sorted(self.options)) or "none"
            raise UserError(
                f"dataset '{self.name}' has no option {', '.join(unknown)} (its options: {known})"
            )
        resolved = dict(self.options)
        for key, value in options.items():
            resolved[key] = _coerce(self.name, key, value, self.options[key])
        return resolved

    # -- where / whether -------------------------------------------------------------------
    def expected_path(self, root: str | Path, **options: Any) -> Path:
        """Where the dataset's files are expected for this data root."""
        return self.locate(_as_root(root), self.resolve_options(options))

    def how_to_get_under(self, root: str | Path) -> str:
        """How to obtain the data, with ``<root>`` spelled out as the data root given."""
        return self.how_to_get.replace("<root>", str(_as_root(root)))

    def found_as(self, root: str | Path, **options: Any) -> str:
        """Which of several accepted copies is there ('' when only one kind exists)."""
        if self.describe is None:
            return ""
        return self.describe(_as_root(root), self.resolve_options(options))

    def missing(self, root: str | Path, train: bool | None = None, **options: Any) -> Path | None:
        """First absent required path (of one split, or of both when ``train`` is None)."""
        root = _as_root(root)
        opts = self.resolve_options(options)
        return self._missing(root, opts, train)

    def available(self, root: str | Path, **options: Any) -> bool:
        """Whether both splits can be read without downloading (a cheap existence check)."""
        return self.missing(root, None, **options) is None

    def _missing(self, root: Path, opts: Options, train: bool | None) -> Path | None:
        splits = (True, False) if train is None else (train,)
        for split in splits:
            for group in self.required(root, opts, split):
                if not any(p.is_dir() if self.folders else p.exists() for p in group):
                    return group[0]
        return None

    def _ensure(self, root: Path, opts: Options, train: bool, download: bool) -> None:
        """Raise the one-line missing-data error, or download first when asked to."""
        absent = self._missing(root, opts, train)
        if absent is None:
            return
        if download and self.downloader is not None:
            try:
                self.downloader(root, train)
            except (OSError, RuntimeError, ValueError) as exc:
                raise UserError(
                    f"downloading {self.name} into {root} failed ({one_line(exc)}); "
                    f"place the files at {self.locate(root, opts)} instead"
                ) from None
            absent = self._missing(root, opts, train)
            if absent is None:
                return
        if download and self.downloader is None:
            raise UserError(
                f"{self.name} cannot be downloaded automatically: expected {absent}; "
                f"{self.how_to_get_under(root)}"
            )
        raise UserError(
            f"{self.name} data not found: expected {absent}; {self.how_to_get_under(root)}"
        )

    # -- reading ---------------------------------------------------------------------------
    def load(
        self, root: str | Path, train: bool = True, download: bool = False, **options: Any
    ) -> DatasetSplit:
        """Read one split (downloading first only when ``download`` and the files are absent)."""
        root = _as_root(root)
        opts = self.resolve_options(options)
        self._ensure(root, opts, train, download)
        return self.reader(root, train, opts)

    def load_train_test(
        self, root: str | Path, download: bool = False, **options: Any
    ) -> tuple[DatasetSplit, DatasetSplit]:
        """Both splits; datasets whose statistics come from the train split read it once."""
        root = _as_root(root)
        opts = self.resolve_options(options)
        self._ensure(root, opts, True, download)
        self._ensure(root, opts, False, download)
        if self.pair_reader is not None:
            return self.pair_reader(root, opts)
        return self.reader(root, True, opts), self.reader(root, False, opts)


def _as_root(root: str | Path) -> Path:
    return Path(root).expanduser()
