"""The host's side of the handshake check (PROTOCOL.md section 2, step 3): pure, no I/O.

The MCU answers ``HELLO`` with ``INFO`` whatever it speaks, so the host can say what it
found. :func:`check_info` compares that ``INFO`` with what this host speaks and raises
:class:`HandshakeError` on a mismatch, with a message that names both sides and the fix.
"""

from __future__ import annotations

from zima.protocol.messages import Info
from zima.protocol.schema import PROTOCOL_VERSION, SCHEMA_HASH

__all__ = ["HandshakeError", "check_info", "describe_info"]


class HandshakeError(Exception):
    """The MCU speaks another protocol version or message schema than this host."""

    def __init__(self, message: str, info: Info) -> None:
        super().__init__(message)
        self.info = info  # what the firmware reported


def describe_info(info: Info) -> str:
    """One line naming the firmware: version, build id, protocol and schema."""
    return (
        f"firmware {info.fw_major}.{info.fw_minor}.{info.fw_patch} "
        f"(build {info.build_id:08x}), protocol {info.protocol_version}, "
        f"schema 0x{info.schema_hash:08x}"
    )


def check_info(
    info: Info,
    protocol_version: int = PROTOCOL_VERSION,
    schema_hash: int = SCHEMA_HASH,
) -> None:
    """Raise :class:`HandshakeError` unless ``info`` matches this host's protocol.

    ``protocol_version`` and ``schema_hash`` default to this tree's codec; they are
    parameters so that tests (and tools speaking for another host) can pass others.
    """
    if info.protocol_version == protocol_version and info.schema_hash == schema_hash:
        return
    raise HandshakeError(
        f"firmware speaks protocol {info.protocol_version}, schema 0x{info.schema_hash:08x}; "
        f"this host speaks protocol {protocol_version}, schema 0x{schema_hash:08x}: "
        f"flash the firmware built from this tree (zima flash) "
        f"[{describe_info(info)}]",
        info,
    )
