"""The Gymnasium environment ``Zima/FindCube-v0``: registration, Gymnasium's own checker,
seeding, the scripted expert through it, and how an episode ends.

Small images (a 48 x 64 contract) keep rendering cheap; the spaces follow any contract.
"""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import zima.sim  # registers the environment
from zima.contract import Action, Contract
from zima.sim.env import EnvConfig, Failure, ZimaEnv
from zima.sim.expert import Expert
from zima.sim.gym_env import ENV_ID, FindCubeEnv
from zima.sim.scenes import SCENES

SMALL = Contract(image_height=48, image_width=64)


def make(scene: str = "arena", **kwargs: Any) -> gym.Env[Any, Any]:
    return gym.make(ENV_ID, scene=scene, contract=SMALL, render_mode="rgb_array", **kwargs)


def sim(env: gym.Env[Any, Any]) -> ZimaEnv:
    """The ZimaEnv under the wrappers gym.make adds (privileged state)."""
    return cast(FindCubeEnv, env.unwrapped).sim


def test_importing_zima_sim_registers_it_lazily() -> None:
    spec = gym.spec(ENV_ID)
    assert spec.entry_point == "zima.sim.gym_env:FindCubeEnv"
    assert zima.sim.__name__ in sys.modules
    # In a fresh interpreter: registering loads neither MuJoCo nor the environment module,
    # and a robot without Gymnasium (blocked here) still imports zima.sim.
    probe = ("import sys; import zima.sim, gymnasium; "
             "assert 'Zima/FindCube-v0' in gymnasium.registry; "
             "assert 'mujoco' not in sys.modules and 'zima.sim.gym_env' not in sys.modules; "
             "del sys.modules['zima.sim'], sys.modules['gymnasium']; "
             "sys.modules['gymnasium'] = None; import zima.sim; print('ok')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_gymnasium_check_env_passes() -> None:
    with make() as env:
        check_env(env.unwrapped)


@pytest.mark.parametrize("scene", sorted(SCENES))
def test_every_scene_makes_an_environment_of_the_contract(scene: str) -> None:
    with make(scene) as env:
        obs, info = env.reset(seed=1)
        assert obs["images"].shape == SMALL.image_shape
        assert obs["images"].dtype == np.uint8
        assert list(obs["action_history"]) == [Action.STOP] * SMALL.action_history
        assert info["outcome"] == "running"
        obs, reward, terminated, truncated, info = env.step(Action.LEFT)
        assert env.observation_space.contains(obs)
        assert obs["action_history"][-1] == Action.LEFT
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert info["steps"] == 1
        assert env.action_space == gym.spaces.Discrete(4)


def test_same_seed_same_world_and_same_first_observation() -> None:
    with make() as env:
        first, _ = env.reset(seed=5)
        pose = sim(env).robot_pose()
        env.reset(seed=6)
        assert sim(env).robot_pose() != pose
        again, _ = env.reset(seed=5)
        assert sim(env).robot_pose() == pose
        assert np.array_equal(first["images"], again["images"])
        # Without a seed, the episode seeds come from np_random: the same sequence again.
        seeds = [env.reset()[1]["episode_seed"] for _ in range(2)]
        env.reset(seed=5)
        assert [env.reset()[1]["episode_seed"] for _ in range(2)] == seeds


def test_the_scripted_expert_finds_the_cube_through_gymnasium() -> None:
    with make() as env:
        obs, _ = env.reset(seed=12)
        expert = Expert(sim(env))
        expert.reset(12)
        for _ in range(200):
            obs, reward, terminated, truncated, info = env.step(int(expert.act()))
            if terminated or truncated:
                break
        assert (terminated, truncated, reward) == (True, False, 1.0)
        assert info["outcome"] == "success"
        assert info["is_success"] is True
        assert info["failure"] is None
        assert obs["action_history"][-1] == Action.STOP
        frame = np.asarray(env.render())
        assert frame.shape == (SMALL.image_height, SMALL.image_width * 2, 3)
        # render() shows the newest frame of each camera, as the policy saw it.
        assert np.array_equal(frame[:, : SMALL.image_width], obs["images"][1])


def test_the_time_limit_truncates_and_names_the_failure() -> None:
    with make(config=EnvConfig(time_limit_s=0.3)) as env:
        env.reset(seed=2)
        results = [env.step(Action.STOP) for _ in range(3)]
        _, reward, terminated, _, info = results[-1]
        assert [r[3] for r in results] == [False, False, True]
        assert (reward, terminated) == (0.0, False)
        assert info["outcome"] == "timeout"
        assert info["failure"] in {f.value for f in Failure}


def test_bad_actions_and_settings_are_refused() -> None:
    with FindCubeEnv(contract=SMALL) as env:
        with pytest.raises(RuntimeError, match="before reset"):
            env.step(0)
        env.reset(seed=0)
        with pytest.raises(ValueError, match="not in Discrete"):
            env.step(4)
        assert env.render() is None  # no render_mode
    with pytest.raises(ValueError, match="render_mode 'human'"):
        FindCubeEnv(render_mode="human")
    with pytest.raises(ValueError, match="unknown scene"):
        FindCubeEnv(scene="moon")


def test_the_readme_snippet_runs_as_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's Gymnasium example, run as a user would paste it."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    snippet = next(b for b in blocks if ENV_ID in b)
    exec(compile(snippet, "README.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    expected = re.search(r"# (success .*)\n", snippet)
    assert expected is not None
    assert printed[:3] == expected.group(1).split()[:3]  # outcome, reward, steps
