"""The arm description's kinematics against MuJoCo's own, on the robot model the sim runs.

MuJoCo computes the ``tool`` site's pose (``mj_kinematics``) in the world; it is taken
relative to body ``arm_base`` and compared with :meth:`ArmDescription.fk` at random joint
angles within the limits, and with the inverse kinematics' answers for those poses.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
from numpy.typing import NDArray

from zima.onboard.kinematics import ARM, JOINT_NAMES, UnreachableError
from zima.sim.robot import ARM_JOINTS, RobotConfig
from zima.sim.scenes import arena, world_xml

POSES = 10_000
POSITION_TOLERANCE_M = 0.001
ANGLE_TOLERANCE_RAD = math.radians(1.0)


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(world_xml(arena(), RobotConfig()))


def mujoco_tool(model: mujoco.MjModel, joints: NDArray[np.float64],
                gripper_m: float = 0.0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """MuJoCo's tool site pose in ``arm_base`` for each row of ``joints`` [N, 5]: positions
    [N, 3] and rotations [N, 3, 3]. The base stands at a pose of its own, to show that
    the frame is ``arm_base``'s."""
    data = mujoco.MjData(model)
    qadr = [int(model.jnt_qposadr[model.joint(n).id]) for n in (*JOINT_NAMES, "gripper")]
    for name, value in (("base_x", 0.7), ("base_y", -0.4), ("base_yaw", 2.1)):
        data.qpos[model.jnt_qposadr[model.joint(name).id]] = value
    site, base = model.site("tool").id, model.body("arm_base").id
    pos, rot = np.empty((len(joints), 3)), np.empty((len(joints), 3, 3))
    for i, q in enumerate(joints):
        data.qpos[qadr] = (*q, gripper_m)
        mujoco.mj_kinematics(model, data)
        base_rot = data.xmat[base].reshape(3, 3)
        pos[i] = base_rot.T @ (data.site_xpos[site] - data.xpos[base])
        rot[i] = base_rot.T @ data.site_xmat[site].reshape(3, 3)
    return pos, rot


def angles_between(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """[N] rotation angles between rotations a [N, 3, 3] and b [N, 3, 3]."""
    cos = (np.einsum("nij,nij->n", a, b) - 1) / 2  # trace(a^T b)
    angles: NDArray[np.float64] = np.arccos(np.clip(cos, -1.0, 1.0))
    return angles


def random_joints(n: int, seed: int) -> NDArray[np.float64]:
    lo, hi = ARM.limits.T
    return np.random.default_rng(seed).uniform(lo, hi, (n, len(JOINT_NAMES)))


def test_the_model_is_built_from_the_description(model: mujoco.MjModel) -> None:
    assert (*JOINT_NAMES, "gripper") == ARM_JOINTS
    for spec in (*ARM.joints, ARM.gripper):
        np.testing.assert_allclose(model.jnt_range[model.joint(spec.name).id], spec.limits)
    assert RobotConfig().arm_pose == (*ARM.mid_pose, ARM.gripper.servo.mid)


def test_forward_kinematics_matches_mujoco(model: mujoco.MjModel) -> None:
    joints = random_joints(POSES, seed=1)
    want_pos, want_rot = mujoco_tool(model, joints)
    pos, rot = ARM.fk(joints)
    position_error = np.linalg.norm(pos - want_pos, axis=1)
    angle_error = angles_between(rot, want_rot)
    assert position_error.max() <= POSITION_TOLERANCE_M, position_error.max()
    assert angle_error.max() <= ANGLE_TOLERANCE_RAD, angle_error.max()


def test_the_tool_is_midway_between_the_open_fingers(model: mujoco.MjModel) -> None:
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)  # gripper 0: open
    fingers = [data.geom_xpos[model.geom(n).id] for n in ("finger_fixed", "finger_jaw")]
    np.testing.assert_allclose((fingers[0] + fingers[1]) / 2,
                               data.site_xpos[model.site("tool").id], atol=1e-9)


def test_inverse_kinematics_reaches_mujoco_poses(model: mujoco.MjModel) -> None:
    """Each of POSES random reachable poses (MuJoCo's tool at random joints) is solved,
    and MuJoCo puts the tool where the target was at the solution's joints."""
    joints = random_joints(POSES, seed=2)
    target_pos, target_rot = mujoco_tool(model, joints)
    targets = ARM.tool_poses(joints)  # the same poses, as pitch and roll
    present = ARM.mid_pose
    solved = np.array([ARM.ik(t, present) for t in targets])
    assert np.all((solved >= ARM.limits[:, 0]) & (solved <= ARM.limits[:, 1]))
    pos, rot = mujoco_tool(model, solved)
    position_error = np.linalg.norm(pos - target_pos, axis=1)
    angle_error = angles_between(rot, target_rot)
    assert position_error.max() <= POSITION_TOLERANCE_M, position_error.max()
    assert angle_error.max() <= ANGLE_TOLERANCE_RAD, angle_error.max()


def test_a_refusal_names_a_pose_mujoco_reaches(model: mujoco.MjModel) -> None:
    target = ARM.tool_pose(ARM.mid_pose)
    far = type(target)(target.x + 0.5, target.y, target.z, target.pitch, target.roll)
    with pytest.raises(UnreachableError) as refused:
        ARM.ik(far)
    pos, _ = mujoco_tool(model, np.array([refused.value.joints]))
    pose = refused.value.pose
    np.testing.assert_allclose(pos[0], (pose.x, pose.y, pose.z), atol=1e-6)
