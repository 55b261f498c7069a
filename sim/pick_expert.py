"""The pick-up task's scripted expert: privileged sim state in, the task's actions out.

It plays :class:`~zima.sim.pick.PickEnv` with the actions a policy has (a driving action
and an :class:`~zima.sim.pick.ArmAction`, a binned jog, every step), in phases:

1. drive: the find task's expert (:class:`~zima.sim.expert.Expert`: search, approach,
   round furniture) with the arm held, until the cube's centre is within ``stop_m`` of the
   arm's yaw axis and a grasp of it is in reach; then STOP for the rest. Further than
   ``stow_beyond_m`` from the cube an arm that is not stowed (perturbed) is jogged back;
   nearer, a cube pushed out of reach is driven after with the arm where it is. With
   ``open_while_driving`` the gripper opens wide from the episode's first steps (the arm
   starts stowed, half open) and stays open, so a policy has no moment to pick for opening
   it: what it sees in ``arm_state`` (an opening short of wide while driving) says to;
2. reach: the tool to ``hover_m`` above the grasp point, the gripper pointing down
   (pitch pi/2) and turned square to the cube's faces (roll), the gripper open;
3. descend to the grasp height (the fingertips ``finger_clear_m`` above the floor),
   following the cube's centre;
4. close: the gripper's opening to 0 (the jaw's servo squeezes the cube), then
   ``settle_steps`` more;
5. lift the tool ``lift_margin_m`` past the task's lift; the env ends the episode when
   the cube's lowest point is high enough while both fingers hold it. A cube that is not
   between both fingers while lifting sends the expert back to 2 (a fresh grasp).

Each jog dimension takes the bin whose step lands nearest its goal (:func:`jog_toward`).
The cube's pose in the arm's frame is privileged (``PickWorld.cube_in_arm``): the expert
reads it; a policy has to see it in the wrist camera.

Labelling a policy's episode (DAgger: ``PickExpert(env, labelling=True)``), the expert
says what to do in states it would not have reached itself, and each label must be one
the policy can see the reason for:

- a cube not seen yet, or seen and then in neither camera's view (pushed away, turned
  from), is searched for by turning on the way the robot turns (``act(last_action=...)``),
  not toward where only the expert knows it lies: that label would teach a policy to turn
  either way at random, which is dithering in place;
- a cube the policy has closed both fingers on while the expert was still reaching or
  descending is lifted, not let go: the expert's phases follow its own actions, and a
  grasp the policy made early would otherwise be labelled "open, back to the hover".
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum

from zima.contract import Action
from zima.episodes import Outcome
from zima.onboard.arm_policy import JOG_LIMITS
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M, gripper_opening_m
from zima.onboard.kinematics import ARM, ToolPose
from zima.sim.evaluate import wilson_interval
from zima.sim.expert import Expert
from zima.sim.pick import (
    ARM_DIMS,
    ARM_HOLD,
    HOLD_BIN,
    ArmAction,
    PickConfig,
    PickEnv,
    PickFailure,
    PickStepResult,
    nearest_bin,
    tool_reachable,
)

FINGER_HALF_M = 0.02  # the fingers reach 2 cm either side of the tool point (sim/robot.py)
GRASP_PITCH_RAD = math.pi / 2  # the gripper pointing straight down


class Phase(Enum):
    DRIVE = "drive"
    REACH = "reach"
    DESCEND = "descend"
    CLOSE = "close"
    LIFT = "lift"


def jog_toward(error: tuple[float, ...], dt_s: float) -> ArmAction:
    """Per dimension, the bin whose step (level * limit * dt_s) is nearest ``error``."""
    return ArmAction(tuple(nearest_bin(e / dt_s, lim)
                           for e, lim in zip(error, JOG_LIMITS, strict=True)))


def square_roll(heading_rad: float, cube_yaw_rad: float) -> float:
    """The roll (in (-pi/4, pi/4]) that closes a downward gripper across two of the cube's
    faces: the fingers close along the hand's y axis, whose yaw is heading + pi/2 - roll."""
    quarter = math.pi / 2
    r = math.remainder(heading_rad - cube_yaw_rad, quarter)
    return quarter / 2 if r == -quarter / 2 else r


