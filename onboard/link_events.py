"""What ``HostSession`` tells its driver: one frozen record per kind of event.

Every call into the session (``open``, ``handshake``, ``receive``, ``tick``,
``port_failed``, ``close``) returns a list of these, in the order they happened. The
driver (``McuLink``) acts on each: publishes states and statuses, resolves the future of
a request, logs. Requests are named by the integer id the session returned for them;
each id gets exactly one ``Answered`` or ``RequestFailed``, unless it was cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from zima.onboard.link_errors import LinkError
from zima.onboard.mcu_state import LinkStatus, McuState
from zima.protocol import Ack

__all__ = [
    "Answered",
    "DriveRefused",
    "HandshakeFailed",
    "Ignored",
    "LinkEvent",
    "McuLog",
    "NewState",
    "RequestFailed",
    "StatusChanged",
]


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The link came up (handshake and parameters done), was lost, or was closed."""

    status: LinkStatus
    previous: LinkStatus


@dataclass(frozen=True, slots=True)
class NewState:
    """A TELEMETRY frame arrived: the MCU's state as of its receive time."""

    state: McuState


@dataclass(frozen=True, slots=True)
class Answered:
    """A request succeeded: its ACK (ARM, ESTOP, CLEAR) or the value the MCU holds
    (PARAM_SET, PARAM_GET)."""

    request: int
    value: Ack | float


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """A request ended without success: ``RefusedError``, ``NoAnswerError``, or the
    ``LinkDownError`` / ``PortError`` of a lost or closed link."""

    request: int
    error: LinkError


@dataclass(frozen=True, slots=True)
class HandshakeFailed:
    """This handshake attempt is over without a session (``IncompatibleMcuError``: for good)."""

    error: LinkError


@dataclass(frozen=True, slots=True)
class DriveRefused:
    """The MCU refused a DRIVE; the next ``drive`` raises it as ``RefusedError``."""

    ack: Ack


@dataclass(frozen=True, slots=True)
class McuLog:
    """A LOG line from the MCU (``level`` as sent: a ``LogLevel``, or unknown)."""

    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """Something the session dropped (a rejected frame, an unrequested answer): for debug logs."""

    what: str


LinkEvent = (
    StatusChanged
    | NewState
    | Answered
    | RequestFailed
    | HandshakeFailed
    | DriveRefused
    | McuLog
    | Ignored
)
