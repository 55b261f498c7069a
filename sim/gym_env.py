"""The task as a Gymnasium environment: ``Zima/FindCube-v0``, a thin wrapper of :class:`ZimaEnv`.

``import zima.sim`` registers it (when Gymnasium is installed: the ``ecosystem`` extra)::

    env = gymnasium.make("Zima/FindCube-v0", scene="room", render_mode="rgb_array")

Keyword arguments: ``scene`` (any registered scene, `zima sim scenes`; default "arena"),
``render_mode`` (None or "rgb_array"), ``config`` (:class:`EnvConfig`: time limit, domain
randomisation, image effects), ``contract`` (:class:`Contract`: image size and histories;
a smaller image renders faster).

Spaces follow the contract (one definition of what a policy sees, zima/contract.py), so a
policy trained here reads the robot's observations unchanged::

    observation  Dict
      images          Box(0, 255, [len(cameras) * image_history, H, W, 3], uint8): RGB,
                      camera-major then oldest to newest (the contract's order)
      action_history  MultiDiscrete([n_actions] * action_history), int64: the last
                      executed actions, oldest first (STOP at the start)
    action       Discrete(4): contract.actions, i.e. zima.contract.Action (STOP, FORWARD,
                 LEFT, RIGHT), each held for 1 / control_hz seconds

One step is one control period. The episode ends as :class:`ZimaEnv` decides:

    outcome     terminated  truncated  reward
    success     True        False      +1   (STOP in front of the target)
    collision   True        False      -1   (touched a wall, furniture or clutter)
    wrong_cube  True        False      -1   (touched a distractor)
    timeout     False       True        0   (config.time_limit_s passed)
    running     False       False       0

``info``: ``outcome`` (the :class:`~zima.episodes.Outcome` value, as episode files store
it), ``failure`` (:class:`~zima.sim.env.Failure` value of a failed episode, else None),
``is_success``, ``time_s`` and ``steps``.

Seeding: ``reset(seed=s)`` draws the world of ``ZimaEnv.reset(s)`` (same seed, same world and
same first observation; the episode seeds of `zima sim collect` and `eval` are the same
numbers); ``reset()`` without a seed draws the next episode seed from ``np_random``.
``render()`` ("rgb_array") returns the newest frame of every camera side by side, as the
policy saw them: it renders nothing more and draws no random numbers, so watching an
episode never changes it. ``unwrapped.sim`` is the :class:`ZimaEnv` itself, for the
scripted expert and evaluation (privileged state, never a policy's input).
"""

from __future__ import annotations

from typing import Any, Final

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from zima.contract import DEFAULT, Action, Contract
from zima.episodes import Outcome
from zima.sim.env import EnvConfig, Observation, ZimaEnv

ENV_ID: Final = "Zima/FindCube-v0"
_REWARD: Final = {Outcome.SUCCESS: 1.0, Outcome.COLLISION: -1.0, Outcome.WRONG_CUBE: -1.0}
_SEED_LIMIT: Final = 2**31  # episode seeds drawn by reset() without one


class FindCubeEnv(gym.Env[dict[str, Any], np.int64]):
    """Find the green cube and stop in front of it (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": DEFAULT.control_hz}  # noqa: RUF012

    def __init__(self, scene: str = "arena", render_mode: str | None = None,
                 config: EnvConfig | None = None, contract: Contract = DEFAULT) -> None:
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode {render_mode!r} is not one of "
                             f"{[None, *self.metadata['render_modes']]}")
        config = config or EnvConfig()
        if not config.render:
            raise ValueError("FindCubeEnv observes camera images: EnvConfig(render=False) has "
                             "none (use ZimaEnv directly for physics-only runs)")
        self.render_mode = render_mode
        self.sim = ZimaEnv(scene, config, contract)
        c = contract
        self.observation_space = spaces.Dict({
            "images": spaces.Box(0, 255, c.image_shape, np.uint8),
            "action_history": spaces.MultiDiscrete(np.full(c.action_history, c.n_actions),
                                                   dtype=np.int64),
        })
        self.action_space = spaces.Discrete(c.n_actions)
        self._last: Observation | None = None

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None,  # noqa: ARG002 - none: the seed decides
              ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(_SEED_LIMIT))
        self._last = self.sim.reset(episode_seed)
        info = {"outcome": Outcome.RUNNING.value, "failure": None, "is_success": False,
                "time_s": 0.0, "steps": 0, "episode_seed": episode_seed}
        return self._observation(), info

    def step(self, action: np.int64 | int,
             ) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        if self._last is None:
            raise RuntimeError("step() before reset()")
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space} "
                             f"({', '.join(self.sim.contract.actions)})")
        result = self.sim.step(Action(int(action)))
        self._last = result.observation
        outcome = result.outcome
        info = {"outcome": outcome.value,
                "failure": None if result.failure is None else result.failure.value,
                "is_success": outcome is Outcome.SUCCESS, "time_s": result.time_s,
                "steps": self.sim.steps}
        terminated = outcome in _REWARD
        truncated = outcome is Outcome.TIMEOUT
        return self._observation(), _REWARD.get(outcome, 0.0), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The newest frame of each camera side by side: [H, W * len(cameras), 3] uint8."""
        if self.render_mode is None or self._last is None or self._last.images is None:
            return None
        c = self.sim.contract
        newest = self._last.images[c.image_history - 1 :: c.image_history]  # [cams, H, W, 3]
        return np.concatenate(list(newest), axis=1)

    def close(self) -> None:
        self.sim.close()
        super().close()

    def _observation(self) -> dict[str, Any]:
        assert self._last is not None
        assert self._last.images is not None  # config.render is checked in __init__
        return {"images": self._last.images, "action_history": self._last.action_history}
