"""Relabel pick demonstrations of the earlier expert for the one that opens while driving.

    python -m zima.training.pick_relabel data/pick/expert-arena data/pick/expert-arena-open

The pick expert first opened the gripper at the start of the reach; it now opens it wide
while driving (``PickExpertConfig.open_while_driving``). Episodes recorded before differ
from the new expert's only there: while driving, their gripper label is hold (or the stowed
opening) where the new expert's is "open wide". Every step whose expert driving label is
not STOP (the pick expert STOPs exactly from the reach on) gets the gripper bin the new
expert would give for the step's commanded opening (``arm_state``); the rest is copied as
it is, so that the old demonstrations' driving can be cloned with the new ones. (The
frames still show a half-open gripper while driving: a state the new expert never reaches,
labelled "open", which is what it would do there.)

Files are copied to the output folder (``shutil.copy2``) and changed there; the inputs are
only read. Episodes without an expert's arm labels (no ``expert_arm_action``) are copied
with ``arm_action`` relabelled the same way.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

from zima.contract import PICK, Action
from zima.onboard.arm_policy import JOG_LIMITS
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M

GRIPPER = PICK.arm_dims - 1  # the gripper's opening: the last jog dimension


def open_bins(opening_m: np.ndarray) -> np.ndarray:
    """The gripper bin toward wide open for each commanded opening [T] (m): uint8 [T], the
    bin whose one-step move lands nearest wide open (``pick_expert.jog_toward``)."""
    velocity = (GRIPPER_MAX_OPENING_M - opening_m.astype(np.float64)) * PICK.control_hz
    levels = np.asarray(PICK.arm_jog_levels) * JOG_LIMITS[GRIPPER]  # [L] m/s
    bins: np.ndarray = np.abs(velocity[:, None] - levels[None, :]).argmin(axis=1)  # [T]
    return bins.astype(np.uint8)


def relabel(path: Path) -> int:
    """Relabel one copied episode file in place; the number of gripper labels changed."""
    with h5py.File(path, "r+") as f:
        name = "expert_arm_action" if "expert_arm_action" in f else "arm_action"
        drive = np.asarray(f["expert_action" if "expert_action" in f else "action"])  # [T]
        arm = np.asarray(f[name])  # [T, D] uint8
        driving = drive != int(Action.STOP)
        new = arm.copy()
        new[driving, GRIPPER] = open_bins(np.asarray(f["arm_state"])[driving, GRIPPER])
        f[name][...] = new
        return int((new != arm).sum())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", type=Path, help="folder of pick episode files (*.h5)")
    parser.add_argument("out", type=Path, help="folder for the relabelled copies")
    args = parser.parse_args(argv)
    files = sorted(args.src.glob("*.h5"))
    if not files:
        sys.stderr.write(f"pick_relabel: no episode files in {args.src}\n")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    changed = 0
    for src in files:
        dst = args.out / src.name
        shutil.copy2(src, dst)
        changed += relabel(dst)
    sys.stdout.write(f"{len(files)} episodes relabelled into {args.out}: "
                     f"{changed} gripper labels changed\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
