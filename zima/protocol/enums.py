"""The named numbers of the protocol: result codes, states, fault bits, parameters.

Everything here is transcribed from firmware/PROTOCOL.md (sections 1, 3, 4 and 5);
the section is named on each class. Message fields stay plain ``int`` on the wire
(a decoder must carry a code it does not know); these enums are ``IntEnum`` /
``IntFlag`` so ``ack.result == Result.OK`` and ``Fault(telemetry.faults)`` just work.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag
from types import MappingProxyType
from typing import Final

__all__ = [
    "PARAMS",
    "Board",
    "Capability",
    "Fault",
    "LogLevel",
    "ParamId",
    "ParamSpec",
    "RejectReason",
    "ResetCause",
    "Result",
    "State",
]


class RejectReason(IntEnum):
    """Why the frame decoder dropped a frame (section 1)."""

    OVERSIZE = 1  # more than 54 encoded bytes before a 0x00
    BAD_COBS = 2  # a COBS code byte points past the end of the frame
    TOO_SHORT = 3  # decoded frame shorter than id + seq + crc (4 bytes)
    BAD_CRC = 4
    UNKNOWN_ID = 5  # valid CRC, unknown msg_id
    BAD_LENGTH = 6  # valid CRC, payload length wrong for msg_id


class Result(IntEnum):
    """``ACK.result`` (section 3, result codes)."""

    OK = 0
    UNKNOWN_MSG = 1
    BAD_LENGTH = 2
    OUT_OF_RANGE = 3
    NO_SESSION = 4
    ESTOPPED = 5
    BATTERY_CRITICAL = 6
    CONDITION_ACTIVE = 7
    VERSION_MISMATCH = 8
    UNKNOWN_PARAM = 9


class State(IntEnum):
    """``TELEMETRY.state`` (section 5)."""

    WAIT_HOST = 0  # no session
    IDLE = 1  # session open, motors at rest
    DRIVING = 2  # a non-zero target is in force
    ESTOP = 3  # e-stop latched
    FAULT = 4  # BATT_CRITICAL latched


class Fault(IntFlag):
    """``TELEMETRY.faults`` and ``CLEAR.faults`` bits (section 5)."""

    WATCHDOG = 1 << 0
    ESTOP = 1 << 1
    BATT_LOW = 1 << 2
    BATT_CRITICAL = 1 << 3
    STALL_LEFT = 1 << 4
    STALL_RIGHT = 1 << 5
    RESET_WATCHDOG = 1 << 6
    RESET_BROWNOUT = 1 << 7


class LogLevel(IntEnum):
    """``LOG.level`` (section 3)."""

    DEBUG = 0
    INFO = 1
    WARNING = 2
    ERROR = 3


class Board(IntEnum):
    """``INFO.board`` (section 3)."""

    HOST_BUILD = 0  # the portable core compiled for a PC (tests)
    MEGA2560 = 1  # Arduino Mega 2560 (ATmega2560), real or emulated


class Capability(IntFlag):
    """``INFO.capabilities`` bits (section 3)."""

    DRIVE = 1 << 0
    ENCODERS = 1 << 1
    BATTERY_MONITOR = 1 << 2
    ARM_SERVOS = 1 << 3
    PARAMETERS = 1 << 4


class ResetCause(IntEnum):
    """``INFO.reset_cause`` (section 3)."""

    UNKNOWN = 0
    POWER_ON = 1
    EXTERNAL = 2  # reset pin, DTR pulse on port open
    BROWN_OUT = 3
    WATCHDOG = 4  # hardware watchdog: the firmware hung


class ParamId(IntEnum):
    """Parameter ids for ``PARAM_SET`` / ``PARAM_GET`` (section 4)."""

    pid_kp = 0
    pid_ki = 1
    pid_kd = 2
    pid_kff = 3
    out_slew_permille_s = 4
    watchdog_ms = 5
    batt_low_mv = 6
    batt_crit_mv = 7
    batt_hyst_mv = 8
    batt_divider = 9
    batt_low_debounce_ms = 10
    batt_crit_debounce_ms = 11
    batt_filter_ms = 12
    telemetry_hz = 13
    ticks_per_m = 14
    max_speed_mm_s = 15
    stall_ms = 16
    servo_max_speed_ddeg_s = 17


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One row of the parameter table: unit, default and accepted range."""

    id: ParamId
    unit: str
    default: float
    min: float
    max: float

    @property
    def name(self) -> str:
        """The parameter's name, as in PROTOCOL.md and the schema text."""
        return self.id.name

    def contains(self, value: float) -> bool:
        """True when ``PARAM_SET`` with ``value`` is inside the range (NaN is not)."""
        return self.min <= value <= self.max


_P = ParamId
PARAMS: Final = MappingProxyType(
    {
        spec.id: spec
        for spec in (
            ParamSpec(_P.pid_kp, "permille per mm/s", 0.6, 0, 100),
            ParamSpec(_P.pid_ki, "permille per mm", 4.0, 0, 1000),
            ParamSpec(_P.pid_kd, "permille per mm/s^2", 0.0, 0, 10),
            ParamSpec(_P.pid_kff, "permille per mm/s (feed-forward)", 1.0, 0, 100),
            ParamSpec(_P.out_slew_permille_s, "permille/s", 5000, 100, 100000),
            ParamSpec(_P.watchdog_ms, "ms", 250, 20, 5000),
            ParamSpec(_P.batt_low_mv, "mV", 10500, 0, 60000),
            ParamSpec(_P.batt_crit_mv, "mV", 9900, 0, 60000),
            ParamSpec(_P.batt_hyst_mv, "mV", 200, 0, 5000),
            ParamSpec(_P.batt_divider, "pack V / ADC pin V", 4.0, 1, 30),
            ParamSpec(_P.batt_low_debounce_ms, "ms", 10000, 0, 60000),
            ParamSpec(_P.batt_crit_debounce_ms, "ms", 1000, 0, 60000),
            ParamSpec(_P.batt_filter_ms, "ms (voltage filter time constant)", 500, 0, 10000),
            ParamSpec(_P.telemetry_hz, "Hz", 50, 1, 200),
            ParamSpec(_P.ticks_per_m, "encoder counts per metre", 4000, 100, 100000),
            ParamSpec(_P.max_speed_mm_s, "mm/s", 1000, 10, 5000),
            ParamSpec(_P.stall_ms, "ms", 500, 50, 10000),
            ParamSpec(_P.servo_max_speed_ddeg_s, "0.1 deg/s", 1800, 1, 3600),
        )
    }
)
"""Section 4, keyed by id. Integer parameters are rounded to the nearest integer."""
