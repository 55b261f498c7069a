"""Parsers of outside input: any bytes in, a value or one refusal with its reason out.

Everything that reaches the robot from outside (MQTT commands, the web console's
WebSocket messages, configuration files) is hostile until parsed here. Each parser is
pure and bounded: the size is checked first, then the nesting depth by a linear scan
*before* the standard library parses anything, so ``json.loads`` and ``tomllib`` never
recurse deeper than ``max_depth`` (3 kB of ``[`` makes a bare ``json.loads`` raise
``RecursionError``, which is not a ``ValueError``). One exception, :class:`InputError`
(a ``ValueError``), is all these functions raise::

    value = parse_json_bounded(payload, max_bytes=4096, max_depth=4)   # object
    table = parse_toml_bounded(raw, max_bytes=256 * 1024, max_depth=8)  # dict

Refused besides malformed text: bytes that are not UTF-8, JSON's non-standard constants
(``NaN``, ``Infinity``) and numbers that overflow to them (``1e999``), and duplicate keys
in a JSON object (which ``json.loads`` would silently resolve to the last one).
:func:`printable_id` is the bound on identifiers echoed back to the sender.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from typing import Any, Final

__all__ = ["MAX_ID_CHARS", "InputError", "parse_json_bounded", "parse_toml_bounded",
           "printable_id"]

MAX_ID_CHARS: Final = 64  # request ids and the like: echoed back, so kept short


class InputError(ValueError):
    """Outside input refused: too big, too deeply nested, not UTF-8, or not well-formed."""


# One token per match, and every pattern always matches once it starts (an unterminated
# string runs to the end), so the scan is linear even on hostile input.
_JSON_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\[\s\S]?)*"?|[\[{]|[\]}]')
_TOML_TOKENS: Final = re.compile(
    rb'"""(?:[^\\]|\\[\s\S]?)*?(?:"""(?:"{0,2})|\Z)'  # multi-line basic string
    rb"|'''[\s\S]*?(?:'''(?:'{0,2})|\Z)"  # multi-line literal string
    rb'|"(?:[^"\\\n]|\\.?)*"?'  # basic string (one line)
    rb"|'[^'\n]*'?"  # literal string
    rb"|#[^\n]*"  # comment
    rb"|[\[{]|[\]}]")
_OPEN: Final = frozenset(b"[{")
_CLOSE: Final = frozenset(b"]}")


def _check_size(raw: bytes, max_bytes: int, what: str) -> None:
    if not isinstance(raw, bytes | bytearray):
        raise InputError(f"{what} must be bytes, got {type(raw).__name__}")
    if len(raw) > max_bytes:
        raise InputError(f"{what} of {len(raw)} bytes is over the limit of {max_bytes}")


def _check_depth(raw: bytes, tokens: re.Pattern[bytes], max_depth: int, what: str) -> None:
    """Refuse brackets nested deeper than ``max_depth`` outside strings and comments."""
    depth = 0
    for match in tokens.finditer(raw):
        first = match.group()[0]
        if first in _OPEN:
            depth += 1
            if depth > max_depth:
                raise InputError(f"{what} is nested deeper than {max_depth} levels")
        elif first in _CLOSE:
            depth = max(0, depth - 1)  # unbalanced: the parser refuses it anyway


def _text(raw: bytes, what: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} is not UTF-8 (byte {exc.start})") from None


def _no_constant(name: str) -> object:
    raise InputError(f"JSON constant {name} is not a number this robot takes")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InputError(f"JSON number {text[:32]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise InputError(f"JSON object has the key {key[:MAX_ID_CHARS]!r} twice")
        body[key] = value
    return body


def parse_json_bounded(raw: bytes, *, max_bytes: int, max_depth: int,
                       what: str = "JSON") -> object:
    """The JSON value in ``raw``: at most ``max_bytes`` bytes of UTF-8 and ``max_depth``
    levels of arrays and objects; ``InputError`` (saying why) for anything else."""
    _check_size(raw, max_bytes, what)
    _check_depth(bytes(raw), _JSON_TOKENS, max_depth, what)
    text = _text(raw, what)
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                          object_pairs_hook=_unique_keys)
    except InputError:
        raise
    except ValueError as exc:  # JSONDecodeError, and ints beyond Python's digit limit
        raise InputError(f"{what} is not JSON: {exc}") from None


def parse_toml_bounded(raw: bytes, *, max_bytes: int, max_depth: int,
                       what: str = "TOML") -> dict[str, Any]:
    """The TOML document in ``raw``: at most ``max_bytes`` bytes of UTF-8, and no value
    inside more than ``max_depth`` tables and arrays (``[a.b]`` and ``a.b.c = 1`` count
    as two); ``InputError`` (saying why) for anything else."""
    _check_size(raw, max_bytes, what)
    _check_depth(bytes(raw), _TOML_TOKENS, max_depth, what)
    text = _text(raw, what)
    try:
        table = tomllib.loads(text)
    except ValueError as exc:  # TOMLDecodeError, and ints beyond Python's digit limit
        raise InputError(f"{what} is not valid TOML: {exc}") from None
    # Tables ([a.b], dotted keys a.b.c = 1) nest without brackets: measure the result too.
    # Depth counts the tables and arrays around a value (the document itself not counted),
    # as the scan above counts brackets, which it never exceeds.
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(table, 0)]
    while stack:
        container, depth = stack.pop()
        for value in container.values() if isinstance(container, dict) else container:
            if isinstance(value, dict | list):
                if depth + 1 > max_depth:
                    raise InputError(f"{what} is nested deeper than {max_depth} levels")
                stack.append((value, depth + 1))
    return table


def printable_id(value: object, max_chars: int = MAX_ID_CHARS) -> str | None:
    """``value`` if it is a string of 1..``max_chars`` printable characters, else None."""
    if isinstance(value, str) and 0 < len(value) <= max_chars and value.isprintable():
        return value
    return None
