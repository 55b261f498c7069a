"""What the MCU link is configured with, and what it raises.

The exception tree of :mod:`zima.onboard.link` (library errors never leak: pyserial's
``SerialException`` and ``OSError`` become :class:`PortError`)::

    LinkError                   anything the link to the MCU raises
     +-- PortError              the serial port cannot be opened, read or written
     +-- NoAnswerError          the MCU did not answer in time (HELLO, ACK, PARAM_VALUE)
     +-- LinkDownError          a command while the link is (re)connecting
     +-- RefusedError           the MCU answered ACK with a result other than OK;
     |                          ``.result`` is the ``Result``, ``.ack`` the message
     +-- IncompatibleMcuError   also a zima.protocol.HandshakeError: the firmware speaks
                                another protocol version or schema; names both sides
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from zima.protocol import PROTOCOL_VERSION, SCHEMA_HASH, Ack, HandshakeError, Result

__all__ = [
    "IncompatibleMcuError",
    "LinkConfig",
    "LinkDownError",
    "LinkError",
    "NoAnswerError",
    "PortError",
    "RefusedError",
    "result_name",
    "result_of",
]


class LinkError(Exception):
    """Base of everything the MCU link raises."""


class PortError(LinkError):
    """The serial port could not be opened, read or written (it may have vanished)."""


class NoAnswerError(LinkError, TimeoutError):
    """The MCU did not answer within the configured time."""


class LinkDownError(LinkError):
    """A command was given while the link is down; the MCU's watchdog holds the motors."""


class RefusedError(LinkError):
    """The MCU refused a command: ``result`` says why (PROTOCOL.md result codes)."""

    def __init__(self, message: str, ack: Ack) -> None:
        super().__init__(message)
        self.ack = ack
        self.result = result_of(ack.result)


def result_of(code: int) -> Result | int:
    """``ACK.result`` as a ``Result``; a code this host does not know stays an int."""
    try:
        return Result(code)
    except ValueError:
        return code


def result_name(code: int) -> str:
    """The name of a result code, for messages."""
    result = result_of(code)
    return result.name if isinstance(result, Result) else f"result {code}"


class IncompatibleMcuError(LinkError, HandshakeError):
    """The handshake found firmware speaking another protocol or schema (never silent)."""


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One MCU link. Times in seconds; defaults follow firmware/PROTOCOL.md."""

    port: Path = Path("/dev/zima-mcu")  # udev symlink: survives ttyACM0 -> ttyACM1 renames
    baud: int = 115200  # the contract's line rate (8N1)
    handshake_timeout_s: float = 5.0  # PROTOCOL.md 2: give up on HELLO after 5 s
    hello_retry_s: float = 0.25  # PROTOCOL.md 2: repeat HELLO every 250 ms until INFO
    heartbeat_period_s: float = 0.5  # keeps an idle session open (MCU closes it after 2 s)
    telemetry_timeout_s: float = 0.25  # PROTOCOL.md 2: this long without TELEMETRY = link lost
    request_timeout_s: float = 0.5  # wait for an ACK / PARAM_VALUE (50 Hz link: ~25 frames)
    reconnect_min_s: float = 0.05  # first pause before reopening a vanished port
    reconnect_max_s: float = 2.0  # backoff doubles up to this (a replugged USB takes ~1 s)
    health_window_s: float = 1.0  # frames/s and the longest gap are measured over this
    # The host's protocol identity sent in HELLO and checked against INFO. Injectable so a
    # test can play a host built from another tree; keep the defaults everywhere else.
    protocol_version: int = PROTOCOL_VERSION
    schema_hash: int = SCHEMA_HASH

    def __post_init__(self) -> None:
        times = {
            "handshake_timeout_s": self.handshake_timeout_s,
            "hello_retry_s": self.hello_retry_s,
            "heartbeat_period_s": self.heartbeat_period_s,
            "telemetry_timeout_s": self.telemetry_timeout_s,
            "request_timeout_s": self.request_timeout_s,
            "reconnect_min_s": self.reconnect_min_s,
            "reconnect_max_s": self.reconnect_max_s,
            "health_window_s": self.health_window_s,
        }
        for name, value in times.items():
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"LinkConfig.{name}={value} must be a positive number")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("LinkConfig.reconnect_max_s must not be below reconnect_min_s")
        if self.heartbeat_period_s >= 2.0:
            raise ValueError("LinkConfig.heartbeat_period_s must be below the MCU's 2 s timeout")
        if self.baud <= 0:
            raise ValueError(f"LinkConfig.baud={self.baud} must be positive")
