"""Domain randomisation and image effects: deterministic for a seed, and valid placements."""

from collections.abc import Callable

import numpy as np
import pytest

from zima.sim.effects import EffectsConfig, ImageEffects, barrel_maps
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.randomize import DomainConfig
from zima.sim.scenes import SCENES

MakeEnv = Callable[..., ZimaEnv]
ALL_EFFECTS = EnvConfig(effects=EffectsConfig.always())
# Fixed layouts; procedural placements are held by tests/sim/test_procedural.py.
FIXED_SCENES = sorted(name for name, build in SCENES.items() if build().pool is None)


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_same_seed_gives_the_same_episode_and_images(make_env: MakeEnv, scene: str) -> None:
    a, b = make_env(scene, ALL_EFFECTS), make_env(scene, ALL_EFFECTS)
    obs_a, obs_b = a.reset(seed=11), b.reset(seed=11)
    assert a.domain == b.domain
    assert obs_a.images is not None
    assert obs_b.images is not None
    np.testing.assert_array_equal(obs_a.images, obs_b.images)
    np.testing.assert_array_equal(a.model.cam_fovy, b.model.cam_fovy)
    np.testing.assert_array_equal(a.model.light_diffuse, b.model.light_diffuse)
    step_a, step_b = a.step(1), b.step(1)
    assert step_a.observation.images is not None
    assert step_b.observation.images is not None
    np.testing.assert_array_equal(step_a.observation.images, step_b.observation.images)


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_different_seeds_differ_and_a_reset_undoes_the_last_jitter(
    make_env: MakeEnv, scene: str
) -> None:
    env = make_env(scene, EnvConfig(render=False))
    env.reset(seed=1)
    first = (env.domain, env.model.cam_pos.copy(), env.model.cam_fovy.copy())
    env.reset(seed=2)
    assert env.domain != first[0]
    assert not np.array_equal(env.model.cam_fovy, first[2])
    env.reset(seed=1)
    assert env.domain == first[0]
    np.testing.assert_array_equal(env.model.cam_pos, first[1])
    np.testing.assert_array_equal(env.model.cam_fovy, first[2])


@pytest.mark.parametrize("scene", FIXED_SCENES)
def test_placements_are_free_and_reachable(make_env: MakeEnv, scene: str) -> None:
    env = make_env(scene, EnvConfig(render=False))
    rnd = env.randomizer
    for seed in range(200):
        domain = rnd.reset(np.random.default_rng(seed))
        robot, target = np.array(domain.robot_xy_yaw[:2]), np.array(domain.target_xy)
        assert rnd._rect_dist(target[None])[0] > 0.1  # never inside furniture
        assert abs(target[0]) < env.layout.half_x_m
        assert abs(target[1]) < env.layout.half_y_m
        assert np.linalg.norm(target - robot) >= rnd.cfg.min_target_dist_m
        assert rnd._corridor_clear(robot, target, env.config.robot.width_m / 2)
        assert 1 <= len(domain.distractor_xy) <= env.layout.max_distractors


def test_a_target_distance_range_holds_every_placement(make_env: MakeEnv) -> None:
    near = DomainConfig(min_target_dist_m=0.3, max_target_dist_m=0.6)
    env = make_env("arena", EnvConfig(render=False, domain=near))
    distances = []
    for seed in range(100):
        domain = env.randomizer.reset(np.random.default_rng(seed))
        distances.append(np.linalg.norm(np.subtract(domain.target_xy, domain.robot_xy_yaw[:2])))
    assert min(distances) >= 0.3
    assert max(distances) <= 0.6
    assert max(distances) - min(distances) > 0.15  # a range, not one distance
    with pytest.raises(ValueError, match="target distance"):
        DomainConfig(min_target_dist_m=0.6, max_target_dist_m=0.3)


def test_effects_off_leave_frames_untouched_and_on_change_them() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    off = ImageEffects(EffectsConfig.off(), 96, 128)
    off.reset(np.random.default_rng(1))
    assert not any(off.active.values())
    np.testing.assert_array_equal(off.apply(frame, np.random.default_rng(2)), frame)
    on = ImageEffects(EffectsConfig.always(), 96, 128)
    on.reset(np.random.default_rng(1))
    assert all(on.active.values())
    out = on.apply(frame, np.random.default_rng(2))
    assert out.shape == frame.shape
    assert out.dtype == np.uint8
    assert not np.array_equal(out, frame)
    again = ImageEffects(EffectsConfig.always(), 96, 128)
    again.reset(np.random.default_rng(1))
    np.testing.assert_array_equal(again.apply(frame, np.random.default_rng(2)), out)


def test_barrel_distortion_keeps_centre_and_corners() -> None:
    map_x, map_y = barrel_maps(96, 128, k1=0.3)
    assert map_x.shape == map_y.shape == (96, 128)
    for v, u in ((0, 0), (0, 127), (95, 0), (95, 127)):
        assert map_x[v, u] == pytest.approx(u, abs=1e-3)
        assert map_y[v, u] == pytest.approx(v, abs=1e-3)
    assert map_x[48, 0] > 0.5  # an edge's middle is pulled in from outside: barrel
