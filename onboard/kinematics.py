"""Zima's arm: one description, forward kinematics and closed-form inverse kinematics.

Pure numpy, so the robot computer (which has no MuJoCo) and the simulator share it: the
MuJoCo model builds its arm from :data:`ARM` (:mod:`zima.sim.robot`), the firmware's servo
range and power-on pulse are held to it by tests, and the runtime turns joint angles into
the protocol's ``ARM`` decidegrees with its calibration.

Frames and the chain (numbers from :data:`ARM`). Positions are metres in the frame of the
MuJoCo body ``arm_base``, fixed on the chassis (the yaw joint turns its child
``arm_turret``): x forward, y left, z up, origin on the yaw axis at the top of the
chassis::

    arm_base -yaw(z)- +0.02 z -shoulder(y)- +0.12 z -elbow(y)- +0.10 x -wrist pitch(y)-
             +0.03 x -wrist roll(x)- hand: +0.05 x is the tool point

At zero angles the upper arm points up and the forearm and hand point forward. The tool
point lies on the roll axis, between the fingers (the midpoint of the open fingers: the
jaw closes toward the fixed finger). Positive shoulder, elbow and wrist pitch tip the
hand down.

Tool pose: the point and the gripper's ``pitch`` and ``roll``. A 5-joint arm cannot
choose its heading: the hand turns with the yaw joint, so its orientation is
``Rz(heading) @ Ry(pitch) @ Rx(roll)`` where ``heading`` is the azimuth of the tool point,
``atan2(y, x)`` (the yaw joint's angle when the tool is on the axis). ``pitch`` is the
tool axis's angle below horizontal (pi/2: pointing down), ``roll`` the turn about it.

Servo calibration (:mod:`zima.onboard.arm_joints`): each joint says its angle at the
servo's mid travel (1500 us, the firmware's power-on command) and its angle per
microsecond; its limits are the servo's travel. Zima's servos are mounted so that mid
travel is the stowed pose, which makes the power-on pose safe.

Inverse kinematics solves the wrist in closed form (two heading branches times two elbow
branches), keeps the solutions within every joint's limits and returns the one nearest
the present pose; a target with none raises :class:`UnreachableError`, which names why and
the nearest reachable pose: a least-squares search within the limits for the least
``|position error|^2 + (2 w sin(angle error / 2))^2``, ``w`` =
ORIENTATION_WEIGHT_M_PER_RAD (so a small angle weighs ``w`` metres per radian).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from zima.onboard.arm_joints import (
    SERVO_HOME_DDEG,
    SERVO_MAX_DDEG,
    SERVO_MAX_US,
    SERVO_MIN_US,
    JointSpec,
    ServoCalibration,
    ddeg_from_us,
    us_from_ddeg,
)

__all__ = ["ARM", "GRIPPER", "JOINT_NAMES", "SERVO_HOME_DDEG", "SERVO_MAX_DDEG", "SERVO_MAX_US",
           "SERVO_MIN_US", "ArmDescription", "JointSpec", "ServoCalibration", "ToolPose",
           "UnreachableError", "ddeg_from_us", "us_from_ddeg"]

ORIENTATION_WEIGHT_M_PER_RAD = 0.05  # "nearest" pose: 1 rad of orientation weighs 5 cm
_LIMIT_EPS = 1e-9  # closed-form round-off allowed at a limit (clipped away)


@dataclass(frozen=True, slots=True)
class ToolPose:
    """The tool point (metres, ``arm_base`` frame) and the gripper's pitch and roll (rad);
    ``heading`` is what the arm made of its azimuth (rad; FK's output, not an input)."""

    x: float
    y: float
    z: float
    pitch: float
    roll: float
    heading: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {"xyz_m": [self.x, self.y, self.z], "pitch_rad": self.pitch,
                "roll_rad": self.roll, "heading_rad": self.heading}


class UnreachableError(ValueError):
    """No joint angles within the limits reach the target. ``reason`` says why; ``joints``
    and ``pose`` are the nearest reachable pose, ``position_error_m`` and
    ``orientation_error_rad`` how far it is from the target."""

    def __init__(self, reason: str, joints: tuple[float, ...], pose: ToolPose,
                 position_error_m: float, orientation_error_rad: float) -> None:
        super().__init__(f"unreachable: {reason}; nearest reachable pose: "
                         f"{_pose_text(pose)} ({position_error_m * 1000:.1f} mm, "
                         f"{math.degrees(orientation_error_rad):.1f} deg away)")
        self.reason, self.joints, self.pose = reason, joints, pose
        self.position_error_m, self.orientation_error_rad = position_error_m, orientation_error_rad


def _pose_text(p: ToolPose) -> str:
    return (f"x {p.x:.3f} y {p.y:.3f} z {p.z:.3f} m, pitch {p.pitch:.3f} roll "
            f"{p.roll:.3f} rad")


def _wrap(a: float) -> float:
    """An angle in (-pi, pi]."""
    a = math.remainder(a, math.tau)
    return math.pi if a == -math.pi else a


def _axis_rotations(axis: str, q: NDArray[np.float64]) -> NDArray[np.float64]:
    """[N, 3, 3] rotations by ``q`` [N] about a principal axis."""
    c, s = np.cos(q), np.sin(q)
    rot = np.zeros((q.shape[0], 3, 3))
    i = "xyz".index(axis)
    j, k = (i + 1) % 3, (i + 2) % 3
    rot[:, i, i] = 1.0
    rot[:, j, j], rot[:, j, k], rot[:, k, j], rot[:, k, k] = c, -s, s, c
    return rot


def _rz_ry_rx(yaw: float, pitch: float, roll: float) -> NDArray[np.float64]:
    rz, ry, rx = (_axis_rotations(axis, np.array([angle]))[0]
                  for axis, angle in (("z", yaw), ("y", pitch), ("x", roll)))
    out: NDArray[np.float64] = rz @ ry @ rx
    return out


@dataclass(frozen=True, slots=True)
class ArmDescription:
    """The five arm joints in chain order, the gripper, and the tool point in the hand.

    The closed-form IK needs this shape (checked here): yaw about z, then shoulder,
    elbow and wrist pitch about y with the upper arm along z and the forearm and wrist
    link along x, then roll about x, the tool on the roll axis."""

    joints: tuple[JointSpec, ...]
    gripper: JointSpec  # slides along -y from the hand: its value is how far it closed, m
    tool_m: tuple[float, float, float]  # the tool point in the hand frame
    finger_gap_m: float  # centre distance of the open fingers; the tool lies midway
    names: tuple[str, ...] = field(init=False)
    limits: NDArray[np.float64] = field(init=False, repr=False, compare=False)  # [5, 2] rad

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(j.name for j in self.joints))
        axes = tuple(j.axis for j in self.joints)
        if axes != ("z", "y", "y", "y", "x"):
            raise ValueError(f"arm: joint axes {axes} are not yaw, 3 pitch joints and roll")
        o = [j.offset_m for j in self.joints]
        along_z = (o[1], o[2])  # shoulder above yaw, elbow above shoulder
        along_x = (o[3], o[4], self.tool_m)  # wrist pitch, roll and the tool ahead
        if (o[0] != (0.0, 0.0, 0.0) or any(v[:2] != (0.0, 0.0) for v in along_z)
                or any(v[1:] != (0.0, 0.0) for v in along_x)):
            raise ValueError("arm: offsets must be yaw at the origin, upper arm along z, "
                             "forearm, wrist link and tool along x")
        if min(o[2][2], o[3][0], o[4][0] + self.tool_m[0]) <= 0:
            raise ValueError("arm: link lengths must be positive")
        for j in (*self.joints, self.gripper):
            _ = j.limits  # stops outside the servo's travel fail here
        limits = np.array([j.limits for j in self.joints])
        limits.setflags(write=False)
        object.__setattr__(self, "limits", limits)  # each joint's low and high limit, rad

    # ---- lengths the closed form uses ------------------------------------------------
    @property
    def shoulder_z_m(self) -> float:
        return self.joints[1].offset_m[2]

    @property
    def upper_m(self) -> float:
        return self.joints[2].offset_m[2]

    @property
    def fore_m(self) -> float:
        return self.joints[3].offset_m[0]

    @property
    def hand_m(self) -> float:
        """Wrist pitch axis to the tool point."""
        return self.joints[4].offset_m[0] + self.tool_m[0]

    @property
    def mid_pose(self) -> tuple[float, ...]:
        """The joints at mid travel: where the firmware puts the arm at power-on."""
        return tuple(j.servo.mid for j in self.joints)

    # ---- forward kinematics ------------------------------------------------------------
    def fk(self, q: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """Tool positions [..., 3] (m) and rotations [..., 3, 3] (columns: the hand's axes in
        ``arm_base``) for joint angles [..., 5] (rad)."""
        qa = np.asarray(q, dtype=np.float64)
        if qa.shape[-1:] != (len(self.joints),):
            raise ValueError(f"fk: joint angles need a last axis of {len(self.joints)}, "
                             f"got shape {qa.shape}")
        flat = qa.reshape(-1, len(self.joints))
        n = flat.shape[0]
        rot = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
        pos = np.zeros((n, 3))
        for i, joint in enumerate(self.joints):
            pos = pos + rot @ np.asarray(joint.offset_m)
            rot = rot @ _axis_rotations(joint.axis, flat[:, i])
        pos = pos + rot @ np.asarray(self.tool_m)
        return pos.reshape(*qa.shape[:-1], 3), rot.reshape(*qa.shape[:-1], 3, 3)

    def tool_pose(self, q: Sequence[float]) -> ToolPose:
        """The tool pose at joint angles ``q`` (rad), in the form :meth:`ik` takes."""
        return self.tool_poses(np.asarray(q, dtype=np.float64)[None])[0]

    def tool_poses(self, q: ArrayLike) -> list[ToolPose]:
        """:meth:`tool_pose` of each row of ``q`` [N, 5], computed together."""
        qa = np.asarray(q, dtype=np.float64).reshape(-1, len(self.joints))
        pos, rot = self.fk(qa)
        on_axis = np.hypot(pos[:, 0], pos[:, 1]) <= 1e-9
        heading = np.where(on_axis, qa[:, 0], np.arctan2(pos[:, 1], pos[:, 0]))
        c, s = np.cos(heading), np.sin(heading)
        # Rz(-heading) @ rot = Ry(pitch) @ Rx(roll): read pitch and roll off its entries
        pitch = np.arctan2(-rot[:, 2, 0], c * rot[:, 0, 0] + s * rot[:, 1, 0])
        roll = np.arctan2(-(c * rot[:, 1, 2] - s * rot[:, 0, 2]),
                          c * rot[:, 1, 1] - s * rot[:, 0, 1])
        return [ToolPose(float(p[0]), float(p[1]), float(p[2]), float(a), float(b), _wrap(float(h)))
                for p, a, b, h in zip(pos, pitch, roll, heading, strict=True)]

    # ---- inverse kinematics -------------------------------------------------------------
    def solutions(self, target: ToolPose, heading_hint: float = 0.0) -> list[tuple[float, ...]]:
        """Every exact solution for ``target`` (at most 4), limits not applied;
        ``heading_hint`` is the heading used when the tool is on the yaw axis."""
        rho = math.hypot(target.x, target.y)
        azimuth = math.atan2(target.y, target.x) if rho > 1e-9 else heading_hint
        a, b, h, lt = self.upper_m, self.fore_m, self.shoulder_z_m, self.hand_m
        found = []
        for flip in (False, True):  # reach over the yaw axis: heading + pi, mirrored pitch
            yaw = azimuth + math.pi if flip else azimuth
            u = -rho if flip else rho
            phi = math.pi - target.pitch if flip else target.pitch  # shoulder+elbow+wrist
            roll = target.roll + math.pi if flip else target.roll
            du = u - lt * math.cos(phi)  # the wrist pitch axis, from the shoulder
            dw = target.z + lt * math.sin(phi) - h
            cos_rel = (du * du + dw * dw - a * a - b * b) / (2 * a * b)
            if abs(cos_rel) > 1 + 1e-12:
                continue
            s = math.asin(-min(max(cos_rel, -1.0), 1.0))  # sin(elbow) = -cos_rel
            for elbow in (s, math.pi - s):
                rel = -elbow - math.pi / 2  # forearm direction minus upper arm direction
                upper = math.atan2(dw, du) - math.atan2(b * math.sin(rel), a + b * math.cos(rel))
                shoulder = math.pi / 2 - upper
                found.append(tuple(_wrap(v) for v in
                                   (yaw, shoulder, elbow, phi - shoulder - elbow, roll)))
        return found

    def _fit(self, q: Sequence[float], present: Sequence[float]) -> tuple[float, ...] | None:
        """``q`` within the limits (turns of 2 pi allowed, nearest ``present``), or None."""
        out = []
        for value, joint, now in zip(q, self.joints, present, strict=True):
            lo, hi = joint.limits
            fits = [v for v in (value - math.tau, value, value + math.tau)
                    if lo - _LIMIT_EPS <= v <= hi + _LIMIT_EPS]
            if not fits:
                return None
            out.append(min(max(min(fits, key=lambda v: abs(v - now)), lo), hi))
        return tuple(out)

    def ik(self, target: ToolPose, present: Sequence[float] | None = None) -> tuple[float, ...]:
        """Joint angles (rad, chain order) that put the tool at ``target``: of the solutions
        within the limits, the one nearest ``present`` (default: the mid pose).
        :class:`UnreachableError` when there is none."""
        values = (target.x, target.y, target.z, target.pitch, target.roll)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"ik: the target must be finite: {target}")
        now = tuple(present) if present is not None else self.mid_pose
        if len(now) != len(self.joints):
            raise ValueError(f"ik: present pose needs {len(self.joints)} angles, got {len(now)}")
        raw = self.solutions(target, heading_hint=now[0])
        fitted = [q for q in (self._fit(s, now) for s in raw) if q is not None]
        if fitted:
            return min(fitted, key=lambda q: sum((a - b) ** 2 for a, b in zip(q, now, strict=True)))
        raise self._refusal(target, raw, now)

    # ---- refusal: why, and the nearest reachable pose -------------------------------------
    def _refusal(self, target: ToolPose, raw: list[tuple[float, ...]],
                 now: tuple[float, ...]) -> UnreachableError:
        if raw:
            def excess(q: tuple[float, ...]) -> float:
                return sum(max(j.limits[0] - v, v - j.limits[1], 0.0)
                           for v, j in zip(q, self.joints, strict=True))
            closest = min(raw, key=excess)
            over = [f"{j.name} would need {v:.3f} rad (limits {j.limits[0]:.3f}..{j.limits[1]:.3f})"
                    for j, v in zip(self.joints, closest, strict=True) if not j.within(v)]
            reason = "outside the joint limits: " + ", ".join(over)
        else:
            reason = (f"out of reach: the arm's wrist reaches "
                      f"{abs(self.upper_m - self.fore_m):.3f}..{self.upper_m + self.fore_m:.3f} m "
                      f"from the shoulder")
        lo, hi = self.limits[:, 0], self.limits[:, 1]
        starts = [np.clip(np.asarray(q), lo, hi) for q in raw]
        starts += [np.asarray(now), np.asarray(self.mid_pose)]
        for d in (0.1, 0.5):  # the wrist stretched toward the target: a good start out of reach
            pulled = ToolPose(target.x * d, target.y * d, target.z * d, target.pitch, target.roll)
            starts += [np.clip(np.asarray(q), lo, hi) for q in self.solutions(pulled, now[0])]
        goal_p = np.array([target.x, target.y, target.z])
        rho = math.hypot(target.x, target.y)
        goal_r = _rz_ry_rx(math.atan2(target.y, target.x) if rho > 1e-9 else now[0],
                           target.pitch, target.roll)
        costs = np.sum(self._residual(np.array(starts), goal_p, goal_r) ** 2, axis=1)
        best = [starts[i] for i in np.argsort(costs)[:3]]  # search from the 3 best starts
        best_q = min((self._least_squares(s, goal_p, goal_r) for s in best),
                     key=lambda q: float(np.sum(self._residual(q[None], goal_p, goal_r) ** 2)))
        pos, rot = self.fk(best_q)
        cos_angle = (np.trace(goal_r.T @ rot) - 1) / 2
        return UnreachableError(reason, tuple(float(v) for v in best_q),
                                self.tool_pose(tuple(best_q)), float(np.linalg.norm(pos - goal_p)),
                                math.acos(min(max(float(cos_angle), -1.0), 1.0)))

    def _residual(self, q: NDArray[np.float64], goal_p: NDArray[np.float64],
                  goal_r: NDArray[np.float64]) -> NDArray[np.float64]:
        """[N, 12]: position error (m) and the chordal orientation error, weighted so that a
        small angle counts ORIENTATION_WEIGHT_M_PER_RAD metres per radian."""
        pos, rot = self.fk(q)
        w = ORIENTATION_WEIGHT_M_PER_RAD / math.sqrt(2)
        return np.concatenate([pos - goal_p, w * (rot - goal_r).reshape(-1, 9)], axis=1)

    def _least_squares(self, q0: NDArray[np.float64], goal_p: NDArray[np.float64],
                       goal_r: NDArray[np.float64], iterations: int = 60) -> NDArray[np.float64]:
        """Levenberg-Marquardt within the limits from ``q0``: joints that the descent pushes
        against a limit stay there, the others' step is clipped to the limits."""
        lo, hi = self.limits[:, 0], self.limits[:, 1]
        q, damping, step = q0.copy(), 1e-3, 1e-6
        cost = float(np.sum(self._residual(q[None], goal_p, goal_r) ** 2))
        for _ in range(iterations):
            probes = np.vstack([q, q + step * np.eye(len(q))])
            res = self._residual(probes, goal_p, goal_r)
            jac = ((res[1:] - res[0]) / step).T  # [12, 5]
            grad = jac.T @ res[0]
            # joints held at a limit by the descent are left out of the step (active set)
            held = ((q <= lo + 1e-12) & (grad > 0)) | ((q >= hi - 1e-12) & (grad < 0))
            free = ~held
            if not free.any():
                break
            dq = np.zeros_like(q)
            jf = jac[:, free]
            dq[free] = -np.linalg.solve(jf.T @ jf + damping * np.eye(int(free.sum())), grad[free])
            trial = np.clip(q + dq, lo, hi)
            trial_cost = float(np.sum(self._residual(trial[None], goal_p, goal_r) ** 2))
            if trial_cost < cost:
                converged = cost - trial_cost <= 1e-14 + 1e-9 * cost  # no longer improving
                q, cost, damping = trial, trial_cost, max(damping / 3, 1e-9)
                if converged:
                    break
            else:
                damping *= 10
                if damping > 1e6:
                    break
        return q


