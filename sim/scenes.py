"""Scenes: a registry of layouts, and the MJCF of a whole world (scene + cubes + robot).

A layout says where the walls and the furniture stand; :func:`world_xml` turns it into
MJCF with the target cube, the distractor cubes and the robot. Everything an episode
randomises (placements, colours, materials, lights, camera jitter) is changed later in
the compiled model by :mod:`zima.sim.randomize`, so one model (and one renderer) serves
every episode of a scene.

A procedural scene (``procedural``) has no fixed layout: its model holds a pool of bodies
(:class:`BodyPool`: walls, obstacle boxes and cylinders, distractors of four shapes),
each a body of one geom, which every episode moves, resizes and recolours to draw a new
world (:mod:`zima.sim.procedural`); the bodies it does not use wait parked far outside.

Geom groups (used for contacts, ray casts and rendering): 0 floor and robot,
1 obstacles (walls, furniture, clutter), 2 the target and distractors (touching one is
WRONG_CUBE). Names: ``wall_*``, ``obstacle_*``, ``target``, ``distractor_<i>`` (cubes),
and in procedural scenes ``distractor_{cyl,sphere,box}_<i>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zima.contract import DEFAULT, Contract
from zima.sim.robot import RobotConfig, actuators_xml, robot_xml

CUBE_SIZE_M = 0.057  # the target and distractors: 57 mm cubes (the real ones)
WALL_THICKNESS_M = 0.05  # half of it: walls are boxes 0.1 m thick outside the floor
GROUP_OBSTACLE = 1
GROUP_CUBE = 2
FLOOR_MATERIALS = ("floor_checker", "floor_grid", "floor_speckle", "floor_plain")
WALL_MATERIALS = ("wall_plain", "wall_speckle", "wall_grid")
# Procedural scenes add materials (their models only: arena and room stay as they were).
PROCEDURAL_FLOOR_MATERIALS = (*FLOOR_MATERIALS, "floor_tiles", "floor_carpet", "floor_boards")
PROCEDURAL_WALL_MATERIALS = (*WALL_MATERIALS, "wall_tiles", "wall_gradient")
FURNITURE_MATERIALS = ("furn_matte", "furn_glossy", "furn_fabric", "furn_grain", "furn_grid")
PARK_M = 40.0  # parked pool bodies stand beyond x, y = PARK_M (outside zfar of any camera)


@dataclass(frozen=True, slots=True)
class Block:
    """An axis-aligned box standing on the floor: furniture or clutter. Metres."""

    name: str
    x_m: float
    y_m: float
    half_x_m: float
    half_y_m: float
    height_m: float
    rgba: tuple[float, float, float, float] = (0.5, 0.4, 0.3, 1.0)


@dataclass(frozen=True, slots=True)
class BodyPool:
    """How many bodies of each kind a procedural scene's one compiled model holds."""

    # Furniture, clutter and occluders: boxes and cylinders (tables, bins, pots).
    obstacle_boxes: int = 16
    obstacle_cylinders: int = 6
    # Distractors: cubes, and other shapes (cylinders, spheres, boxes of other proportions).
    distractor_cubes: int = 4
    distractor_cylinders: int = 3
    distractor_spheres: int = 3
    distractor_boxes: int = 3

    @property
    def distractor_shapes(self) -> int:
        """Distractor bodies that are not cubes."""
        return self.distractor_cylinders + self.distractor_spheres + self.distractor_boxes


@dataclass(frozen=True, slots=True)
class SceneLayout:
    """The fixed part of a scene; the floor spans +-half_x_m by +-half_y_m inside the walls."""

    name: str
    half_x_m: float
    half_y_m: float
    wall_height_m: float
    blocks: tuple[Block, ...]
    # Distractor cubes: the model holds max_distractors, an episode shows 1..max of them.
    max_distractors: int
    # Procedural scenes: the pool of bodies (then half sizes and wall height are the
    # largest an episode may draw, and blocks is empty). None: a fixed layout.
    pool: BodyPool | None = None

    def summary(self) -> str:
        """One line for ``zima sim scenes``."""
        if self.pool is None:
            return (f"{2 * self.half_x_m:.1f} m x {2 * self.half_y_m:.1f} m, "
                    f"{len(self.blocks)} furniture/clutter blocks, "
                    f"up to {self.max_distractors} distractor cubes")
        p = self.pool
        return (f"a new room per seed, up to {2 * self.half_x_m:.1f} m x "
                f"{2 * self.half_y_m:.1f} m, up to {p.obstacle_boxes + p.obstacle_cylinders} "
                f"furniture/clutter pieces, {p.distractor_cubes} distractor cubes and "
                f"{p.distractor_shapes} other distractors")


