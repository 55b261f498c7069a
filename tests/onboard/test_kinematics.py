"""The arm's kinematics without MuJoCo (what the robot computer runs): limits, round trips,
the choice of solution, refusals, the servo calibration, and ``zima arm``.

tests/sim/test_arm_kinematics.py holds the same functions to MuJoCo's own kinematics.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.onboard import arm_cli
from zima.onboard.kinematics import (
    ARM,
    JOINT_NAMES,
    ORIENTATION_WEIGHT_M_PER_RAD,
    SERVO_HOME_DDEG,
    SERVO_MAX_DDEG,
    SERVO_MAX_US,
    SERVO_MIN_US,
    ArmDescription,
    JointSpec,
    ServoCalibration,
    ToolPose,
    UnreachableError,
    us_from_ddeg,
)
from zima.onboard.safety import SafetyConfig

ROOT = Path(__file__).resolve().parents[2]
POSITION_TOLERANCE_M = 1e-6
ANGLE_TOLERANCE_RAD = 1e-6


def joint_angles() -> st.SearchStrategy[tuple[float, ...]]:
    """Joint angles within the limits, ends included."""
    return st.tuples(*(st.floats(lo, hi) for lo, hi in ARM.limits))


def assert_same_pose(a: tuple[float, ...], b: tuple[float, ...]) -> None:
    (pa, ra), (pb, rb) = ARM.fk(a), ARM.fk(b)
    assert np.linalg.norm(pa - pb) <= POSITION_TOLERANCE_M, (a, b)
    cos = (np.trace(ra.T @ rb) - 1) / 2
    assert math.acos(min(max(cos, -1.0), 1.0)) <= ANGLE_TOLERANCE_RAD, (a, b)


def within_limits(q: tuple[float, ...]) -> bool:
    return all(lo <= v <= hi for v, (lo, hi) in zip(q, ARM.limits, strict=True))


@given(joint_angles(), joint_angles())
def test_ik_of_fk_reaches_the_pose_within_the_limits(q: tuple[float, ...],
                                                      present: tuple[float, ...]) -> None:
    solved = ARM.ik(ARM.tool_pose(q), present)
    assert within_limits(solved)
    assert_same_pose(solved, q)


@given(joint_angles())
def test_from_the_pose_itself_ik_returns_that_pose(q: tuple[float, ...]) -> None:
    """The nearest solution to the present pose is the present pose."""
    solved = ARM.ik(ARM.tool_pose(q), q)
    assert max(abs(a - b) for a, b in zip(solved, q, strict=True)) < 1e-6, (solved, q)


@given(joint_angles(), joint_angles())
def test_the_solution_nearest_the_present_pose_wins(q: tuple[float, ...],
                                                     present: tuple[float, ...]) -> None:
    target = ARM.tool_pose(q)
    solved = ARM.ik(target, present)
    for other in ARM.solutions(target, heading_hint=present[0]):
        fitted = ARM._fit(other, present)
        if fitted is not None:
            assert (sum((a - b) ** 2 for a, b in zip(solved, present, strict=True))
                    <= sum((a - b) ** 2 for a, b in zip(fitted, present, strict=True)) + 1e-9)


@settings(max_examples=50)  # a refusal searches for the nearest pose: ~0.05 s each
@given(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5), st.floats(-0.3, 0.5),
       st.floats(-math.pi, math.pi), st.floats(-math.pi, math.pi))
def test_any_target_is_solved_within_limits_or_refused_with_a_reachable_pose(
        x: float, y: float, z: float, pitch: float, roll: float) -> None:
    target = ToolPose(x, y, z, pitch, roll)
    refused: UnreachableError | None = None
    try:
        solved = ARM.ik(target)
    except UnreachableError as exc:
        refused = exc
    if refused is not None:
        assert within_limits(refused.joints)
        assert refused.pose == ARM.tool_pose(refused.joints)
        assert refused.position_error_m + refused.orientation_error_rad > 1e-6
        assert refused.reason in str(refused)
        return
    assert within_limits(solved)
    pose = ARM.tool_pose(solved)
    assert math.dist((pose.x, pose.y, pose.z), (x, y, z)) <= POSITION_TOLERANCE_M


def test_a_target_out_of_reach_is_refused_with_the_nearest_pose() -> None:
    with pytest.raises(UnreachableError, match="out of reach") as refused:
        ARM.ik(ToolPose(0.6, 0.0, 0.1, 0.0, 0.0))
    near = refused.value
    # stretched toward the target: as far out as the arm goes (0.02 + 0.12 + 0.10 + 0.08)
    assert near.pose.x > 0.28
    assert near.position_error_m == pytest.approx(
        math.dist((near.pose.x, near.pose.y, near.pose.z), (0.6, 0.0, 0.1)))


def test_a_roll_beyond_the_servo_is_refused_naming_the_joint() -> None:
    reachable = ARM.tool_pose(ARM.mid_pose)
    target = ToolPose(reachable.x, reachable.y, reachable.z, reachable.pitch, 2.5)
    with pytest.raises(UnreachableError, match="arm_wrist_roll would need") as refused:
        ARM.ik(target)
    near = refused.value
    assert near.joints[4] == pytest.approx(ARM.limits[4][1])  # the roll as far as it turns
    # nearer (position and weighted orientation) than keeping the rest of the pose
    kept = (*ARM.mid_pose[:4], ARM.limits[4][1])
    assert weighted_error(near.joints, target) <= weighted_error(kept, target) + 1e-9
    assert near.position_error_m < 0.01


def weighted_error(q: tuple[float, ...], goal: ToolPose) -> float:
    """The distance the refusal minimises: sqrt(|position error|^2 + (2 w sin(angle / 2))^2)
    with w = ORIENTATION_WEIGHT_M_PER_RAD (about w metres per radian for small angles)."""
    pos, rot = ARM.fk(q)
    h, p, r = math.atan2(goal.y, goal.x), goal.pitch, goal.roll
    rz = np.array([[math.cos(h), -math.sin(h), 0], [math.sin(h), math.cos(h), 0], [0, 0, 1]])
    ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
    rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
    goal_rot = rz @ ry @ rx
    angle = math.acos(min(max((np.trace(goal_rot.T @ rot) - 1) / 2, -1.0), 1.0))
    return math.hypot(float(np.linalg.norm(pos - [goal.x, goal.y, goal.z])),
                      2 * ORIENTATION_WEIGHT_M_PER_RAD * math.sin(angle / 2))


def test_a_target_behind_the_yaw_axis_is_reached_over_it() -> None:
    """The yaw servo turns +-90 degrees: behind the base, the arm leans back instead."""
    q = (0.3, -1.7, -1.3, 2.0, 0.5)
    pose = ARM.tool_pose(q)
    assert pose.x < 0
    assert_same_pose(ARM.ik(pose), q)


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="finite"):
        ARM.ik(ToolPose(math.nan, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="present pose"):
        ARM.ik(ARM.tool_pose(ARM.mid_pose), (0.0, 0.0))
    with pytest.raises(ValueError, match="last axis"):
        ARM.fk([0.0, 0.0, 0.0])


def test_a_description_the_closed_form_cannot_solve_is_refused() -> None:
    joints = list(ARM.joints)
    joints[2] = JointSpec("arm_elbow", "x", joints[2].offset_m, joints[2].servo)
    with pytest.raises(ValueError, match="axes"):
        ArmDescription(tuple(joints), ARM.gripper, ARM.tool_m, ARM.finger_gap_m)
    stopped = JointSpec("arm_yaw", "z", (0, 0, 0), ServoCalibration(0.0, math.pi / 2000),
                        stops=(2.0, 3.0))
    with pytest.raises(ValueError, match="stops"):
        _ = stopped.limits


# ---- servo calibration: decidegrees, pulses, angles ---------------------------------------

@given(st.integers(0, SERVO_MAX_DDEG))
def test_a_command_and_its_angle_round_trip(ddeg: int) -> None:
    for joint in (*ARM.joints, ARM.gripper):
        assert joint.servo.ddeg(joint.servo.value_from_ddeg(ddeg)) == ddeg


@given(joint_angles())
def test_commands_of_angles_within_limits_are_within_the_commanded_limits(
        q: tuple[float, ...]) -> None:
    for joint, value in zip(ARM.joints, q, strict=True):
        lo, hi = joint.ddeg_limits
        assert lo <= joint.servo.ddeg(value) <= hi
        # one 0.1-degree step of the servo: the command is that close to the angle
        commanded = joint.servo.value_from_ddeg(joint.servo.ddeg(value))
        assert abs(commanded - value) <= math.radians(0.11)


def test_mid_travel_is_the_stowed_pose_and_the_limits_are_the_servo_travel() -> None:
    for joint in (*ARM.joints, ARM.gripper):
        assert joint.servo.value_from_ddeg(SERVO_HOME_DDEG) == pytest.approx(joint.servo.mid)
        assert joint.ddeg_limits == (0, SERVO_MAX_DDEG)
    assert [j.servo.ddeg(v) for j, v in zip(ARM.joints, ARM.mid_pose, strict=True)] == [900] * 5


def test_the_firmware_agrees_with_the_description() -> None:
    """The constants the calibration assumes are the firmware's own."""
    pins = (ROOT / "firmware/src/pins.h").read_text()
    servo_h = (ROOT / "firmware/lib/zima_core/src/servo.h").read_text()

    def define(name: str) -> int:
        match = re.search(rf"#define {name} (\d+)", pins)
        assert match, name
        return int(match.group(1))

    def const(name: str) -> int:
        match = re.search(rf"const uint16_t {name} = (\d+);", servo_h)
        assert match, name
        return int(match.group(1))

    assert define("ZIMA_SERVO_MIN_US") == SERVO_MIN_US
    assert define("ZIMA_SERVO_MAX_US") == SERVO_MAX_US
    assert define("ZIMA_SERVO_COUNT") == len(JOINT_NAMES) + 1
    assert const("kServoMaxDdeg") == SERVO_MAX_DDEG
    assert const("kServoHomeDdeg") == SERVO_HOME_DDEG
    assert us_from_ddeg(SERVO_HOME_DDEG) == 1500
    # the firmware's pulse formula (servos.cpp), as us_from_ddeg reproduces it
    assert "ddeg) * (ZIMA_SERVO_MAX_US - ZIMA_SERVO_MIN_US) / 1800" in (
        ROOT / "firmware/src/servos.cpp").read_text()


