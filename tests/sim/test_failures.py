"""Why an episode failed: each failure class on a situation built for it (physics only)."""

import dataclasses
import math
from collections.abc import Callable

import mujoco
import numpy as np
import pytest

from zima.contract import Action
from zima.episodes import Outcome
from zima.sim.env import EnvConfig, Failure, StepResult, ZimaEnv
from zima.sim.scenes import CUBE_SIZE_M

MakeEnv = Callable[..., ZimaEnv]
SHORT = EnvConfig(render=False, time_limit_s=2.0)  # 20 steps: the last second decides
SEEDS = range(2000, 2040)  # fixed: the test must never be red by chance


def _place(env: ZimaEnv, xy: np.ndarray, yaw: float) -> None:
    """Put the robot at ``xy`` [2] heading ``yaw`` (as hardware in the loop moves it)."""
    m = env.model
    for name, value in (("base_x", xy[0]), ("base_y", xy[1]), ("base_yaw", yaw)):
        env.data.qpos[m.jnt_qposadr[m.joint(name).id]] = value
    mujoco.mj_forward(m, env.data)
    env.track_target()


def _face(env: ZimaEnv, thing: np.ndarray, gap_m: float) -> None:
    """Stand with the bumper ``gap_m`` from the cube at ``thing`` [2], facing it, on the side
    of the arena's open middle."""
    away = -thing / np.linalg.norm(thing)  # [2]
    centre = thing + (gap_m + CUBE_SIZE_M / 2 + env.config.robot.front_x_m) * away
    _place(env, centre, math.atan2(-away[1], -away[0]))


def _hold(env: ZimaEnv, action: Action) -> StepResult:
    while not (result := env.step(action)).done:
        pass
    return result


def test_success_and_running_have_no_failure(make_env: MakeEnv) -> None:
    env = make_env("arena", SHORT)
    env.reset(SEEDS[0])
    assert env.step(Action.STOP).failure is None  # running
    _face(env, env.target_xy(), 0.05)
    result = env.step(Action.STOP)
    assert (result.outcome, result.failure) == (Outcome.SUCCESS, None)


def test_driving_into_a_wall_is_a_collision(make_env: MakeEnv) -> None:
    env = make_env("arena", dataclasses.replace(SHORT, time_limit_s=5.0))
    env.reset(SEEDS[0])
    _place(env, np.array([env.layout.half_x_m - 0.4, 0.0]), 0.0)  # facing the east wall
    result = _hold(env, Action.FORWARD)
    assert (result.outcome, result.failure) == (Outcome.COLLISION, Failure.COLLISION)


def test_touching_a_distractor_is_the_wrong_object(make_env: MakeEnv) -> None:
    env = make_env("arena", dataclasses.replace(SHORT, time_limit_s=5.0))
    env.reset(SEEDS[0])
    assert env.domain is not None
    _face(env, np.array(env.domain.distractor_xy[0]), 0.25)
    result = _hold(env, Action.FORWARD)
    assert (result.outcome, result.failure) == (Outcome.WRONG_CUBE, Failure.WRONG_OBJECT)


def test_standing_in_front_of_a_distractor_is_the_wrong_object(make_env: MakeEnv) -> None:
    env = make_env("arena", SHORT)
    env.reset(SEEDS[0])
    assert env.domain is not None
    _face(env, np.array(env.domain.distractor_xy[0]), 0.2)  # closer than the target
    assert env.target_gap_m() > 0.2
    result = _hold(env, Action.STOP)
    assert (result.outcome, result.failure) == (Outcome.TIMEOUT, Failure.WRONG_OBJECT)


def test_standing_facing_the_target_too_far_is_stopped_short(make_env: MakeEnv) -> None:
    env = make_env("arena", SHORT)
    env.reset(SEEDS[0])
    _face(env, env.target_xy(), 0.5)  # success needs 0.15 m
    assert env.target_in_view("forward")
    result = _hold(env, Action.STOP)
    assert (result.outcome, result.failure) == (Outcome.TIMEOUT, Failure.STOPPED_SHORT)


def test_a_target_never_in_view_is_never_found(make_env: MakeEnv) -> None:
    env = make_env("arena", SHORT)
    seed = next(s for s in SEEDS if not (env.reset(s) and env.target_in_view("forward")))
    result = _hold(env, Action.STOP)
    assert (result.outcome, result.failure) == (Outcome.TIMEOUT, Failure.NEVER_FOUND)
    assert not env.target_seen, seed


def test_turning_away_from_a_seen_target_is_found_and_lost(make_env: MakeEnv) -> None:
    env = make_env("arena", dataclasses.replace(SHORT, time_limit_s=4.0))
    for seed in SEEDS:  # one where the robot does not turn to face a distractor
        env.reset(seed)
        _face(env, env.target_xy(), 0.6)
        for _ in range(10):  # ~60 degrees: the target leaves the ~73 degree wide view
            env.step(Action.LEFT)
        if not env.facing_distractor():
            break
    assert env.target_seen
    assert not env.target_in_view("forward")
    result = _hold(env, Action.STOP)
    assert (result.outcome, result.failure) == (Outcome.TIMEOUT, Failure.FOUND_AND_LOST)


def test_spinning_past_the_target_at_the_time_limit_is_found_and_lost(make_env: MakeEnv,
                                                                      ) -> None:
    """The target in view at the end, but the robot did not stand still: not stopped short."""
    env = make_env("arena", EnvConfig(render=False, time_limit_s=30.0))
    env.reset(SEEDS[0])
    in_view = []  # after each step
    for _ in range(200):
        env.step(Action.LEFT)
        in_view.append(env.target_in_view("forward"))
    end = next(k for k in range(20, 200) if in_view[k]) + 1  # steps up to one in view
    env = make_env("arena", EnvConfig(render=False, time_limit_s=end / 10))
    env.reset(SEEDS[0])
    result = _hold(env, Action.LEFT)
    assert env.steps == end
    assert env.target_in_view("forward")
    assert not env.standing_still()
    assert (result.outcome, result.failure) == (Outcome.TIMEOUT, Failure.FOUND_AND_LOST)


@pytest.mark.parametrize("turns", [[Action.LEFT, Action.RIGHT] * 5, [Action.STOP] * 10])
def test_dithering_in_place_counts_as_standing_still(make_env: MakeEnv,
                                                     turns: list[Action]) -> None:
    env = make_env("arena", EnvConfig(render=False))
    env.reset(SEEDS[0])
    for action in turns:
        env.step(action)
    assert env.standing_still()
    env.step(Action.FORWARD)
    env.step(Action.FORWARD)
    assert not env.standing_still()  # 2 steps at 0.3 m/s: 6 cm
