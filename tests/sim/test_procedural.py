"""Procedural worlds: deterministic per seed, varied, valid placements, one compiled model.

Placement is checked with MuJoCo's own geometry (``mj_geomDistance``, contacts of the
robot turning where it starts, ray casts from its camera) rather than with the code that
placed the pieces; reachability by the scripted expert driving there.
"""

import colorsys
import math
from collections import Counter
from collections.abc import Callable

import mujoco
import numpy as np
import pytest

from zima.contract import DEFAULT, Action
from zima.episodes import Outcome
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.expert import run_episode
from zima.sim.navgrid import Footprint, NavGrid, clearance, separated
from zima.sim.procedural import WorldConfig
from zima.sim.randomize import DomainConfig, _bounds
from zima.sim.scenes import CUBE_SIZE_M, BodyPool
from zima.sim.sight import camera_seen_share

MakeEnv = Callable[..., ZimaEnv]
PHYSICS_ONLY = EnvConfig(render=False)
SEEDS = range(40)


def _pool_state(env: ZimaEnv) -> list[np.ndarray]:
    """Every model array an episode's world writes."""
    m = env.model
    return [m.body_pos.copy(), m.body_quat.copy(), m.geom_size.copy(), m.geom_rbound.copy(),
            m.geom_aabb.copy(), m.bvh_aabb.copy(), m.geom_rgba.copy(), m.geom_matid.copy(),
            m.mat_rgba.copy(), m.mat_texrepeat.copy(), m.light_diffuse.copy(),
            m.light_pos.copy(), m.light_dir.copy(), m.light_active.copy(), m.cam_pos.copy(),
            m.cam_fovy.copy()]


def _placed_geoms(env: ZimaEnv) -> list[int]:
    """The target's and every placed piece's geom."""
    assert env.domain is not None
    assert env.domain.world is not None
    return [env.model.geom("target").id] + [env.model.geom(p.body).id
                                            for p in env.domain.world.pieces]


def test_same_seed_draws_the_same_world_whatever_came_before(make_env: MakeEnv) -> None:
    a, b = make_env("procedural", PHYSICS_ONLY), make_env("procedural", PHYSICS_ONLY)
    for seed in (7, 18, 29):
        a.reset(seed)
        for other in (3, 20, 31):  # b draws other worlds first: nothing may carry over
            b.reset(other)
        b.reset(seed)
        assert a.domain == b.domain
        for x, y in zip(_pool_state(a), _pool_state(b), strict=True):
            np.testing.assert_array_equal(x, y)


def test_worlds_vary_across_seeds(make_env: MakeEnv) -> None:
    env = make_env("procedural", PHYSICS_ONLY)
    rooms: set[tuple[float, float]] = set()
    counts: set[tuple[int, int]] = set()
    floors: set[str] = set()
    walls: set[str] = set()
    roles: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    distances: list[float] = []
    hidden = similar = 0
    for seed in SEEDS:
        env.reset(seed)
        d = env.domain
        assert d is not None
        assert d.world is not None
        rooms.add(d.room_half_m)
        floors.add(d.floor_material)
        walls.add(d.wall_material)
        roles.update(p.role for p in d.world.pieces)
        shapes.update(d.distractor_shapes)
        counts.add((sum(p.role == "furniture" for p in d.world.pieces), len(d.distractor_xy)))
        distances.append(math.dist(d.target_xy, d.robot_xy_yaw[:2]))
        hidden += d.partly_hidden
        for p in d.world.pieces:
            if p.role == "distractor" and p.body != "distractor_0":
                hue = colorsys.rgb_to_hsv(*p.rgba[:3])[0] * 360
                similar += not p.body[len("distractor_"):].isdigit() and 90 <= hue <= 150
    assert len(rooms) == len(SEEDS)  # a new room every episode
    assert max(r[0] * r[1] for r in rooms) > 2 * min(r[0] * r[1] for r in rooms)
    assert len(counts) > 10  # furniture and distractor counts differ
    assert {"furniture", "clutter", "occluder", "distractor"} <= set(roles)
    assert {"cube", "cylinder", "sphere", "box"} <= set(shapes)  # distractors not only cubes
    assert similar >= 3  # some of them coloured like the target
    assert len(floors) >= 5
    assert len(walls) >= 4
    assert min(distances) < 1.0  # near targets
    assert max(distances) > 3.0  # and far ones
    assert 3 <= hidden <= 20  # some targets partly hidden, most not


