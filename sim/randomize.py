"""Domain randomisation: one seed -> lights, materials, colours, placements, camera jitter.

:class:`Randomizer` snapshots the compiled model's nominal values once, then each episode
samples an :class:`EpisodeDomain` from a numpy ``Generator`` and writes it into the
model (absolute values from the snapshot, so episodes never accumulate jitter). The same
seed gives the same domain, bit for bit.

Placement guarantees what the scripted expert needs: the robot can turn in place where
it starts, the target stands in free floor (never inside furniture), and the straight
corridor from the robot to the target is clear of furniture and distractor cubes, so the
target is reachable by turning and driving straight.

A procedural scene (a layout with a body pool) draws a whole world per episode instead
(:func:`~zima.sim.procedural.draw_world`) and writes it into the same model: pool
bodies moved (``body_pos``, ``body_quat``), resized (``geom_size`` with the bounds the
collision detector reads: ``geom_rbound``, ``geom_aabb`` and the body's ``bvh_aabb``),
recoloured and given materials; the unused ones parked. Its partly hidden targets may
block the straight corridor: then a path on the navigation grid is guaranteed instead,
and ray casts check that the start sees part of the target (never none of it).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from zima.sim.navgrid import Footprint
from zima.sim.procedural import World, WorldConfig, draw_world, wall_footprints
from zima.sim.robot import RobotConfig
from zima.sim.scenes import (
    CUBE_SIZE_M,
    FLOOR_MATERIALS,
    WALL_MATERIALS,
    SceneLayout,
)
from zima.sim.sight import face_points, seen_share


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """Ranges of the per-episode randomisation."""

    # Distance of the target from the robot's start, metres (closer is too easy).
    min_target_dist_m: float = 0.8
    # ... and at most this far (fixed scenes; episodes that start near the target, e.g.
    # the pick task's grasp-heavy demonstrations: ``zima sim collect --target-distance``).
    max_target_dist_m: float = math.inf
    # Free margin around the robot's turning circle and along its corridor, metres.
    clearance_m: float = 0.06
    # Sun and lamp brightness (0..1 per channel) and ambient headlight.
    sun_diffuse: tuple[float, float] = (0.25, 0.8)
    lamp_diffuse: tuple[float, float] = (0.05, 0.5)
    ambient: tuple[float, float] = (0.1, 0.4)
    # Camera mount tolerance: position (m), rotation (deg), field of view (deg), each +-.
    camera_pos_jitter_m: float = 0.005
    camera_rot_jitter_deg: float = 2.0
    fovy_jitter_deg: float = 4.0
    # Hue band of "green" for the target (degrees); distractors keep 25 deg away from it.
    target_hue_deg: tuple[float, float] = (105.0, 135.0)
    # Procedural scenes: the ranges of their worlds (lights included; the fields above
    # but the camera's serve the fixed scenes).
    world: WorldConfig = field(default_factory=WorldConfig)

    def __post_init__(self) -> None:
        if not 0 <= self.min_target_dist_m <= self.max_target_dist_m:
            raise ValueError(f"target distance: need 0 <= min <= max, got "
                             f"{self.min_target_dist_m}..{self.max_target_dist_m} m")


@dataclass(frozen=True, slots=True)
class EpisodeDomain:
    """Everything one episode randomised; positions in metres, angles in radians."""

    robot_xy_yaw: tuple[float, float, float]
    target_xy: tuple[float, float]
    distractor_xy: tuple[tuple[float, float], ...]  # shown distractors; the rest are parked
    floor_material: str
    wall_material: str
    # What the robot must not touch: walls, furniture, clutter and distractors.
    footprints: tuple[Footprint, ...] = ()
    # The floor: +-room_half_m[0] by +-room_half_m[1], metres.
    room_half_m: tuple[float, float] = (0.0, 0.0)
    # Per distractor_xy entry: cube, cylinder, sphere or box.
    distractor_shapes: tuple[str, ...] = ()
    # Share of the target's faces the start sees when facing it (ray casts; procedural
    # scenes only, 1.0 elsewhere), and whether the world hid part of it on purpose.
    target_seen_share: float = 1.0
    partly_hidden: bool = False
    world: World | None = None  # procedural scenes: the whole world


def _hsv_rgba(h_deg: float, s: float, v: float) -> np.ndarray:
    return np.array([*colorsys.hsv_to_rgb(h_deg / 360.0, s, v), 1.0])  # [4]


class Randomizer:
    """Samples and applies episode domains for one compiled scene model."""

    def __init__(self, model: mujoco.MjModel, layout: SceneLayout, robot: RobotConfig,
                 cameras: tuple[str, ...], cfg: DomainConfig = DomainConfig()) -> None:
        self.model, self.layout, self.robot, self.cfg = model, layout, robot, cfg
        self._cams = [model.camera(c).id for c in cameras]
        self._cam_pos0 = model.cam_pos.copy()  # [ncam, 3]
        self._cam_quat0 = model.cam_quat.copy()  # [ncam, 4]
        self._cam_fovy0 = model.cam_fovy.copy()  # [ncam]
        self._geom_rgba0 = model.geom_rgba.copy()  # [ngeom, 4]
        self._mat = {n: model.material(n).id for n in FLOOR_MATERIALS + WALL_MATERIALS}
        self._floor = model.geom("floor").id
        self._walls = [model.geom(f"wall_{n}").id for n in ("east", "west", "north", "south")]
        self._blocks = [model.geom(f"obstacle_{b.name}").id for b in layout.blocks]
        self._target = model.body("target").id
        self._distractors = [model.body(f"distractor_{i}").id
                             for i in range(layout.max_distractors)]
        # [n_blocks, 4]: x_min, y_min, x_max, y_max of furniture and clutter footprints
        self._rects = np.array([(b.x_m - b.half_x_m, b.y_m - b.half_y_m, b.x_m + b.half_x_m,
                                 b.y_m + b.half_y_m) for b in layout.blocks]).reshape(-1, 4)
        self._pool = _PoolWriter(model, layout, robot, cfg) if layout.pool is not None else None

    # --- free space -------------------------------------------------------------------

    def _rect_dist(self, pts: np.ndarray) -> np.ndarray:
        """Distance of each point [N, 2] to the nearest block footprint, metres: [N]."""
        if len(self._rects) == 0:
            return np.full(len(pts), np.inf)
        p = pts[:, None, :]  # [N, 1, 2]
        lo, hi = self._rects[None, :, :2], self._rects[None, :, 2:]  # [1, B, 2]
        gap = np.maximum(np.maximum(lo - p, p - hi), 0.0)  # [N, B, 2]
        return np.asarray(np.linalg.norm(gap, axis=2).min(axis=1))

    def _free(self, xy: np.ndarray, margin_m: float) -> bool:
        inside = (abs(xy[0]) <= self.layout.half_x_m - margin_m
                  and abs(xy[1]) <= self.layout.half_y_m - margin_m)
        return inside and bool(self._rect_dist(xy[None])[0] > margin_m)

    def _corridor_clear(self, a: np.ndarray, b: np.ndarray, margin_m: float) -> bool:
        n = max(2, int(np.linalg.norm(b - a) / 0.02))
        pts = a + np.linspace(0.0, 1.0, n)[:, None] * (b - a)  # [n, 2]
        return bool(self._rect_dist(pts).min() > margin_m)

    def _sample_xy(self, rng: np.random.Generator, margin_m: float) -> np.ndarray:
        lim = np.array([self.layout.half_x_m, self.layout.half_y_m]) - margin_m
        return rng.uniform(-lim, lim)  # [2]

    def _place(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        cfg, half_w = self.cfg, self.robot.width_m / 2 + self.cfg.clearance_m
        for _ in range(1000):
            robot = self._sample_xy(rng, self.robot.radius_m + cfg.clearance_m)
            if not self._free(robot, self.robot.radius_m + cfg.clearance_m):
                continue
            target = self._sample_xy(rng, 0.15)
            if (not cfg.min_target_dist_m <= np.linalg.norm(target - robot)
                    <= cfg.max_target_dist_m
                    or not self._free(target, 0.15)
                    or not self._corridor_clear(robot, target, half_w)):
                continue
            distractors: list[np.ndarray] = []
            for _ in range(int(rng.integers(1, self.layout.max_distractors + 1))):
                for _ in range(100):
                    xy = self._sample_xy(rng, 0.1)
                    if self._distractor_ok(xy, robot, target, distractors, half_w):
                        distractors.append(xy)
                        break
            return robot, target, distractors
        raise RuntimeError(f"randomize: no valid placement in scene {self.layout.name!r}")

    def _distractor_ok(self, xy: np.ndarray, robot: np.ndarray, target: np.ndarray,
                       others: list[np.ndarray], half_w: float) -> bool:
        d = target - robot
        t = float(np.clip(np.dot(xy - robot, d) / np.dot(d, d), 0.0, 1.0))
        off_corridor = np.linalg.norm(xy - (robot + t * d)) > half_w + CUBE_SIZE_M
        return bool(self._free(xy, 0.1) and off_corridor
                    and np.linalg.norm(xy - target) > 0.35
                    and np.linalg.norm(xy - robot) > self.robot.radius_m + 0.1
                    and all(np.linalg.norm(xy - o) > 0.15 for o in others))

    # --- one episode ------------------------------------------------------------------

    def reset(self, rng: np.random.Generator) -> EpisodeDomain:
        """Sample a domain with ``rng``, write it into the model, and return it."""
        if self._pool is not None:
            domain = self._pool.reset(rng)
            self._cameras(rng)
            return domain
        m, cfg = self.model, self.cfg
        robot, target, distractors = self._place(rng)
        yaw = float(rng.uniform(-math.pi, math.pi))
        half = CUBE_SIZE_M / 2
        m.body_pos[self._target] = (*target, half)
        for i, body in enumerate(self._distractors):
            xy = distractors[i] if i < len(distractors) else np.array([50.0 + i, 50.0])
            m.body_pos[body] = (*xy, half)
        # Colours: a green target, distractors of any hue but green, furniture jittered.
        m.geom_rgba[:] = self._geom_rgba0
        m.geom_rgba[m.body_geomadr[self._target]] = _hsv_rgba(
            rng.uniform(*cfg.target_hue_deg), rng.uniform(0.6, 1.0), rng.uniform(0.45, 0.95))
        for body in self._distractors:
            hue = (cfg.target_hue_deg[1] + 25 + rng.uniform(0, 360 - 50 - np.ptp(
                cfg.target_hue_deg))) % 360
            m.geom_rgba[m.body_geomadr[body]] = _hsv_rgba(hue, rng.uniform(0.5, 1.0),
                                                          rng.uniform(0.4, 1.0))
        for g in self._blocks:
            m.geom_rgba[g, :3] = np.clip(m.geom_rgba[g, :3] + rng.uniform(-0.1, 0.1, 3), 0, 1)
        # Floor and walls: a material each, tinted.
        floor_mat = FLOOR_MATERIALS[int(rng.integers(len(FLOOR_MATERIALS)))]
        wall_mat = WALL_MATERIALS[int(rng.integers(len(WALL_MATERIALS)))]
        m.geom_matid[self._floor] = self._mat[floor_mat]
        m.geom_matid[self._walls] = self._mat[wall_mat]
        for name in (floor_mat, wall_mat):
            m.mat_rgba[self._mat[name]] = (*rng.uniform(0.45, 1.0, 3), 1.0)
        self._lights(rng)
        self._cameras(rng)
        layout = self.layout
        blocks = tuple(Footprint(b.x_m, b.y_m, b.half_x_m, b.half_y_m) for b in layout.blocks)
        cubes = tuple(Footprint(float(x), float(y), half, half) for x, y in distractors)
        return EpisodeDomain(
            robot_xy_yaw=(float(robot[0]), float(robot[1]), yaw),
            target_xy=(float(target[0]), float(target[1])),
            distractor_xy=tuple((float(x), float(y)) for x, y in distractors),
            floor_material=floor_mat, wall_material=wall_mat,
            footprints=wall_footprints(layout.half_x_m, layout.half_y_m) + blocks + cubes,
            room_half_m=(layout.half_x_m, layout.half_y_m),
            distractor_shapes=("cube",) * len(distractors),
        )

    def _lights(self, rng: np.random.Generator) -> None:
        m, cfg = self.model, self.cfg
        sun, lamp = m.light("sun").id, m.light("lamp").id
        elevation, azimuth = rng.uniform(0.6, 1.5), rng.uniform(-math.pi, math.pi)
        m.light_dir[sun] = (-math.cos(elevation) * math.cos(azimuth),
                            -math.cos(elevation) * math.sin(azimuth), -math.sin(elevation))
        tint = rng.uniform(0.85, 1.0, 3)  # [3] warm/cool white
        m.light_diffuse[sun] = rng.uniform(*cfg.sun_diffuse) * tint
        m.light_diffuse[lamp] = rng.uniform(*cfg.lamp_diffuse) * tint
        m.light_pos[lamp] = (*self._sample_xy(rng, 0.3), rng.uniform(1.5, 2.8))
        m.vis.headlight.ambient[:] = rng.uniform(*cfg.ambient)

    def _cameras(self, rng: np.random.Generator) -> None:
        m, cfg = self.model, self.cfg
        for c in self._cams:
            m.cam_pos[c] = self._cam_pos0[c] + rng.uniform(-1, 1, 3) * cfg.camera_pos_jitter_m
            axis = rng.normal(size=3)  # [3]
            angle = math.radians(rng.uniform(-1, 1) * cfg.camera_rot_jitter_deg)
            dq = np.zeros(4)
            mujoco.mju_axisAngle2Quat(dq, axis / np.linalg.norm(axis), angle)
            mujoco.mju_mulQuat(m.cam_quat[c], self._cam_quat0[c], dq)
            m.cam_fovy[c] = self._cam_fovy0[c] + rng.uniform(-1, 1) * cfg.fovy_jitter_deg


def _bounds(shape: str, size: np.ndarray) -> tuple[float, np.ndarray]:
    """(geom_rbound, aabb half-extents [3]) of a box, cylinder or sphere geom, as MuJoCo's
    compiler computes them."""
    if shape == "box":
        return float(np.linalg.norm(size)), size.copy()
    if shape == "cylinder":
        return float(math.hypot(size[0], size[1])), np.array([size[0], size[0], size[1]])
    return float(size[0]), np.full(3, size[0])


def _distractor_kind(body: str) -> str:
    """cube, cylinder, sphere or box, from a distractor body's name."""
    rest = body.removeprefix("distractor_")
    return "cube" if rest.isdigit() else {"cyl": "cylinder"}.get(rest.split("_")[0],
                                                                  rest.split("_")[0])


