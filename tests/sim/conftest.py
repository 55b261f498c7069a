"""Fixtures of the simulator tests: one environment per scene and mode, closed at the end.

MuJoCo picks its OpenGL backend on first import, so MUJOCO_GL is set here, before any
test module imports it (``zima.sim`` does the same for programs).
"""

import os
from collections.abc import Callable, Iterator

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

from zima.sim.env import EnvConfig, ZimaEnv


@pytest.fixture
def make_env() -> Iterator[Callable[..., ZimaEnv]]:
    """A factory of environments that closes them (and their renderers) after the test."""
    made: list[ZimaEnv] = []

    def make(scene: str, config: EnvConfig | None = None) -> ZimaEnv:
        env = ZimaEnv(scene, config or EnvConfig())
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()
