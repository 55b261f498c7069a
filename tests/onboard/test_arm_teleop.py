"""Cartesian teleoperation of the arm (issue 17 item 2): cmd/arm's forms on any bytes, the
named poses, IK planning and its refusals, Safety's jog timeout, and the whole path through
``Runtime.handle`` to the real firmware's servo targets on the emulated board.

What the arm does is read back from the MCU (its ``ARM_STATE``: the servos' present
commands, which the firmware slews toward the targets); waits are hang guards only."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from zima.emulator import EmulatedBoard
from zima.onboard import commands
from zima.onboard.api import ArmRecord
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M, NAMED_POSES, POSE_NAMES
from zima.onboard.arm_teleop import ArmTeleop, ArmTeleopError
from zima.onboard.kinematics import ARM, ToolPose
from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.runtime import Runtime
from zima.onboard.safety import (
    DriveMode,
    ModeRefusedError,
    NotOwnerError,
    Safety,
    SafetyConfig,
)
from zima.protocol import ArmState

from .helpers import run
from .test_runtime import ask_mode, running, runtime_config

CONFIG = MqttConfig(robot_id="zima-test")
MQTT_MD = Path(__file__).resolve().parents[2] / "onboard" / "MQTT.md"
MID = ArmState(*(900,) * 6)  # the MCU's ARM_STATE until an ARM moves the servos


def arm(payload: Mapping[str, object]) -> object:
    return commands.parse_command("arm", json.dumps(payload).encode(), CONFIG)


def ddeg_of(joints: tuple[float, ...]) -> list[int]:
    return [j.servo.ddeg(q) for j, q in zip(ARM.joints, joints, strict=True)]


def seeded(state: ArmState = MID) -> ArmTeleop:
    teleop = ArmTeleop()
    teleop.observe(state, 0.0)
    return teleop


# ---- cmd/arm's forms ----------------------------------------------------------------------
def test_every_form_of_cmd_arm_parses_and_the_old_one_still_does() -> None:
    assert arm({"targets": [900, None, 450.4, None, None, 0]}) == commands.ArmCommand(
        (900, None, 450, None, None, 0))
    tool = {"x_m": 0.2, "y_m": 0, "z_m": 0.05, "pitch_rad": 0.5, "roll_rad": -0.1}
    assert arm(tool) == commands.ArmToolCommand(commands.ToolTarget(0.2, 0.0, 0.05, 0.5, -0.1))
    assert arm({**tool, "gripper_m": 0.01}) == commands.ArmToolCommand(
        commands.ToolTarget(0.2, 0.0, 0.05, 0.5, -0.1), 0.01)
    assert arm({"gripper_m": 0}) == commands.ArmToolCommand(None, 0.0)
    assert arm({"pose": "look_down", "request_id": "r7"}) == commands.ArmPoseCommand(
        "look_down", "r7")
    assert arm({"vz_m_s": -0.05}) == commands.ArmJogCommand(vz_m_s=-0.05)
    assert arm(dict.fromkeys(commands.JOG_KEYS, 0)) == commands.ArmJogCommand()


@pytest.mark.parametrize(("payload", "reason"), [
    ({"x_m": 0.2, "y_m": 0, "z_m": 0.05}, "arm takes one of"),  # half a pose
    ({"targets": [900] * 6, "pose": "ready"}, "arm takes one of"),  # two forms
    ({"pose": "ready", "gripper_m": 0.01}, "arm takes one of"),
    ({"vx_m_s": 0.01, "x_m": 0.1}, "arm takes one of"),
    ({}, "arm takes one of"),
    ({"pose": "wave"}, "pose must be one of"),
    ({"gripper_m": 0.05}, r"gripper_m=0.05 is outside \[0, 0.034\]"),
    ({"gripper_m": True}, "gripper_m must be a number"),
    ({"vx_m_s": 0.2}, r"vx_m_s=0.2 is outside \[-0.15, 0.15\]"),
    ({"vroll_rad_s": "fast"}, "vroll_rad_s must be a number"),
    ({"x_m": 2, "y_m": 0, "z_m": 0, "pitch_rad": 0, "roll_rad": 0}, r"x_m=2 is outside"),
    ({"x_m": 0, "y_m": 0, "z_m": 0, "pitch_rad": 1e999, "roll_rad": 0}, "Infinity"),
])
def test_a_bad_arm_command_says_why(payload: dict[str, object], reason: str) -> None:
    with pytest.raises(commands.CommandError, match=reason):
        arm(payload)


ARM_KEYS = ["targets", "pose", "gripper_m", *commands.TOOL_KEYS, *commands.JOG_KEYS,
            "request_id", "t", "x"]
VALUES = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
          | st.sampled_from([*POSE_NAMES, 0.01, -0.01, 0.2, 1e308])
          | st.lists(st.none() | st.integers(-10, 2000) | st.floats(), max_size=7))


@given(st.dictionaries(st.sampled_from(ARM_KEYS), VALUES, max_size=7).map(
    lambda body: json.dumps(body).encode()) | st.binary(max_size=120))
@example(b'{"x_m": 0.1, "y_m": 0, "z_m": 0, "pitch_rad": 0, "roll_rad": 0, "gripper_m": 0}')
@example(b'{"vx_m_s": 1' + b"0" * 400 + b"}")
@example(b'{"x_m": {"y": [1]}}')
def test_any_arm_payload_gives_a_bounded_command_or_a_clear_refusal(payload: bytes) -> None:
    try:
        command = commands.parse_command("arm", payload, CONFIG)
    except commands.CommandError as exc:
        refusal = str(exc)
        assert 0 < len(refusal) < 500
        return
    match command:
        case commands.ArmToolCommand(tool=tool, gripper_m=gripper):
            assert gripper is None or 0 <= gripper <= GRIPPER_MAX_OPENING_M
            if tool is not None:
                assert max(abs(tool.x_m), abs(tool.y_m), abs(tool.z_m)) \
                    <= commands.ARM_TOOL_BOUNDS.position_m
        case commands.ArmJogCommand():
            assert max(map(abs, command.velocity[:3])) <= commands.ARM_JOG_LIMITS.linear_m_per_s
        case commands.ArmPoseCommand(pose=pose):
            assert pose in POSE_NAMES
        case _:
            assert isinstance(command, commands.ArmCommand)


def test_mqtt_md_states_the_arm_forms_and_bounds_as_defined_here() -> None:
    text = " ".join(MQTT_MD.read_text().split())
    assert "|".join(f'"{p}"' for p in POSE_NAMES) in text
    assert f"refused beyond |{commands.ARM_TOOL_BOUNDS.position_m}| m" in text
    lim = commands.ARM_JOG_LIMITS
    assert (f"refused beyond |{lim.linear_m_per_s}| m/s, |{lim.angular_rad_per_s}| rad/s, "
            f"|{lim.gripper_m_per_s}| m/s") in text
    assert f"0 closed .. {GRIPPER_MAX_OPENING_M} m open" in text
    for key in (*commands.TOOL_KEYS, *commands.JOG_KEYS, "gripper_m", "telemetry/arm"):
        assert key in text


# ---- named poses ----------------------------------------------------------------------------
def test_named_poses_lie_within_the_joint_limits_and_stowed_is_the_power_on_pose() -> None:
    safety = SafetyConfig()
    for name, pose in NAMED_POSES.items():
        for joint, q in zip(ARM.joints, pose.joints_rad, strict=True):
            lo, hi = joint.limits
            assert lo + 0.2 <= q <= hi - 0.2, (name, joint.name, q)  # not at a stop
        plan = ArmTeleop().pose(name)
        for j, d in enumerate(plan.targets_ddeg):
            assert d is None or safety.arm_min_ddeg[j] <= d <= safety.arm_max_ddeg[j]
        assert ARM.tool_pose(pose.joints_rad).z > 0, name  # the tool above the chassis deck
    assert ArmTeleop().pose("stowed").targets_ddeg == (900,) * 6  # the firmware's power-on


@pytest.mark.sim
def test_look_down_points_the_wrist_camera_at_the_floor_ahead_of_the_robot() -> None:
    """In MuJoCo: the wrist camera's centre ray and the ray of its image's top edge both hit
    the floor, ahead of the chassis' front (the view is the floor in front, no horizon)."""
    # The simulator is not on the robot: only this test of the folder needs it.
    import mujoco  # noqa: PLC0415

    from zima.sim.robot import RobotConfig  # noqa: PLC0415
    from zima.sim.scenes import arena, world_xml  # noqa: PLC0415

    robot = RobotConfig()
    model = mujoco.MjModel.from_xml_string(world_xml(arena(), robot))
    data = mujoco.MjData(model)
    for name, q in zip(ARM.names, NAMED_POSES["look_down"].joints_rad, strict=True):
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = q
    mujoco.mj_forward(model, data)
    cam = model.camera("wrist")
    pos, axes = data.cam_xpos[cam.id], data.cam_xmat[cam.id].reshape(3, 3)
    half_fov = math.radians(float(model.cam_fovy[cam.id])) / 2
    floor = model.geom("floor").id
    for direction in (-axes[:, 2], -axes[:, 2] * math.cos(half_fov) + axes[:, 1]
                      * math.sin(half_fov)):
        hit = np.zeros(1, np.int32)
        distance = mujoco.mj_ray(model, data, pos, direction / np.linalg.norm(direction),
                                 None, 1, -1, hit)
        assert hit[0] == floor, model.geom(int(hit[0])).name if hit[0] >= 0 else "nothing"
        point = pos + distance * direction / np.linalg.norm(direction)
        assert robot.front_x_m < point[0] < 1.0, point  # ahead of the bumper, near