def arena() -> SceneLayout:
    """A 3 m x 3 m floor with low walls and nothing else: the easy scene."""
    return SceneLayout("arena", 1.5, 1.5, 0.15, blocks=(), max_distractors=3)


def room() -> SceneLayout:
    """A 5 m x 4 m room with furniture-like boxes along the walls and clutter on the floor."""
    wood, fabric, metal = (0.55, 0.38, 0.22, 1.0), (0.35, 0.35, 0.5, 1.0), (0.6, 0.6, 0.62, 1.0)
    blocks = (
        Block("sofa", -0.6, 1.62, 0.85, 0.38, 0.45, fabric),
        Block("cabinet", 2.27, 0.3, 0.23, 0.6, 0.9, wood),
        Block("bed", -1.65, -1.1, 0.85, 0.9, 0.5, (0.8, 0.8, 0.75, 1.0)),
        Block("desk", 1.3, -1.65, 0.6, 0.35, 0.75, wood),
        Block("bin", 0.55, 1.7, 0.12, 0.12, 0.35, metal),
        Block("box_a", 0.4, -0.2, 0.1, 0.15, 0.2, (0.7, 0.6, 0.4, 1.0)),
        Block("box_b", -0.9, 0.4, 0.14, 0.09, 0.12, (0.25, 0.25, 0.25, 1.0)),
        Block("books", 1.6, 1.2, 0.09, 0.13, 0.08, (0.6, 0.1, 0.5, 1.0)),
    )  # fmt: skip
    return SceneLayout("room", 2.5, 2.0, 0.6, blocks=blocks, max_distractors=4)


def procedural() -> SceneLayout:
    """A new room per episode (:mod:`zima.sim.procedural`), up to 8 m x 8 m."""
    pool = BodyPool()
    return SceneLayout("procedural", 4.0, 4.0, 1.0, blocks=(),
                       max_distractors=pool.distractor_cubes, pool=pool)


# name -> builder. A new scene is one function and one entry here.
SCENES: dict[str, Callable[[], SceneLayout]] = {
    "arena": arena, "room": room, "procedural": procedural}

_ASSETS = """
<texture name="checker" type="2d" builtin="checker" rgb1=".8 .8 .8" rgb2=".45 .45 .45"
         width="128" height="128"/>
<texture name="grid" type="2d" builtin="flat" mark="edge" rgb1=".7 .7 .7" markrgb=".3 .3 .3"
         width="128" height="128"/>
<texture name="speckle" type="2d" builtin="flat" mark="random" random="0.08" rgb1=".7 .7 .7"
         markrgb=".2 .2 .2" width="256" height="256"/>
<material name="floor_checker" texture="checker" texrepeat="6 6" texuniform="true"/>
<material name="floor_grid" texture="grid" texrepeat="4 4" texuniform="true"/>
<material name="floor_speckle" texture="speckle" texrepeat="2 2" texuniform="true"/>
<material name="floor_plain" rgba=".6 .6 .6 1"/>
<material name="wall_plain" rgba=".85 .85 .8 1"/>
<material name="wall_speckle" texture="speckle" texrepeat="1 1" texuniform="true"/>
<material name="wall_grid" texture="grid" texrepeat="2 2" texuniform="true"/>
"""
_PROCEDURAL_ASSETS = """
<texture name="tiles" type="2d" builtin="checker" mark="edge" rgb1=".85 .85 .85"
         rgb2=".75 .75 .75" markrgb=".35 .35 .35" width="128" height="128"/>
<texture name="carpet" type="2d" builtin="flat" mark="random" random="0.35" rgb1=".6 .6 .6"
         markrgb=".35 .35 .35" width="256" height="256"/>
<texture name="boards" type="2d" builtin="gradient" rgb1=".8 .8 .8" rgb2=".45 .45 .45"
         width="128" height="128"/>
<texture name="cross" type="2d" builtin="flat" mark="cross" rgb1=".8 .8 .8"
         markrgb=".55 .55 .55" width="128" height="128"/>
<material name="floor_tiles" texture="tiles" texrepeat="8 8" texuniform="true"/>
<material name="floor_carpet" texture="carpet" texrepeat="3 3" texuniform="true"/>
<material name="floor_boards" texture="boards" texrepeat="12 2" texuniform="true"
          specular=".4" shininess=".5"/>
<material name="wall_tiles" texture="tiles" texrepeat="4 4" texuniform="true"/>
<material name="wall_gradient" texture="boards" texrepeat="1 1" texuniform="true"/>
<material name="furn_matte" specular="0" shininess="0"/>
<material name="furn_glossy" specular=".7" shininess=".8"/>
<material name="furn_fabric" texture="carpet" texrepeat="6 6" texuniform="true" specular="0"/>
<material name="furn_grain" texture="speckle" texrepeat="4 4" texuniform="true"
          specular=".3"/>
<material name="furn_grid" texture="cross" texrepeat="4 4" texuniform="true"/>
"""


