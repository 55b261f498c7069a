"""``ArmTeleop``: the arm's present commanded pose, and the joint targets of arm commands.

Pure (no I/O, no clock): the runtime keeps one, asks it for the ``ARM`` targets of each
arm command (:mod:`zima.onboard.commands`), has :class:`~zima.onboard.safety.Safety` check
and clamp them, sends them, and tells it what was sent (``sent``)::

    plan = arm.tool(ToolTarget(0.2, 0.0, 0.05, 0.5, 0.0), gripper_m=None)   # IK
    allowed = safety.teleop_arm(targets_ddeg=plan.targets_ddeg, client=..., now_s=...)
    await link.arm(allowed)
    arm.sent(plan, allowed)

**The present pose** is the last commanded joint angles, kept exactly as the kinematics
solved them (not rounded to the servos' 0.1 deg), so that jog steps smaller than a servo
step still add up. Where the runtime does not know it (at start, after an e-stop, a lost
link or a critical battery, when the MCU stops each servo where it is: ``forget``), it is
read from the MCU's ``ARM_STATE``, the servos' present commands; before the first
``ARM_STATE`` an arm command is refused, saying so.

**Cartesian targets** go through inverse kinematics from the present pose (the nearest
solution wins); one out of reach is refused with the kinematics' own reason and the
nearest reachable pose (:class:`~zima.onboard.kinematics.UnreachableError`; that search
takes tens of milliseconds, so the runtime plans tool targets on a worker thread). A jog
step is a small delta from the present tool pose: one that would leave the reachable
space is refused at once, without that search (jogs come 20 times a second), and the arm
holds at the edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from zima.onboard.arm_poses import (
    GRIPPER_MAX_OPENING_M,
    NAMED_POSES,
    gripper_closing_m,
    gripper_opening_m,
)
from zima.onboard.commands import ToolTarget
from zima.onboard.kinematics import ARM, ToolPose, UnreachableError
from zima.protocol import ArmState

__all__ = ["ARM_TARGETS", "ArmPlan", "ArmTeleop", "ArmTeleopError"]

ARM_TARGETS = len(ARM.joints) + 1  # the five joints and the gripper (the protocol's ARM)


class ArmTeleopError(ValueError):
    """An arm command cannot be planned: the pose is not known yet, or the target is out
    of reach (the message says why, and the nearest reachable pose where it knows it)."""


@dataclass(frozen=True, slots=True)
class ArmPlan:
    """The targets of one arm command: the joint angles (rad; None where a joint is left)
    and the gripper's closing (m; None: left), and the same as ``ARM`` targets (0.1 deg)."""

    joints_rad: tuple[float, ...] | None
    gripper_closing_m: float | None
    targets_ddeg: tuple[int | None, ...]


def _servo_ddeg(state: ArmState) -> tuple[int, ...]:
    return (state.pos0_ddeg, state.pos1_ddeg, state.pos2_ddeg, state.pos3_ddeg,
            state.pos4_ddeg, state.pos5_ddeg)


def _reachable(target: ToolPose, heading_hint: float) -> bool:
    """Some exact solution for ``target`` lies within every joint's limits (a whole turn
    allowed): ``ARM.ik`` then succeeds, and never starts its nearest-pose search."""
    return any(all(any(j.within(v + k * math.tau) for k in (-1, 0, 1))
                   for j, v in zip(ARM.joints, q, strict=True))
               for q in ARM.solutions(target, heading_hint))