# ---- planning ---------------------------------------------------------------------------------
def test_a_tool_target_becomes_the_ik_solution_nearest_the_present_pose() -> None:
    teleop = seeded()
    target = commands.ToolTarget(0.2, 0.03, 0.04, 0.5, 0.1)
    plan = teleop.tool(target, gripper_m=None)
    solved = ARM.ik(ToolPose(0.2, 0.03, 0.04, 0.5, 0.1), ARM.mid_pose)
    assert plan.targets_ddeg == (*ddeg_of(solved), None)
    assert plan.joints_rad == solved


def test_an_unreachable_target_is_refused_with_the_nearest_reachable_pose() -> None:
    with pytest.raises(ArmTeleopError) as refused:
        seeded().tool(commands.ToolTarget(0.5, 0.0, 0.05, 0.5, 0.0), gripper_m=0.01)
    text = str(refused.value)
    assert "arm target x 0.500 y 0.000 z 0.050 m" in text
    assert "out of reach" in text
    assert "nearest reachable pose: x 0.2" in text  # the arm stretched toward it
    assert "mm," in text


def test_the_pose_is_read_from_the_mcu_until_the_runtime_commanded_one() -> None:
    teleop = ArmTeleop()
    with pytest.raises(ArmTeleopError, match="not known yet"):
        teleop.jog((0.01, 0, 0, 0, 0, 0))
    teleop.observe(ArmState(900, 1000, 800, 900, 900, 900), 1.0)
    joints, _ = teleop.present()
    assert joints[1] == pytest.approx(ARM.joints[1].servo.value_from_ddeg(1000))
    plan = teleop.pose("ready")
    teleop.sent(plan, plan.targets_ddeg)
    assert teleop.present()[0] == NAMED_POSES["ready"].joints_rad  # exact, not rounded
    assert teleop.commanded_ddeg == plan.targets_ddeg
    teleop.forget()  # an e-stop: the servos stopped where they were
    assert teleop.present()[0][1] == pytest.approx(ARM.joints[1].servo.value_from_ddeg(1000))