_GEOM_SHAPES = {int(mujoco.mjtGeom.mjGEOM_BOX): "box",
                int(mujoco.mjtGeom.mjGEOM_CYLINDER): "cylinder",
                int(mujoco.mjtGeom.mjGEOM_SPHERE): "sphere"}


class _PoolWriter:
    """Draws procedural worlds and writes them into the pool bodies of one model."""

    def __init__(self, model: mujoco.MjModel, layout: SceneLayout, robot: RobotConfig,
                 cfg: DomainConfig) -> None:
        assert layout.pool is not None
        cfg.world.check_pool(layout.pool, min(layout.half_x_m, layout.half_y_m))
        self.model, self.layout, self.pool, self.robot, self.cfg = (
            model, layout, layout.pool, robot, cfg)
        m = model
        names = [m.body(b).name for b in range(m.nbody)]
        pooled = [n for n in names if n.startswith(("wall_", "obstacle_", "distractor_"))]
        self._body = {n: m.body(n).id for n in pooled}
        self._geom = {n: m.geom(n).id for n in pooled}
        self._shape = {n: _GEOM_SHAPES[int(m.geom_type[g])] for n, g in self._geom.items()}
        bodies, geoms = list(self._body.values()), list(self._geom.values())
        self._bodies, self._geoms = np.array(bodies), np.array(geoms)
        self._bvh = m.body_bvhadr[self._bodies]  # [n] each body's one bounding volume
        # Nominal (parked) state, restored before each world so none depends on the last.
        self._body_pos0, self._body_quat0 = m.body_pos[bodies].copy(), m.body_quat[bodies].copy()
        self._size0, self._rbound0 = m.geom_size[geoms].copy(), m.geom_rbound[geoms].copy()
        self._aabb0, self._bvh_aabb0 = m.geom_aabb[geoms].copy(), m.bvh_aabb[self._bvh].copy()
        self._rgba0, self._matid0 = m.geom_rgba[geoms].copy(), m.geom_matid[geoms].copy()
        # Parked bodies are drawn transparent: the renderer skips them (they cost a third of
        # a frame's time otherwise, though outside every camera's far plane).
        self._rgba0[[not n.startswith("wall_") for n in pooled], 3] = 0.0
        self._mat_rgba0, self._texrepeat0 = m.mat_rgba.copy(), m.mat_texrepeat.copy()
        self._floor = m.geom("floor").id
        self._target = m.body("target").id
        self._target_geom = m.geom("target").id
        self._probe = mujoco.MjData(m)  # kinematics for ray casts, apart from the env's
        self.attempts = 0  # worlds drawn for the last episode (the last one valid)
        forward = m.camera("forward").id
        self._eye_xz = (float(m.cam_pos[forward][0]), float(m.cam_pos[forward][2]))

    def reset(self, rng: np.random.Generator) -> EpisodeDomain:
        """Draw worlds until one is valid, write it, light it and describe it."""
        cfg = self.cfg.world
        seen_low, seen_high = cfg.hidden_seen_share
        hidden = bool(rng.uniform() < cfg.partly_hidden_share)
        weights = np.array(cfg.target_dist_weights) / sum(cfg.target_dist_weights)
        band = int(rng.choice(len(weights), p=weights))
        self.attempts = 0
        while True:
            self.attempts += 1
            if self.attempts > 1000:
                raise RuntimeError(f"randomize: no valid world in scene {self.layout.name!r}")
            world = draw_world(rng, cfg, self.pool, self.robot, partly_hidden=hidden,
                               distance_band=band)
            if world is None:
                continue
            self._write(world)
            seen = self._seen_from_start(world)
            if seen_low <= seen <= (seen_high if hidden else 1.0):
                break
        self._lights(rng, world)
        distractors = [p for p in world.pieces if p.role == "distractor"]
        shapes = tuple(_distractor_kind(p.body) for p in distractors)
        return EpisodeDomain(
            robot_xy_yaw=world.robot_xy_yaw, target_xy=world.target_xy,
            distractor_xy=tuple((p.x_m, p.y_m) for p in distractors),
            floor_material=world.floor_material, wall_material=world.wall_material,
            footprints=world.footprints(), room_half_m=(world.half_x_m, world.half_y_m),
            distractor_shapes=shapes, target_seen_share=seen,
            partly_hidden=world.partly_hidden, world=world,
        )

    def _write(self, world: World) -> None:
        m = self.model
        bodies, geoms = self._bodies, self._geoms
        m.body_pos[bodies], m.body_quat[bodies] = self._body_pos0, self._body_quat0
        m.geom_size[geoms], m.geom_rbound[geoms] = self._size0, self._rbound0
        m.geom_aabb[geoms], m.bvh_aabb[self._bvh] = self._aabb0, self._bvh_aabb0
        m.geom_rgba[geoms], m.geom_matid[geoms] = self._rgba0, self._matid0
        m.mat_rgba[:], m.mat_texrepeat[:] = self._mat_rgba0, self._texrepeat0
        hx, hy, wh = world.half_x_m, world.half_y_m, world.wall_height_m
        for name, fp in zip(("wall_east", "wall_west", "wall_north", "wall_south"),
                            wall_footprints(hx, hy), strict=True):
            self._place(name, (fp.x_m, fp.y_m, wh / 2), 0.0, (fp.half_x_m, fp.half_y_m, wh / 2))
        for p in world.pieces:
            self._place(p.body, (p.x_m, p.y_m, p.height_m / 2), p.yaw_rad, p.size)
            g = self._geom[p.body]
            m.geom_rgba[g] = p.rgba
            m.geom_matid[g] = m.material(p.material).id if p.material else -1
        half = CUBE_SIZE_M / 2
        m.body_pos[self._target] = (*world.target_xy, half)
        m.geom_rgba[self._target_geom] = world.target_rgba
        floor, wall = m.material(world.floor_material).id, m.material(world.wall_material).id
        m.geom_matid[self._floor] = floor
        m.geom_matid[[self._geom[f"wall_{n}"] for n in ("east", "west", "north", "south")]] = wall
        m.mat_rgba[floor], m.mat_rgba[wall] = world.floor_rgba, world.wall_rgba
        for mat in (floor, wall):
            m.mat_texrepeat[mat] = self._texrepeat0[mat] * world.texture_scale

    def _place(self, name: str, pos: tuple[float, float, float], yaw: float,
               size: tuple[float, float, float]) -> None:
        """Move, turn and resize one pool body with the bounds collision detection reads."""
        m, b, g = self.model, self._body[name], self._geom[name]
        m.body_pos[b] = pos
        m.body_quat[b] = (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        rbound, half = _bounds(self._shape[name], np.array(size, float))
        m.geom_size[g], m.geom_rbound[g] = size, rbound
        m.geom_aabb[g] = (0.0, 0.0, 0.0, *half)
        m.bvh_aabb[m.body_bvhadr[b]] = (0.0, 0.0, 0.0, *half)

    def _seen_from_start(self, world: World) -> float:
        """Share of the target's faces the forward camera sees from the start, facing it."""
        mujoco.mj_kinematics(self.model, self._probe)
        start, target = np.array(world.robot_xy_yaw[:2]), np.array(world.target_xy)
        u = (target - start) / np.linalg.norm(target - start)
        ahead, height = self._eye_xz
        eye = np.array([*(start + ahead * u), height])
        half = CUBE_SIZE_M / 2
        centre = np.array([*target, half])
        return seen_share(self.model, self._probe, eye, self._target_geom,
                          face_points(centre, half, eye))

    def _lights(self, rng: np.random.Generator, world: World) -> None:
        m, cfg = self.model, self.cfg.world
        sun, lamp, lamp2 = m.light("sun").id, m.light("lamp").id, m.light("lamp2").id
        elevation, azimuth = rng.uniform(0.5, 1.5), rng.uniform(-math.pi, math.pi)
        m.light_dir[sun] = (-math.cos(elevation) * math.cos(azimuth),
                            -math.cos(elevation) * math.sin(azimuth), -math.sin(elevation))
        tint = rng.uniform(0.75, 1.0, 3)  # [3] warm to cool white
        m.light_diffuse[sun] = rng.uniform(*cfg.sun_diffuse) * tint
        for light, share in ((lamp, 1.0), (lamp2, cfg.lamp2_share)):
            on = rng.uniform() < share
            m.light_active[light] = on  # an unlit lamp costs a renderer's time all the same
            m.light_diffuse[light] = rng.uniform(*cfg.lamp_diffuse) * tint * on
            xy = rng.uniform(-1.0, 1.0, 2) * (world.half_x_m, world.half_y_m)
            m.light_pos[light] = (*xy, rng.uniform(1.2, 2.8))
        m.vis.headlight.ambient[:] = rng.uniform(*cfg.ambient)
