"""The arm's named poses and the gripper's opening, next to its kinematics.

Every front end names the same poses (MQTT ``cmd/arm {"pose": "ready"}``, the console's
buttons, ``zima arm``'s readers) and the runtime turns them into joint targets from here::

    stowed     the servos' mid travel: where the firmware puts the arm at power-on, folded
               over the chassis, the gripper half open
    ready      the tool ahead of the chassis at its deck's height, the gripper tilted down
               and open: the start of a reach for something on the floor
    look_down  the hand raised just ahead of the chassis and tipped 1.2 rad down: the wrist
               camera sees the floor in front of the robot (with the fingertips at the
               bottom of its image), where a cube to pick up lies; the gripper is left as is

A pose is joint angles, not a tool pose: going to one needs no inverse kinematics, and a
test holds each within the joint limits (with a margin) and the ``look_down`` camera's
view on the floor ahead of the chassis in MuJoCo.

The gripper's **opening** (``gripper_m``) is the gap between the fingers' inner faces, in
metres: ``GRIPPER_MAX_OPENING_M`` wide open, 0 closed (fingers touching; an object between
them is squeezed). The description's gripper joint counts the other way, how far the jaw
has closed (:data:`zima.onboard.kinematics.ARM`): the fingers meet when it has closed by
the open gap, 0.034 m (centres 0.04 m apart, each finger 6 mm thick).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from zima.onboard.kinematics import ARM

__all__ = ["GRIPPER_MAX_OPENING_M", "NAMED_POSES", "POSE_NAMES", "ArmPose", "gripper_closing_m",
           "gripper_opening_m"]

FINGER_THICKNESS_M: Final = 0.006  # sim/robot.py's finger boxes (half size 0.003)
GRIPPER_MAX_OPENING_M: Final = round(ARM.finger_gap_m - FINGER_THICKNESS_M, 6)  # 0.034


def gripper_closing_m(opening_m: float) -> float:
    """The gripper joint's value (how far the jaw closed, m) for an ``opening_m`` gap."""
    return GRIPPER_MAX_OPENING_M - opening_m


def gripper_opening_m(closing_m: float) -> float:
    """The gap between the fingers (m; negative: the servo squeezes past touching) when the
    gripper joint has closed by ``closing_m``."""
    return GRIPPER_MAX_OPENING_M - closing_m


@dataclass(frozen=True, slots=True)
class ArmPose:
    """The five arm joints (rad, ``JOINT_NAMES`` order) and the gripper's opening (m;
    None leaves the gripper as it is)."""

    joints_rad: tuple[float, float, float, float, float]
    gripper_m: float | None

    def __post_init__(self) -> None:
        if not all(math.isfinite(v) for v in self.joints_rad):
            raise ValueError(f"a pose's joints must be finite: {self.joints_rad}")
        if self.gripper_m is not None and not 0 <= self.gripper_m <= GRIPPER_MAX_OPENING_M:
            raise ValueError(f"gripper_m={self.gripper_m} is outside "
                             f"[0, {GRIPPER_MAX_OPENING_M}]")


_MID = ARM.mid_pose
NAMED_POSES: Final[dict[str, ArmPose]] = {
    "stowed": ArmPose((_MID[0], _MID[1], _MID[2], _MID[3], _MID[4]),
                      gripper_opening_m(ARM.gripper.servo.mid)),
    "ready": ArmPose((0.0, 0.7, 0.0, -0.1, 0.0), GRIPPER_MAX_OPENING_M),
    "look_down": ArmPose((0.0, 0.2, -0.6, 1.6, 0.0), None),
}
POSE_NAMES: Final = tuple(NAMED_POSES)