@dataclass(frozen=True, slots=True)
class PickExpertConfig:
    """Distances and tolerances of the expert's phases."""

    # Stop driving with the cube's centre this near the arm's yaw axis, m: the arm reaches
    # 0.21 m at the floor pointing down; the bumper stands 0.12 m ahead of the axis.
    stop_m: float = 0.19
    # The hover height above the grasp height, m: the fingertips clear a 25 mm cube.
    hover_m: float = 0.05
    # The fingertips' height above the floor at the grasp, m. (4 mm gave 100/100 in arena
    # with the gripper opened at the reach, 93/100 with it opened while driving; 2 mm 98.)
    finger_clear_m: float = 0.002
    # The lift goal beyond the task's lift_m, m.
    lift_margin_m: float = 0.02
    # Reached: position within this (m), angles within this (rad).
    near_m: float = 0.003
    near_rad: float = 0.03
    # Steps to hold the squeeze before lifting.
    settle_steps: int = 2
    # While driving, the arm is jogged back to the stowed pose this far from the cube, m.
    stow_beyond_m: float = 0.4
    # Open the gripper wide while driving (from the first step), not at the reach: a first
    # policy missed the few steps at the reach's start that open it, and descended closed.
    open_while_driving: bool = True


class PickExpert:
    """Demonstrator for :class:`PickEnv`; call :meth:`reset` with each episode's seed."""

    def __init__(self, env: PickEnv, config: PickExpertConfig = PickExpertConfig(), *,
                 labelling: bool = False) -> None:
        self.env, self.config = env, config
        self.labelling = labelling  # labelling a policy's episode (module docstring)
        self.driver = Expert(env.world)
        self.phase = Phase.DRIVE
        self._settle = 0
        self.grasps = 0  # grasp attempts this episode

    def reset(self, seed: int) -> None:
        self.driver.reset(seed)
        self.phase, self._settle, self.grasps = Phase.DRIVE, 0, 0

    def act(self, last_refused: bool = False,
            last_action: Action | None = None) -> tuple[Action, ArmAction]:
        """The next driving and arm action for the env's state; ``last_refused``: the last
        arm step was out of reach (then one dimension moves at a time); ``last_action``:
        the driving action the robot executed last, whoever chose it, which sets the
        search's turn direction (:meth:`Expert.act`, and the module docstring)."""
        if self.phase is Phase.DRIVE and self._in_reach():
            self.phase = Phase.REACH
        elif self.phase in (Phase.REACH, Phase.DESCEND) and not self._in_reach():
            self.phase = Phase.DRIVE  # the cube was pushed or dropped out of reach
        elif self.phase is Phase.LIFT and not self.env.world.held():
            self.phase = Phase.REACH  # slipped or missed: open and grasp afresh
        elif (self.labelling and self.phase in (Phase.REACH, Phase.DESCEND)
              and self.env.world.held()):
            self.phase = Phase.LIFT  # the policy grasped before the expert would have
        if self.phase is Phase.DRIVE:
            centre, _ = self.env.world.cube_in_arm()
            far = math.hypot(centre[0], centre[1]) > self.config.stow_beyond_m
            arm = self._stow() if far else ARM_HOLD
            if self.config.open_while_driving:
                wide = GRIPPER_MAX_OPENING_M - self.env.opening_m
                grip = jog_toward((0.0,) * (ARM_DIMS - 1) + (wide,),
                                  1.0 / self.env.contract.control_hz).bins[-1]
                arm = ArmAction((*arm.bins[:-1], grip))
            return self._drive(last_action), arm
        self._advance()
        goal, opening = self._goal()
        return Action.STOP, self._jog(goal, opening, last_refused)

    def _grasp(self) -> tuple[float, float, float, float, float]:
        """The grasp pose: the tool at the cube's centre, the fingertips finger_clear_m
        above the floor, pointing down and square to the cube (x, y, z, pitch, roll)."""
        world = self.env.world
        centre, cube_yaw = world.cube_in_arm()
        x, y = float(centre[0]), float(centre[1])
        z = world.floor_z_in_arm() + self.config.finger_clear_m + FINGER_HALF_M
        return x, y, z, GRASP_PITCH_RAD, square_roll(math.atan2(y, x), cube_yaw)

    def _goal(self) -> tuple[tuple[float, ...], float]:
        """The present phase's tool goal (x, y, z, pitch, roll) and gripper opening."""
        x, y, z, pitch, roll = self._grasp()
        if self.phase is Phase.REACH:
            return (x, y, z + self.config.hover_m, pitch, roll), GRIPPER_MAX_OPENING_M
        if self.phase is Phase.DESCEND:
            return (x, y, z, pitch, roll), GRIPPER_MAX_OPENING_M
        # Closing and lifting hold x, y and roll where the grasp is (the cube moves with
        # the fingers now); the fingers closed, the jaw's servo squeezes with ~10 N.
        at = self.env.world.tool_in_arm()
        if self.phase is Phase.LIFT:
            z = z + self.env.config.lift_m + self.config.lift_margin_m
        else:
            z = float(at[2])
        return (float(at[0]), float(at[1]), z, pitch, self.env.tool.roll), 0.0

    def _advance(self) -> None:
        """On to the next phase where the present one's goal is reached."""
        goal, opening = self._goal()
        if self.phase is Phase.REACH and self._near(goal, opening):
            self.phase = Phase.DESCEND
        elif self.phase is Phase.DESCEND and self._near(goal, opening):
            self.phase, self._settle = Phase.CLOSE, self.config.settle_steps
            self.grasps += 1
        elif self.phase is Phase.CLOSE and self.env.opening_m <= 1e-6:
            self._settle -= 1
            if self._settle < 0:
                self.phase = Phase.LIFT

    # --- helpers ----------------------------------------------------------------------

    def _error(self, goal: tuple[float, ...], opening: float) -> tuple[float, ...]:
        t, at = self.env.tool, self.env.world.tool_in_arm()  # commanded, actual
        return (goal[0] - at[0], goal[1] - at[1], goal[2] - at[2], goal[3] - t.pitch,
                math.remainder(goal[4] - t.roll, math.tau), opening - self.env.opening_m)

    def _near(self, goal: tuple[float, ...], opening: float) -> bool:
        e = self._error(goal, opening)
        cfg = self.config
        return (math.dist(e[:3], (0.0, 0.0, 0.0)) <= cfg.near_m
                and max(abs(e[3]), abs(e[4])) <= cfg.near_rad and abs(e[5]) <= 1e-6)

    def _jog(self, goal: tuple[float, ...], opening: float, last_refused: bool) -> ArmAction:
        error = self._error(goal, opening)
        action = jog_toward(error, 1.0 / self.env.contract.control_hz)
        if not last_refused:
            return action
        # A combined step left the reachable space: move the tool's dimension that is
        # furthest from its goal (relative to its fast step) alone, and the gripper.
        dims = range(ARM_DIMS - 1)
        worst = max(dims, key=lambda i: abs(error[i]) / JOG_LIMITS[i])
        return ArmAction(tuple(b if i in (worst, ARM_DIMS - 1) else HOLD_BIN
                               for i, b in enumerate(action.bins)))

    def _stow(self) -> ArmAction:
        """Toward the stowed pose the episode starts in (commanded, not measured: the arm
        sags there too); hold once there. (:meth:`act` overrides the gripper's bin with
        ``open_while_driving``.)"""
        pose = self.env.world.config.robot.arm_pose
        stowed = ARM.tool_pose(tuple(pose[:-1]))
        t = self.env.tool
        error = (stowed.x - t.x, stowed.y - t.y, stowed.z - t.z, stowed.pitch - t.pitch,
                 math.remainder(stowed.roll - t.roll, math.tau),
                 gripper_opening_m(pose[-1]) - self.env.opening_m)
        return jog_toward(error, 1.0 / self.env.contract.control_hz)

    def _cube_seen(self) -> bool:
        """The cube is in the forward or the wrist camera's view and not hidden."""
        world = self.env.world
        return any(world.target_in_view(camera) for camera in self.env.contract.cameras)

    def _in_reach(self) -> bool:
        """The cube's centre is within stop_m of the arm's yaw axis and the grasp and the
        hover above it are both in reach."""
        centre, cube_yaw = self.env.world.cube_in_arm()
        if math.hypot(centre[0], centre[1]) > self.config.stop_m:
            return False
        grasp_z = self.env.world.floor_z_in_arm() + self.config.finger_clear_m + FINGER_HALF_M
        roll = square_roll(math.atan2(centre[1], centre[0]), cube_yaw)
        return all(tool_reachable(ToolPose(float(centre[0]), float(centre[1]), z,
                                           GRASP_PITCH_RAD, roll))
                   for z in (grasp_z, grasp_z + self.config.hover_m))

    def _drive(self, last_action: Action | None) -> Action:
        """The find task's expert, which stops in front of its (bigger) cube: driving on
        toward the cube where it would stop short of the arm's reach. Labelling, a cube
        lost from both cameras' views is searched for (module docstring); the expert's
        own episodes keep driving toward where it knows the cube is."""
        if self.labelling and self.driver.acquired and not self._cube_seen():
            return self.driver.searching(last_action)
        action = self.driver.act(last_action)
        if action is not Action.STOP:
            return action
        bearing = self.env.world.target_bearing_rad()
        if abs(bearing) > self.driver.align_rad:
            return Action.LEFT if bearing > 0 else Action.RIGHT
        return Action.FORWARD


