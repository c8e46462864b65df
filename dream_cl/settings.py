"""Settings from text: ``KEY=VALUE`` pairs typed by a configuration dataclass's fields.

One mechanism for every configuration (distillation, continual learning, evaluation): the
command line's ``--set`` and a saved ``config.json`` both go through it, so every field is
reachable and a bad key or value is one line, whichever configuration it targets.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from dream_cl.errors import UserError

_NONE_WORDS = ("none", "null")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def refuse_non_finite(config: Any, what: str = "--") -> None:
    """One line for the first number of a configuration dataclass that is NaN or infinite
    (a NaN learning rate would otherwise run to the end and store NaN images)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            name = f"--{f.name.replace('_', '-')}" if what == "--" else f"{what} {f.name}"
            raise UserError(f"{name} must be a finite number, got {value!r}")


def field_types(cls: type) -> dict[str, Any]:
    """Each field of the dataclass ``cls`` and its resolved type, in declaration order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _options(hint: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), True
    return hint, False


def _number(text: str, kind: type) -> Any:
    value = kind(text)
    if kind is float and not math.isfinite(value):
        raise ValueError("not finite")
    return value


def parse_value(text: str, hint: Any) -> Any:
    """``text`` as a value of type ``hint``; raises ``ValueError`` when it is not one."""
    kind, optional = _options(hint)
    if optional and text.strip().lower() in _NONE_WORDS:
        return None
    origin = typing.get_origin(kind)
    if kind is bool:
        word = text.strip().lower()
        if word not in _TRUE + _FALSE:
            raise ValueError("not a yes/no value")
        return word in _TRUE
    if kind in (int, float):
        return _number(text.strip(), kind)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_number(p, item) for p in text.replace(" ", "").split(",") if p)
    if origin is dict or kind is dict:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    return text


def _describe(hint: Any) -> str:
    kind, optional = _options(hint)
    origin = typing.get_origin(kind)
    name = {bool: "yes/no", int: "an integer", float: "a finite number", str: "text"}.get(kind)
    if name is None:
        name = "a comma-separated list" if origin is tuple else "a JSON object"
    return name + (" or none" if optional else "")


def parse_settings(cls: type, items: list[str] | None, option: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` strings as typed values for the fields of ``cls`` (dashes in KEY are
    read as underscores); an unknown key or a bad value is a one-line ``UserError``."""
    types_ = field_types(cls)
    values: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in types_:
            raise UserError(f"{option} {item!r}: use KEY=VALUE with KEY one of {', '.join(types_)}")
        try:
            values[key] = parse_value(text, types_[key])
        except (ValueError, json.JSONDecodeError):
            raise UserError(f"{option} {item!r}: {key} takes {_describe(types_[key])}") from None
    return values


def settable_keys(cls: type) -> str:
    """The keys ``--set`` accepts for ``cls``, for a command's help."""
    return ", ".join(field_types(cls))


def changes_from(saved: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """The settings of ``saved`` that differ from ``baseline`` (the preset it was made from).

    A repeated run takes every other setting from the preset, as the original run did:
    besides being what the user changed, this keeps the checkpoint's bytes equal, since
    pickle writes a string twice or refers back to it depending on whether the two places
    hold one object (the preset's) or two equal ones (read from JSON).
    """
    return {k: v for k, v in saved.items() if k not in baseline or baseline[k] != v}


def read_config_file(path: Path, command: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The configuration a run folder's ``config.json`` records for ``command``.

    A folder is read as its ``config.json``. Anything else (another command's record, a
    damaged file) is a one-line error.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(
            f"--config {path}: cannot read a run's config.json there; give a run folder or "
            "its config.json"
        ) from None
    config = saved.get("config") if isinstance(saved, dict) else None
    if not isinstance(config, dict) or saved.get("command") != command:
        raise UserError(
            f"--config {path} does not record a dream-cl {command} run; give the config.json "
            f"of a folder that `dream-cl {command}` wrote"
        )
    missing = [k for k in required if k not in config]
    if missing:
        raise UserError(
            f"--config {path} lacks the setting(s) {', '.join(missing)}; it is damaged, give "
            "another run's config.json"
        )
    return saved
