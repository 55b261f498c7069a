"""What the MCU link raises, and the names of the MCU's result codes.

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

from zima.protocol import Ack, HandshakeError, Result

__all__ = [
    "IncompatibleMcuError",
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