def test_the_runtime_clamps_arm_commands_to_the_description() -> None:
    """safety.py's default per-joint limits are the description's (gripper last)."""
    limits = [j.ddeg_limits for j in (*ARM.joints, ARM.gripper)]
    config = SafetyConfig()
    assert list(zip(config.arm_min_ddeg, config.arm_max_ddeg, strict=True)) == limits


# ---- zima arm -----------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    """``zima arm ARGV`` (``zima.cli`` registers the module as ``arm``)."""
    parser = argparse.ArgumentParser(prog="zima arm")
    arm_cli.add_arguments(parser)
    return arm_cli.run(parser.parse_args(argv))


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, object]]:
    status = main([*argv])
    return status, json.loads(capsys.readouterr().out)


def test_zima_arm_fk_then_ik(capsys: pytest.CaptureFixture[str]) -> None:
    q = (0.4, 0.3, 0.5, 0.6, -0.2)
    status, pose = run_cli(capsys, "fk", *map(str, q))
    assert status == 0
    assert pose["outside_limits"] == []
    xyz = pose["xyz_m"]
    assert isinstance(xyz, list)
    status, answer = run_cli(capsys, "ik", *map(str, xyz), str(pose["pitch_rad"]),
                             str(pose["roll_rad"]), "--from", *map(str, q))
    assert status == 0
    assert answer["joints_rad"] == pytest.approx(list(q), abs=1e-9)
    assert answer["ddeg"] == [j.servo.ddeg(v) for j, v in zip(ARM.joints, q, strict=True)]


def test_zima_arm_ik_refuses_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["ik", "0.6", "0", "0.1", "0", "0"])
    captured = capsys.readouterr()
    assert status == 2
    answer = json.loads(captured.out)
    assert answer["unreachable"].startswith("out of reach")
    assert set(answer["nearest"]) >= {"xyz_m", "joints_rad", "position_error_m"}
    assert "nearest reachable pose" in captured.err
    assert main(["ik", "nan", "0", "0", "0", "0"]) == 1
