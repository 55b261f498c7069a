"""Procedural worlds: one seed -> a room, its furniture and clutter, distractors, the task.

:func:`draw_world` is pure (a numpy ``Generator`` in, a frozen :class:`World` out): the
room's size and proportions, the walls' height, furniture against the walls and standing
free, clutter on the floor, distractor cubes and distractors of other shapes (cylinders,
spheres, boxes of other proportions, some coloured like the target), floor and wall
materials and every colour, the robot's start and the target near or far. In a share of
the worlds (``partly_hidden_share``) an obstacle stands between the start and the target
and hides part of it. Each piece is a body of the scene's pool
(:class:`~zima.sim.scenes.BodyPool`); :mod:`zima.sim.randomize` writes the world into the
one compiled model and checks with ray casts how much of the target the start sees.

What placement guarantees (the scripted expert's success rests on it):

- nothing overlaps anything else, nor the robot's turning circle at the start;
- the target stands on free floor, away from distractors;
- a clear target: the straight corridor from the start to it is free; a partly hidden
  one: turn-safe cells (:class:`~zima.sim.navgrid.NavGrid`) lead from the start to an
  approach from which the drive to the target is clear.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np

from zima.sim.navgrid import (
    Footprint,
    NavGrid,
    clearance,
    corners,
    segment_clear,
    separated,
)
from zima.sim.robot import RobotConfig
from zima.sim.scenes import (
    CUBE_SIZE_M,
    FURNITURE_MATERIALS,
    PROCEDURAL_FLOOR_MATERIALS,
    PROCEDURAL_WALL_MATERIALS,
    WALL_THICKNESS_M,
    BodyPool,
)

Range = tuple[float, float]
Rgba = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class WorldConfig:
    """Ranges of the procedural worlds (inclusive; counts are integers)."""

    # Room interior: half of its longer side, m, and the shorter over the longer side.
    room_half_m: Range = (1.2, 3.2)
    room_aspect: Range = (0.55, 1.0)
    # Wall height, m: from an arena's low rim to a room's walls.
    wall_height_m: Range = (0.15, 1.0)
    # Furniture against the walls (sofas, beds, cabinets, desks), standing free (tables,
    # armchairs, round pieces), and floor clutter (boxes, bins, bags): counts.
    wall_furniture: tuple[int, int] = (0, 6)
    free_furniture: tuple[int, int] = (0, 3)
    clutter: tuple[int, int] = (0, 6)
    # Distractor cubes (any colour but the target's) and distractors of other shapes.
    distractor_cubes: tuple[int, int] = (0, 4)
    distractor_shapes: tuple[int, int] = (0, 5)
    # Share of the other shapes coloured like the target: a hue inside its band widened
    # by similar_hue_deg on each side (the prototype's green milk carton).
    similar_colour_share: float = 0.35
    similar_hue_deg: float = 15.0
    # Hue band of the target's green, degrees; other colours keep other_hue_gap_deg off it.
    target_hue_deg: Range = (105.0, 135.0)
    other_hue_gap_deg: float = 25.0
    # Distance of the target from the start, m: bands (near, middle, far) and weights.
    # A far 57 mm cube is a few pixels wide, as the prototype's real failures were.
    target_dist_bands_m: tuple[Range, ...] = ((0.6, 1.5), (1.5, 3.0), (3.0, 4.5))
    target_dist_weights: tuple[float, ...] = (0.35, 0.4, 0.25)
    # Share of worlds whose target is partly hidden from the start behind an obstacle,
    # and the share of its faces the start then sees (the rest: never fully hidden).
    partly_hidden_share: float = 0.25
    hidden_seen_share: Range = (0.2, 0.85)
    # Light (0..1 per channel): sun, two lamps (the second one on in lamp2_share of the
    # worlds), the ambient headlight; from dim rooms to harsh light.
    sun_diffuse: Range = (0.1, 0.9)
    lamp_diffuse: Range = (0.0, 0.6)
    lamp2_share: float = 0.5
    ambient: Range = (0.05, 0.45)

    def __post_init__(self) -> None:
        if len(self.target_dist_bands_m) != len(self.target_dist_weights):
            raise ValueError("world: one weight per target distance band")
        if min(self.room_half_m[0], self.room_aspect[0]) <= 0 or self.room_aspect[1] > 1:
            raise ValueError("world: room sizes must be positive, aspect in (0, 1]")
        for name in ("wall_furniture", "free_furniture", "clutter", "distractor_cubes",
                     "distractor_shapes"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"world: {name} must be 0 <= low <= high")

    def check_pool(self, pool: BodyPool, max_half_m: float) -> None:
        """Raise ValueError when the counts need more bodies than ``pool`` holds, or a room
        larger than the scene's floor (``max_half_m``)."""
        obstacles = self.wall_furniture[1] + self.free_furniture[1] + self.clutter[1] + 1
        if obstacles > pool.obstacle_boxes + pool.obstacle_cylinders:
            raise ValueError(f"world: up to {obstacles} obstacles, the pool holds "
                             f"{pool.obstacle_boxes + pool.obstacle_cylinders}")
        if self.distractor_cubes[1] > pool.distractor_cubes:
            raise ValueError(f"world: up to {self.distractor_cubes[1]} distractor cubes, "
                             f"the pool holds {pool.distractor_cubes}")
        if self.distractor_shapes[1] > pool.distractor_shapes:
            raise ValueError(f"world: up to {self.distractor_shapes[1]} other distractors, "
                             f"the pool holds {pool.distractor_shapes}")
        if self.room_half_m[1] > max_half_m:
            raise ValueError(f"world: rooms up to {self.room_half_m[1]} m half-size, the "
                             f"scene's floor ends at {max_half_m} m")


