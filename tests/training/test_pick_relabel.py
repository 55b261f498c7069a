"""zima.training.pick_relabel: old pick demonstrations relabelled for the expert that
opens the gripper while driving."""

from pathlib import Path

import h5py
import numpy as np

from zima.contract import Action
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M
from zima.sim.pick_expert import jog_toward
from zima.training.pick_relabel import GRIPPER, main, open_bins


def test_open_bins_are_the_experts_step_toward_wide_open() -> None:
    openings = np.array([0.0, 0.014, 0.031, 0.033, GRIPPER_MAX_OPENING_M], np.float32)
    want = [jog_toward((0.0,) * 5 + (GRIPPER_MAX_OPENING_M - float(o),), 0.1).bins[-1]
            for o in openings]
    assert open_bins(openings).tolist() == want
    assert want[0] == 4  # fast open
    assert want[-1] == 2  # then hold


def test_only_driving_steps_gripper_labels_change(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    drive = np.array([Action.LEFT, Action.FORWARD, Action.STOP, Action.STOP], np.uint8)
    arm = np.full((4, 6), 2, np.uint8)
    arm[3, GRIPPER] = 0  # closing at the cube
    state = np.zeros((4, 6), np.float32)
    state[:, GRIPPER] = [0.014, 0.014, 0.014, 0.034]
    with h5py.File(src / "a.h5", "w") as f:
        f["expert_action"], f["expert_arm_action"], f["arm_state"] = drive, arm, state
    assert main([str(src), str(out)]) == 0
    with h5py.File(out / "a.h5") as f:
        new = np.asarray(f["expert_arm_action"])
    assert new[:, GRIPPER].tolist() == [4, 4, 2, 0]
    assert (new[:, :GRIPPER] == 2).all()
    with h5py.File(src / "a.h5") as f:  # the input untouched
        assert (np.asarray(f["expert_arm_action"]) == arm).all()
