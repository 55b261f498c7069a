"""The arm in hardware-in-the-loop: MuJoCo's arm follows the servo pulses the firmware puts out.

The emulated board measures the width of every pulse on the six servo pins (``servo_us``
in its state lines, :class:`zima.emulator.BoardState`); each width becomes its joint's
angle through the joint's servo calibration (:data:`zima.onboard.kinematics.ARM`), and that
angle the target of the joint's MuJoCo position actuator, as a hobby servo's own position
loop would take it. So an ``ARM`` command, slewed by the firmware, moves the simulated arm
(and the wrist camera with it) the way it would move the real one.

A pin that has not pulsed yet (the first milliseconds, right after an MCU reset) reports 0
and leaves its joint where it is: a real servo without a signal does not move either.
"""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

from zima.onboard.kinematics import ARM, JointSpec

__all__ = ["ArmFollower"]

SPECS: tuple[JointSpec, ...] = (*ARM.joints, ARM.gripper)  # the protocol's joints 0..5


class ArmFollower:
    """Sets the arm's position actuators from measured servo pulses; one per model."""

    def __init__(self, model: mujoco.MjModel) -> None:
        self._actuators = [model.actuator(j.name).id for j in SPECS]
        self._qpos = [int(model.jnt_qposadr[model.joint(j.name).id]) for j in SPECS]
        self._dofs = [int(model.jnt_dofadr[model.joint(j.name).id]) for j in SPECS]
        self.pulses_us: tuple[float, ...] = (0.0,) * len(SPECS)  # the last ones followed

    @staticmethod
    def targets(pulses_us: Sequence[float]) -> list[float | None]:
        """Each joint's angle (rad; the gripper in m) for its pulse, within the joint's
        limits; None where no pulse has been seen."""
        if len(pulses_us) != len(SPECS):
            raise ValueError(f"the board reports {len(pulses_us)} servo pulses, the arm has "
                             f"{len(SPECS)} servos")
        out: list[float | None] = []
        for spec, us in zip(SPECS, pulses_us, strict=True):
            lo, hi = spec.limits  # a late ISR can stretch a pulse past the travel's end
            out.append(float(np.clip(spec.servo.value(us), lo, hi)) if us > 0 else None)
        return out

    def follow(self, data: mujoco.MjData, pulses_us: Sequence[float]) -> None:
        """Aim each servo's actuator at the angle its pulse commands."""
        for act, target in zip(self._actuators, self.targets(pulses_us), strict=True):
            if target is not None:
                data.ctrl[act] = target
        self.pulses_us = tuple(pulses_us)

    def place(self, data: mujoco.MjData) -> None:
        """Put the joints at their actuators' targets, at rest (a scene reset: the arm stays
        where its servos hold it, whatever the scene's default pose)."""
        for act, q, dof in zip(self._actuators, self._qpos, self._dofs, strict=True):
            data.qpos[q] = data.ctrl[act]
            data.qvel[dof] = 0.0

    def angles(self, data: mujoco.MjData) -> tuple[float, ...]:
        """The joints' present angles in MuJoCo (rad; the gripper in m), protocol order."""
        return tuple(float(data.qpos[q]) for q in self._qpos)