def _box(name: str, pos: tuple[float, float, float], half: tuple[float, float, float],
         extra: str) -> str:
    p, h = " ".join(f"{v:.4f}" for v in pos), " ".join(f"{v:.4f}" for v in half)
    return f'<geom name="{name}" type="box" pos="{p}" size="{h}" {extra}/>'


def world_xml(layout: SceneLayout, robot: RobotConfig, contract: Contract = DEFAULT,
              physics_dt_s: float = 0.005) -> str:
    """The MJCF text of ``layout`` with cubes and the robot, ready for ``MjModel``."""
    if layout.pool is not None:
        return _pool_xml(layout, layout.pool, robot, contract, physics_dt_s)
    hx, hy, wh, t = layout.half_x_m, layout.half_y_m, layout.wall_height_m, WALL_THICKNESS_M
    walls = "".join(
        _box(f"wall_{n}", (x, y, wh / 2), (sx, sy, wh / 2),
             f'group="{GROUP_OBSTACLE}" material="wall_plain"')
        for n, x, y, sx, sy in (
            ("east", hx + t, 0, t, hy + 2 * t), ("west", -hx - t, 0, t, hy + 2 * t),
            ("north", 0, hy + t, hx + 2 * t, t), ("south", 0, -hy - t, hx + 2 * t, t),
        )
    )  # fmt: skip
    blocks = "".join(
        _box(f"obstacle_{b.name}", (b.x_m, b.y_m, b.height_m / 2),
             (b.half_x_m, b.half_y_m, b.height_m / 2),
             f'group="{GROUP_OBSTACLE}" rgba="{" ".join(map(str, b.rgba))}"')
        for b in layout.blocks
    )
    half = CUBE_SIZE_M / 2
    cube = f'type="box" size="{half} {half} {half}" group="{GROUP_CUBE}"'
    cubes = f'<body name="target" pos="60 60 {half}"><geom name="target" {cube} rgba="0 .8 0 1"/>'
    cubes += "</body>"
    for i in range(layout.max_distractors):
        cubes += (f'<body name="distractor_{i}" pos="{50 + i} 50 {half}">'
                  f'<geom name="distractor_{i}" {cube} rgba=".8 0 0 1"/></body>')
    return f"""<mujoco model="zima_{layout.name}">
  <compiler angle="radian"/>
  <option timestep="{physics_dt_s}" integrator="implicitfast"/>
  <!-- The parked distractors would inflate the automatic extent, and the near clipping
       plane (znear * extent) with it: state the scene's size. -->
  <statistic extent="{2 * max(hx, hy):.2f}" center="0 0 0.2"/>
  <visual><global offwidth="640" offheight="480"/><map znear="0.002" zfar="20"/></visual>
  <asset>{_ASSETS}</asset>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 4" dir="0 0 -1" diffuse=".6 .6 .6"
           castshadow="false"/>
    <light name="lamp" pos="0 0 2.5" diffuse=".4 .4 .4" castshadow="false"/>
    <geom name="floor" type="plane" contype="0" conaffinity="0" material="floor_checker"
          size="{hx + 0.2} {hy + 0.2} 0.1"/>
    {walls}{blocks}{cubes}
    {robot_xml(robot, contract)}
  </worldbody>
  <actuator>{actuators_xml(robot)}</actuator>
</mujoco>"""


