"""The MuJoCo side of a hardware-in-the-loop run: :class:`SimWorld` follows the emulated board.

``SimWorld`` owns the :class:`~zima.sim.env.ZimaEnv` on its own thread (EGL contexts belong
to one thread, and physics must never stall the runtime's event loop). Its tick is each new
emulator state line: it steps MuJoCo by the emulated time that passed, with the tracks at
the speeds of the emulator's own motor model (``motor_*_mm_s``: the firmware's signed drive,
first order; one model, the emulator's), sends the wheels' encoder counts back, renders both
cameras every ``1 / camera_fps`` emulated seconds into the :class:`~zima.sim.hil_cameras.FrameHub`,
films the first episodes and judges each with the env's own outcome test (success: at the
target and stopped). The battery is the emulator's too (``HilConfig.board_config``), and so
is the arm: the servo pulses it measures set the arm's joint targets
(:class:`~zima.sim.hil_arm.ArmFollower`), and a scene reset leaves the arm where they hold it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path

import mujoco

from zima.contract import DEFAULT, Action, Contract
from zima.emulator import EmulatedBoard
from zima.episodes import Outcome
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.hil_arm import ArmFollower
from zima.sim.hil_cameras import FrameHub
from zima.sim.hil_config import HilConfig, HilError, HilStartError
from zima.sim.video import VideoWriter

__all__ = ["STOPPED_MM_S", "SimWorld", "WorldSnapshot"]

STOPPED_MM_S = 20.0  # both tracks slower than this (and no drive): the robot has stopped
VIDEO_SCALE = 4  # contract images are small; enlarged so the overlaid text is legible


@dataclass(frozen=True, slots=True)
class WorldSnapshot:
    """What the physics thread last saw (for the episode loop and tests)."""

    seed: int
    time_s: float  # emulated seconds since the episode's reset
    pose: tuple[float, float, float]  # x m, y m, yaw rad
    sim_ticks: tuple[int, int]  # the encoder counts sent to the board (across resets)
    track_mm_s: tuple[float, float]  # the tracks' speeds (the emulator's motor model)
    outcome: Outcome
    battery_mv: float  # the emulated pack's terminal voltage
    ticks: int  # physics ticks so far
    error: str | None  # why the thread died, if it did
    # The arm's joints in MuJoCo (rad; the gripper in m) and the servo pulses they follow
    # (us, 0: none seen yet), protocol order: yaw, shoulder, elbow, wrist pitch, roll, gripper.
    arm_rad: tuple[float, ...] = ()
    servo_us: tuple[float, ...] = ()


class SimWorld:
    """The MuJoCo side of the loop on its own thread (see the module docstring)."""

    def __init__(self, board: EmulatedBoard, hub: FrameHub, cfg: HilConfig,
                 contract: Contract = DEFAULT) -> None:
        self.board, self.hub, self.cfg, self.contract = board, hub, cfg, contract
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._reset_to: int | None = None
        self._reset_done = threading.Event()
        self._snapshot: WorldSnapshot | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="sim-world", daemon=True)
        self._arm: ArmFollower  # made on the thread, with the model
        self.videos: list[Path] = []

    def start(self, seed: int, timeout_s: float = 60.0) -> None:
        """Build the scene, reset it with ``seed`` and start following the board (blocking;
        the board must have started)."""
        self._reset_to = seed
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise HilStartError(f"the MuJoCo world did not start within {timeout_s} s")
        if self._error is not None:
            raise HilStartError(f"the MuJoCo world: {self._error}")

    def reset(self, seed: int, timeout_s: float = 10.0) -> None:
        """Start the next episode with ``seed`` at the next tick (blocking until done)."""
        self._reset_done.clear()
        with self._lock:
            self._reset_to = seed
        if not self._reset_done.wait(timeout_s) or self._error is not None:
            raise HilError(f"the MuJoCo world did not reset: "
                           f"{self._error or 'no state lines from the board'}")

    def snapshot(self) -> WorldSnapshot:
        with self._lock:
            snap = self._snapshot
        if snap is None:
            raise RuntimeError("the MuJoCo world has not started")
        return replace(snap, error=self._error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.hub.close()

    # ---- the thread -------------------------------------------------------------------
    def _run(self) -> None:
        env: ZimaEnv | None = None
        try:
            env = ZimaEnv(self.cfg.scene, EnvConfig(time_limit_s=self.cfg.time_limit_s),
                          self.contract)
            self._loop(env)
        except Exception as exc:  # noqa: BLE001 -- reported through snapshot().error
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._started.set()
            self._reset_done.set()
            self.hub.close()
            if env is not None:
                env.close()

    def _loop(self, env: ZimaEnv) -> None:  # noqa: PLR0915 -- one tick, read top to bottom
        cfg, board = self.cfg, self.board
        substep_s = env.config.physics_dt_s
        frame_s = 1.0 / cfg.camera_fps
        offset = [0, 0]  # the firmware's counts run on across resets; MuJoCo's restart at 0
        sent = (0, 0)
        state = board.wait_state(-1, timeout_s=10.0)
        arm = self._arm = ArmFollower(env.model)
        v = [0.0, 0.0]  # track speeds, mm/s: the emulator's motor model's
        battery_mv = state.battery_mv
        seed = 0
        start_us = now_us = state.time_us
        next_frame_s = 0.0
        outcome = Outcome.RUNNING
        video: VideoWriter | None = None
        episodes = ticks = 0
        carry_s = 0.0
        while not self._stop.is_set():
            with self._lock:
                reset_to, self._reset_to = self._reset_to, None
            if reset_to is not None:
                enc = env.drive.encoders(env.data)
                offset = [offset[0] + enc[0], offset[1] + enc[1]]
                if video is not None:
                    video.close()
                    video = None
                seed = reset_to
                env.reset(seed)
                arm.follow(env.data, state.servo_us)  # the servos hold the arm where it was
                arm.place(env.data)
                mujoco.mj_forward(env.model, env.data)
                if episodes < cfg.videos:
                    path = cfg.out_dir / f"episode_{seed}.mp4"
                    c = self.contract
                    video = VideoWriter(path, cfg.camera_fps, (c.image_width, c.image_height),
                                        scale=VIDEO_SCALE)
                    self.videos.append(path)
                episodes += 1
                start_us, next_frame_s, outcome, carry_s = now_us, 0.0, Outcome.RUNNING, 0.0
                self._render(env, video, 0.0, seed, outcome)
                self._publish(env, seed, 0.0, sent=sent, v=v, outcome=outcome,
                              battery_mv=battery_mv, ticks=ticks)
                self._started.set()
                self._reset_done.set()
            state = board.wait_state(now_us, timeout_s=5.0)
            dt_s = min((state.time_us - now_us) / 1e6, 1.0)  # a stalled thread catches up
            now_us = state.time_us
            v = [state.motor_left_mm_s, state.motor_right_mm_s]  # the emulator's motor model
            env.drive.set_tracks(env.data, v[0], v[1])
            arm.follow(env.data, state.servo_us)  # the firmware's servo pulses
            carry_s += dt_s
            n = int(carry_s / substep_s + 1e-9)
            carry_s -= n * substep_s
            if n > 0:
                env.drive.step(env.data, n)
                mujoco.mj_forward(env.model, env.data)  # contacts and cameras
            enc = env.drive.encoders(env.data)
            sent = (offset[0] + enc[0], offset[1] + enc[1])
            board.set_wheels(*sent)
            ticks += 1
            battery_mv = state.battery_mv  # the emulator drains it (HilConfig.board_config)
            duty_abs = abs(state.duty_signed_left) + abs(state.duty_signed_right)
            time_s = (now_us - start_us) / 1e6
            if outcome is Outcome.RUNNING:
                stopped = max(abs(v[0]), abs(v[1])) < STOPPED_MM_S and duty_abs < 0.05
                # the env's own judge: collision, wrong cube, success (STOP at the target)
                outcome = env.outcome(Action.STOP if stopped else Action.FORWARD)
                if outcome is Outcome.RUNNING and time_s >= cfg.time_limit_s:
                    outcome = Outcome.TIMEOUT
                if outcome is not Outcome.RUNNING and video is not None:
                    self._render(env, video, time_s, seed, outcome)
            if time_s >= next_frame_s:
                next_frame_s = max(next_frame_s + frame_s, time_s)
                self._render(env, video, time_s, seed, outcome)
            self._publish(env, seed, time_s, sent=sent, v=v, outcome=outcome,
                          battery_mv=battery_mv, ticks=ticks)
        if video is not None:
            video.close()

    def _render(self, env: ZimaEnv, video: VideoWriter | None, time_s: float, seed: int,
                outcome: Outcome) -> None:
        for camera in self.contract.cameras:
            image = env.render(camera)  # [H, W, 3] uint8 RGB
            self.hub.publish(camera, image)
            if camera == "forward" and video is not None:
                video.add(image, [f"seed {seed}  t {time_s:5.1f} s  {outcome.value}"])

    def _publish(self, env: ZimaEnv, seed: int, time_s: float, *, sent: tuple[int, int],
                 v: list[float], outcome: Outcome, battery_mv: float, ticks: int) -> None:
        snap = WorldSnapshot(seed, time_s, env.robot_pose(), sent, (v[0], v[1]), outcome,
                             battery_mv, ticks, None, self._arm.angles(env.data),
                             self._arm.pulses_us)
        with self._lock:
            self._snapshot = snap
