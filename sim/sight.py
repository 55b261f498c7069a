"""How much of the target a camera sees: ray casts to points on the cube's faces.

A target can stand partly behind furniture, so one ray to its centre says too little.
:func:`face_points` spreads points over the faces of an axis-aligned cube that turn
toward an eye; :func:`seen_share` is the share of them a ray from the eye reaches
before anything else (walls, furniture, clutter, distractors: geom groups 1 and 2);
:func:`camera_seen_share` also drops the points outside a camera's field of view. These
are privileged queries, for placement, the scripted expert and evaluation only.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from zima.sim.scenes import GROUP_CUBE, GROUP_OBSTACLE

_GROUPS = np.zeros(6, np.uint8)
_GROUPS[[GROUP_OBSTACLE, GROUP_CUBE]] = 1


def face_points(centre: np.ndarray, half_m: float, eye: np.ndarray, per_side: int = 3,
                inset: float = 0.8) -> np.ndarray:
    """Points on the cube's faces that face ``eye`` (the bottom never does), a
    ``per_side`` x ``per_side`` grid on each, ``inset`` of the way to the edges: [N, 3]."""
    u = np.linspace(-inset, inset, per_side) * half_m  # [per_side]
    a, b = (g.ravel() for g in np.meshgrid(u, u))  # [per_side^2] each
    points = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            if (axis == 2 and sign < 0) or (eye[axis] - centre[axis]) * sign <= half_m:
                continue  # the bottom, or a face turned away from the eye
            face = np.empty((len(a), 3))
            face[:, axis] = sign * half_m
            others = [k for k in range(3) if k != axis]
            face[:, others[0]], face[:, others[1]] = a, b
            points.append(centre + face)
    return np.concatenate(points) if points else np.zeros((0, 3))


def seen_share(model: mujoco.MjModel, data: mujoco.MjData, eye: np.ndarray, geom: int,
               points: np.ndarray) -> float:
    """Share of ``points`` [N, 3] whose ray from ``eye`` first meets geom ``geom``."""
    if len(points) == 0:
        return 0.0
    hit = np.array([-1], np.int32)
    seen = 0
    for p in points:
        mujoco.mj_ray(model, data, eye, p - eye, _GROUPS, 1, -1, hit)
        seen += int(hit[0]) == geom
    return seen / len(points)


def camera_seen_share(model: mujoco.MjModel, data: mujoco.MjData, camera: str, geom: int, *,
                      half_m: float, aspect: float, margin_deg: float = 2.0) -> float:
    """Share of the cube geom's eye-facing face points that camera ``camera`` sees: inside
    its field of view (less ``margin_deg``; ``aspect`` = image width / height) and
    unoccluded. Uses the data's current kinematics."""
    cam = model.camera(camera).id
    eye, rot = data.cam_xpos[cam], data.cam_xmat[cam].reshape(3, 3)  # [3], [3, 3]
    points = face_points(data.geom_xpos[geom], half_m, eye)
    if len(points) == 0:
        return 0.0
    local = (points - eye) @ rot  # [N, 3] camera frame: looks along -z, y up
    half_v = math.radians(model.cam_fovy[cam]) / 2 - math.radians(margin_deg)
    half_h = math.atan(math.tan(math.radians(model.cam_fovy[cam]) / 2) * aspect) - math.radians(
        margin_deg)
    ahead = -local[:, 2]
    inside = ((ahead > 0)
              & (np.abs(np.arctan2(local[:, 0], ahead)) < half_h)
              & (np.abs(np.arctan2(local[:, 1], ahead)) < half_v))  # [N]
    return seen_share(model, data, eye, geom, points[inside]) * float(inside.mean())
