"""The golden vectors file format (PROTOCOL.md section 8): records, rendering, parsing.

``vectors.py`` decides *which* vectors exist; this module only says how one is
written as a line and read back, so that pytest reads the file exactly as the C++
tests do.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from decimal import Decimal

from zima.protocol.enums import RejectReason
from zima.protocol.fields import F32_T, TEXT48_T, FieldSpec, to_f32
from zima.protocol.framing import Event, Frame
from zima.protocol.messages import MESSAGE_TYPES, Message

__all__ = [
    "FrameVector",
    "GoldenFile",
    "RejectVector",
    "StreamVector",
    "format_f32",
    "format_outcomes",
    "parse_golden",
    "render_line",
]

_BY_NAME = {cls.NAME: cls for cls in MESSAGE_TYPES}


@dataclass(frozen=True, slots=True)
class _Case:
    """What every vector line holds after its kind: the case's name and its wire bytes."""

    name: str
    wire: bytes


@dataclass(frozen=True, slots=True)
class FrameVector(_Case):
    """Decoding ``wire`` gives ``message`` with ``seq``, and encoding gives ``wire``."""

    seq: int
    message: Message


@dataclass(frozen=True, slots=True)
class RejectVector(_Case):
    """Decoding ``wire`` gives no message and exactly one reject with ``reason``."""

    reason: RejectReason


@dataclass(frozen=True, slots=True)
class StreamVector(_Case):
    """Feeding ``wire`` to a fresh decoder gives ``outcomes`` (``HELLO@3``, ``!BAD_CRC``)."""

    outcomes: tuple[str, ...]


Vector = FrameVector | RejectVector | StreamVector


@dataclass(frozen=True, slots=True)
class GoldenFile:
    """The parsed file: header values and the vectors in file order."""

    protocol_version: int
    schema_hash: int
    max_payload: int
    vectors: tuple[Vector, ...]


def format_f32(value: float) -> str:
    """The shortest decimal text that reads back (``strtof``) as the same 32-bit float.

    The fewest significant digits that round-trip, written positionally (``0.1``,
    ``5000``) or in scientific notation (``1e-3``, ``3.4028235e38``), whichever is
    shorter; positional on a tie.
    """
    if not math.isfinite(value):
        raise ValueError(f"f32 {value!r} has no decimal text in the golden file")
    bits = struct.pack("<f", value)
    for digits in range(1, 10):
        text = f"{value:.{digits - 1}e}"
        try:
            if struct.pack("<f", to_f32(float(text))) != bits:
                continue
        except OverflowError:  # rounded up past the f32 range: more digits needed
            continue
        mantissa, exponent = text.split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        scientific = f"{mantissa}e{int(exponent)}" if int(exponent) else mantissa
        positional = format(Decimal(text), "f")
        if "." in positional:
            positional = positional.rstrip("0").rstrip(".")
        return positional if len(positional) <= len(scientific) else scientific
    raise AssertionError(f"no 9-digit text for f32 {value!r}")  # 9 digits always suffice


def _format_value(spec: FieldSpec, value: object) -> str:
    if spec.wire is F32_T:
        assert isinstance(value, float)
        return format_f32(value)
    if spec.wire is TEXT48_T:
        assert isinstance(value, bytes)
        return value.hex()
    return str(value)


def _parse_value(spec: FieldSpec, text: str) -> object:
    if spec.wire is F32_T:
        return float(text)
    if spec.wire is TEXT48_T:
        return bytes.fromhex(text)
    return int(text, 10)


def format_outcomes(events: list[Event]) -> tuple[str, ...]:
    """Decoder events as stream outcomes: ``<MSG_NAME>@<seq>`` or ``!<REASON>``."""
    return tuple(
        f"{e.message.NAME}@{e.seq}" if isinstance(e, Frame) else f"!{e.reason.name}" for e in events
    )


def render_line(vector: Vector) -> str:
    """One line of the file (no newline): ``<kind> <name> <wire hex> ...``."""
    case = f"{vector.name} {vector.wire.hex()}"
    if isinstance(vector, FrameVector):
        msg = vector.message
        fields = "".join(
            f" {spec.name}={_format_value(spec, getattr(msg, spec.name))}" for spec in msg.FIELDS
        )
        return f"frame {case} {msg.NAME} seq={vector.seq}{fields}"
    if isinstance(vector, RejectVector):
        return f"reject {case} {vector.reason.name}"
    return f"stream {case} {','.join(vector.outcomes) or '-'}"


def _parse_frame(tokens: list[str]) -> FrameVector:
    name, wire, msg_name, seq_token, *field_tokens = tokens
    cls = _BY_NAME[msg_name]
    if not seq_token.startswith("seq="):
        raise ValueError(f"frame {name}: expected seq=, got {seq_token!r}")
    pairs = [token.split("=", 1) for token in field_tokens]
    if [key for key, _ in pairs] != [spec.name for spec in cls.FIELDS]:
        raise ValueError(f"frame {name}: fields {pairs} do not match {cls.NAME}")
    values = [_parse_value(spec, text) for spec, (_, text) in zip(cls.FIELDS, pairs, strict=True)]
    return FrameVector(name, bytes.fromhex(wire), int(seq_token[4:]), cls(*values))


def parse_golden(text: str) -> GoldenFile:
    """Parse the golden vectors file; raise ValueError on a line it cannot read."""
    header: dict[str, int] = {}
    vectors: list[Vector] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line or line.startswith("#"):
            continue
        kind, *tokens = line.split(" ")
        try:
            if kind in ("protocol_version", "max_payload"):
                header[kind] = int(tokens[0], 10)
            elif kind == "schema_hash":
                header[kind] = int(tokens[0], 16)
            elif kind == "frame":
                vectors.append(_parse_frame(tokens))
            elif kind == "reject":
                name, wire, reason = tokens
                vectors.append(RejectVector(name, bytes.fromhex(wire), RejectReason[reason]))
            elif kind == "stream":
                name, wire, outcomes = tokens
                parsed = () if outcomes == "-" else tuple(outcomes.split(","))
                vectors.append(StreamVector(name, bytes.fromhex(wire), parsed))
            else:
                raise ValueError(f"unknown line kind {kind!r}")
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"golden vectors line {number}: {exc}") from exc
    return GoldenFile(
        header["protocol_version"], header["schema_hash"], header["max_payload"], tuple(vectors)
    )
