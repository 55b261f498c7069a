"""The real firmware's servo pulses against the arm description (zima.onboard.kinematics).

The description says which pulse each joint angle needs and where each joint's limits
lie in ``ARM`` commands; here the firmware is commanded to every joint's limits and its
measured pulses, read back through the calibration, are the description's limit angles.
tests/onboard/test_kinematics.py holds the firmware's constants (pulse range, power-on
command) to the description; this checks what the firmware really puts out.
"""

import math
import statistics

from zima.emulator import EmulatedBoard
from zima.onboard.kinematics import ARM, us_from_ddeg
from zima.protocol import Arm, ArmState, Result

from .mcu import Mcu

SPECS = (*ARM.joints, ARM.gripper)  # the protocol's joints 0..5
PULSE_TOLERANCE_US = 8  # a median of frames; see test_arm.py
ANGLE_TOLERANCE_RAD = math.radians(1.0)
GRIPPER_TOLERANCE_M = 0.0005


def _pulses(board: EmulatedBoard, mcu: Mcu, frames: int = 5) -> list[float]:
    """Per servo, the median width of `frames` pulses, one TELEMETRY (20 ms) apart."""
    samples = []
    for _ in range(frames):
        mcu.telemetry()
        samples.append(board.state().servo_us)
    return [statistics.median(s[j] for s in samples) for j in range(len(SPECS))]


def _move_all(mcu: Mcu, targets: list[int]) -> None:
    """Every joint to its target at full speed (3600 = 360 deg/s), until ARM_STATE is there."""
    fields = [v for t in targets for v in (t, 3600)]
    assert mcu.request(Arm(*fields)) == Result.OK
    mcu.wait_for(ArmState, lambda a: [a.pos0_ddeg, a.pos1_ddeg, a.pos2_ddeg, a.pos3_ddeg,
                                      a.pos4_ddeg, a.pos5_ddeg] == targets, within_ms=3000)


def test_the_firmware_puts_each_joint_at_the_descriptions_limits(board: EmulatedBoard,
                                                                 mcu: Mcu) -> None:
    for end in (0, 1):  # every joint to its low limit, then to its high one
        targets = [spec.ddeg_limits[end] for spec in SPECS]
        _move_all(mcu, targets)
        pulses = _pulses(board, mcu)
        for spec, ddeg, us in zip(SPECS, targets, pulses, strict=True):
            assert abs(us - us_from_ddeg(ddeg)) <= PULSE_TOLERANCE_US, (spec.name, ddeg, us)
            tolerance = GRIPPER_TOLERANCE_M if spec is ARM.gripper else ANGLE_TOLERANCE_RAD
            assert abs(spec.servo.value(us) - spec.limits[end]) <= tolerance, (spec.name, us)