def test_nothing_overlaps_and_the_robot_turns_freely_where_it_starts(make_env: MakeEnv) -> None:
    env = make_env("procedural", PHYSICS_ONLY)
    m, d = env.model, env.data
    robot = np.nonzero(env._robot)[0]  # the robot's collision geoms
    yaw_q = m.jnt_qposadr[m.joint("base_yaw").id]
    for seed in range(15):
        env.reset(seed)
        geoms = _placed_geoms(env)
        walls = [m.geom(f"wall_{n}").id for n in ("east", "west", "north", "south")]
        for i, g1 in enumerate(geoms):
            for g2 in geoms[i + 1:]:
                assert mujoco.mj_geomDistance(m, d, g1, g2, 1.0, None) > 0.01, (
                    seed, m.geom(g1).name, m.geom(g2).name)
            for g2 in walls:  # furniture may stand against a wall, never in it
                assert mujoco.mj_geomDistance(m, d, g1, g2, 1.0, None) >= 0.0
        for turn_deg in range(0, 360, 15):  # the turning circle at the start is free
            d.qpos[yaw_q] = env.domain.robot_xy_yaw[2] + math.radians(turn_deg)  # type: ignore[union-attr]
            mujoco.mj_forward(m, d)
            touching = env._robot[d.contact.geom[: d.ncon]].any(axis=1)
            assert not touching.any(), (seed, turn_deg)
            for g in robot:
                assert min(mujoco.mj_geomDistance(m, d, g, o, 1.0, None)
                           for o in geoms[1:] + walls) > 0.03


def test_target_is_never_fully_hidden_and_sometimes_partly(make_env: MakeEnv) -> None:
    env = make_env("procedural", PHYSICS_ONLY)
    m, d = env.model, env.data
    yaw_q = m.jnt_qposadr[m.joint("base_yaw").id]
    aspect = DEFAULT.image_width / DEFAULT.image_height
    shares = {}
    for seed in SEEDS:
        env.reset(seed)
        d.qpos[yaw_q] += env.target_bearing_rad()  # face it, with this episode's camera
        mujoco.mj_forward(m, d)
        share = camera_seen_share(m, d, "forward", m.geom("target").id, half_m=CUBE_SIZE_M / 2,
                                  aspect=aspect)
        assert env.domain is not None
        shares[seed] = (share, env.domain.partly_hidden)
        assert share > 0.05, (seed, share)
    assert all(s > 0.9 for s, hidden in shares.values() if not hidden)
    assert any(s < 0.8 for s, hidden in shares.values() if hidden)


def test_expert_reaches_partly_hidden_targets(make_env: MakeEnv) -> None:
    env = make_env("procedural", PHYSICS_ONLY)
    hidden = []
    for seed in range(100):
        env.reset(seed)
        assert env.domain is not None
        if env.domain.partly_hidden:
            start, target = np.array(env.domain.robot_xy_yaw[:2]), np.array(env.domain.target_xy)
            # the straight drive is blocked (the expert must go round) in some of them
            blocked = clearance(np.linspace(start, target, 100), env.domain.footprints).min() < 0.13
            hidden.append((seed, blocked))
        if len(hidden) == 4:
            break
    assert any(blocked for _, blocked in hidden)
    results = [run_episode(env, seed) for seed, _ in hidden]
    assert [r.outcome for r in results] == [Outcome.SUCCESS] * len(hidden), results


