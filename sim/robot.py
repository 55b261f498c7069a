"""The Zima robot as MJCF: a tracked base, a 5-DOF arm with gripper, two cameras.

Tracks. Contact-friction skid steering in MuJoCo (wheels on the floor) did not turn in
place: with two wheels per side the sideways scrub cancels the drive (1-25 deg/s instead
of ~80, measured). So the base is planar (joints base_x, base_y, base_yaw) and follows
its tracks: each track is two wheels on hinge joints with velocity actuators (the motors;
the wheels touch nothing), and every physics step :class:`TrackDrive` turns the wheels'
actual speeds into base velocity targets, v = (v_l + v_r) / 2 forward and
yaw rate = turn_efficiency * (v_r - v_l) / gauge. The base's actuators are force-limited,
so walls and furniture stop it (the tracks then slip, and the encoders overcount, as on
the real robot). A wheel joint's angle is the track's encoder:
``angle * wheel_radius_m * ticks_per_m`` counts. The arm is held still by position
actuators at a stowed pose; its geoms do not collide (it stays above the chassis).

Frames: the robot's body frame has x forward, y left, z up, origin on the ground under
the chassis centre. MuJoCo cameras look along their -z axis with y up in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mujoco

from zima.contract import DEFAULT, Contract
from zima.onboard.kinematics import ARM, GRIPPER, JOINT_NAMES
from zima.protocol.enums import PARAMS, ParamId

ROOT_BODY = "robot"
BASE_JOINTS = ("base_x", "base_y", "base_yaw")  # planar base: world x, world y, yaw
LEFT_WHEELS = ("wheel_left_front", "wheel_left_rear")
RIGHT_WHEELS = ("wheel_right_front", "wheel_right_rear")
ARM_JOINTS = (*JOINT_NAMES, GRIPPER)  # the protocol's joints 0..5 (zima.onboard.kinematics)
CAMERA_MOUNTS = ("forward", "wrist")  # the cameras this model has, by contract name


@dataclass(frozen=True, slots=True)
class RobotConfig:
    """Dimensions, masses and drive of the simulated robot."""

    # Chassis length and width over the tracks (the real base: 0.30 x 0.25 m), metres.
    length_m: float = 0.30
    width_m: float = 0.25
    # Track wheels: radius and the centre distance of front and rear wheel, metres.
    wheel_radius_m: float = 0.032
    wheelbase_m: float = 0.22
    # Width of one track, metres; the track centre lines are width_m - track_w_m apart.
    track_w_m: float = 0.04
    # Masses: chassis with battery and electronics, each wheel, the whole arm, kg (~2.5 total).
    chassis_kg: float = 1.6
    wheel_kg: float = 0.1
    arm_kg: float = 0.5
    # Track motor: velocity servo gain (N*m per rad/s) and torque limit per wheel (N*m).
    wheel_kv: float = 0.05
    wheel_torque_nm: float = 0.8
    # Largest push of the tracks on the base, N, and yaw torque, N*m (what a wall resists).
    base_force_n: float = 25.0
    base_torque_nm: float = 3.0
    # Yaw rate over (v_r - v_l) / gauge: tracks scrub when turning in place. 0.75 is a
    # typical rubber-track-on-hard-floor figure; measure it on the real robot.
    turn_efficiency: float = 0.75
    # Encoder counts per metre of track: the firmware's ticks_per_m default (PROTOCOL.md).
    ticks_per_m: float = PARAMS[ParamId.ticks_per_m].default
    # Vertical fields of view, degrees (a webcam's ~75 deg diagonal is ~58 deg vertical).
    forward_fovy_deg: float = 58.0
    wrist_fovy_deg: float = 70.0
    # Downward tilt of the forward camera, degrees.
    forward_tilt_deg: float = 12.0
    # Arm at reset: yaw, shoulder, elbow, wrist pitch, wrist roll (rad), gripper closed by (m).
    # The servos' mid travel, where the firmware puts them at power-on: the stowed pose.
    arm_pose: tuple[float, ...] = (*ARM.mid_pose, ARM.gripper.servo.mid)

    def __post_init__(self) -> None:
        if len(self.arm_pose) != len(ARM_JOINTS):
            raise ValueError(f"robot: arm_pose needs {len(ARM_JOINTS)} values")
        if min(self.length_m, self.width_m, self.wheel_radius_m, self.ticks_per_m) <= 0:
            raise ValueError("robot: sizes and ticks_per_m must be positive")

    @property
    def track_gauge_m(self) -> float:
        """Distance between the two tracks' centre lines, metres."""
        return self.width_m - self.track_w_m

    @property
    def front_x_m(self) -> float:
        """The front bumper's x in the body frame, metres."""
        return self.length_m / 2

    @property
    def radius_m(self) -> float:
        """Radius of the circle the base sweeps when turning in place, metres."""
        return math.hypot(self.length_m, self.width_m) / 2