@dataclass(frozen=True, slots=True)
class Piece:
    """One pool body as a world places it (the body and its geom share ``body``)."""

    body: str
    role: str  # furniture | clutter | occluder | distractor
    shape: str  # box | cylinder | sphere: the MuJoCo geom type
    x_m: float
    y_m: float
    yaw_rad: float
    # MuJoCo geom size: a box's half-extents; a cylinder's radius and half-height; a
    # sphere's radius (three entries, unused ones 0).
    size: tuple[float, float, float]
    rgba: Rgba
    material: str  # "" for none

    @property
    def height_m(self) -> float:
        """Height above the floor, metres."""
        return 2 * self.size[{"box": 2, "cylinder": 1, "sphere": 0}[self.shape]]

    @property
    def footprint(self) -> Footprint:
        """The piece's outline on the floor."""
        if self.shape == "box":
            return Footprint(self.x_m, self.y_m, self.size[0], self.size[1], self.yaw_rad)
        return Footprint(self.x_m, self.y_m, radius_m=self.size[0])


@dataclass(frozen=True, slots=True)
class World:
    """One episode's world; positions in metres, angles in radians."""

    half_x_m: float
    half_y_m: float
    wall_height_m: float
    pieces: tuple[Piece, ...]
    robot_xy_yaw: tuple[float, float, float]
    target_xy: tuple[float, float]
    target_rgba: Rgba
    partly_hidden: bool
    floor_material: str
    floor_rgba: Rgba
    wall_material: str
    wall_rgba: Rgba
    texture_scale: float  # texrepeat of floor and wall materials over their nominal one

    def footprints(self) -> tuple[Footprint, ...]:
        """Everything the robot must not touch: the walls and every piece."""
        return wall_footprints(self.half_x_m, self.half_y_m) + tuple(
            p.footprint for p in self.pieces)


