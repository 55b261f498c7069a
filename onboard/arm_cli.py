"""``zima arm``: the arm's kinematics from the command line (:mod:`zima.onboard.kinematics`).

    zima arm fk J1 J2 J3 J4 J5                 # joint angles (rad) -> the tool pose, JSON
    zima arm ik X Y Z PITCH ROLL [--from J1 .. J5]   # tool pose -> {"joints_rad": [...]}

Positions are metres in the frame of the arm's base (MuJoCo body ``arm_base``), angles
radians; joints in ``JOINT_NAMES`` order (yaw, shoulder, elbow, wrist pitch, wrist roll;
the gripper is not part of the pose). ``ik`` picks the solution nearest ``--from`` (the
present pose; default the servos' mid travel, the stowed pose). Both also print each
joint's ``ARM`` command in 0.1 degree (``ddeg``), what the firmware is sent.

Exit status: 0 solved; 2 the target is unreachable (the JSON on stdout says why and names
the nearest reachable pose; the reason goes to stderr too); 1 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from zima.onboard.kinematics import ARM, JOINT_NAMES, ToolPose, UnreachableError

__all__ = ["add_arguments", "run"]

EXIT_OK, EXIT_ERROR, EXIT_UNREACHABLE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="arm_command", metavar="ACTION", required=True)
    fk = sub.add_parser("fk", help="joint angles (rad) -> tool pose")
    fk.add_argument("joints", type=float, nargs=len(JOINT_NAMES), metavar="J",
                    help=f"joint angles, rad: {' '.join(JOINT_NAMES)}")
    ik = sub.add_parser("ik", help="tool pose -> joint angles (rad)")
    for name, unit in (("x", "m"), ("y", "m"), ("z", "m"), ("pitch", "rad, down +"),
                       ("roll", "rad")):
        ik.add_argument(name, type=float, help=f"{name}, {unit}")
    ik.add_argument("--from", dest="present", type=float, nargs=len(JOINT_NAMES), metavar="J",
                    default=None, help="the present joint angles (rad): the nearest solution "
                                       "wins (default: the stowed pose)")


def _ddeg(joints: tuple[float, ...]) -> list[int]:
    return [j.servo.ddeg(v) for j, v in zip(ARM.joints, joints, strict=True)]


def _emit(obj: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def run(args: argparse.Namespace) -> int:
    if args.arm_command == "fk":
        joints = tuple(args.joints)
        if not all(math.isfinite(v) for v in joints):
            sys.stderr.write(f"zima arm fk: joint angles must be finite: {joints}\n")
            return EXIT_ERROR
        outside = [f"{j.name} {v:.3f} (limits {j.limits[0]:.3f}..{j.limits[1]:.3f})"
                   for j, v in zip(ARM.joints, joints, strict=True) if not j.within(v)]
        _emit({**ARM.tool_pose(joints).as_json(), "joints_rad": list(joints),
               "ddeg": _ddeg(joints), "outside_limits": outside})
        return EXIT_OK
    target = ToolPose(args.x, args.y, args.z, args.pitch, args.roll)
    try:
        solved = ARM.ik(target, args.present)
    except UnreachableError as refused:
        sys.stderr.write(f"zima arm ik: {refused}\n")
        _emit({"unreachable": refused.reason,
               "nearest": {**refused.pose.as_json(), "joints_rad": list(refused.joints),
                           "ddeg": _ddeg(refused.joints),
                           "position_error_m": refused.position_error_m,
                           "orientation_error_rad": refused.orientation_error_rad}})
        return EXIT_UNREACHABLE
    except ValueError as exc:
        sys.stderr.write(f"zima arm ik: {exc}\n")
        return EXIT_ERROR
    _emit({"joints_rad": list(solved), "ddeg": _ddeg(solved)})
    return EXIT_OK