def wheel_rad_s(track_mm_s: float, cfg: RobotConfig) -> float:
    """Wheel angular velocity (rad/s) that moves a track at ``track_mm_s``."""
    return track_mm_s / 1000.0 / cfg.wheel_radius_m


def encoder_ticks(wheel_angle_rad: float, cfg: RobotConfig) -> int:
    """Encoder counts of a track whose wheel turned ``wheel_angle_rad`` since reset."""
    return round(wheel_angle_rad * cfg.wheel_radius_m * cfg.ticks_per_m)


class TrackDrive:
    """Drives the planar base from its tracks' wheels; one instance per model."""

    def __init__(self, model: mujoco.MjModel, cfg: RobotConfig) -> None:
        self.cfg = cfg
        self.model = model
        self._act = {n: model.actuator(n).id for n in (*BASE_JOINTS, *LEFT_WHEELS, *RIGHT_WHEELS)}
        dof = {n: int(model.jnt_dofadr[model.joint(n).id]) for n in (*LEFT_WHEELS, *RIGHT_WHEELS)}
        qpos = {n: int(model.jnt_qposadr[model.joint(n).id])
                for n in (*BASE_JOINTS, *LEFT_WHEELS, *RIGHT_WHEELS)}
        self._left_dof = [dof[n] for n in LEFT_WHEELS]
        self._right_dof = [dof[n] for n in RIGHT_WHEELS]
        self._left_q = [qpos[n] for n in LEFT_WHEELS]
        self._right_q = [qpos[n] for n in RIGHT_WHEELS]
        self._yaw_q = qpos["base_yaw"]

    def set_tracks(self, data: mujoco.MjData, left_mm_s: float, right_mm_s: float) -> None:
        """Set the track motors' velocity targets."""
        for n in LEFT_WHEELS:
            data.ctrl[self._act[n]] = wheel_rad_s(left_mm_s, self.cfg)
        for n in RIGHT_WHEELS:
            data.ctrl[self._act[n]] = wheel_rad_s(right_mm_s, self.cfg)

    def step(self, data: mujoco.MjData, n_steps: int) -> None:
        """Advance physics ``n_steps`` steps, the base following the tracks at each one."""
        r, gauge, eff = self.cfg.wheel_radius_m, self.cfg.track_gauge_m, self.cfg.turn_efficiency
        ax, ay, ayaw = self._act["base_x"], self._act["base_y"], self._act["base_yaw"]
        for _ in range(n_steps):
            v_left_m_s = float(data.qvel[self._left_dof].mean()) * r
            v_right_m_s = float(data.qvel[self._right_dof].mean()) * r
            v_m_s, yaw = (v_left_m_s + v_right_m_s) / 2, float(data.qpos[self._yaw_q])
            data.ctrl[ax] = v_m_s * math.cos(yaw)
            data.ctrl[ay] = v_m_s * math.sin(yaw)
            data.ctrl[ayaw] = eff * (v_right_m_s - v_left_m_s) / gauge
            mujoco.mj_step(self.model, data)

    def encoders(self, data: mujoco.MjData) -> tuple[int, int]:
        """(left, right) encoder counts since reset, as the MCU would report them."""
        left = float(data.qpos[self._left_q].mean())
        right = float(data.qpos[self._right_q].mean())
        return encoder_ticks(left, self.cfg), encoder_ticks(right, self.cfg)