def test_one_compiled_model_serves_every_episode(make_env: MakeEnv,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    env = make_env("procedural")
    model, renderer = env.model, env._renderer

    def no_compiling(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a reset compiled a model")

    monkeypatch.setattr(mujoco.MjModel, "from_xml_string", no_compiling)
    monkeypatch.setattr(mujoco.MjModel, "from_xml_path", no_compiling)
    monkeypatch.setattr(mujoco.MjModel, "from_binary_path", no_compiling)
    sizes = set()
    for seed in range(4):
        env.reset(seed)
        assert env.model is model
        assert env._renderer is renderer
        sizes.add(env.model.geom_size[env.model.geom("wall_east").id].tobytes())
    assert len(sizes) == 4  # the same walls, resized


def test_pool_bounds_are_what_mujocos_compiler_computes(make_env: MakeEnv) -> None:
    m = make_env("procedural", PHYSICS_ONLY).model
    kinds = {int(mujoco.mjtGeom.mjGEOM_BOX): "box", int(mujoco.mjtGeom.mjGEOM_CYLINDER): "cylinder",
             int(mujoco.mjtGeom.mjGEOM_SPHERE): "sphere"}
    seen = set()
    for g in range(m.ngeom):
        name = m.geom(g).name
        if name.startswith(("wall_", "obstacle_", "distractor_")):
            kind = kinds[int(m.geom_type[g])]
            seen.add(kind)
            rbound, half = _bounds(kind, m.geom_size[g].copy())
            assert rbound == pytest.approx(m.geom_rbound[g])
            np.testing.assert_allclose(half, m.geom_aabb[g, 3:])
            np.testing.assert_allclose(m.bvh_aabb[m.body_bvhadr[m.geom_bodyid[g]], 3:], half)
    assert seen == {"box", "cylinder", "sphere"}


EMPTY = EnvConfig(render=False, domain=DomainConfig(world=WorldConfig(
    room_half_m=(2.5, 2.5), room_aspect=(1.0, 1.0), wall_furniture=(0, 0),
    free_furniture=(0, 0), clutter=(0, 0), distractor_cubes=(0, 0), distractor_shapes=(0, 0),
    partly_hidden_share=0.0)))


@pytest.mark.parametrize(("body", "size", "face_m"), [
    ("obstacle_box_3", (0.1, 0.4, 0.2), 0.1),
    ("obstacle_box_3", (0.35, 0.2, 0.2), 0.35),  # the same body, resized
    ("obstacle_cyl_1", (0.25, 0.2, 0.0), 0.25),
    ("distractor_sphere_0", (0.05, 0.0, 0.0), 0.05),
])  # fmt: skip
def test_resized_pieces_collide_where_they_are_drawn(
    make_env: MakeEnv, body: str, size: tuple[float, float, float], face_m: float
) -> None:
    env = make_env("procedural", EMPTY)
    env.reset(0)
    m, d = env.model, env.data
    half_height = size[{"box": 2, "cyl": 1, "sph": 0}[body.split("_")[1][:3]]]
    env.randomizer._pool._place(body, (1.0, 0.0, half_height), 0.0, size)  # type: ignore[union-attr]
    for name, value in (("base_x", -0.5), ("base_y", 0.0), ("base_yaw", 0.0)):
        d.qpos[m.jnt_qposadr[m.joint(name).id]] = value
    mujoco.mj_forward(m, d)
    outcome = Outcome.RUNNING
    while outcome is Outcome.RUNNING:
        outcome = env.step(Action.FORWARD).outcome
    expected = Outcome.WRONG_CUBE if body.startswith("distractor") else Outcome.COLLISION
    assert outcome is expected
    bumper_x = env.robot_pose()[0] + env.config.robot.front_x_m
    assert bumper_x == pytest.approx(1.0 - face_m, abs=0.04)  # stopped at its face
    touched = {m.geom(g).name for pair in d.contact.geom[: d.ncon] for g in pair}
    assert body in touched


def test_navigation_grid_finds_the_way_round_a_wall() -> None:
    wall = (Footprint(0.0, -0.4, 0.05, 1.1),)  # leaves a gap at y > 0.7 in a 2 m room
    grid = NavGrid(2.0, 1.5, wall, turn_clear_m=0.25, pass_clear_m=0.15)
    start, target = np.array([-1.0, -0.5]), np.array([1.0, -0.5])
    assert grid.reachable(start, target)
    waypoint = grid.waypoint(start, target, 0.2)
    assert waypoint is not None
    assert waypoint[1] > 0.6  # toward the gap, not through the wall
    closed = (Footprint(0.0, 0.0, 0.05, 1.5),)
    assert not NavGrid(2.0, 1.5, closed, turn_clear_m=0.25, pass_clear_m=0.15).reachable(
        start, target)


def test_separated_matches_dense_sampling() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        a, b = (Footprint(x_m=float(rng.uniform(-0.6, 0.6)), y_m=float(rng.uniform(-0.6, 0.6)),
                          half_x_m=float(rng.uniform(0.05, 0.4)),
                          half_y_m=float(rng.uniform(0.05, 0.4)), yaw_rad=float(rng.uniform(-3, 3)),
                          radius_m=float(rng.choice([0.0, 0.2])))
                for _ in range(2))
        u = np.linspace(-1, 1, 41)
        if a.radius_m > 0:
            grid = np.stack(np.meshgrid(u, u), -1).reshape(-1, 2)
            inside = grid[np.linalg.norm(grid, axis=1) <= 1] * a.radius_m
        else:
            c, s = math.cos(a.yaw_rad), math.sin(a.yaw_rad)
            local = np.stack(np.meshgrid(u * a.half_x_m, u * a.half_y_m), -1).reshape(-1, 2)
            inside = local @ np.array([[c, s], [-s, c]])
        true_gap = clearance(inside + np.array([a.x_m, a.y_m]), (b,)).min()
        if separated(a, (b,), 0.05):
            assert true_gap > 0.04
        elif true_gap > 0.1:
            pytest.fail(f"{a} and {b} are {true_gap:.3f} m apart, not 'too close'")


def test_world_config_is_checked_against_the_pool() -> None:
    with pytest.raises(ValueError, match="distractor cubes"):
        WorldConfig(distractor_cubes=(0, 9)).check_pool(BodyPool(), 4.0)
    with pytest.raises(ValueError, match="floor"):
        WorldConfig(room_half_m=(1.0, 5.0)).check_pool(BodyPool(), 4.0)
    with pytest.raises(ValueError, match="weight"):
        WorldConfig(target_dist_weights=(1.0,))
    with pytest.raises(ValueError, match="unknown scene"):
        ZimaEnv("procedural_moon", PHYSICS_ONLY)
