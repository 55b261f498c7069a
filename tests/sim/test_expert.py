"""The task's outcomes and the scripted expert's success rate (physics only, fast)."""

import math
from collections.abc import Callable

import mujoco
import numpy as np
import pytest

from zima.contract import Action
from zima.episodes import Outcome
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.expert import Expert, run_episode, success_rate
from zima.sim.scenes import SCENES

MakeEnv = Callable[..., ZimaEnv]
PHYSICS_ONLY = EnvConfig(render=False)
SEEDS = range(1000, 1040)  # fixed: the test must never be red by chance


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_expert_succeeds_in_at_least_95_percent(make_env: MakeEnv, scene: str) -> None:
    env = make_env(scene, PHYSICS_ONLY)
    seen: set[Action] = set()
    results = [run_episode(env, seed, on_step=lambda _e, a, _r: seen.add(a)) for seed in SEEDS]
    assert success_rate(results) >= 0.95, [(r.seed, r.outcome) for r in results]
    assert seen <= set(Action)
    assert all(r.time_s < env.config.time_limit_s for r in results if r.outcome == "success")


def _place_robot(env: ZimaEnv, x: float, y: float, yaw: float) -> None:
    m = env.model
    for name, value in (("base_x", x), ("base_y", y), ("base_yaw", yaw)):
        env.data.qpos[m.jnt_qposadr[m.joint(name).id]] = value
    mujoco.mj_forward(m, env.data)


def test_driving_into_a_wall_is_a_collision(make_env: MakeEnv) -> None:
    env = make_env("arena", PHYSICS_ONLY)
    env.reset(seed=0)
    _place_robot(env, env.layout.half_x_m - 0.4, 0.0, 0.0)  # facing the east wall
    outcomes = [env.step(Action.FORWARD).outcome for _ in range(30)]
    assert Outcome.COLLISION in outcomes


def test_touching_a_distractor_is_a_failure(make_env: MakeEnv) -> None:
    env = make_env("arena", PHYSICS_ONLY)
    env.reset(seed=0)
    assert env.domain is not None
    cube = np.array(env.domain.distractor_xy[0])  # [2]
    away = -cube / np.linalg.norm(cube)  # [2] toward the arena's open middle
    x, y = cube + 0.4 * away
    _place_robot(env, x, y, math.atan2(-away[1], -away[0]))
    outcomes = [env.step(Action.FORWARD).outcome for _ in range(20)]
    assert Outcome.WRONG_CUBE in outcomes


def test_stop_counts_only_in_front_of_the_target_and_time_runs_out(make_env: MakeEnv) -> None:
    env = make_env("arena", EnvConfig(render=False, time_limit_s=1.0))
    env.reset(seed=0)
    assert not env.at_target()
    outcomes = [env.step(Action.STOP).outcome for _ in range(10)]
    assert outcomes[:-1] == [Outcome.RUNNING] * 9
    assert outcomes[-1] is Outcome.TIMEOUT
    env.reset(seed=0)
    target = env.target_xy()
    away = -target / np.linalg.norm(target)  # [2] toward the arena's open middle
    x, y = target + 0.28 * away  # bumper 0.13 m from the cube's centre, facing it
    _place_robot(env, x, y, math.atan2(-away[1], -away[0]))
    assert env.at_target()
    assert env.step(Action.STOP).outcome is Outcome.SUCCESS


def test_labelling_keeps_searching_the_way_the_robot_turns(make_env: MakeEnv) -> None:
    env = make_env("arena", PHYSICS_ONLY)
    for seed in SEEDS:  # an episode whose target starts out of view
        env.reset(seed)
        if not env.target_in_view("forward"):
            break
    else:
        pytest.fail("no seed starts with the target out of view")
    expert = Expert(env)
    expert.reset(seed)
    assert expert.act() == expert.search  # its own episode: its own direction
    other = Action.RIGHT if expert.search is Action.LEFT else Action.LEFT
    assert expert.act(other) is other  # a policy turning the other way: keep turning so
    assert expert.act(Action.FORWARD) == expert.search  # not turning: its own direction
