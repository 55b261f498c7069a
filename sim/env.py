"""The task: find the green cube and stop in front of it. :class:`ZimaEnv` runs it.

One step is one action (or a continuous policy's track command) held for
``1 / contract.control_hz`` seconds of physics (many finer physics steps); a command
counts as its :func:`~zima.contract.nearest_action` in the action history and for the
outcome (success needs STOP, i.e. both tracks inside the STOP dead band). The
observation is the contract's: images of every contract camera, camera-major and oldest
to newest, ``frame_interval_s`` apart, and the recent actions. An episode ends with one
:class:`~zima.episodes.Outcome` (the value episode files store):

    SUCCESS     STOP chosen while "stopped in front of the target" holds (see at_target)
    COLLISION   the robot touches a wall, furniture or clutter
    WRONG_CUBE  the robot touches a distractor cube
    TIMEOUT     config.time_limit_s passed

A failed episode is also classified (:class:`Failure`, :meth:`ZimaEnv.failure`), from the
privileged state the env keeps while it runs: was the target ever in the forward camera's
view (:meth:`ZimaEnv.target_in_view`, checked after every step), and did the robot stand
still over the last second. The outcome stays what it is (episode files store it); the
failure class says why:

    collision       COLLISION
    wrong_object    WRONG_CUBE, or a TIMEOUT standing still in front of a distractor
    never_found     TIMEOUT, the target never in view
    stopped_short   TIMEOUT standing still with the target in view, not close enough
    found_and_lost  TIMEOUT, the target was in view and is not (or the robot still moves)

The privileged queries (``robot_pose``, ``target_gap_m``, ``target_bearing_rad``,
``target_in_view``) are for the scripted expert and for evaluation, never for a policy.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

import mujoco
import numpy as np

from zima.contract import DEFAULT, Action, Contract, TrackCommand, nearest_action
from zima.episodes import Outcome
from zima.sim.effects import CameraMotion, EffectsConfig, ImageEffects, render_size
from zima.sim.randomize import DomainConfig, EpisodeDomain, Randomizer
from zima.sim.robot import ARM_JOINTS, BASE_JOINTS, ROOT_BODY, RobotConfig, TrackDrive
from zima.sim.scenes import CUBE_SIZE_M, GROUP_CUBE, GROUP_OBSTACLE, SCENES, world_xml
from zima.sim.sight import camera_seen_share


class Failure(StrEnum):
    """Why an episode failed (see the module docstring); success has none."""

    COLLISION = "collision"
    WRONG_OBJECT = "wrong_object"
    NEVER_FOUND = "never_found"
    FOUND_AND_LOST = "found_and_lost"
    STOPPED_SHORT = "stopped_short"


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """Everything about an environment but its scene and the contract."""

    # Physics step, s: 20 steps per 0.1 s action; contacts stay stable at 0.3 m/s.
    physics_dt_s: float = 0.005
    # Episode length limit, s: crossing the room's diagonal (6.4 m at 0.3 m/s) plus a turn.
    time_limit_s: float = 40.0
    # "In front": front bumper to the nearest cube face below this, metres. The stowed arm
    # reaches about 0.2 m ahead of the bumper, and the cube then fills the wrist camera.
    success_gap_m: float = 0.15
    # "Facing it": heading error below this, degrees. The arm's yaw joint covers it, and
    # the cube stays in the middle half of the forward image (~73 deg wide).
    success_heading_deg: float = 20.0
    # "Standing still" for the failure classes: over the last second the robot moved less
    # than this (metres, and degrees of heading). Dithering left-right in place counts.
    still_m: float = 0.03
    still_deg: float = 10.0
    # False: physics only, no OpenGL context (fast evaluation of scripted experts).
    render: bool = True
    robot: RobotConfig = field(default_factory=RobotConfig)
    domain: DomainConfig = field(default_factory=DomainConfig)
    effects: EffectsConfig = field(default_factory=EffectsConfig)


@dataclass(frozen=True, slots=True)
class Observation:
    """What a policy sees (contract shapes)."""

    images: np.ndarray | None  # [n_images, H, W, 3] uint8; None when not rendering
    action_history: np.ndarray  # [action_history] int64, oldest first


@dataclass(frozen=True, slots=True)
class StepResult:
    """The result of one action."""

    observation: Observation
    outcome: Outcome
    time_s: float
    failure: Failure | None = None  # set when the episode ended without success

    @property
    def done(self) -> bool:
        """True when the episode has ended."""
        return self.outcome is not Outcome.RUNNING


class ZimaEnv:
    """One scene, one MuJoCo model and (when rendering) one offscreen renderer."""

    def __init__(self, scene: str, config: EnvConfig = EnvConfig(),
                 contract: Contract = DEFAULT) -> None:
        if scene not in SCENES:
            raise ValueError(f"unknown scene {scene!r}; known: {sorted(SCENES)}")
        self.config, self.contract, self.scene = config, contract, scene
        self.layout = SCENES[scene]()
        self.model = mujoco.MjModel.from_xml_string(self.world_mjcf())
        self.data = mujoco.MjData(self.model)
        self.drive = TrackDrive(self.model, config.robot)
        self.randomizer = Randomizer(self.model, self.layout, config.robot, contract.cameras,
                                     config.domain)
        self.substeps = round(1.0 / (contract.control_hz * config.physics_dt_s))
        self.frame_stride = max(1, round(contract.frame_interval_s * contract.control_hz))
        m = self.model
        self._base_q = [int(m.jnt_qposadr[m.joint(n).id]) for n in BASE_JOINTS]
        robot_id = m.body(ROOT_BODY).id
        robot_geoms = m.body_rootid[m.geom_bodyid] == robot_id  # [ngeom] bool
        self._target_geom = m.geom("target").id
        is_cube = m.geom_group == GROUP_CUBE
        self._robot = robot_geoms
        self._obstacle = (m.geom_group == GROUP_OBSTACLE) & ~robot_geoms
        self._distractor = is_cube & (np.arange(m.ngeom) != self._target_geom)
        self._effects = {c: ImageEffects(config.effects, contract.image_height,
                                         contract.image_width) for c in contract.cameras}
        # Frames are rendered at the sensor's aspect and fitted to the contract by the effects.
        render_hw = render_size(config.effects, contract.image_height, contract.image_width)
        self._renderer = mujoco.Renderer(m, *render_hw) if config.render else None
        self._frames: dict[str, deque[np.ndarray]] = {}
        self._actions: deque[int] = deque(maxlen=contract.action_history)
        self._rng = np.random.default_rng(0)
        self.domain: EpisodeDomain | None = None
        self.steps = 0
        self.target_seen = False  # the target has been in the forward view this episode
        self._poses: deque[tuple[float, float, float]] = deque(
            maxlen=round(contract.control_hz) + 1)  # the last second's robot poses

    def world_mjcf(self) -> str:
        """The MJCF of this env's world; a task that changes the world (the pick-up task's
        free cube, :mod:`zima.sim.pick`) overrides it. Called once, by ``__init__``."""
        return world_xml(self.layout, self.config.robot, self.contract, self.config.physics_dt_s)

    # --- episode ----------------------------------------------------------------------

    def reset(self, seed: int) -> Observation:
        """Start a new randomised episode; the same seed gives the same episode."""
        domain_rng, effects_rng, self._rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        self.domain = self.randomizer.reset(domain_rng)
        for cam, fx in self._effects.items():  # fovy: the randomiser has just drawn it
            fx.reset(effects_rng, fovy_deg=float(self.model.cam_fovy[self.model.camera(cam).id]))
        m, d, cfg = self.model, self.data, self.config.robot
        mujoco.mj_resetData(m, d)
        d.qpos[self._base_q] = self.domain.robot_xy_yaw
        for name, value in zip(ARM_JOINTS, cfg.arm_pose, strict=True):
            d.qpos[m.jnt_qposadr[m.joint(name).id]] = value
            d.ctrl[m.actuator(name).id] = value
        mujoco.mj_forward(m, d)
        self.steps = 0
        self._poses.clear()
        self.target_seen = False
        self.track_target()
        self._actions.clear()
        self._actions.extend([int(Action.STOP)] * self.contract.action_history)
        depth = (self.contract.image_history - 1) * self.frame_stride + 1
        self._frames = {c: deque(maxlen=depth) for c in self.contract.cameras}
        if self._renderer is not None:
            for cam, frames in self._frames.items():
                frames.extend([self.render(cam)] * depth)
        return self._observation()

    def step(self, action: Action | int | TrackCommand, *,
             capture_ahead_s: float = 0.0) -> StepResult:
        """Hold ``action`` (or a track command, as given: the caller clips it) for one
        control period and report the outcome. The frames the step adds are captured
        ``capture_ahead_s`` before the period ends (whole physics steps; 0: at its end),
        as a robot's cameras are read when a plan starts ahead of its action
        (:mod:`zima.sim.evaluate`)."""
        if self.domain is None:
            raise RuntimeError("step() before reset()")
        if isinstance(action, TrackCommand):
            command = action
            action = nearest_action(command.left_mm_s, command.right_mm_s)
        else:
            command = self.contract.track_command(action)
        ahead = min(max(round(capture_ahead_s / self.config.physics_dt_s), 0), self.substeps)
        self.drive.set_tracks(self.data, command.left_mm_s, command.right_mm_s)
        self.drive.step(self.data, self.substeps - ahead)
        captured: dict[str, np.ndarray] = {}
        if ahead:
            mujoco.mj_forward(self.model, self.data)  # cameras at the moment of capture
            if self._renderer is not None:
                captured = {cam: self.render(cam) for cam in self._frames}
            self.drive.step(self.data, ahead)
        mujoco.mj_forward(self.model, self.data)  # cameras and contacts at the final state
        self.steps += 1
        self._actions.append(int(action))
        self.track_target()
        if self._renderer is not None:
            for cam, frames in self._frames.items():
                frames.append(captured[cam] if ahead else self.render(cam))
        outcome = self.outcome(Action(action))
        return StepResult(self._observation(), outcome, self.time_s, self.failure(outcome))

    @property
    def time_s(self) -> float:
        """Seconds since reset."""
        return self.steps / self.contract.control_hz

    def outcome(self, action: Action) -> Outcome:
        """The episode's outcome now, if the robot's last action was ``action`` (success
        needs STOP at the target; contact with an obstacle or a distractor ends it)."""
        d = self.data
        pairs = d.contact.geom[: d.ncon]  # [ncon, 2] geom ids
        robot = self._robot[pairs]  # [ncon, 2] bool
        other = np.where(robot[:, :1], pairs[:, 1:], pairs[:, :1])[:, 0][robot.any(axis=1)]
        if self._obstacle[other].any():
            return Outcome.COLLISION
        if self._distractor[other].any():
            return Outcome.WRONG_CUBE
        if action is Action.STOP and self.at_target():
            return Outcome.SUCCESS
        if self.time_s >= self.config.time_limit_s - 1e-9:
            return Outcome.TIMEOUT
        return Outcome.RUNNING

    def track_target(self) -> None:
        """Note the robot's pose and whether the target is in the forward view now (what
        :meth:`failure` judges by). :meth:`reset` and :meth:`step` call it; a caller that
        moves the robot itself (hardware in the loop) calls it once per control period."""
        self._poses.append(self.robot_pose())
        self.target_seen = self.target_seen or self.target_in_view("forward")

    def failure(self, outcome: Outcome) -> Failure | None:
        """The failure class of an episode that ended now with ``outcome`` (None for
        SUCCESS and RUNNING). See the module docstring for the rules."""
        direct = {Outcome.SUCCESS: None, Outcome.RUNNING: None,
                  Outcome.COLLISION: Failure.COLLISION, Outcome.WRONG_CUBE: Failure.WRONG_OBJECT}
        if outcome in direct:  # decided by a contact, or no failure
            return direct[outcome]
        still = self.standing_still()
        if still and self.facing_distractor():
            return Failure.WRONG_OBJECT
        if not self.target_seen:
            return Failure.NEVER_FOUND
        if still and self.target_in_view("forward"):
            return Failure.STOPPED_SHORT
        return Failure.FOUND_AND_LOST

    def standing_still(self) -> bool:
        """The robot moved less than still_m and turned less than still_deg over the last
        second (net: dithering in place counts as still)."""
        if len(self._poses) < 2:
            return True
        (x0, y0, yaw0), (x1, y1, yaw1) = self._poses[0], self._poses[-1]
        turned_deg = abs(math.degrees(math.remainder(yaw1 - yaw0, math.tau)))
        return math.hypot(x1 - x0, y1 - y0) < self.config.still_m and (
            turned_deg < self.config.still_deg)

    def facing_distractor(self) -> bool:
        """A distractor stands in front of the robot, nearer than the target: within twice
        the success gap and inside the success heading (as if it were the target)."""
        x, y, yaw = self.robot_pose()
        front = np.array([x, y]) + self.config.robot.front_x_m * np.array(
            [math.cos(yaw), math.sin(yaw)])  # [2]
        for xy in self.data.geom_xpos[self._distractor][:, :2]:  # [2] each
            gap = float(np.linalg.norm(np.maximum(np.abs(front - xy) - CUBE_SIZE_M / 2, 0.0)))
            bearing = math.remainder(math.atan2(xy[1] - y, xy[0] - x) - yaw, math.tau)
            if (gap < 2 * self.config.success_gap_m and gap < self.target_gap_m()
                    and abs(math.degrees(bearing)) < self.config.success_heading_deg):
                return True
        return False

    def _observation(self) -> Observation:
        history = np.array(self._actions, np.int64)  # [action_history]
        if self._renderer is None:
            return Observation(None, history)
        picked = [list(f)[:: -self.frame_stride][::-1] for f in self._frames.values()]
        return Observation(np.stack([img for cam in picked for img in cam]), history)

    def render(self, camera: str) -> np.ndarray:
        """The camera's current image with this episode's effects, blurred by the robot's
        motion at this moment: [H, W, 3] uint8 RGB at the contract's size."""
        if self._renderer is None:
            raise RuntimeError("this environment was made with render=False")
        self._renderer.update_scene(self.data, camera=camera)
        return self._effects[camera].apply(self._renderer.render(), self._rng,
                                           self.camera_motion(camera), self.time_s)

    def camera_motion(self, camera: str) -> CameraMotion:
        """The camera's velocity now, in its own frame: the robot's turning and driving
        (and its lever arm from the turning centre) as the camera feels them."""
        velocity = np.zeros(6)  # rotation, translation
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_CAMERA,
                                 self.model.camera(camera).id, velocity, 1)
        return CameraMotion.from_mujoco(velocity)

    def close(self) -> None:
        """Release the renderer's OpenGL context."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    # --- privileged state (expert, evaluation) ----------------------------------------

    def robot_pose(self) -> tuple[float, float, float]:
        """(x m, y m, yaw rad) of the robot in the world."""
        x, y, yaw = (float(v) for v in self.data.qpos[self._base_q])
        return x, y, yaw

    def target_xy(self) -> np.ndarray:
        """The target cube's centre on the floor, metres: [2]."""
        return np.array(self.data.geom_xpos[self._target_geom][:2])

    def target_bearing_rad(self) -> float:
        """Angle from the robot's heading to the target (left positive), in (-pi, pi]."""
        x, y, yaw = self.robot_pose()
        tx, ty = self.target_xy()
        return math.remainder(math.atan2(ty - y, tx - x) - yaw, math.tau)

    def target_gap_m(self) -> float:
        """Distance from the front bumper's centre to the target cube's nearest face, m."""
        x, y, yaw = self.robot_pose()
        front = np.array([x, y]) + self.config.robot.front_x_m * np.array(
            [math.cos(yaw), math.sin(yaw)])
        gap = np.maximum(np.abs(front - self.target_xy()) - CUBE_SIZE_M / 2, 0.0)  # [2]
        return float(np.linalg.norm(gap))

    def at_target(self) -> bool:
        """The success test: close (success_gap_m) and facing it (success_heading_deg)."""
        return (self.target_gap_m() < self.config.success_gap_m
                and abs(math.degrees(self.target_bearing_rad()))
                < self.config.success_heading_deg)

    def target_in_view(self, camera: str = "forward", margin_deg: float = 4.0) -> bool:
        """True when the target's centre is inside the camera's view and not hidden."""
        m, d = self.model, self.data
        cam = m.camera(camera).id
        pos, rot = d.cam_xpos[cam], d.cam_xmat[cam].reshape(3, 3)  # [3], [3, 3]
        to_target = d.geom_xpos[self._target_geom] - pos  # [3]
        x, y, z = rot.T @ to_target  # camera frame: looks along -z
        if z >= 0:
            return False
        half_v = math.radians(m.cam_fovy[cam]) / 2
        aspect = self.contract.image_width / self.contract.image_height
        half_h = math.atan(math.tan(half_v) * aspect)
        margin = math.radians(margin_deg)
        if abs(math.atan2(x, -z)) > half_h - margin or abs(math.atan2(y, -z)) > half_v - margin:
            return False
        hit = np.array([-1], np.int32)
        groups = np.zeros(6, np.uint8)
        groups[[GROUP_OBSTACLE, GROUP_CUBE]] = 1
        mujoco.mj_ray(m, d, pos, to_target, groups, 1, -1, hit)
        # A partly hidden target (procedural worlds) counts as seen when a tenth of its
        # faces is: the expert's rule (zima.sim.sight), not only its centre's ray.
        return bool(int(hit[0]) == self._target_geom) or camera_seen_share(
            m, d, camera, self._target_geom, half_m=CUBE_SIZE_M / 2, aspect=aspect,
            margin_deg=margin_deg) >= 0.1
