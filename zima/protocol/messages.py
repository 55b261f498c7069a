"""The messages of protocol version 1 (PROTOCOL.md section 3), one frozen class each.

Field names and order are exactly those of PROTOCOL.md; each annotation names the wire
type, from which ``schema.py`` derives the payload layout and the schema hash.
Construction checks every field against its wire type::

    >>> Drive(left_mm_s=200, right_mm_s=-200)
    Drive(left_mm_s=200, right_mm_s=-200)
    >>> Drive(left_mm_s=40000, right_mm_s=0)
    Traceback (most recent call last):
    ...
    ValueError: DRIVE.left_mm_s=40000 is outside the i16 range -32768..32767

``f32`` fields are rounded to the nearest 32-bit float on construction, so a message
equals its own decoded copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from zima.protocol.fields import (
    F32,
    I16,
    I32,
    TEXT48,
    U8,
    U16,
    U32,
    FieldSpec,
    check_field,
    fields_of,
)

__all__ = [
    "MESSAGE_TYPES",
    "Ack",
    "Arm",
    "ArmState",
    "Clear",
    "Drive",
    "Estop",
    "Heartbeat",
    "Hello",
    "Info",
    "Log",
    "Message",
    "ParamGet",
    "ParamSet",
    "ParamValue",
    "Telemetry",
]


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every message: ``MSG_ID`` and ``NAME`` as in PROTOCOL.md, checked fields."""

    MSG_ID: ClassVar[int]
    NAME: ClassVar[str]
    FIELDS: ClassVar[tuple[FieldSpec, ...]]  # in wire order; set below from the annotations
    # The common case, a plain int within its range, checked inline: this runs for every
    # decoded frame, and the generic check_field would take most of the decoder's time.
    _INT_FIELDS: ClassVar[tuple[tuple[str, int, int, FieldSpec], ...]]  # name, lo, hi, spec
    _OTHER_FIELDS: ClassVar[tuple[FieldSpec, ...]]

    def __post_init__(self) -> None:
        for name, lo, hi, spec in self._INT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                self._check(spec)
        for spec in self._OTHER_FIELDS:
            self._check(spec)

    def _check(self, spec: FieldSpec) -> None:
        value = getattr(self, spec.name)
        checked = check_field(self.NAME, spec, value)  # raises when out of range
        if checked is not value:  # f32 rounding, IntEnum to int; frozen: object.__setattr__
            object.__setattr__(self, spec.name, checked)


# --- host -> MCU (ids 0x01..0x3F) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Opens a session; the MCU answers ``INFO`` then ``ACK``."""

    MSG_ID = 0x01
    NAME = "HELLO"
    protocol_version: U8
    schema_hash: U32


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    """Keeps an idle session open (does not feed the command watchdog)."""

    MSG_ID = 0x02
    NAME = "HEARTBEAT"
    host_time_ms: U32


@dataclass(frozen=True, slots=True)
class Drive(Message):
    """Track velocity targets; the only message that feeds the command watchdog."""

    MSG_ID = 0x03
    NAME = "DRIVE"
    left_mm_s: I16
    right_mm_s: I16


@dataclass(frozen=True, slots=True)
class Arm(Message):
    """Servo targets (0.1 deg, 0xFFFF = leave alone) and slew speeds (0.1 deg/s) of 6 joints.

    Joints: 0 base yaw, 1 shoulder, 2 elbow, 3 wrist pitch, 4 wrist roll, 5 gripper.
    """

    MSG_ID = 0x04
    NAME = "ARM"
    target0_ddeg: U16
    speed0_ddeg_s: U16
    target1_ddeg: U16
    speed1_ddeg_s: U16
    target2_ddeg: U16
    speed2_ddeg_s: U16
    target3_ddeg: U16
    speed3_ddeg_s: U16
    target4_ddeg: U16
    speed4_ddeg_s: U16
    target5_ddeg: U16
    speed5_ddeg_s: U16