def test_a_clamped_target_is_the_present_pose_as_sent() -> None:
    teleop = seeded()
    plan = teleop.pose("ready")
    clamped = (*plan.targets_ddeg[:1], 1000, *plan.targets_ddeg[2:])
    teleop.sent(plan, clamped)
    joints, _ = teleop.present()
    assert joints[1] == ARM.joints[1].servo.value_from_ddeg(1000)
    assert joints[2] == NAMED_POSES["ready"].joints_rad[2]


def test_jog_steps_add_up_even_below_a_servo_step() -> None:
    teleop = seeded()
    plan = teleop.pose("ready")
    teleop.sent(plan, plan.targets_ddeg)
    start = ARM.tool_pose(teleop.present()[0])
    for _ in range(50):  # 50 x 0.1 mm: each far below one 0.1 deg step of the servos
        step = teleop.jog((0.0001, 0, 0, 0, 0, 0))
        teleop.sent(step, step.targets_ddeg)
    end = ARM.tool_pose(teleop.present()[0])
    assert end.x - start.x == pytest.approx(0.005, abs=1e-9)
    assert (end.y, end.z, end.pitch) == pytest.approx((start.y, start.z, start.pitch), abs=1e-9)


def test_a_jog_out_of_reach_is_refused_at_once_and_the_gripper_stops_at_its_ends() -> None:
    teleop = seeded()
    with pytest.raises(ArmTeleopError, match=r"jog stopped: x 0\.537"):
        teleop.jog((0.4, 0, 0, 0, 0, 0))
    opened = teleop.jog((0, 0, 0, 0, 0, 1.0))
    assert opened.joints_rad is None
    assert opened.gripper_closing_m == pytest.approx(0.0)  # wide open, no further
    assert opened.targets_ddeg[-1] == ARM.gripper.servo.ddeg(0.0)


