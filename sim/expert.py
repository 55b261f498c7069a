"""The scripted expert: privileged sim state in, the contract's discrete actions out.

It plays the task the way the policy must (the same four actions, one per control step):

1. search: turn in place one way (drawn per episode) until the target is inside the
   forward camera's view and not hidden (a geometric check, no rendering);
2. approach: turn toward the target while its bearing is off by more than
   ``align_deg``, otherwise drive FORWARD;
3. STOP as soon as the environment's success test holds.

It also labels states it did not choose (DAgger: a policy drives, the expert says what it
would do at each step, :mod:`zima.sim.collect`). For that, ``act(last_action)`` keeps
searching in the direction the robot is already turning: the policy cannot see the
expert's per-episode search direction, and a label that turned it round would teach it
nothing it could observe. On the expert's own episodes the last action during the search
is the search direction anyway, so its demonstrations are the same either way.

The placement of :mod:`zima.sim.randomize` keeps the straight corridor to the target
clear, so no path planning is needed (the room's furniture never blocks the approach).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from zima.contract import Action
from zima.sim.env import Outcome, StepResult, ZimaEnv


class Expert:
    """Demonstrator for :class:`ZimaEnv`; call :meth:`reset` with each episode's seed."""

    def __init__(self, env: ZimaEnv, align_deg: float = 8.0) -> None:
        # align_deg: one turn step is ~6 deg (0.1 s at ~60 deg/s), so a tolerance above
        # half a step avoids dithering, and far below the success test's 20 deg.
        self.env, self.align_rad = env, np.radians(align_deg)
        self.search = Action.LEFT
        self.acquired = False

    def reset(self, seed: int) -> None:
        """Start an episode: pick the search direction from ``seed``."""
        rng = np.random.default_rng([seed, 0x5EA7C4])
        self.search = Action.LEFT if rng.uniform() < 0.5 else Action.RIGHT
        self.acquired = False

    def act(self, last_action: Action | None = None) -> Action:
        """The next action for the environment's current state; ``last_action``, the one
        the robot executed last (whoever chose it), sets the search's turn direction."""
        env = self.env
        if env.at_target():
            return Action.STOP
        if not self.acquired:
            if not env.target_in_view("forward"):
                if last_action in (Action.LEFT, Action.RIGHT):
                    return last_action
                return self.search
            self.acquired = True
        bearing = env.target_bearing_rad()
        if abs(bearing) > self.align_rad:
            return Action.LEFT if bearing > 0 else Action.RIGHT
        return Action.FORWARD


@dataclass(frozen=True, slots=True)
class EpisodeResult:
    """How one episode ended (the expert's, or a policy's in ``zima sim eval``)."""

    seed: int
    outcome: Outcome
    steps: int
    time_s: float
    forced_stops: int = 0  # a policy's: STOPs the runner forced (first plan, stale, dry queue)


def run_episode(env: ZimaEnv, seed: int,
                on_step: Callable[[ZimaEnv, Action, StepResult], None] | None = None,
                ) -> EpisodeResult:
    """Run the expert for one episode of ``env`` with ``seed``."""
    expert = Expert(env)
    env.reset(seed)
    expert.reset(seed)
    while True:
        action = expert.act()
        result = env.step(action)
        if on_step is not None:
            on_step(env, action, result)
        if result.done:
            return EpisodeResult(seed, result.outcome, env.steps, result.time_s)


def success_rate(results: Iterable[EpisodeResult]) -> float:
    """Fraction of episodes that ended in SUCCESS (0 for none)."""
    outcomes = [r.outcome for r in results]
    return sum(o is Outcome.SUCCESS for o in outcomes) / max(1, len(outcomes))
