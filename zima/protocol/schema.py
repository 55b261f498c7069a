"""Everything derived from the message table: payload layouts, MAX_PAYLOAD, schema hash.

Nothing here is written twice: the ``struct`` formats come from the field annotations
of ``messages.py``, ``MAX_PAYLOAD`` from the longest layout, and the schema hash from
the canonical text of PROTOCOL.md section 2 built from the same table plus the
parameter and fault tables of ``enums.py``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from zima.protocol.enums import Fault, ParamId
from zima.protocol.fields import TEXT48_T, TEXT_MAX_BYTES
from zima.protocol.messages import MESSAGE_TYPES, Message

__all__ = [
    "FRAME_OVERHEAD",
    "LAYOUTS",
    "MAX_ENCODED_FRAME",
    "MAX_PAYLOAD",
    "MAX_RAW_FRAME",
    "MESSAGES_BY_ID",
    "PROTOCOL_VERSION",
    "SCHEMA_HASH",
    "Layout",
    "layout_of",
    "schema_text",
]

PROTOCOL_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Layout:
    """How one message's payload sits on the wire."""

    cls: type[Message]
    fixed: struct.Struct  # the fixed-size fields, little-endian, in order
    has_text: bool  # a trailing text48 field follows the fixed part

    @property
    def min_size(self) -> int:
        """Shortest valid payload, in bytes."""
        return self.fixed.size

    @property
    def max_size(self) -> int:
        """Longest valid payload, in bytes."""
        return self.fixed.size + (TEXT_MAX_BYTES if self.has_text else 0)

    def pack(self, msg: Message) -> bytes:
        """The payload bytes of ``msg`` (which its constructor has already checked)."""
        values = [getattr(msg, spec.name) for spec in msg.FIELDS]
        if self.has_text:
            text: bytes = values.pop()
            return self.fixed.pack(*values) + text
        return self.fixed.pack(*values)

    def unpack(self, payload: bytes) -> Message:
        """The message whose payload is ``payload``; its length must be in range."""
        build: Callable[..., Message] = self.cls
        if self.has_text:
            return build(*self.fixed.unpack_from(payload), payload[self.fixed.size :])
        return build(*self.fixed.unpack(payload))


def _layout(cls: type[Message]) -> Layout:
    has_text = bool(cls.FIELDS) and cls.FIELDS[-1].wire is TEXT48_T
    codes = "".join(spec.wire.code for spec in cls.FIELDS)
    return Layout(cls, struct.Struct("<" + codes), has_text)


LAYOUTS: Final = MappingProxyType({cls: _layout(cls) for cls in MESSAGE_TYPES})
MESSAGES_BY_ID: Final = MappingProxyType({cls.MSG_ID: LAYOUTS[cls] for cls in MESSAGE_TYPES})
"""msg_id -> Layout, for the decoder."""


def layout_of(msg: Message) -> Layout:
    """The payload layout of ``msg``'s type."""
    return LAYOUTS[type(msg)]


MAX_PAYLOAD: Final = max(layout.max_size for layout in LAYOUTS.values())
"""Longest payload of any message (49: LOG with 48 bytes of text)."""
FRAME_OVERHEAD: Final = 6  # msg_id, seq, CRC (2), COBS code byte, 0x00 delimiter
MAX_RAW_FRAME: Final = MAX_PAYLOAD + 4  # msg_id | seq | payload | crc
MAX_ENCODED_FRAME: Final = MAX_RAW_FRAME + 1  # COBS adds one byte below 254; no delimiter


def schema_text() -> str:
    """The canonical schema text of PROTOCOL.md section 2 (its CRC-32 is the hash)."""
    lines = []
    for cls in sorted(MESSAGE_TYPES, key=lambda c: c.MSG_ID):
        fields = "".join(f" {spec.name}:{spec.wire.name}" for spec in cls.FIELDS)
        lines.append(f"msg {cls.MSG_ID} {cls.NAME}{fields}\n")
    lines.extend(f"param {p.value} {p.name}\n" for p in sorted(ParamId))
    lines.extend(f"fault {f.value.bit_length() - 1} {f.name}\n" for f in sorted(Fault))
    return "".join(lines)


SCHEMA_HASH: Final = zlib.crc32(schema_text().encode("utf-8"))
"""CRC-32 (zlib) of :func:`schema_text`: sent in ``HELLO`` and ``INFO``."""
