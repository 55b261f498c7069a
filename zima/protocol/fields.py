"""Wire types of the protocol and the field specs derived from message annotations.

A message class declares its fields once, as annotations such as ``left_mm_s: I16``.
``I16`` is ``Annotated[int, WireType(...)]``: mypy sees a plain ``int``, and
:func:`fields_of` reads the wire type back, so the payload layout (``struct`` format),
the range checks and the schema text all come from the same declaration.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from dataclasses import dataclass
from typing import Annotated, Final

__all__ = [
    "F32",
    "I8",
    "I16",
    "I32",
    "TEXT48",
    "U8",
    "U16",
    "U32",
    "FieldSpec",
    "WireType",
    "check_field",
    "fields_of",
    "to_f32",
]

TEXT_MAX_BYTES: Final = 48


@dataclass(frozen=True, slots=True)
class WireType:
    """One wire type: its name in the schema text, ``struct`` code and value range."""

    name: str  # as written in the schema text (PROTOCOL.md section 2)
    code: str  # struct format code; "" for the variable-length trailing text
    lo: int = 0
    hi: int = 0

    @property
    def is_int(self) -> bool:
        """True for the integer types (u8 .. i32)."""
        return self.code not in ("f", "")

    @property
    def size(self) -> int:
        """Bytes on the wire (0 for the variable-length text)."""
        return struct.calcsize("<" + self.code) if self.code else 0


U8_T: Final = WireType("u8", "B", 0, 0xFF)
I8_T: Final = WireType("i8", "b", -0x80, 0x7F)
U16_T: Final = WireType("u16", "H", 0, 0xFFFF)
I16_T: Final = WireType("i16", "h", -0x8000, 0x7FFF)
U32_T: Final = WireType("u32", "I", 0, 0xFFFF_FFFF)
I32_T: Final = WireType("i32", "i", -0x8000_0000, 0x7FFF_FFFF)
F32_T: Final = WireType("f32", "f")
TEXT48_T: Final = WireType("text48", "", 0, TEXT_MAX_BYTES)

U8 = Annotated[int, U8_T]
I8 = Annotated[int, I8_T]
U16 = Annotated[int, U16_T]
I16 = Annotated[int, I16_T]
U32 = Annotated[int, U32_T]
I32 = Annotated[int, I32_T]
F32 = Annotated[float, F32_T]
TEXT48 = Annotated[bytes, TEXT48_T]  # ASCII text, 0..48 bytes, no terminator


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a message: its name (as in PROTOCOL.md) and wire type."""

    name: str
    wire: WireType


def fields_of(cls: type) -> tuple[FieldSpec, ...]:
    """The fields of a message dataclass, in declaration (= wire) order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    specs = []
    for field in dataclasses.fields(cls):
        metadata = getattr(hints[field.name], "__metadata__", ())
        wire = [m for m in metadata if isinstance(m, WireType)]
        if len(wire) != 1:
            raise TypeError(f"{cls.__name__}.{field.name} has no wire type annotation")
        specs.append(FieldSpec(field.name, wire[0]))
    if any(s.wire is TEXT48_T for s in specs[:-1]):
        raise TypeError(f"{cls.__name__}: text48 must be the last field")
    return tuple(specs)


def to_f32(value: float) -> float:
    """``value`` rounded to the nearest 32-bit float (what the wire carries)."""
    result: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return result


def check_field(msg_name: str, spec: FieldSpec, value: object) -> object:
    """Validate one field value; return it, normalised (f32 rounding) where needed.

    Raises TypeError for a value of the wrong Python type and ValueError, naming the
    message, the field and the range, for a value that the wire type cannot carry.
    """
    where = f"{msg_name}.{spec.name}"
    wire = spec.wire
    if wire is F32_T:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where} must be a float, got {type(value).__name__}")
        try:
            return to_f32(value)
        except OverflowError:
            raise ValueError(
                f"{where}={value!r} is outside the f32 range (|x| <= 3.4028235e38)"
            ) from None
    if wire is TEXT48_T:
        if not isinstance(value, bytes):
            raise TypeError(f"{where} must be bytes, got {type(value).__name__}")
        if len(value) > TEXT_MAX_BYTES:
            raise ValueError(f"{where} is {len(value)} bytes long, outside 0..{TEXT_MAX_BYTES}")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where} must be an int, got {type(value).__name__}")
    if not wire.lo <= value <= wire.hi:
        raise ValueError(f"{where}={value} is outside the {wire.name} range {wire.lo}..{wire.hi}")
    return int(value)  # an IntEnum member becomes the plain int the wire carries
