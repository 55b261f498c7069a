"""Frozen dataclasses built from TOML tables, every value checked against its type hint.

One loader for every configuration file of the project (the training run, the onboard
runtime): unknown keys and wrongly typed values are errors that name the key, and a
component's own validation (``ValueError`` from ``__post_init__``) is reported with the
table it came from::

    config = from_table(LinkConfig, {"port": "/dev/zima-mcu", "baud": 115200}, "link.")

Supported hints: ``bool``, ``int``, ``float`` (an integer is accepted), ``str``, ``Path``
(from a string), ``tuple[X, ...]`` (from a list), ``dict[str, X]``, nested dataclasses
(from a table), and unions of those with ``None`` or with each other (``int | str``: the
first member the value fits; ``X | None``: an absent key keeps the default, which is the
only way to say None in TOML).
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["ConfigError", "from_table", "require_positive"]

_C = TypeVar("_C")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key."""


def require_positive(config: object, names: Iterable[str],
                     more: Mapping[str, float] | None = None) -> None:
    """``ValueError`` naming the first of ``config``'s fields ``names`` (then of ``more``,
    values by name) that is not a finite positive number: a ``__post_init__`` check."""
    values = {name: getattr(config, name) for name in names} | dict(more or {})
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{type(config).__name__}.{name}={value} must be a positive number")


def from_table(cls: type[_C], table: dict[str, Any], where: str = "") -> _C:
    """``cls`` (a dataclass) built from a TOML table, every value type-checked.

    ``where`` prefixes key names in messages (``"link."`` gives ``link.baud``).
    """
    if not is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"unknown key '{where}{unknown[0]}'; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for name, f in known.items():
        key = f"{where}{name}"
        if name not in table:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ConfigError(f"missing key {key!r}")
            continue
        values[name] = convert(table[name], hints[name], key)
    try:
        return cls(**values)
    except ConfigError:
        raise
    except ValueError as exc:  # a component's own validation
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {exc}") from exc


def convert(value: Any, hint: Any, key: str) -> Any:  # noqa: PLR0911, PLR0912 (one case a type)
    """``value`` checked against the type ``hint`` (TOML lists become tuples)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return from_table(hint, value, f"{key}.")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a table, got {value!r}")
        return {k: convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin is types.UnionType or origin is typing.Union:
        members = [a for a in args if a is not type(None)]
        errors = []
        for member in members:
            try:
                return convert(value, member, key)
            except ConfigError as exc:
                errors.append(str(exc))
        names = " or ".join(getattr(m, "__name__", str(m)) for m in members)
        raise ConfigError(f"{key} must be {names}, got {value!r}")
    if hint is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a path (a non-empty string), got {value!r}")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{key} must be of type {hint.__name__}, got {value!r}")
    return value
