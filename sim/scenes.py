"""Scenes: a registry of layouts, and the MJCF of a whole world (scene + cubes + robot).

A layout says where the walls and the furniture stand; :func:`world_xml` turns it into
MJCF with the target cube, the distractor cubes and the robot. Everything an episode
randomises (placements, colours, materials, lights, camera jitter) is changed later in
the compiled model by :mod:`zima.sim.randomize`, so one model (and one renderer) serves
every episode of a scene.

Geom groups (used for contacts, ray casts and rendering): 0 floor and robot,
1 obstacles (walls, furniture, clutter), 2 cubes. Names: ``wall_*``, ``obstacle_*``,
``target``, ``distractor_<i>``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zima.contract import DEFAULT, Contract
from zima.sim.robot import RobotConfig, actuators_xml, robot_xml

CUBE_SIZE_M = 0.057  # the target and distractors: 57 mm cubes (the real ones)
GROUP_OBSTACLE = 1
GROUP_CUBE = 2
FLOOR_MATERIALS = ("floor_checker", "floor_grid", "floor_speckle", "floor_plain")
WALL_MATERIALS = ("wall_plain", "wall_speckle", "wall_grid")


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
class SceneLayout:
    """The fixed part of a scene; the floor spans +-half_x_m by +-half_y_m inside the walls."""

    name: str
    half_x_m: float
    half_y_m: float
    wall_height_m: float
    blocks: tuple[Block, ...]
    # Distractor cubes: the model holds max_distractors, an episode shows 1..max of them.
    max_distractors: int


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


# name -> builder. A new scene is one function and one entry here.
SCENES: dict[str, Callable[[], SceneLayout]] = {"arena": arena, "room": room}

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


def _box(name: str, pos: tuple[float, float, float], half: tuple[float, float, float],
         extra: str) -> str:
    p, h = " ".join(f"{v:.4f}" for v in pos), " ".join(f"{v:.4f}" for v in half)
    return f'<geom name="{name}" type="box" pos="{p}" size="{h}" {extra}/>'


def world_xml(layout: SceneLayout, robot: RobotConfig, contract: Contract = DEFAULT,
              physics_dt_s: float = 0.005) -> str:
    """The MJCF text of ``layout`` with cubes and the robot, ready for ``MjModel``."""
    hx, hy, wh, t = layout.half_x_m, layout.half_y_m, layout.wall_height_m, 0.05
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