class ArmTeleop:
    """See the module doc."""

    def __init__(self) -> None:
        self._joints: tuple[float, ...] | None = None  # last commanded, rad
        self._closing: float | None = None  # the gripper's, m
        self._commanded: tuple[int | None, ...] = (None,) * ARM_TARGETS  # last sent, 0.1 deg
        self._state: ArmState | None = None
        self._state_s: float | None = None  # when the runtime first saw that ARM_STATE

    # ---- what the MCU says ----------------------------------------------------------------
    def observe(self, state: ArmState | None, now_s: float) -> None:
        """The link's latest ``ARM_STATE`` (called every control tick): a new one is
        timed from now (the link keeps no receive time for it)."""
        if state is not None and state is not self._state:
            self._state, self._state_s = state, now_s

    def forget(self) -> None:
        """The MCU may have stopped the servos short of their targets (e-stop, a lost link,
        a critical battery): the next command starts from ``ARM_STATE``."""
        self._joints = self._closing = None

    @property
    def servo_ddeg(self) -> tuple[int, ...] | None:
        """The servos' present commands (0.1 deg) of the latest ``ARM_STATE``."""
        return None if self._state is None else _servo_ddeg(self._state)

    @property
    def servo_seen_s(self) -> float | None:
        return self._state_s

    @property
    def commanded_ddeg(self) -> tuple[int | None, ...]:
        """The last targets sent per joint (None: none sent since the start)."""
        return self._commanded

    def present(self) -> tuple[tuple[float, ...], float]:
        """The present pose: joint angles (rad) and the gripper's closing (m)."""
        if self._joints is not None and self._closing is not None:
            return self._joints, self._closing
        servo = self.servo_ddeg
        if servo is None:
            raise ArmTeleopError("the arm's pose is not known yet (no ARM_STATE from the MCU)")
        values = [j.servo.value_from_ddeg(d)
                  for j, d in zip((*ARM.joints, ARM.gripper), servo, strict=True)]
        self._joints, self._closing = tuple(values[:-1]), values[-1]
        return self._joints, self._closing

    # ---- plans ----------------------------------------------------------------------------
    def joints(self, targets_ddeg: Sequence[int | None]) -> ArmPlan:
        """Joint targets as given (0.1 deg; None leaves a joint)."""
        return ArmPlan(None, None, tuple(targets_ddeg))

    def tool(self, target: ToolTarget | None, gripper_m: float | None) -> ArmPlan:
        """A tool pose and/or the gripper's opening; the tool through IK from the present
        pose (``ArmTeleopError`` naming the nearest reachable pose when out of reach)."""
        joints, _ = self.present()
        solved = None
        if target is not None:
            pose = ToolPose(target.x_m, target.y_m, target.z_m, target.pitch_rad,
                            target.roll_rad)
            try:
                solved = ARM.ik(pose, joints)
            except UnreachableError as exc:
                raise ArmTeleopError(f"arm target {_pose_text(pose)} {exc}") from exc
        return self._plan(solved, None if gripper_m is None else gripper_closing_m(gripper_m))

    def pose(self, name: str) -> ArmPlan:
        """A named pose (zima.onboard.arm_poses)."""
        pose = NAMED_POSES[name]
        closing = None if pose.gripper_m is None else gripper_closing_m(pose.gripper_m)
        return self._plan(pose.joints_rad, closing)

    def jog(self, step: Sequence[float]) -> ArmPlan:
        """The present tool pose moved by ``step`` (x, y, z m; pitch, roll rad; the gripper's
        opening m), from Safety's ``arm_jog``. The gripper stops at its ends; a tool step
        out of reach is refused at once (module doc)."""
        joints, closing = self.present()
        dx, dy, dz, dpitch, droll, dgrip = step
        new_closing = None
        if dgrip:
            opening = min(max(gripper_opening_m(closing) + dgrip, 0.0), GRIPPER_MAX_OPENING_M)
            new_closing = gripper_closing_m(opening)
        solved = None
        if dx or dy or dz or dpitch or droll:
            now = ARM.tool_pose(joints)
            target = ToolPose(now.x + dx, now.y + dy, now.z + dz, now.pitch + dpitch,
                              now.roll + droll)
            if not _reachable(target, joints[0]):
                raise ArmTeleopError(f"jog stopped: {_pose_text(target)} is beyond the arm's "
                                     f"reach or its joint limits (the arm holds at "
                                     f"{_pose_text(now)})")
            try:
                solved = ARM.ik(target, joints)
            except UnreachableError as exc:  # only at a limit's round-off: say so
                raise ArmTeleopError(f"jog stopped: {exc}") from exc
        return self._plan(solved, new_closing)

    def sent(self, plan: ArmPlan, sent_ddeg: Sequence[int | None]) -> None:
        """``sent_ddeg`` (Safety's clamp of ``plan.targets_ddeg``) went to the MCU: it is
        the present pose now. A joint whose target the clamp moved, or that was given in
        0.1 deg, takes the angle of what was sent; the rest keep the exact plan."""
        specs = (*ARM.joints, ARM.gripper)
        planned: list[float | None] = [*(plan.joints_rad or (None,) * len(ARM.joints)),
                                       plan.gripper_closing_m]
        try:
            joints, closing = self.present()
            values = [*joints, closing]
        except ArmTeleopError:
            values = [math.nan] * ARM_TARGETS  # unknown until an ARM_STATE comes
        for i, (spec, sent, want, exact) in enumerate(
                zip(specs, sent_ddeg, plan.targets_ddeg, planned, strict=True)):
            if sent is None:
                continue
            values[i] = exact if exact is not None and sent == want \
                else spec.servo.value_from_ddeg(sent)
        self._commanded = tuple(s if s is not None else c
                                for s, c in zip(sent_ddeg, self._commanded, strict=True))
        if all(math.isfinite(v) for v in values):
            self._joints, self._closing = tuple(values[:-1]), values[-1]

    def _plan(self, joints: tuple[float, ...] | None, closing: float | None) -> ArmPlan:
        ddeg: list[int | None] = [None] * ARM_TARGETS
        if joints is not None:
            ddeg[:-1] = [j.servo.ddeg(v) for j, v in zip(ARM.joints, joints, strict=True)]
        if closing is not None:
            ddeg[-1] = ARM.gripper.servo.ddeg(closing)
        return ArmPlan(joints, closing, tuple(ddeg))


def _pose_text(p: ToolPose) -> str:
    return (f"x {p.x:.3f} y {p.y:.3f} z {p.z:.3f} m, pitch {p.pitch:.3f} roll "
            f"{p.roll:.3f} rad")