def _camera_axes(tilt_deg: float) -> str:
    """MJCF ``xyaxes`` of a camera looking along the parent's +x, tilted down by tilt_deg."""
    t = math.radians(tilt_deg)
    return f"0 -1 0 {math.sin(t):.4f} 0 {math.cos(t):.4f}"


def robot_xml(cfg: RobotConfig, contract: Contract = DEFAULT) -> str:
    """The ``<body>`` of the robot (planar joints, at the origin) for a worldbody."""
    missing = set(contract.cameras) - set(CAMERA_MOUNTS)
    if missing:
        raise ValueError(f"robot: the contract asks for cameras this model lacks: {missing}")
    r, hl, gy = cfg.wheel_radius_m, cfg.length_m / 2, cfg.track_gauge_m / 2
    chassis_hw, chassis_hh = gy - cfg.track_w_m / 2, 0.03
    chassis_z = r + 0.025  # the chassis rides a little above the wheel axles
    wx = cfg.wheelbase_m / 2
    armature = (cfg.chassis_kg / 4) * r**2  # a quarter of the base's mass, reflected
    nocol = 'contype="0" conaffinity="0"'
    wheels = []
    for name in (*LEFT_WHEELS, *RIGHT_WHEELS):
        x = wx if name.endswith("front") else -wx
        y = gy if "_left_" in name else -gy
        wheels.append(
            f'<body name="{name}" pos="{x} {y} {r}">'
            f'<joint name="{name}" type="hinge" axis="0 1 0" armature="{armature:.6f}"/>'
            f'<geom type="cylinder" size="{r * 0.9} {cfg.track_w_m / 2 + 0.002}" zaxis="0 1 0" '
            f'{nocol} mass="{cfg.wheel_kg}" rgba=".05 .05 .05 1"/></body>'
        )
    arm_z = chassis_z + chassis_hh
    tracks = "".join(
        f'<geom name="track_{side}" type="box" size="{hl - 0.01} {cfg.track_w_m / 2} {r}" '
        f'pos="0 {y} {r + 0.002}" mass="0" rgba=".15 .15 .15 1"/>'
        for side, y in (("left", gy), ("right", -gy))
    )
    return f"""
<body name="{ROOT_BODY}" pos="0 0 0">
  <joint name="base_x" type="slide" axis="1 0 0"/>
  <joint name="base_y" type="slide" axis="0 1 0"/>
  <joint name="base_yaw" type="hinge" axis="0 0 1"/>
  <geom name="chassis" type="box" size="{hl} {chassis_hw} {chassis_hh}" pos="0 0 {chassis_z}"
        mass="{cfg.chassis_kg}" rgba=".85 .55 .1 1"/>
  {tracks}
  <camera name="forward" pos="{hl - 0.005} 0 {arm_z + 0.015}" xyaxes="{_camera_axes(
      cfg.forward_tilt_deg)}" fovy="{cfg.forward_fovy_deg}"/>
  {"".join(wheels)}
  <body name="arm_base" pos="{hl - 0.12} 0 {arm_z}">
    {_arm_xml(cfg)}
  </body>
</body>"""


# The body each arm joint moves. ``arm_base`` holds them, fixed on the chassis: its frame is
# the kinematics' frame (zima.onboard.kinematics).
ARM_BODIES = ("arm_turret", "arm_upper", "arm_fore", "arm_wrist", "hand")
_NOCOL = 'contype="0" conaffinity="0"'


def _fmt(v: tuple[float, ...]) -> str:
    return " ".join(f"{x:.6g}" for x in v)