# ---- Safety's jog ------------------------------------------------------------------------------
def teleop_safety() -> Safety:
    safety = Safety(SafetyConfig(), now_s=0.0)
    safety.update(now_s=0.0, link_up=True, battery="ok", estop_latched_on_mcu=False,
                  policy_ready=True)
    safety.request_mode(DriveMode.TELEOP, source="op", now_s=0.0)
    return safety


def test_a_jog_moves_by_the_last_velocity_over_the_time_since_at_most_the_timeout() -> None:
    safety = teleop_safety()
    v = (0.1, 0.0, -0.05, 0.0, 0.0, 0.02)
    assert safety.arm_jog(velocity=v, client="op", now_s=1.0) == (0.0,) * 6  # starts a clock
    assert safety.arm_jog(velocity=v, client="op", now_s=1.05) == pytest.approx(
        tuple(x * 0.05 for x in v))
    assert safety.lease is not None
    assert safety.lease.client == "op"  # a jog holds the lease, as teleop does
    # Late (0.45 s): the last jog moves no further than the teleop timeout (0.3 s) allows.
    late = safety.arm_jog(velocity=(0.0,) * 6, client="op", now_s=1.5)
    assert late == pytest.approx(tuple(x * SafetyConfig().teleop_timeout_s for x in v))
    assert safety.arm_jog(velocity=v, client="op", now_s=1.55) == (0.0,) * 6  # a zero held
    # Silent past the lease (0.5 s): the lease and the jog are gone; the next one starts.
    assert safety.arm_jog(velocity=v, client="op", now_s=9.0) == (0.0,) * 6


def test_a_jog_is_refused_where_teleop_is_and_forgotten_on_a_mode_change() -> None:
    safety = teleop_safety()
    v = (0.1,) + (0.0,) * 5
    safety.arm_jog(velocity=v, client="op", now_s=0.1)
    with pytest.raises(NotOwnerError, match="'op' holds the teleop lease"):
        safety.arm_jog(velocity=v, client="watcher", now_s=0.15)
    safety.engage_estop(source="op", now_s=0.2)
    with pytest.raises(ModeRefusedError, match="e-stop engaged"):
        safety.arm_jog(velocity=v, client="op", now_s=0.25)
    safety.release_estop(source="op", now_s=0.3)
    safety.request_mode(DriveMode.TELEOP, source="op", now_s=0.3)
    assert safety.arm_jog(velocity=v, client="op", now_s=0.35) == (0.0,) * 6  # afresh
    safety.update(now_s=0.4, link_up=True, battery="critical", estop_latched_on_mcu=False,
                  policy_ready=True)
    with pytest.raises(ModeRefusedError, match="low_battery"):
        safety.arm_jog(velocity=v, client="op", now_s=0.45)


# ---- through the runtime, to the firmware ----------------------------------------------------
async def servos_at(link: McuLink, want: Callable[[tuple[int, ...]], bool],
                    guard_s: float = 10.0) -> tuple[int, ...]:
    """The first ARM_STATE (the servos' present commands) that ``want`` accepts."""
    async with asyncio.timeout(guard_s):
        while True:
            state = link.arm_state
            if state is not None:
                servo = (state.pos0_ddeg, state.pos1_ddeg, state.pos2_ddeg, state.pos3_ddeg,
                         state.pos4_ddeg, state.pos5_ddeg)
                if want(servo):
                    return servo
            await asyncio.sleep(0.02)


