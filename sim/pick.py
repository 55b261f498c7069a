"""The pick-up task: find the cube, drive to it, grasp it, lift it at least 5 cm.

:class:`PickEnv` runs it on the find task's worlds (:class:`~zima.sim.env.ZimaEnv`, every
scene, the same domain randomisation) with three changes to the world (:class:`PickWorld`):

- the target is a free body, a smaller cube (``PickConfig.cube_m``, 25 mm) with a random
  yaw: the gripper opens 34 mm (:data:`~zima.onboard.arm_poses.GRIPPER_MAX_OPENING_M`),
  so the find task's 57 mm cube does not fit between its fingers;
- the fingers touch the cube and the floor, and the cube the floor (contact bits below);
  the rest of the arm still touches nothing;
- success is the cube held by both fingers with its lowest point ``lift_m`` above the floor.

One step is one driving action (the contract's four, as in the find task) and one
:class:`ArmAction` held for ``1 / contract.control_hz`` s. An arm action is the console's
jog (:class:`~zima.onboard.commands.ArmJogCommand`) put in bins: per jog dimension (x, y,
z, pitch, roll of the tool in the ``arm_base`` frame, the gripper's opening) one of
:data:`JOG_LEVELS` of that dimension's jog limit. The env keeps the commanded tool pose
and the gripper's opening, as the runtime's ``ArmTeleop`` does; a step moves them and
solves the kinematics from the present joints (the nearest solution); a step out of reach
is refused and the arm holds (``PickStepResult.arm_refused``).

An episode ends with SUCCESS, COLLISION (the chassis touched an obstacle), WRONG_CUBE (it
touched a distractor) or TIMEOUT (``time_limit_s``). A failed one is classified
(:class:`PickFailure`) from what the env saw during it:

    collision     COLLISION
    wrong_object  WRONG_CUBE
    never_found   TIMEOUT, the target never in the forward camera's view
    dropped       TIMEOUT, the cube was held off the floor at some time and is not now
    grasp_missed  TIMEOUT, the gripper closed narrower than the cube and never lifted it
    timeout       TIMEOUT otherwise (found, never grasped at)

The privileged queries (``cube_in_arm``, ``held``, ``cube_bottom_m``) are for the scripted
expert (:mod:`zima.sim.pick_expert`) and for evaluation, never for a policy.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import mujoco
import numpy as np

from zima.contract import PICK, Action, Contract
from zima.episodes import Outcome
from zima.onboard.arm_policy import JOG_LIMITS, arm_jog_velocities, arm_state_vector
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M, gripper_closing_m, gripper_opening_m
from zima.onboard.commands import JOG_KEYS
from zima.onboard.kinematics import ARM, ToolPose
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.randomize import DomainConfig, EpisodeDomain, Randomizer
from zima.sim.robot import ARM_JOINTS, RobotConfig
from zima.sim.scenes import SceneLayout

PICK_CUBE_M: Final = 0.025  # the pick task's cube: 9 mm narrower than the open gripper
FINGERS: Final = ("finger_fixed", "finger_jaw")  # sim/robot.py's finger geoms
# Contact bits (MuJoCo: two geoms touch when one's contype meets the other's conaffinity).
# Bit 1 is everything the find task has (chassis, walls, furniture, cubes); the floor and
# the fingers get bits of their own, so that they touch the cube (and the fingers the
# floor) but not the chassis, the walls or each other's robot parts.
_BASE_BIT, _FLOOR_BIT, _FINGER_BIT = 1, 2, 4

# The bins of one jog dimension, as fractions of its jog limit (ARM_JOG_LIMITS): the pick
# contract's (zima.contract.ARM_JOG_LEVELS says why these).
JOG_LEVELS: Final = PICK.arm_jog_levels
HOLD_BIN: Final = PICK.arm_hold_bin
ARM_DIMS: Final = PICK.arm_dims  # x, y, z, pitch, roll, gripper opening
assert len(JOG_KEYS) == ARM_DIMS, "the contract's arm axes are the console's jog keys"


@dataclass(frozen=True, slots=True)
class ArmAction:
    """One control period's arm action: a bin index into :data:`JOG_LEVELS` per jog
    dimension, in ``JOG_KEYS`` order (x, y, z, pitch, roll, gripper opening)."""

    bins: tuple[int, ...] = (HOLD_BIN,) * ARM_DIMS

    def __post_init__(self) -> None:
        if len(self.bins) != ARM_DIMS or not all(
                isinstance(b, int) and 0 <= b < len(JOG_LEVELS) for b in self.bins):
            raise ValueError(f"an arm action is {ARM_DIMS} bins in 0..{len(JOG_LEVELS) - 1}, "
                             f"got {self.bins}")

    def velocity(self) -> tuple[float, ...]:
        """The jog's velocities (``JOG_KEYS`` order: m/s, rad/s, the opening's m/s)."""
        return arm_jog_velocities(PICK, self.bins)

    @classmethod
    def nearest(cls, velocity: Sequence[float]) -> ArmAction:
        """The bins nearest a jog's velocities (an operator's jog, as recorded)."""
        if len(velocity) != ARM_DIMS:
            raise ValueError(f"a jog has {ARM_DIMS} velocities, got {len(velocity)}")
        return cls(tuple(nearest_bin(v, lim) for v, lim in zip(velocity, JOG_LIMITS,
                                                              strict=True)))


ARM_HOLD: Final = ArmAction()


def nearest_bin(value: float, limit: float) -> int:
    """The bin of :data:`JOG_LEVELS` whose level times ``limit`` is nearest ``value``."""
    return int(np.argmin([abs(level * limit - value) for level in JOG_LEVELS]))


def tool_reachable(target: ToolPose, heading_hint: float = 0.0) -> bool:
    """Some exact IK solution of ``target`` lies within every joint's limits (a whole turn
    allowed): :meth:`ARM.ik` then succeeds without its slow nearest-pose search."""
    return any(all(any(j.within(v + k * math.tau) for k in (-1, 0, 1))
                   for j, v in zip(ARM.joints, q, strict=True))
               for q in ARM.solutions(target, heading_hint))


class PickFailure(StrEnum):
    """Why a pick episode failed (see the module docstring); success has none."""

    COLLISION = "collision"
    WRONG_OBJECT = "wrong_object"
    NEVER_FOUND = "never_found"
    DROPPED = "dropped"
    GRASP_MISSED = "grasp_missed"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class PickConfig:
    """The pick task: its cube, the lift that counts, and the env underneath."""

    # Edge of the cube, m: narrower than the open gripper (34 mm) by a margin for the
    # fingers' placement.
    cube_m: float = PICK_CUBE_M
    # Success: the cube's lowest point this high above the floor, held by both fingers, m.
    lift_m: float = 0.05
    # "Off the floor" for the dropped class: the cube held at least this high once, m.
    off_floor_m: float = 0.01
    # The find task's limit (40 s) and ten seconds for the arm.
    env: EnvConfig = field(default_factory=lambda: EnvConfig(time_limit_s=50.0))

    def __post_init__(self) -> None:
        if not 0 < self.cube_m <= GRIPPER_MAX_OPENING_M - 0.004:
            raise ValueError(f"pick: cube_m={self.cube_m} must be positive and at least 4 mm "
                             f"narrower than the open gripper ({GRIPPER_MAX_OPENING_M} m)")
        if self.lift_m <= 0 or self.off_floor_m <= 0:
            raise ValueError("pick: lift_m and off_floor_m must be positive")


class _FreeCubeRandomizer(Randomizer):
    """The find task's randomiser, and the free cube put where it put the target: a free
    body starts from ``qpos0`` (mj_resetData), not from ``body_pos``, with a random yaw."""

    def __init__(self, model: mujoco.MjModel, layout: SceneLayout, robot: RobotConfig,
                 cameras: tuple[str, ...], cfg: DomainConfig, *, cube_m: float) -> None:
        super().__init__(model, layout, robot, cameras, cfg)
        self._cube_q = int(model.jnt_qposadr[model.joint("target").id])
        self._half = cube_m / 2

    def reset(self, rng: np.random.Generator) -> EpisodeDomain:
        domain = super().reset(rng)
        yaw = float(rng.uniform(-math.pi, math.pi))
        self.model.qpos0[self._cube_q: self._cube_q + 7] = (
            *domain.target_xy, self._half, math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
        return domain


class PickWorld(ZimaEnv):
    """The find task's world with a free cube the fingers touch, and the pick success rule
    (module docstring). :class:`PickEnv` drives it; the driving expert plays on it."""

    def __init__(self, scene: str, config: EnvConfig, contract: Contract, cube_m: float,
                 lift_m: float) -> None:
        self.cube_m, self.lift_m = cube_m, lift_m  # world_mjcf reads cube_m
        super().__init__(scene, config, contract)
        m = self.model
        self.randomizer = _FreeCubeRandomizer(m, self.layout, config.robot, contract.cameras,
                                              config.domain, cube_m=cube_m)
        self._fingers = np.array([m.geom(n).id for n in FINGERS])
        self._arm_base = m.body("arm_base").id
        self._tool = m.site("tool").id

    def world_mjcf(self) -> str:
        root = ET.fromstring(super().world_mjcf())  # noqa: S314 (our own MJCF, not input)
        floor = _named(root, "geom", "floor")
        floor.set("contype", str(_FLOOR_BIT))
        floor.set("conaffinity", str(_FINGER_BIT))
        for name in FINGERS:
            finger = _named(root, "geom", name)
            finger.set("contype", str(_FINGER_BIT))
            finger.set("conaffinity", "0")
        cube = _named(root, "geom", "target")
        half = self.cube_m / 2
        cube.set("size", f"{half} {half} {half}")
        cube.set("contype", str(_BASE_BIT))
        cube.set("conaffinity", str(_BASE_BIT | _FLOOR_BIT | _FINGER_BIT))
        cube.set("condim", "4")  # torsional friction: a squeezed cube does not spin out
        # Stiffer contacts than MuJoCo's default time constant (0.02 s): a light cube
        # squeezed by the fingers sank millimetres into them. 0.01 s is two physics steps.
        cube.set("solref", "0.01 1")
        _named(root, "body", "target").insert(0, ET.Element("freejoint", name="target"))
        # MuJoCo's default pyramidal cone and impratio 1 let a squeezed object creep out
        # of a grasp; the elliptic cone with impratio 10 holds it (MuJoCo's advice for
        # grasping).
        option = root.find("option")
        assert option is not None  # world_xml writes one
        option.set("cone", "elliptic")
        option.set("impratio", "10")
        return ET.tostring(root, encoding="unicode")

    def outcome(self, action: Action) -> Outcome:
        del action  # a pick succeeds whatever the tracks do
        # The find task's contact and time rules; asked for FORWARD, which never succeeds
        # there (its success is STOP in front of the target).
        found = super().outcome(Action.FORWARD)
        if found in (Outcome.RUNNING, Outcome.TIMEOUT) and self.lifted():
            return Outcome.SUCCESS
        return found

    # --- privileged state (expert, evaluation) ----------------------------------------

    def finger_contacts(self) -> tuple[bool, bool]:
        """(fixed finger, jaw) each touches the cube now."""
        d = self.data
        pairs = d.contact.geom[: d.ncon]  # [ncon, 2]
        cube = self.model.geom("target").id
        other = np.where(pairs[:, 0] == cube, pairs[:, 1], pairs[:, 0])[(pairs == cube).any(1)]
        fixed, jaw = (bool((other == f).any()) for f in self._fingers)
        return fixed, jaw

    def held(self) -> bool:
        """Both fingers touch the cube."""
        return all(self.finger_contacts())

    def cube_bottom_m(self) -> float:
        """Height of the cube's lowest corner above the floor, m."""
        g = self.model.geom("target").id
        rot = self.data.geom_xmat[g].reshape(3, 3)
        return float(self.data.geom_xpos[g][2] - self.cube_m / 2 * np.abs(rot[2]).sum())

    def lifted(self) -> bool:
        """The success test: held, its lowest point ``lift_m`` above the floor."""
        return self.cube_bottom_m() >= self.lift_m - 1e-9 and self.held()

    def cube_in_arm(self) -> tuple[np.ndarray, float]:
        """The cube's centre in the ``arm_base`` frame ([3], m) and its yaw there (rad)."""
        d, g = self.data, self.model.geom("target").id
        rot_arm = d.xmat[self._arm_base].reshape(3, 3)  # arm_base axes in the world
        centre = rot_arm.T @ (d.geom_xpos[g] - d.xpos[self._arm_base])  # [3]
        cube_x = rot_arm.T @ d.geom_xmat[g].reshape(3, 3)[:, 0]  # the cube's x axis, [3]
        return centre, math.atan2(float(cube_x[1]), float(cube_x[0]))

    def tool_in_arm(self) -> np.ndarray:
        """Where the tool point is (not where it is commanded: the servos sag under the
        arm's weight), in the ``arm_base`` frame: [3], m."""
        d = self.data
        rot_arm = d.xmat[self._arm_base].reshape(3, 3)
        tool: np.ndarray = rot_arm.T @ (d.site_xpos[self._tool] - d.xpos[self._arm_base])
        return tool

    def tool_to_cube_m(self) -> float:
        """Distance from the tool point (between the fingers) to the cube's centre, m."""
        g = self.model.geom("target").id
        return float(np.linalg.norm(self.data.site_xpos[self._tool] - self.data.geom_xpos[g]))

    def floor_z_in_arm(self) -> float:
        """The floor's height in the ``arm_base`` frame, m (negative: the arm sits above)."""
        return -float(self.data.xpos[self._arm_base][2])