@dataclass(frozen=True, slots=True)
class ParamSet(Message):
    """Sets one parameter (``ParamId``); values travel as f32."""

    MSG_ID = 0x05
    NAME = "PARAM_SET"
    param_id: U8
    value: F32


@dataclass(frozen=True, slots=True)
class ParamGet(Message):
    """Asks for one parameter's value (answer: ``PARAM_VALUE``)."""

    MSG_ID = 0x06
    NAME = "PARAM_GET"
    param_id: U8


@dataclass(frozen=True, slots=True)
class Estop(Message):
    """Latches the e-stop at once, with or without a session."""

    MSG_ID = 0x07
    NAME = "ESTOP"


@dataclass(frozen=True, slots=True)
class Clear(Message):
    """Clears the latched ``Fault`` bits in the mask whose condition has gone."""

    MSG_ID = 0x08
    NAME = "CLEAR"
    faults: U16


# --- MCU -> host (ids 0x81..0xBF) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Info(Message):
    """The MCU's answer to ``HELLO``: who it is and what it speaks."""

    MSG_ID = 0x81
    NAME = "INFO"
    protocol_version: U8
    schema_hash: U32
    fw_major: U8
    fw_minor: U8
    fw_patch: U8
    build_id: U32  # first 8 hex digits of the firmware's git commit, 0 when unknown
    board: U8  # Board
    capabilities: U16  # Capability bits
    max_payload: U8
    reset_cause: U8  # ResetCause


@dataclass(frozen=True, slots=True)
class Telemetry(Message):
    """The MCU's periodic state, at ``telemetry_hz``."""

    MSG_ID = 0x82
    NAME = "TELEMETRY"
    mcu_time_ms: U32
    enc_left_ticks: I32
    enc_right_ticks: I32
    vel_left_mm_s: I16
    vel_right_mm_s: I16
    target_left_mm_s: I16
    target_right_mm_s: I16
    out_left_permille: I16
    out_right_permille: I16
    battery_mv: U16
    state: U8  # State
    faults: U16  # Fault bits
    rx_frames: U16
    rx_rejected: U16
    rx_dropped: U16
    tx_dropped: U16


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """Answer to a command: which frame (id and seq) and its ``Result``."""

    MSG_ID = 0x83
    NAME = "ACK"
    ref_msg_id: U8
    ref_seq: U8
    result: U8  # Result


@dataclass(frozen=True, slots=True)
class ParamValue(Message):
    """One parameter's value, on ``PARAM_GET`` and after an accepted ``PARAM_SET``."""

    MSG_ID = 0x84
    NAME = "PARAM_VALUE"
    param_id: U8
    value: F32


@dataclass(frozen=True, slots=True)
class Log(Message):
    """A rate-limited log line from the MCU: ``LogLevel`` and 0..48 bytes of ASCII."""

    MSG_ID = 0x85
    NAME = "LOG"
    level: U8  # LogLevel
    text: TEXT48


@dataclass(frozen=True, slots=True)
class ArmState(Message):
    """The present servo commands (0.1 deg), at 10 Hz while a session is open."""

    MSG_ID = 0x86
    NAME = "ARM_STATE"
    pos0_ddeg: U16
    pos1_ddeg: U16
    pos2_ddeg: U16
    pos3_ddeg: U16
    pos4_ddeg: U16
    pos5_ddeg: U16


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello, Heartbeat, Drive, Arm, ParamSet, ParamGet, Estop, Clear,
    Info, Telemetry, Ack, ParamValue, Log, ArmState,
)  # fmt: skip
"""Every message of protocol version 1, in ascending ``MSG_ID``: the message table."""

for _cls in MESSAGE_TYPES:
    _cls.FIELDS = fields_of(_cls)
    _cls._INT_FIELDS = tuple(
        (f.name, f.wire.lo, f.wire.hi, f) for f in _cls.FIELDS if f.wire.is_int
    )
    _cls._OTHER_FIELDS = tuple(f for f in _cls.FIELDS if not f.wire.is_int)