def reaches(targets: tuple[int | None, ...]) -> Callable[[tuple[int, ...]], bool]:
    return lambda servo: all(t is None or s == t for s, t in zip(servo, targets, strict=True))


async def accepted(runtime: Runtime, command: commands.Command) -> None:
    """``command`` from "op" carried out; again while the refusal is a passing "link down"
    (a machine loaded enough to starve the emulator's TELEMETRY past the link's timeout)."""
    async with asyncio.timeout(10):
        while (error := await runtime.handle(command, "op")) is not None:
            assert "link down" in error, error
            await runtime.link.wait_status(lambda s: s.connected)
            await asyncio.sleep(0.05)  # one control tick: Safety sees the link again


async def refused(runtime: Runtime, command: commands.Command, client: str, because: str) -> None:
    """``command`` from ``client`` refused with a reason that says ``because``."""
    error = await runtime.handle(command, client)
    assert error is not None, command
    assert because in error, error


def with_runtime(tmp_path: Path, link_config: LinkConfig,
                 test: Callable[[Runtime], Awaitable[None]]) -> None:
    """``test`` against a runtime on the emulated board, under a 60 s wall-clock guard."""

    async def main() -> None:
        async with running(runtime_config(tmp_path, link_config)) as runtime:
            await test(runtime)

    run(main, guard_s=60)


async def teleop(runtime: Runtime) -> None:
    await ask_mode(runtime, DriveMode.TELEOP)
    await servos_at(runtime.link, lambda _servo: True)  # the first ARM_STATE is in