def _named(root: ET.Element, tag: str, name: str) -> ET.Element:
    found = root.find(f".//{tag}[@name='{name}']")
    if found is None:
        raise ValueError(f"pick: the world has no {tag} named {name!r}")
    return found


@dataclass(frozen=True, slots=True)
class PickObservation:
    """What a policy sees: the find task's observation and the recent arm actions."""

    images: np.ndarray | None  # [n_images, H, W, 3] uint8; None when not rendering
    action_history: np.ndarray  # [action_history] int64, driving actions, oldest first
    arm_history: np.ndarray  # [action_history, ARM_DIMS] int64 bins, oldest first


@dataclass(frozen=True, slots=True)
class PickStepResult:
    """The result of one step."""

    observation: PickObservation
    outcome: Outcome
    time_s: float
    failure: PickFailure | None = None  # set when the episode ended without success
    arm_refused: bool = False  # the arm action's step was out of reach: the arm held

    @property
    def done(self) -> bool:
        return self.outcome is not Outcome.RUNNING


class PickEnv:
    """One scene of the pick-up task (module docstring)."""

    def __init__(self, scene: str, config: PickConfig = PickConfig(),
                 contract: Contract = PICK) -> None:
        self.config, self.contract = config, contract
        self.world = PickWorld(scene, config.env, contract, config.cube_m, config.lift_m)
        m = self.world.model
        self._arm_act = [m.actuator(n).id for n in ARM_JOINTS]
        self._dt_s = 1.0 / contract.control_hz
        self._arm: deque[tuple[int, ...]] = deque(maxlen=contract.action_history)
        self._joints: tuple[float, ...] = ()
        self._closing = 0.0
        self.tool = ARM.tool_pose(ARM.mid_pose)  # the commanded tool pose
        self._closed_narrow = self._off_floor = False

    @property
    def scene(self) -> str:
        return self.world.scene

    @property
    def opening_m(self) -> float:
        """The gripper's commanded opening, m."""
        return gripper_opening_m(self._closing)

    @property
    def joints_rad(self) -> tuple[float, ...]:
        """The arm's commanded joints, rad (``JOINT_NAMES`` order)."""
        return self._joints

    def arm_state(self) -> np.ndarray:
        """The policy's ``arm_state`` input now: the commanded tool pose and opening,
        [ARM_STATE_DIMS] float32 (what the runtime's ArmTeleop holds on the robot)."""
        return arm_state_vector(self.tool, self.opening_m)

    def reset(self, seed: int) -> PickObservation:
        """Start an episode (the same seed gives the same episode); the arm as the robot's
        config holds it at reset (stowed)."""
        obs = self.world.reset(seed)
        pose = self.world.config.robot.arm_pose
        self._joints, self._closing = tuple(pose[:-1]), pose[-1]
        self.tool = ARM.tool_pose(self._joints)
        self._arm.clear()
        self._arm.extend([ARM_HOLD.bins] * self.contract.action_history)
        self._closed_narrow = self._off_floor = False
        return PickObservation(obs.images, obs.action_history, self._arm_history())

    def step(self, drive: Action | int, arm: ArmAction = ARM_HOLD, *,
             capture_ahead_s: float = 0.0) -> PickStepResult:
        """Hold the driving action and the arm's jog for one control period."""
        if not self._joints:
            raise RuntimeError("step() before reset()")
        refused = self._jog(arm)
        d = self.world.data
        d.ctrl[self._arm_act] = (*self._joints, self._closing)
        result = self.world.step(drive, capture_ahead_s=capture_ahead_s)
        self._arm.append(arm.bins)
        self._closed_narrow |= (self.opening_m < self.config.cube_m
                                and self.world.tool_to_cube_m() < self.config.cube_m)
        self._off_floor |= (self.world.held()
                            and self.world.cube_bottom_m() >= self.config.off_floor_m)
        obs = PickObservation(result.observation.images, result.observation.action_history,
                              self._arm_history())
        return PickStepResult(obs, result.outcome, result.time_s, self.failure(result.outcome),
                              refused)

    def _jog(self, arm: ArmAction) -> bool:
        """Move the commanded pose by one step of ``arm``; True when the tool's step was
        out of reach (the tool holds; the gripper still moves)."""
        dx, dy, dz, dpitch, droll, dgrip = (v * self._dt_s for v in arm.velocity())
        if dgrip:
            opening = min(max(self.opening_m + dgrip, 0.0), GRIPPER_MAX_OPENING_M)
            self._closing = gripper_closing_m(opening)
        if not (dx or dy or dz or dpitch or droll):
            return False
        t = self.tool
        target = ToolPose(t.x + dx, t.y + dy, t.z + dz, t.pitch + dpitch, t.roll + droll)
        if not tool_reachable(target, self._joints[0]):
            return True
        self._joints, self.tool = ARM.ik(target, self._joints), target
        return False

    def failure(self, outcome: Outcome) -> PickFailure | None:
        """The failure class of an episode that ended now with ``outcome`` (None for
        SUCCESS and RUNNING): the module docstring's rules."""
        direct = {Outcome.SUCCESS: None, Outcome.RUNNING: None,
                  Outcome.COLLISION: PickFailure.COLLISION,
                  Outcome.WRONG_CUBE: PickFailure.WRONG_OBJECT}
        if outcome in direct:
            return direct[outcome]
        if not self.world.target_seen:
            return PickFailure.NEVER_FOUND
        if self._off_floor and not self.world.held():
            return PickFailure.DROPPED
        if self._closed_narrow:
            return PickFailure.GRASP_MISSED
        return PickFailure.TIMEOUT

    def _arm_history(self) -> np.ndarray:
        return np.array(self._arm, np.int64).reshape(-1, ARM_DIMS)  # [action_history, 6]

    def close(self) -> None:
        self.world.close()
