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

Approach: while the straight drive to the target is clear (half the robot's width and a
margin from every footprint of the episode's domain), it aims at the target. Otherwise,
as when a procedural world hides the target partly behind furniture, it follows the
shortest path on the episode's navigation grid (:class:`~zima.sim.navgrid.NavGrid`,
built on the first such step): it aims at the farthest point of that path it can reach
in a straight line while staying clear enough to turn anywhere on the way, until the
straight drive to the target is clear. "In view" counts a target whose centre is hidden
when enough of its faces are seen (:func:`~zima.sim.sight.camera_seen_share`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from zima.contract import Action
from zima.episodes import Outcome
from zima.sim.env import StepResult, ZimaEnv
from zima.sim.navgrid import NavGrid, clearance, segment_points
from zima.sim.procedural import robot_clearances
from zima.sim.scenes import CUBE_SIZE_M
from zima.sim.sight import camera_seen_share

# A target counts as in view with its centre hidden when this share of its faces is seen.
SEEN_SHARE_IN_VIEW = 0.1
# A waypoint closer than this counts as reached (a forward step is 3 cm).
WAYPOINT_REACHED_M = 0.1


class Expert:
    """Demonstrator for :class:`ZimaEnv`; call :meth:`reset` with each episode's seed."""

    def __init__(self, env: ZimaEnv, align_deg: float = 8.0) -> None:
        # align_deg: one turn step is ~6 deg (0.1 s at ~60 deg/s), so a tolerance above
        # half a step avoids dithering, and far below the success test's 20 deg.
        self.env, self.align_rad = env, np.radians(align_deg)
        self.search = Action.LEFT
        self.acquired = False
        self._nav: NavGrid | None = None
        self._direct = True  # driving straight at the target (else along a grid path)
        self._waypoint: np.ndarray | None = None

    def reset(self, seed: int) -> None:
        """Start an episode: pick the search direction from ``seed``."""
        rng = np.random.default_rng([seed, 0x5EA7C4])
        self.search = Action.LEFT if rng.uniform() < 0.5 else Action.RIGHT
        self.acquired = False
        self._nav = None
        self._direct = True
        self._waypoint = None

    def act(self, last_action: Action | None = None) -> Action:
        """The next action for the environment's current state; ``last_action``, the one
        the robot executed last (whoever chose it), sets the search's turn direction."""
        env = self.env
        if env.at_target():
            return Action.STOP
        if not self.acquired:
            if not self.target_in_view():
                return self.searching(last_action)
            self.acquired = True
        x, y, yaw = env.robot_pose()
        aim = self.aim()
        bearing = math.remainder(math.atan2(aim[1] - y, aim[0] - x) - yaw, math.tau)
        if abs(bearing) > self.align_rad:
            return Action.LEFT if bearing > 0 else Action.RIGHT
        return Action.FORWARD

    def searching(self, last_action: Action | None) -> Action:
        """The search's turn: on the way the robot turns (``last_action``), else the
        episode's own direction."""
        if last_action in (Action.LEFT, Action.RIGHT):
            return last_action
        return self.search

    def target_in_view(self) -> bool:
        """The target's centre is in the forward camera's view, or enough of its faces."""
        env = self.env
        if env.target_in_view("forward"):
            return True
        aspect = env.contract.image_width / env.contract.image_height
        share = camera_seen_share(env.model, env.data, "forward", env.model.geom("target").id,
                                  half_m=CUBE_SIZE_M / 2, aspect=aspect, margin_deg=4.0)
        return share >= SEEN_SHARE_IN_VIEW

    def aim(self) -> np.ndarray:
        """The point to drive at: the target while the straight drive to it is clear,
        else the next waypoint of the grid path to it: [2]."""
        env = self.env
        domain, robot = env.domain, env.config.robot
        assert domain is not None
        here, target = np.array(env.robot_pose()[:2]), env.target_xy()
        if not domain.footprints:
            return target
        turn, line = robot_clearances(robot)
        gap = float(clearance(segment_points(here, target), domain.footprints).min())
        # Driving straight on needs half the robot's width (and 1 cm): a robot that drifts
        # a little off its line keeps going rather than turning round next to furniture.
        # Taking the straight line from a path needs room to turn anywhere on it.
        if gap > line or (self._direct and gap > robot.width_m / 2 + 0.01):
            self._direct, self._waypoint = True, None
            return target
        self._direct = False
        if clearance(here, domain.footprints)[0] < robot.radius_m:
            return target  # no room to turn round here: keep on, the old way
        if self._nav is None:
            self._nav = NavGrid(*domain.room_half_m, domain.footprints, turn_clear_m=turn,
                                pass_clear_m=line)
        # Keep the waypoint until it is reached or out of sight: choosing afresh every step
        # flips between neighbouring cells' paths as the robot turns on a cell boundary.
        kept = self._waypoint
        if (kept is None or np.linalg.norm(kept - here) < WAYPOINT_REACHED_M
                or not self._nav.line_ok(here, kept, line)[0]):
            self._waypoint = self._nav.waypoint(here, target, line)
        return target if self._waypoint is None else self._waypoint


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