def wall_footprints(half_x_m: float, half_y_m: float) -> tuple[Footprint, ...]:
    """The four walls around a ``2 half_x_m`` by ``2 half_y_m`` floor (east, west, north,
    south; as :func:`~zima.sim.scenes.world_xml` builds them)."""
    t = WALL_THICKNESS_M
    return (Footprint(half_x_m + t, 0.0, t, half_y_m + 2 * t),
            Footprint(-half_x_m - t, 0.0, t, half_y_m + 2 * t),
            Footprint(0.0, half_y_m + t, half_x_m + 2 * t, t),
            Footprint(0.0, -half_y_m - t, half_x_m + 2 * t, t))


def robot_clearances(robot: RobotConfig) -> tuple[float, float]:
    """(cell, line) clearances of the navigation grid for ``robot``, metres: of a path's
    cells, its turning circle with 5 cm to spare; of the straight lines between them and
    on to the target, its turning circle with 1 cm (it may turn anywhere on them)."""
    return robot.radius_m + 0.05, robot.radius_m + 0.01


def _hsv(h_deg: float, s: float, v: float) -> Rgba:
    r, g, b = colorsys.hsv_to_rgb((h_deg % 360) / 360.0, s, v)
    return (r, g, b, 1.0)


def _tint(rng: np.random.Generator, saturation: float, value: Range) -> Rgba:
    """A material's tint: any hue, muted (up to ``saturation``), ``value`` bright."""
    return _hsv(float(rng.uniform(0, 360)), float(rng.uniform(0, saturation)),
                float(rng.uniform(*value)))


