"""Smoke test of every registered scene: reset, step, render, drive, turn (STYLE.md 11)."""

import math
from collections.abc import Callable

import mujoco
import numpy as np
import pytest

from zima.contract import DEFAULT, Action
from zima.episodes import Outcome
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.robot import RobotConfig
from zima.sim.scenes import SCENES

MakeEnv = Callable[..., ZimaEnv]


def _reset_with_clear_corridor(env: ZimaEnv, seed: int) -> None:
    """Reset with the first seed from ``seed`` on whose target is not hidden behind an
    obstacle on purpose (procedural worlds): its straight corridor is clear."""
    env.reset(seed)
    while env.domain is not None and env.domain.partly_hidden:
        seed += 1
        env.reset(seed)


def _face_target(env: ZimaEnv) -> None:
    """Turn the robot in place to face the target (its corridor is clear by construction)."""
    yaw_q = env.model.jnt_qposadr[env.model.joint("base_yaw").id]
    env.data.qpos[yaw_q] += env.target_bearing_rad()
    mujoco.mj_forward(env.model, env.data)


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_scene_resets_steps_and_renders_every_contract_camera(
    make_env: MakeEnv, scene: str
) -> None:
    env = make_env(scene)
    obs = env.reset(seed=3)
    assert obs.images is not None
    assert obs.images.shape == DEFAULT.image_shape
    assert obs.images.dtype == np.uint8
    assert obs.action_history.shape == (DEFAULT.action_history,)
    assert obs.action_history.dtype == np.int64
    for action in Action:
        result = env.step(action)
        assert result.observation.images is not None
        assert result.observation.images.shape == DEFAULT.image_shape
        assert result.observation.action_history[-1] == action
    for camera in DEFAULT.cameras:
        frame = env.render(camera)
        assert frame.shape == (DEFAULT.image_height, DEFAULT.image_width, 3)
        assert frame.dtype == np.uint8
        assert frame.std() > 1.0  # not a blank image
    assert np.isfinite(env.data.qpos).all()
    assert np.isfinite(env.data.qvel).all()
    again = env.reset(seed=4)  # the next episode's world is written into the same model
    assert again.images is not None
    assert again.images.shape == DEFAULT.image_shape
    assert not np.array_equal(again.images, obs.images)


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_robot_drives_forward_at_the_contract_speed(make_env: MakeEnv, scene: str) -> None:
    env = make_env(scene, EnvConfig(render=False))
    _reset_with_clear_corridor(env, 5)
    _face_target(env)
    x0, y0, yaw0 = env.robot_pose()
    for _ in range(round(DEFAULT.control_hz)):  # 1 s
        assert env.step(Action.FORWARD).outcome is Outcome.RUNNING
    x, y, yaw = env.robot_pose()
    along = (x - x0) * math.cos(yaw0) + (y - y0) * math.sin(yaw0)
    across = -(x - x0) * math.sin(yaw0) + (y - y0) * math.cos(yaw0)
    expected_m = DEFAULT.forward_mm_s / 1000.0
    assert 0.85 * expected_m < along <= expected_m  # a short spin-up, then full speed
    assert abs(across) < 0.005
    assert abs(yaw - yaw0) < math.radians(1)
    ticks_per_m = RobotConfig().ticks_per_m
    for ticks in env.drive.encoders(env.data):
        assert ticks == pytest.approx(along * ticks_per_m, rel=0.03)


@pytest.mark.parametrize("scene", sorted(SCENES))
@pytest.mark.parametrize("action", [Action.LEFT, Action.RIGHT])
def test_robot_turns_in_place(make_env: MakeEnv, scene: str, action: Action) -> None:
    env = make_env(scene, EnvConfig(render=False))
    env.reset(seed=5)
    x0, y0, yaw0 = env.robot_pose()
    for _ in range(round(DEFAULT.control_hz)):  # 1 s
        assert env.step(action).outcome is Outcome.RUNNING
    x, y, yaw = env.robot_pose()
    turned_deg = math.degrees(math.remainder(yaw - yaw0, math.tau))
    assert 30 < (turned_deg if action is Action.LEFT else -turned_deg) < 90
    assert math.hypot(x - x0, y - y0) < 0.01
    left, right = env.drive.encoders(env.data)
    assert left == pytest.approx(-right, abs=5)  # tracks run opposite ways


def test_unknown_scene_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown scene"):
        ZimaEnv("moon", EnvConfig(render=False))