def _revolute(name: str, axis: str, offset_m: tuple[float, float, float],
              stowed_rad: float) -> JointSpec:
    """A hobby servo (180 degrees over 500..2500 us) mounted with mid travel at stowed."""
    return JointSpec(name, axis, offset_m, ServoCalibration(stowed_rad, math.pi / 2000))


# Zima's arm. Mid travel (the firmware's power-on command) is the stowed pose, so the arm
# does not move at power-on or when a simulation starts. The gripper: 500 us open, 20 us
# per mm closed; the fingers meet at 0.034 m, and commanding past that squeezes.
ARM = ArmDescription(
    joints=(
        _revolute("arm_yaw", "z", (0.0, 0.0, 0.0), 0.0),
        _revolute("arm_shoulder", "y", (0.0, 0.0, 0.02), -0.2),
        _revolute("arm_elbow", "y", (0.0, 0.0, 0.12), 0.2),
        _revolute("arm_wrist_pitch", "y", (0.10, 0.0, 0.0), 0.7),
        _revolute("arm_wrist_roll", "x", (0.03, 0.0, 0.0), 0.0),
    ),
    gripper=JointSpec("gripper", "-y", (0.05, 0.02, 0.0), ServoCalibration(0.02, 0.04 / 2000)),
    tool_m=(0.05, 0.0, 0.0),
    finger_gap_m=0.04,
)
JOINT_NAMES = ARM.names  # the five arm joints, chain order (= the protocol's joints 0..4)
GRIPPER = ARM.gripper.name  # the protocol's joint 5