class _Drawer:
    """One attempt at a world; ``draw()`` returns None when the attempt fails."""

    def __init__(self, rng: np.random.Generator, cfg: WorldConfig, pool: BodyPool,
                 robot: RobotConfig) -> None:
        self.rng, self.cfg, self.pool, self.robot = rng, cfg, pool, robot
        self.pieces: list[Piece] = []
        self.taken: list[Footprint] = []  # the pieces' footprints, in step with pieces
        self.boxes = [f"obstacle_box_{i}" for i in range(pool.obstacle_boxes)]
        self.cylinders = [f"obstacle_cyl_{i}" for i in range(pool.obstacle_cylinders)]
        self.hx = self.hy = 0.0

    # --- helpers ----------------------------------------------------------------------

    def u(self, r: Range) -> float:
        return float(self.rng.uniform(*r))

    def count(self, r: tuple[int, int]) -> int:
        return int(self.rng.integers(r[0], r[1] + 1))

    def other_hue(self) -> float:
        band, gap = self.cfg.target_hue_deg, self.cfg.other_hue_gap_deg
        return (band[1] + gap + self.u((0.0, 360.0 - 2 * gap - (band[1] - band[0])))) % 360

    def footprints(self) -> tuple[Footprint, ...]:
        return tuple(self.taken)

    def keep(self, piece: Piece) -> None:
        self.pieces.append(piece)
        self.taken.append(piece.footprint)

    def wall_gap(self, xy: np.ndarray) -> float:
        return min(self.hx - abs(float(xy[0])), self.hy - abs(float(xy[1])))

    def free_xy(self, margin_m: float) -> np.ndarray:
        lim = np.array([self.hx, self.hy]) - margin_m
        return self.rng.uniform(-lim, lim)  # [2]

    def fits(self, fp: Footprint, gap_m: float) -> bool:
        """Inside the room and ``gap_m`` clear of every piece placed so far."""
        pts = corners(fp)
        inside = (np.abs(pts[:, 0]) <= self.hx).all() and (np.abs(pts[:, 1]) <= self.hy).all()
        return bool(inside and separated(fp, self.footprints(), gap_m))

    def add(self, role: str, shape: str, xy: np.ndarray, *, yaw: float,
            size: tuple[float, float, float], rgba: Rgba, material: str, gap_m: float) -> bool:
        """Place an obstacle (the next free pool body of its shape) if it fits."""
        names = self.boxes if shape == "box" else self.cylinders
        if not names:
            return False
        piece = Piece(names[0], role, shape, float(xy[0]), float(xy[1]), yaw, size, rgba,
                      material)
        if not self.fits(piece.footprint, gap_m):
            return False
        names.pop(0)
        self.keep(piece)
        return True

    def furniture_look(self) -> tuple[Rgba, str]:
        rgba = _hsv(self.other_hue(), self.u((0.05, 0.6)), self.u((0.15, 0.9)))
        return rgba, FURNITURE_MATERIALS[int(self.rng.integers(len(FURNITURE_MATERIALS)))]

    # --- the room and its obstacles ---------------------------------------------------

    def room(self) -> float:
        long = self.u(self.cfg.room_half_m)
        short = max(1.0, long * self.u(self.cfg.room_aspect))
        self.hx, self.hy = (long, short) if self.rng.uniform() < 0.5 else (short, long)
        return self.u(self.cfg.wall_height_m)

    def wall_furniture(self) -> None:
        for _ in range(self.count(self.cfg.wall_furniture)):
            side = int(self.rng.integers(4))  # east, west, north, south
            wall_half = self.hy if side < 2 else self.hx
            along, depth = self.u((0.2, min(0.9, 0.6 * wall_half))), self.u((0.18, 0.45))
            height, offset = self.u((0.3, 0.95)), self.u((-1.0, 1.0)) * (wall_half - along)
            inner = (self.hx if side < 2 else self.hy) - depth - self.u((0.0, 0.04))
            sign = 1.0 if side in (0, 2) else -1.0
            xy = np.array([sign * inner, offset] if side < 2 else [offset, sign * inner])
            half = (depth, along) if side < 2 else (along, depth)
            rgba, material = self.furniture_look()
            self.add("furniture", "box", xy, yaw=0.0, size=(*half, height / 2), rgba=rgba,
                     material=material, gap_m=0.02)

    def free_furniture(self) -> None:
        for _ in range(self.count(self.cfg.free_furniture)):
            rgba, material = self.furniture_look()
            height = self.u((0.35, 0.8))
            for _ in range(20):
                if self.rng.uniform() < 0.7:
                    size = (self.u((0.2, 0.5)), self.u((0.2, 0.5)), height / 2)
                    yaw = 0.0 if self.rng.uniform() < 0.5 else self.u((-math.pi, math.pi))
                    shape = "box"
                else:
                    size, yaw, shape = (self.u((0.15, 0.35)), height / 2, 0.0), 0.0, "cylinder"
                if self.add("furniture", shape, self.free_xy(0.3), yaw=yaw, size=size,
                            rgba=rgba, material=material, gap_m=0.45):
                    break

    def clutter(self) -> None:
        for _ in range(self.count(self.cfg.clutter)):
            rgba = _hsv(self.other_hue(), self.u((0.2, 0.9)), self.u((0.2, 0.95)))
            material = FURNITURE_MATERIALS[int(self.rng.integers(len(FURNITURE_MATERIALS)))]
            height = self.u((0.04, 0.35))
            for _ in range(20):
                if self.rng.uniform() < 0.6:
                    size = (self.u((0.04, 0.18)), self.u((0.04, 0.18)), height / 2)
                    shape, yaw = "box", self.u((-math.pi, math.pi))
                else:
                    size, shape, yaw = (self.u((0.04, 0.15)), height / 2, 0.0), "cylinder", 0.0
                if self.add("clutter", shape, self.free_xy(0.2), yaw=yaw, size=size,
                            rgba=rgba, material=material, gap_m=0.05):
                    break

    # --- the task ---------------------------------------------------------------------

    def start(self) -> np.ndarray | None:
        """Free floor for the robot's turning circle, with 6 cm to spare."""
        need = self.robot.radius_m + 0.06
        for _ in range(200):
            xy = self.free_xy(need)
            if clearance(xy, self.footprints())[0] > need:
                return xy
        return None

    def target(self, start: np.ndarray, hidden: bool, band: Range) -> np.ndarray | None:
        """Free floor ``band`` metres from the start; in plain sight: a clear corridor."""
        half = CUBE_SIZE_M / 2
        corridor = self.robot.width_m / 2 + 0.06
        # A hidden target needs room around it for the way round its occluder.
        room = 0.45 if hidden else 0.15
        for _ in range(60):
            heading = self.u((-math.pi, math.pi))
            xy = start + self.u(band) * np.array([math.cos(heading), math.sin(heading)])
            fps = wall_footprints(self.hx, self.hy) + self.footprints()
            if (self.wall_gap(xy) < room or clearance(xy, fps)[0] < room + half
                    or (not hidden and not segment_clear(start, xy, fps, corridor))):
                continue
            return xy
        return None

    def occluder(self, start: np.ndarray, target: np.ndarray) -> bool:
        """An obstacle near the target whose edge crosses the line of sight to it."""
        d = target - start
        dist = float(np.linalg.norm(d))
        u, n = d / dist, np.array([-d[1], d[0]]) / dist
        for _ in range(20):
            depth, width = self.u((0.05, 0.15)), self.u((0.1, 0.3))
            back = self.u((0.22, 0.5))
            if back + depth > dist - self.robot.radius_m - 0.1:
                continue
            side = 1.0 if self.rng.uniform() < 0.5 else -1.0
            # its near edge crosses the line of sight within the cube's half-width (28 mm)
            xy = target - (back + depth) * u + side * (width + self.u((-0.015, 0.03))) * n
            yaw = math.atan2(u[1], u[0]) + self.u((-0.2, 0.2))
            rgba, material = self.furniture_look()
            size = (depth, width, self.u((0.1, 0.6)) / 2)
            fp = Footprint(float(xy[0]), float(xy[1]), depth, width, yaw)
            if (clearance(target, (fp,))[0] < CUBE_SIZE_M / 2 + 0.1
                    or clearance(start, (fp,))[0] < self.robot.radius_m + 0.06):
                continue
            if self.add("occluder", "box", xy, yaw=yaw, size=size, rgba=rgba,
                        material=material, gap_m=0.02):
                return True
        return False

    def distractors(self, start: np.ndarray, target: np.ndarray, hidden: bool) -> None:
        """Cubes and other shapes on free floor, off the start, the target and (in plain
        sight) the corridor between them; a distractor cube is never the target's colour."""
        cfg, pool = self.cfg, self.pool
        shapes = ["cube"] * self.count(cfg.distractor_cubes)
        kinds = ("cylinder", "sphere", "box")
        shapes += [kinds[int(self.rng.integers(3))]
                   for _ in range(self.count(cfg.distractor_shapes))]
        free = {"cube": [f"distractor_{i}" for i in range(pool.distractor_cubes)],
                "cylinder": [f"distractor_cyl_{i}" for i in range(pool.distractor_cylinders)],
                "sphere": [f"distractor_sphere_{i}" for i in range(pool.distractor_spheres)],
                "box": [f"distractor_box_{i}" for i in range(pool.distractor_boxes)]}
        corridor = self.robot.width_m / 2 + 0.06
        for kind in shapes:
            if not free[kind]:
                continue
            size, shape, yaw = self.distractor_size(kind)
            if kind == "cube" or self.rng.uniform() >= cfg.similar_colour_share:
                rgba = _hsv(self.other_hue(), self.u((0.5, 1.0)), self.u((0.4, 1.0)))
            else:
                band, sim = cfg.target_hue_deg, cfg.similar_hue_deg
                rgba = _hsv(self.u((band[0] - sim, band[1] + sim)), self.u((0.5, 1.0)),
                            self.u((0.4, 0.95)))
            reach = max(size[0], size[1]) * math.sqrt(2) if shape == "box" else size[0]
            for _ in range(60):
                xy = self.free_xy(0.1)
                if (np.linalg.norm(xy - target) < 0.35 + reach
                        or np.linalg.norm(xy - start) < self.robot.radius_m + 0.1 + reach):
                    continue
                if not hidden:
                    t = float(np.clip(np.dot(xy - start, target - start)
                                      / np.dot(target - start, target - start), 0, 1))
                    if np.linalg.norm(xy - (start + t * (target - start))) < corridor + reach:
                        continue
                piece = Piece(free[kind][0], "distractor", shape, float(xy[0]), float(xy[1]),
                              yaw, size, rgba, "")
                if self.fits(piece.footprint, 0.05):
                    self.keep(piece)
                    free[kind].pop(0)
                    break

    def distractor_size(self, kind: str) -> tuple[tuple[float, float, float], str, float]:
        yaw = self.u((-math.pi, math.pi))
        if kind == "cube":
            half = CUBE_SIZE_M / 2
            return (half, half, half), "box", yaw
        if kind == "cylinder":  # cans, bottles, cartons standing up
            return (self.u((0.02, 0.06)), self.u((0.03, 0.12)), 0.0), "cylinder", 0.0
        if kind == "sphere":  # balls
            return (self.u((0.025, 0.07)), 0.0, 0.0), "sphere", 0.0
        while True:  # boxes of other proportions: the longest side 1.6x the shortest or more
            box = (self.u((0.02, 0.09)), self.u((0.02, 0.09)), self.u((0.02, 0.12)))
            if max(box) >= 1.6 * min(box):
                return box, "box", yaw

    def draw(self, hidden: bool, band: Range) -> World | None:
        wall_height = self.room()
        if 2 * math.hypot(self.hx, self.hy) < band[0] + 0.8:
            return None  # no room for a target this far: a bigger room next time
        self.wall_furniture()
        self.free_furniture()
        self.clutter()
        start = self.start()
        if start is None:
            return None
        target = self.target(start, hidden, band)
        if target is None or (hidden and not self.occluder(start, target)):
            return None
        self.distractors(start, target, hidden)
        if hidden:
            turn, line = robot_clearances(self.robot)
            fps = wall_footprints(self.hx, self.hy) + self.footprints()
            grid = NavGrid(self.hx, self.hy, fps, turn_clear_m=turn, pass_clear_m=line)
            if not grid.reachable(start, target):
                return None
        cfg = self.cfg
        floor = PROCEDURAL_FLOOR_MATERIALS[int(self.rng.integers(len(PROCEDURAL_FLOOR_MATERIALS)))]
        wall = PROCEDURAL_WALL_MATERIALS[int(self.rng.integers(len(PROCEDURAL_WALL_MATERIALS)))]
        floor_rgba, wall_rgba = _tint(self.rng, 0.4, (0.35, 1.0)), _tint(self.rng, 0.3, (0.5, 1.0))
        return World(
            half_x_m=self.hx, half_y_m=self.hy, wall_height_m=wall_height,
            pieces=tuple(self.pieces),
            robot_xy_yaw=(float(start[0]), float(start[1]), self.u((-math.pi, math.pi))),
            target_xy=(float(target[0]), float(target[1])),
            target_rgba=_hsv(self.u(cfg.target_hue_deg), self.u((0.6, 1.0)), self.u((0.45, 0.95))),
            partly_hidden=hidden, floor_material=floor, floor_rgba=floor_rgba,
            wall_material=wall, wall_rgba=wall_rgba,
            texture_scale=self.u((0.6, 1.6)),
        )


def draw_world(rng: np.random.Generator, cfg: WorldConfig, pool: BodyPool,
               robot: RobotConfig, *, partly_hidden: bool, distance_band: int) -> World | None:
    """One attempt at a world from ``rng``: its target partly hidden from the start or
    not, at a distance from band ``distance_band`` of ``cfg.target_dist_bands_m``. None
    when the attempt found no valid placement (draw again with the same generator: its
    state has moved on; keep the hidden flag and band, or the shares drift)."""
    return _Drawer(rng, cfg, pool, robot).draw(partly_hidden,
                                               cfg.target_dist_bands_m[distance_band])
