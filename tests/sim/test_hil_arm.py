"""The arm in hardware in the loop: an ``ARM`` command, sent by the onboard runtime over the
protocol to the real firmware on the emulated board, moves MuJoCo's arm joints.

The chain under test: runtime -> ARM frame -> firmware (slew, Timer5 pulses) -> the
emulator's pulse measurement -> the servo calibration (:data:`zima.onboard.kinematics.ARM`)
-> MuJoCo's position actuators -> the joints, and the wrist camera's view. The target comes
from the inverse kinematics, so the test also closes the loop from a tool pose to the
simulated arm. Waits are in emulated time (the world's clock); wall limits are hang guards.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from tests.onboard.helpers import run
from zima.onboard.commands import ArmCommand
from zima.onboard.kinematics import ARM, ToolPose, us_from_ddeg
from zima.onboard.safety import DriveMode
from zima.sim.hil import HilSession
from zima.sim.hil_arm import SPECS, ArmFollower
from zima.sim.hil_config import HilConfig
from zima.sim.hil_world import WorldSnapshot
from zima.sim.robot import RobotConfig

# Gravity against a position servo of kp 20 N*m/rad sags the loaded joints by about
# 1 degree (the shoulder holds the most); one late ISR stretches a pulse by up to ~15 us
# (1.4 degrees) for one frame.
JOINT_TOLERANCE_RAD = math.radians(2.5)
GRIPPER_TOLERANCE_M = 0.001
PULSE_TOLERANCE_US = 15.0
TARGET = ToolPose(0.15, 0.08, 0.0, 1.2, 0.3)  # ahead, to the left, the gripper tipped down
GRIPPER_M = 0.01


@pytest.fixture
def hil_config(firmware_elf: Path, emulator_binary: Path, tmp_path: Path) -> HilConfig:
    # An operator drives: no policy model; no broker, no videos.
    return HilConfig(firmware=firmware_elf, emulator=emulator_binary, mqtt="off", videos=0,
                     model_path=tmp_path / "policy.onnx", out_dir=tmp_path / "out",
                     drive="operator", time_limit_s=120.0)


def arm_error(snap: WorldSnapshot, goal: tuple[float, ...]) -> list[float]:
    return [abs(a - g) for a, g in zip(snap.arm_rad, goal, strict=True)]


def settled(snap: WorldSnapshot, goal: tuple[float, ...]) -> bool:
    errors = arm_error(snap, goal)
    return max(errors[:5]) <= JOINT_TOLERANCE_RAD and errors[5] <= GRIPPER_TOLERANCE_M


def test_an_arm_command_moves_the_mujoco_arm_and_the_wrist_camera(hil_config: HilConfig) -> None:
    joints = ARM.ik(TARGET)
    ddeg = [*(j.servo.ddeg(v) for j, v in zip(ARM.joints, joints, strict=True)),
            ARM.gripper.servo.ddeg(GRIPPER_M)]
    # where each servo goes for its whole-0.1-degree command: the goal the arm must reach
    goal = tuple(s.servo.value_from_ddeg(d) for s, d in zip(SPECS, ddeg, strict=True))

    async def main() -> tuple[WorldSnapshot, list[WorldSnapshot], float]:
        async with HilSession(hil_config) as hil:
            first = hil.world.snapshot()
            shown = await asyncio.to_thread(hil.hub.wait_newer, "wrist", 0, 10.0)
            assert shown is not None
            seen, before = shown
            await hil.mode(DriveMode.TELEOP)
            assert await hil.runtime.handle(ArmCommand(tuple(ddeg)), "test") is None
            start_s = hil.world.snapshot().time_s
            while not settled(snap := hil.world.snapshot(), goal):
                assert snap.time_s < start_s + 5.0, (arm_error(snap, goal), snap.servo_us)
                await hil.sleep(0.05)
            held = []  # held there for 0.3 s, a few camera frames rendered meanwhile
            for _ in range(6):
                await hil.sleep(0.05)
                held.append(hil.world.snapshot())
            frame = await asyncio.to_thread(hil.hub.wait_newer, "wrist", seen, 10.0)
            assert frame is not None
            change = float(np.mean(np.abs(frame[1].astype(float) - before.astype(float))))
            return first, held, change

    first, held, wrist_change = run(main, guard_s=90)
    # before the command: mid travel (the power-on pulses) is the stowed pose
    assert first.arm_rad == pytest.approx(RobotConfig().arm_pose, abs=JOINT_TOLERANCE_RAD)
    for snap in held:
        assert settled(snap, goal), arm_error(snap, goal)
    # the pulses, one snapshot's each: the median of the hold (a late ISR stretches one)
    pulses = np.median([s.servo_us for s in held], axis=0)
    assert [abs(us - us_from_ddeg(d)) for us, d in zip(pulses, ddeg, strict=True)] \
        == pytest.approx([0.0] * 6, abs=PULSE_TOLERANCE_US)
    # the tool point, by the kinematics of MuJoCo's joints: near the IK target
    pos, _ = ARM.fk(held[-1].arm_rad[:5])
    assert float(np.linalg.norm(pos - [TARGET.x, TARGET.y, TARGET.z])) < 0.015
    assert wrist_change > 10.0  # the wrist camera turned with the arm: a different view


def test_pulses_become_joint_targets_through_the_calibration() -> None:
    """Each measured width maps to its joint's angle; no pulse yet leaves the joint."""
    mid = [1500.0] * 6
    assert ArmFollower.targets(mid) == pytest.approx([*ARM.mid_pose, ARM.gripper.servo.mid])
    ends = ArmFollower.targets([500.0, 2500.0, 0.0, 2520.0, 480.0, 2500.0])
    assert ends[0] == pytest.approx(ARM.joints[0].limits[0])
    assert ends[1] == pytest.approx(ARM.joints[1].limits[1])
    assert ends[2] is None
    assert ends[3] == ARM.joints[3].limits[1]  # a stretched pulse stays within the travel
    assert ends[4] == ARM.joints[4].limits[0]
    assert ends[5] == pytest.approx(ARM.gripper.limits[1])
    with pytest.raises(ValueError, match="servo pulses"):
        ArmFollower.targets([1500.0] * 5)
