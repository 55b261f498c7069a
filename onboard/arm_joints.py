"""A joint of Zima's arm and its servo: the pulse <-> angle calibration and the limits.

The firmware puts out ``500 + ddeg * 2000 // 1800`` us for an ``ARM`` command of ``ddeg``
(0..1800, PROTOCOL.md; firmware/src/servos.cpp) and commands 900 (1500 us, mid travel) at
power-on. A :class:`ServoCalibration` says what the joint's angle (rad; the gripper's
closing in metres) is at mid travel and how much it changes per microsecond of pulse; the
joint's limits are the servo's travel, narrowed by mechanical stops where it has them.
Measured on a real arm as the README describes; :mod:`zima.onboard.kinematics` holds the
arm's description built from these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "SERVO_HOME_DDEG",
    "SERVO_MAX_DDEG",
    "SERVO_MAX_US",
    "SERVO_MID_US",
    "SERVO_MIN_US",
    "JointSpec",
    "ServoCalibration",
    "ddeg_from_us",
    "us_from_ddeg",
]

SERVO_MIN_US, SERVO_MAX_US = 500, 2500  # firmware/src/pins.h ZIMA_SERVO_MIN_US/MAX_US
SERVO_MAX_DDEG = 1800  # PROTOCOL.md ARM: servo angle 0..1800 (0.1 degree)
SERVO_HOME_DDEG = 900  # the power-on command of every joint (firmware/lib/.../servo.h)
SERVO_MID_US = SERVO_MIN_US + SERVO_HOME_DDEG * (SERVO_MAX_US - SERVO_MIN_US) // SERVO_MAX_DDEG


def us_from_ddeg(ddeg: int) -> int:
    """The pulse the firmware puts out for a servo command (firmware/src/servos.cpp)."""
    ddeg = min(max(int(ddeg), 0), SERVO_MAX_DDEG)
    return SERVO_MIN_US + ddeg * (SERVO_MAX_US - SERVO_MIN_US) // SERVO_MAX_DDEG


def ddeg_from_us(us: float) -> float:
    """The servo command (real, not rounded) whose pulse is ``us``."""
    return (us - SERVO_MIN_US) * SERVO_MAX_DDEG / (SERVO_MAX_US - SERVO_MIN_US)


@dataclass(frozen=True, slots=True)
class ServoCalibration:
    """A joint's servo: its value (rad; metres for the gripper) against the pulse width.

    Measured on a real arm by commanding pulses and reading the joint (README)."""

    mid: float  # the joint's value at mid travel (1500 us, ddeg 900: the power-on pulse)
    per_us: float  # change of the value per microsecond of pulse, signed (the direction)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mid) and math.isfinite(self.per_us) and self.per_us != 0):
            raise ValueError(f"servo calibration needs finite values and per_us != 0: {self}")

    def value(self, us: float) -> float:
        """The joint's value while the servo gets ``us``."""
        return self.mid + (us - SERVO_MID_US) * self.per_us

    def pulse_us(self, value: float) -> float:
        """The pulse that puts the joint at ``value`` (not clamped)."""
        return SERVO_MID_US + (value - self.mid) / self.per_us

    def ddeg(self, value: float) -> int:
        """The ``ARM`` command whose pulse (the firmware's, whole microseconds) is nearest
        the pulse for ``value``, within 0..1800."""
        us = self.pulse_us(value)
        near = int(min(max(ddeg_from_us(us), 0), SERVO_MAX_DDEG))
        return min((d for d in range(near - 1, near + 3) if 0 <= d <= SERVO_MAX_DDEG),
                   key=lambda d: abs(us_from_ddeg(d) - us))

    def value_from_ddeg(self, ddeg: int) -> float:
        """Where the joint goes for an ``ARM`` command (the firmware's integer pulse)."""
        return self.value(us_from_ddeg(ddeg))

    def travel(self) -> tuple[float, float]:
        """The joint's values at the ends of the servo's travel, low first."""
        a, b = self.value(SERVO_MIN_US), self.value(SERVO_MAX_US)
        return (a, b) if a <= b else (b, a)


_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0),
         "-y": (0.0, -1.0, 0.0)}


@dataclass(frozen=True, slots=True)
class JointSpec:
    """One joint: its body's origin in the parent body, its axis, its servo."""

    name: str
    axis: str  # "x", "y", "z" (revolute; the gripper slides along "-y")
    offset_m: tuple[float, float, float]  # the joint's body origin in the parent body's frame
    servo: ServoCalibration
    stops: tuple[float, float] | None = None  # mechanical stops inside the servo's travel

    def __post_init__(self) -> None:
        if self.axis not in _AXES:
            raise ValueError(f"{self.name}: axis {self.axis!r} is not one of {sorted(_AXES)}")
        if self.stops is not None and not self.stops[0] < self.stops[1]:
            raise ValueError(f"{self.name}: stops {self.stops} must be (low, high)")

    @property
    def limits(self) -> tuple[float, float]:
        """The joint's range: the servo's travel, narrowed by the stops."""
        lo, hi = self.servo.travel()
        if self.stops is not None:
            lo, hi = max(lo, self.stops[0]), min(hi, self.stops[1])
        if not lo < hi:
            raise ValueError(f"{self.name}: the stops {self.stops} lie outside the servo's "
                             f"travel {self.servo.travel()}")
        return lo, hi

    @property
    def ddeg_limits(self) -> tuple[int, int]:
        """The ``ARM`` commands that keep the joint within its limits, low first."""
        a, b = (self.servo.ddeg(v) for v in self.limits)
        lo, hi = min(a, b), max(a, b)
        # Rounding may step past a stop; step back inside.
        while not self.within(self.servo.value_from_ddeg(lo)):
            lo += 1
        while not self.within(self.servo.value_from_ddeg(hi)):
            hi -= 1
        return lo, hi

    def within(self, value: float, eps: float = 1e-9) -> bool:
        lo, hi = self.limits
        return lo - eps <= value <= hi + eps