def test_a_tool_pose_and_a_named_pose_reach_the_servos_as_their_ik_solution(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    async def main(runtime: Runtime) -> None:
        await teleop(runtime)
        payload = json.dumps({"x_m": 0.2, "y_m": 0.05, "z_m": 0.03, "pitch_rad": 0.6,
                              "roll_rad": 0.2, "gripper_m": 0.01, "request_id": "t1"})
        command = commands.parse_command("arm", payload.encode(), CONFIG)
        await accepted(runtime, command)
        solved = ARM.ik(ToolPose(0.2, 0.05, 0.03, 0.6, 0.2), ARM.mid_pose)
        want = (*ddeg_of(solved), ARM.gripper.servo.ddeg(GRIPPER_MAX_OPENING_M - 0.01))
        await servos_at(runtime.link, reaches(want))
        record = await arm_record(runtime, lambda r: r.servo_ddeg == list(want))
        assert record.commanded_ddeg == list(want)
        assert record.tool_xyz_m == pytest.approx([0.2, 0.05, 0.03], abs=0.003)
        assert record.gripper_m == pytest.approx(0.01, abs=0.001)
        assert runtime.status().arm is not None

        await refused(runtime, arm_payload(x_m=0.6), "op", "nearest reachable pose")
        assert ArmRecord.from_json(runtime.telemetry_record("arm") or {}) \
            .commanded_ddeg == list(want)  # nothing sent

        await accepted(runtime, commands.ArmPoseCommand("look_down"))
        pose = NAMED_POSES["look_down"]
        await servos_at(runtime.link, reaches((*ddeg_of(pose.joints_rad), None)))

    with_runtime(tmp_path, link_config, main)


async def arm_record(runtime: Runtime, want: Callable[[ArmRecord], bool]) -> ArmRecord:
    """The runtime's telemetry/arm, once ``want`` holds (the control loop takes in each
    ARM_STATE at its next tick)."""
    async with asyncio.timeout(10):
        while True:
            payload = runtime.telemetry_record("arm")
            if payload is not None and want(record := ArmRecord.from_json(payload)):
                return record
            await asyncio.sleep(0.02)


def arm_payload(**tool: float) -> commands.ArmToolCommand:
    values = {"x_m": 0.2, "y_m": 0.0, "z_m": 0.05, "pitch_rad": 0.5, "roll_rad": 0.0, **tool}
    return commands.ArmToolCommand(commands.ToolTarget(**values))


def test_a_jog_moves_only_while_jogs_keep_coming(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    """A held key's jogs move the tool; when they stop (no release message: a dropped
    connection) the targets stop where the last one put them, and the servos hold there."""
    async def main(runtime: Runtime) -> None:
        await teleop(runtime)
        await accepted(runtime, commands.ArmPoseCommand("ready"))
        ready = ArmTeleop().pose("ready").targets_ddeg
        await servos_at(runtime.link, reaches(ready))
        start = ARM.tool_pose(NAMED_POSES["ready"].joints_rad)
        speed = 0.05
        first_s: float | None = None
        taken = 0
        async with asyncio.timeout(20):
            while taken < 10:  # ~0.5 s of a held key at the page's 20 Hz
                before_s = runtime.clock()
                error = await runtime.handle(commands.ArmJogCommand(vx_m_s=speed), "op")
                # a machine loaded enough to starve the emulator drops the link a moment
                assert error is None or "link down" in error, error
                if error is None:
                    first_s = before_s if first_s is None else first_s
                    taken += 1
                await asyncio.sleep(0.05)
        last_s = runtime.clock()
        assert first_s is not None
        commanded = runtime.status().arm
        assert commanded is not None
        sent = tuple(commanded.commanded_ddeg)
        assert sent != ready
        await asyncio.sleep(0.6)  # twice the teleop timeout: nothing more is sent
        arm_now = runtime.status().arm
        assert arm_now is not None
        assert tuple(arm_now.commanded_ddeg) == sent
        servo = await servos_at(runtime.link, reaches(sent))
        joints = [j.servo.value_from_ddeg(d) for j, d in zip(ARM.joints, servo, strict=False)]
        moved_m = ARM.tool_pose(joints).x - start.x
        # It moved forward by what the jogs integrated: less than the time they came
        # over (the last one's velocity is never integrated), give or take a servo step.
        assert 0.002 < moved_m <= speed * (last_s - first_s) + 0.002, moved_m

    with_runtime(tmp_path, link_config, main)


def test_arm_commands_are_refused_in_estop_and_for_a_watcher(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    async def main(runtime: Runtime) -> None:
        await refused(runtime, commands.ArmPoseCommand("ready"), "op", "idle")
        await teleop(runtime)
        await accepted(runtime, commands.LeaseCommand("take"))
        for command in (commands.ArmPoseCommand("ready"), arm_payload(),
                        commands.ArmJogCommand(vz_m_s=0.1),
                        commands.ArmCommand((None,) * 5 + (0,))):
            await refused(runtime, command, "watcher", "'op' holds the teleop lease")
        assert await runtime.handle(commands.EstopCommand(engaged=True), "op") is None
        for command in (commands.ArmPoseCommand("ready"), arm_payload(),
                        commands.ArmJogCommand(vz_m_s=0.1)):
            await refused(runtime, command, "op", "e-stop")
        record = runtime.status().arm
        assert record is not None
        assert record.commanded_ddeg == [None] * 6  # nothing was ever sent
        assert await runtime.handle(commands.EstopCommand(engaged=False), "op") is None
        await ask_mode(runtime, DriveMode.TELEOP)
        await accepted(runtime, commands.ArmPoseCommand("ready"))

    with_runtime(tmp_path, link_config, main)


def test_what_a_lost_mcu_said_of_the_arm_is_published_as_stale_and_arm_commands_refused(
    board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    async def main(runtime: Runtime) -> None:
        await teleop(runtime)
        fresh = await arm_record(runtime, lambda r: not r.stale)
        assert fresh.age_s < 1.0
        assert fresh.servo_ddeg == [900] * 6  # the power-on pose: stowed
        await asyncio.to_thread(board.close)  # the USB cable pulled
        await runtime.link.wait_status(lambda s: not s.connected, timeout_s=5.0)
        lost = await arm_record(runtime, lambda r: r.stale)
        await asyncio.sleep(0.3)
        older = await arm_record(runtime, lambda r: r.stale)
        assert older.age_s >= lost.age_s + 0.25  # it grows old; never restamped
        await refused(runtime, commands.ArmPoseCommand("ready"), "op", "link down")

    with_runtime(tmp_path, link_config, main)