def _arm_xml(cfg: RobotConfig) -> str:
    """The arm inside body ``arm_base``, from :data:`zima.onboard.kinematics.ARM`: its
    joints (axes, offsets, ranges: the servos' travel), links drawn between them, the
    gripper, the wrist camera and the ``tool`` site midway between the open fingers."""
    link_kg, nocol = cfg.arm_kg / 6, _NOCOL
    joints = ARM.joints
    # Each body's own geoms, in the body's frame; a link reaches to the next joint.
    fore, wrist, hand = (joints[i].offset_m for i in (2, 3, 4))
    tool_x, gap = ARM.tool_m[0], ARM.finger_gap_m
    geoms = (
        (f'<geom type="cylinder" size="0.03 0.01" pos="0 0 0.01" {nocol} mass="{link_kg}" '
         f'rgba=".3 .3 .3 1"/>'),
        (f'<geom type="capsule" fromto="0 0 0 {_fmt(fore)}" size="0.012" {nocol} '
         f'mass="{link_kg}" rgba=".8 .8 .8 1"/>'),
        (f'<geom type="capsule" fromto="0 0 0 {_fmt(wrist)}" size="0.011" {nocol} '
         f'mass="{link_kg}" rgba=".8 .8 .8 1"/>'),
        (f'<geom type="capsule" fromto="0 0 0 {_fmt(hand)}" size="0.01" {nocol} '
         f'mass="{link_kg}" rgba=".3 .3 .3 1"/>'),
        (f'<geom type="box" size="0.015 0.025 0.012" pos="0.015 0 0" {nocol} mass="{link_kg}" '
         f'rgba=".3 .3 .3 1"/>'
         f'<geom name="finger_fixed" type="box" size="0.02 0.003 0.01" '
         f'pos="{tool_x} {-gap / 2} 0" {nocol} mass="0.01" rgba=".6 .6 .6 1"/>'
         f'<site name="tool" pos="{_fmt(ARM.tool_m)}" size="0.004" group="5" rgba="1 .2 .2 1"/>'
         f'<camera name="wrist" pos="0.03 0 0.02" xyaxes="{_camera_axes(0.0)}" '
         f'fovy="{cfg.wrist_fovy_deg}"/>' + _gripper_xml(link_kg)),
    )
    damping = (0.5, 0.5, 0.5, 0.2, 0.2)
    xml = ""
    for i in reversed(range(len(joints))):  # innermost first: each body wraps the next
        j = joints[i]
        lo, hi = j.limits
        joint = (f'<joint name="{j.name}" axis="{_fmt(_AXIS_VECTORS[j.axis])}" '
                 f'range="{lo:.9g} {hi:.9g}" damping="{damping[i]}"/>')
        inner = joint + geoms[i] + xml
        xml = f'<body name="{ARM_BODIES[i]}" pos="{_fmt(j.offset_m)}">{inner}</body>'
    return xml


def _gripper_xml(link_kg: float) -> str:
    g = ARM.gripper
    lo, hi = g.limits
    return (f'<body name="jaw" pos="{_fmt(g.offset_m)}">'
            f'<joint name="{g.name}" type="slide" axis="{_fmt(_AXIS_VECTORS[g.axis])}" '
            f'range="{lo:.9g} {hi:.9g}" damping="5"/>'
            f'<geom name="finger_jaw" type="box" size="0.02 0.003 0.01" {_NOCOL} '
            f'mass="{link_kg - 0.01}" rgba=".6 .6 .6 1"/></body>')


_AXIS_VECTORS = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1), "-y": (0, -1, 0)}


def actuators_xml(cfg: RobotConfig) -> str:
    """The ``<actuator>`` children: base followers, track motors, arm position servos."""
    tau, f, t = cfg.wheel_torque_nm, cfg.base_force_n, cfg.base_torque_nm
    base = (f'<velocity name="base_x" joint="base_x" kv="200" forcerange="{-f} {f}"/>'
            f'<velocity name="base_y" joint="base_y" kv="200" forcerange="{-f} {f}"/>'
            f'<velocity name="base_yaw" joint="base_yaw" kv="20" forcerange="{-t} {t}"/>')
    wheels = "".join(
        f'<velocity name="{n}" joint="{n}" kv="{cfg.wheel_kv}" forcerange="{-tau} {tau}"/>'
        for n in (*LEFT_WHEELS, *RIGHT_WHEELS)
    )
    # Hobby servos hold their angle stiffly: kp 20 N*m/rad leaves a loaded joint ~1 degree
    # low under gravity. The gripper is a slide: 20 N/m would let a tilted jaw sag by
    # millimetres, so its servo pushes 400 N/m (the jaw's damping keeps it calm).
    arm = "".join(f'<position name="{n}" joint="{n}" kp="{400 if n == GRIPPER else 20}"/>'
                  for n in ARM_JOINTS)
    return base + wheels + arm
