"""The policy's arm actions: per-dimension bins in, the console's arm jog out.

A contract with an arm head (``contract.arm_dims``, :mod:`zima.contract`) has the model
output ``arm_logits`` [chunk_len, arm_dims, n_arm_levels] beside the driving logits, and
take ``arm_state`` [ARM_STATE_DIMS]: the commanded tool pose and the gripper's opening.
This module is what the runtime needs of them, pure (numpy only, no clock):

- :func:`arm_state_vector`: the ``arm_state`` input from a commanded pose;
- :func:`choose_arm_bins`: one bin per dimension and chunk step, sampled per dimension
  at the runner's temperature exactly as the driving actions are (the same checks:
  non-finite or out-of-range logits raise ``BadOutputError`` and choose nothing);
- :func:`arm_jog_velocities` / :func:`arm_jog_command`: a step's bins as the console's
  jog (:class:`~zima.onboard.commands.ArmJogCommand`, within ``ARM_JOG_LIMITS``). The
  simulator's pick task moves its arm by these velocities (``zima.sim.pick.ArmAction``),
  and the robot's runtime hands the same command to the jog path the console uses
  (Safety's arm gate, then ``ArmTeleop.jog``), so a trained bin means one motion
  everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np

from zima.contract import ARM_STATE_DIMS, Contract
from zima.onboard.chunking import choose_actions
from zima.onboard.commands import ARM_JOG_LIMITS, ArmJogCommand
from zima.onboard.kinematics import ToolPose

__all__ = ["JOG_LIMITS", "arm_jog_command", "arm_jog_velocities", "arm_state_vector",
           "choose_arm_bins", "hold_bins"]

JOG_LIMITS: Final = (ARM_JOG_LIMITS.linear_m_per_s,) * 3 + (
    ARM_JOG_LIMITS.angular_rad_per_s,) * 2 + (ARM_JOG_LIMITS.gripper_m_per_s,)
"""Each jog dimension's limit in ``JOG_KEYS`` order (m/s, rad/s, the opening's m/s)."""


def arm_state_vector(tool: ToolPose, opening_m: float) -> np.ndarray:
    """The ``arm_state`` input: [ARM_STATE_DIMS] float32, the commanded tool pose (x, y, z
    m; pitch, roll rad) and the gripper's commanded opening (m)."""
    state = np.array([tool.x, tool.y, tool.z, tool.pitch, tool.roll, opening_m], np.float32)
    assert state.shape == (ARM_STATE_DIMS,)
    return state


def hold_bins(contract: Contract) -> tuple[int, ...]:
    """The arm action that holds every dimension still."""
    return (contract.arm_hold_bin,) * contract.arm_dims


def choose_arm_bins(arm_logits: np.ndarray, temperature: float,
                    rng: np.random.Generator) -> list[tuple[int, ...]]:
    """One bin per dimension for each chunk step of ``arm_logits`` [chunk_len, arm_dims,
    n_levels]: each dimension sampled from its own softmax (or argmax at temperature 0),
    as :func:`~zima.onboard.chunking.choose_actions` does for the driving actions."""
    if arm_logits.ndim != 3:
        raise ValueError(f"expected arm logits [chunk_len, arm_dims, n_levels], got "
                         f"{arm_logits.shape}")
    chunk_len, dims, levels = arm_logits.shape
    flat = choose_actions(arm_logits.reshape(chunk_len * dims, levels), temperature, rng)
    return [tuple(flat[t * dims: (t + 1) * dims]) for t in range(chunk_len)]


def arm_jog_velocities(contract: Contract, bins: Sequence[int]) -> tuple[float, ...]:
    """The jog velocities of one step's ``bins`` (``JOG_KEYS`` order)."""
    if len(bins) != contract.arm_dims or not contract.arm_dims:
        raise ValueError(f"an arm action has {contract.arm_dims} bins, got {len(bins)}")
    levels = contract.arm_jog_levels
    return tuple(levels[b] * limit for b, limit in zip(bins, JOG_LIMITS, strict=True))


def arm_jog_command(contract: Contract, bins: Sequence[int],
                    request_id: str | None = None) -> ArmJogCommand:
    """One step's ``bins`` as the console's jog command (the runtime's arm jog path)."""
    vx, vy, vz, vpitch, vroll, vgripper = arm_jog_velocities(contract, bins)  # JOG_KEYS order
    return ArmJogCommand(vx, vy, vz, vpitch, vroll, vgripper, request_id=request_id)