@dataclass(frozen=True, slots=True)
class PickEpisodeResult:
    """How one pick episode ended."""

    seed: int
    outcome: Outcome
    failure: PickFailure | None
    steps: int
    time_s: float
    grasps: int  # the expert's grasp attempts (0 for a policy)


def run_pick_episode(env: PickEnv, seed: int,
                     on_step: Callable[[PickEnv, Action, ArmAction, PickStepResult], None]
                     | None = None) -> PickEpisodeResult:
    """Run the pick expert for one episode of ``env`` with ``seed``."""
    expert = PickExpert(env)
    env.reset(seed)
    expert.reset(seed)
    refused, steps = False, 0
    while True:
        drive, arm = expert.act(refused)
        result = env.step(drive, arm)
        refused, steps = result.arm_refused, steps + 1
        if on_step is not None:
            on_step(env, drive, arm, result)
        if result.done:
            return PickEpisodeResult(seed, result.outcome, result.failure, steps,
                                     result.time_s, expert.grasps)


@dataclass(frozen=True, slots=True)
class PickExpertReport:
    """The expert's episodes in one scene: success with its 95 % Wilson interval, and the
    failure classes."""

    scene: str
    results: tuple[PickEpisodeResult, ...]
    wall_s: float

    @property
    def successes(self) -> int:
        return sum(r.outcome is Outcome.SUCCESS for r in self.results)

    def text(self) -> str:
        """The report ``zima sim pick-expert`` prints."""
        n, k = len(self.results), self.successes
        low, high = wilson_interval(k, n)
        failures = Counter(r.failure for r in self.results if r.failure is not None)
        seeds = f"{self.results[0].seed}..{self.results[-1].seed}" if n else "none"
        mean_s = sum(r.time_s for r in self.results if r.outcome is Outcome.SUCCESS) / max(1, k)
        return (f"scene {self.scene}: pick-up success {k}/{n} = {k / max(1, n):.1%} "
                f"(95 % Wilson {low:.1%}..{high:.1%}), seeds {seeds}, "
                f"{mean_s:.1f} s per success; {self.wall_s:.1f} s\n"
                f"failures: {', '.join(f'{f.value} {failures[f]}' for f in PickFailure)}")


def evaluate_pick_expert(scene: str, episodes: int, seed: int,
                         progress: Callable[[int, int, float], None] | None = None,
                         config: PickConfig | None = None) -> PickExpertReport:
    """Run the expert for ``episodes`` seeds from ``seed`` in ``scene`` (no rendering);
    ``progress(done, total, success_rate)`` after each."""
    start = time.perf_counter()
    cfg = config or PickConfig(env=replace(PickConfig().env, render=False))
    env = PickEnv(scene, cfg)
    results: list[PickEpisodeResult] = []
    try:
        for i in range(episodes):
            results.append(run_pick_episode(env, seed + i))
            if progress is not None:
                ok = sum(r.outcome is Outcome.SUCCESS for r in results)
                progress(i + 1, episodes, ok / len(results))
    finally:
        env.close()
    return PickExpertReport(scene, tuple(results), time.perf_counter() - start)