def _static_body(name: str, pos: tuple[float, float, float], geom: str) -> str:
    """A body of one geom, welded to the world: moved by body_pos, resized by geom_size.
    Its inertial frame is its own frame, which the collision tree's bounds
    (bvh_aabb) are expressed in."""
    p = " ".join(f"{v:.4f}" for v in pos)
    return (f'<body name="{name}" pos="{p}"><inertial pos="0 0 0" mass="1" '
            f'diaginertia="1 1 1"/><geom name="{name}" {geom}/></body>')


def _pool_xml(layout: SceneLayout, pool: BodyPool, robot: RobotConfig, contract: Contract,
              physics_dt_s: float) -> str:
    """A procedural scene's MJCF: walls, obstacles and distractors as pool bodies."""
    hx, hy, wh, t = layout.half_x_m, layout.half_y_m, layout.wall_height_m, WALL_THICKNESS_M
    parked = iter(range(10_000))

    def park(z: float) -> tuple[float, float, float]:
        return (PARK_M + 2.0 * next(parked), PARK_M, z)

    bodies = [
        _static_body(f"wall_{n}", (x, y, wh / 2), f'type="box" size="{sx} {sy} {wh / 2}" '
                     f'group="{GROUP_OBSTACLE}" material="wall_plain"')
        for n, x, y, sx, sy in (
            ("east", hx + t, 0, t, hy + 2 * t), ("west", -hx - t, 0, t, hy + 2 * t),
            ("north", 0, hy + t, hx + 2 * t, t), ("south", 0, -hy - t, hx + 2 * t, t),
        )
    ]  # fmt: skip

    def pool_bodies(kinds: list[tuple[str, float, str, int]]) -> list[str]:
        """(name, resting height in metres, geom attributes, how many): the pool's bodies
        of each kind, parked in a row off the arena, ``<name>_<i>``."""
        return [_static_body(f"{name}_{i}", park(z), geom)
                for name, z, geom, count in kinds for i in range(count)]

    obstacle = f'group="{GROUP_OBSTACLE}" rgba=".5 .4 .3 1" material="furn_matte"'
    bodies += pool_bodies([
        ("obstacle_box", 0.1, f'type="box" size=".1 .1 .1" {obstacle}', pool.obstacle_boxes),
        ("obstacle_cyl", 0.1, f'type="cylinder" size=".1 .1" {obstacle}',
         pool.obstacle_cylinders),
    ])
    half = CUBE_SIZE_M / 2
    cube = f'group="{GROUP_CUBE}" rgba=".8 0 0 1"'
    bodies.append(f'<body name="target" pos="60 60 {half}"><geom name="target" type="box" '
                  f'size="{half} {half} {half}" group="{GROUP_CUBE}" rgba="0 .8 0 1"/></body>')
    bodies += pool_bodies([
        ("distractor", half, f'type="box" size="{half} {half} {half}" {cube}',
         pool.distractor_cubes),
        ("distractor_cyl", 0.05, f'type="cylinder" size=".03 .05" {cube}',
         pool.distractor_cylinders),
        ("distractor_sphere", 0.04, f'type="sphere" size=".04" {cube}', pool.distractor_spheres),
        ("distractor_box", 0.05, f'type="box" size=".03 .05 .05" {cube}', pool.distractor_boxes),
    ])
    return f"""<mujoco model="zima_{layout.name}">
  <compiler angle="radian"/>
  <option timestep="{physics_dt_s}" integrator="implicitfast"/>
  <statistic extent="{2 * max(hx, hy):.2f}" center="0 0 0.2"/>
  <visual><global offwidth="640" offheight="480"/><map znear="0.002" zfar="20"/></visual>
  <asset>{_ASSETS}{_PROCEDURAL_ASSETS}</asset>
  <worldbody>
    <light name="sun" directional="true" pos="0 0 4" dir="0 0 -1" diffuse=".6 .6 .6"
           castshadow="false"/>
    <light name="lamp" pos="0 0 2.5" diffuse=".4 .4 .4" castshadow="false"/>
    <light name="lamp2" pos="1 1 2.5" diffuse="0 0 0" castshadow="false"/>
    <!-- The renderer draws a plane as compiled: this floor spans the largest room. -->
    <geom name="floor" type="plane" contype="0" conaffinity="0" material="floor_checker"
          size="{hx + 0.2} {hy + 0.2} 0.1"/>
    {"".join(bodies)}
    {robot_xml(robot, contract)}
  </worldbody>
  <actuator>{actuators_xml(robot)}</actuator>
</mujoco>"""
