"""Policy evaluation: an ONNX policy driving the simulator through the onboard runtime.

The policy runs through the same :class:`~zima.onboard.fusion.FrameFusion` and
:class:`~zima.onboard.policy_runner.PolicyRunner` as on the robot (not a copy of them),
in lock-step with the simulation, and sees observations of the age the runtime's do
(ARCHITECTURE decision 13). The runner is ticked at the runtime's loop rate
(``EvalConfig.loop_hz``, 50 Hz) on the sim clock, and an inference takes
``EvalConfig.latency_s`` of it (the modelled latency: the worker thread reads the clock
that much later, and the runner takes no result before its time). So the runner itself
decides, as on the robot, to start each plan ``lead = lead_ticks(latency_s, margin) *
tick`` before its chunk is due (one tick, 20 ms, for latencies up to 13 ms). The newest
frame a plan reads is older still: a camera delivers one every ``1 / camera_fps``
(33 ms), ``camera_delay_s`` after capture (decode), at a phase that holds for a run
(30 frames/s and 10 actions/s keep step), so each episode draws its frame age,
``camera_delay_s + U(0, 1 / camera_fps)``, from its seed. Each env step (one action
period) captures its frames ``lead`` plus that age before it ends
(``ZimaEnv.step(capture_ahead_s=...)``, whole physics steps), and they reach the fusion,
stamped with their capture time, when the runtime would have them; the plan that reads
them starts ``lead`` before the step ends, and its chunk's first action runs at the next
step's start. A slow policy or a remote round trip (``latency_s`` of 50 ms: an 80 ms lead
on frames up to 43 ms older) reads frames older than an action period: each env step then
captures the frames of the next step's plan, and they are carried over. Each env step:

1. ``runner.tick`` at the step's start gives the action;
2. ``env.step(action, capture_ahead_s=...)`` simulates it;
3. the loop's other ticks inside the step, each plan waited for (``wait_plan``: inference
   takes sim time, never wall time), the step's frames pushed into the fusion once
   delivered; until the env reports an :class:`~zima.sim.env.Outcome`.

With ``EvalConfig.server`` the plans go to a policy server (``zima serve``) through the
robot's remote backend (:mod:`zima.onboard.remote_policy`): the same contract check,
output check and chunk queue, the network in between. The run stays in lock-step: each
answer is waited for, and an inference still takes ``latency_s`` of sim time (set it to
the round trip to model one), so the results do not depend on the network's speed.

The pick-up task (:class:`~zima.sim.pick.PickEnv`, a model with an arm head) runs through
the same loop: the runner is given the env's commanded tool pose and opening as its
``arm_state`` when it plans, and each step's arm bins (``Step.arm``; a forced STOP holds
the arm) go to ``PickEnv.step`` as the binned :class:`~zima.sim.pick.ArmAction`, whose
velocities are the console's jog (:func:`zima.onboard.arm_policy.arm_jog_velocities`).
:mod:`zima.sim.pick_eval` runs and reports such episodes.

Everything is seeded (episode ``i`` uses ``seed + i`` for the env, for sampling and for
the camera's phase) and the runner's clock is the sim clock, so a run does not depend on
the machine's speed nor on the number of worker processes: the same model and seeds give
the same results. As on the robot, the first step is a STOP while the first plan runs.

Reported over the episodes: success rate with its 95% Wilson score interval, failed
episodes by :class:`~zima.sim.env.Failure` class (collision, wrong object, never found,
found and lost, stopped short), mean episode length; optionally MP4 videos of the first
episodes' forward camera with the executed action written on each frame.

:func:`run_episodes` runs any list of :class:`EpisodeTask` (scene, environment settings,
seed, video) in worker processes; :func:`evaluate` and the robustness suite
(:mod:`zima.sim.suite`) are built on it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import math
import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zima.contract import DEFAULT, Action, Contract
from zima.episodes import Outcome
from zima.onboard.chunking import FRAME_SLACK_S, lead_ticks
from zima.onboard.fusion import FrameFusion
from zima.onboard.policy_runner import PlanTrace, PolicyConfig, PolicyRunner, Step
from zima.sim.env import EnvConfig, Failure, StepResult, ZimaEnv
from zima.sim.expert import EpisodeResult
from zima.sim.pick import ARM_HOLD, ArmAction, PickEnv, PickStepResult
from zima.sim.video import VideoWriter

__all__ = ["EpisodeResult", "EpisodeTask", "EpisodeTiming", "EvalConfig", "EvalSummary",
           "PolicyEpisode", "Prepare", "StepHook", "evaluate", "failure_counts", "filmed_episode",
           "policy_episode", "run_episodes", "wilson_interval"]

Z_95 = 1.959963984540054  # standard normal quantile of 0.975
VIDEO_SCALE = 4  # contract images are small; enlarged so the overlaid text is legible
REMOTE_TIMEOUT_S = 10.0  # lock-step waits for each answer: only a dead link times out


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: (low, high); (0, 1) for n = 0."""
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Exact at the ends (0 successes: low 0; all: high 1), where rounding leaves 1e-17.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True, slots=True)
class EvalConfig:
    """One evaluation run."""

    scene: str = "arena"  # a registered scene
    episodes: int = 20  # seeded episodes: seed, seed + 1, ...
    seed: int = 0  # seed of the first episode (env randomisation and action sampling)
    execute_k: int = 4  # actions executed per chunk (the runtime's PolicyConfig.execute_k)
    temperature: float = 1.0  # sampling temperature (the runtime's default); 0 = argmax
    arm_temperature: float = 0.0  # the arm head's (the runtime's default: argmax)
    video_dir: Path | None = None  # where episode_<seed>.mp4 files go; None: no videos
    videos: int = 0  # how many of the first episodes to film
    env: EnvConfig = field(default_factory=EnvConfig)  # render must stay True
    workers: int = 1  # processes, one environment each (results do not depend on it)
    loop_hz: float = 50.0  # the runtime's control loop (RuntimeConfig.loop_hz)
    # The modelled inference latency, submission to result (the demo model: 2-5 ms at p50
    # in bench/runtime_bench.py); what matters is the lead it gives, in whole loop ticks.
    latency_s: float = 0.01
    # The cameras (CameraConfig.fps): the newest frame is up to one interval old when a
    # plan reads it; None: frames taken exactly when the plan starts (no camera age).
    camera_fps: float | None = 30.0
    camera_delay_s: float = 0.004  # capture to fused: the decode (runtime_bench: ~4 ms)
    # The policy on a server (`zima serve`, "host:port") instead of the model file: every
    # plan goes through the robot's remote backend (the network costs wall time; the sim
    # time an inference takes stays latency_s, which may model the round trip).
    server: str | None = None
    key_file: Path | None = None  # with server: the shared key

    def video_path(self, seed: int) -> Path | None:
        """Where the episode of ``seed`` is filmed: ``video_dir/episode_<seed>.mp4`` for the
        first ``videos`` seeds; None for the rest, or without ``video_dir``."""
        if self.video_dir is None or not 0 <= seed - self.seed < self.videos:
            return None
        return self.video_dir / f"episode_{seed}.mp4"

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"EvalConfig.episodes={self.episodes} must be >= 1")
        if self.workers < 1:
            raise ValueError(f"EvalConfig.workers={self.workers} must be >= 1")
        if self.videos < 0:
            raise ValueError(f"EvalConfig.videos={self.videos} must be >= 0")
        if not self.env.render:
            raise ValueError("EvalConfig.env.render must be True: the policy needs images")
        if not (math.isfinite(self.loop_hz) and self.loop_hz > 0):
            raise ValueError(f"EvalConfig.loop_hz={self.loop_hz} must be a positive number")
        if not (math.isfinite(self.latency_s) and self.latency_s >= 0):
            raise ValueError(f"EvalConfig.latency_s={self.latency_s} must be >= 0")
        if self.camera_fps is not None and not (math.isfinite(self.camera_fps)
                                                and self.camera_fps > 0):
            raise ValueError(f"EvalConfig.camera_fps={self.camera_fps} must be positive")
        if not (math.isfinite(self.camera_delay_s) and self.camera_delay_s >= 0):
            raise ValueError(f"EvalConfig.camera_delay_s={self.camera_delay_s} must be >= 0")
        if (self.server is None) != (self.key_file is None):
            raise ValueError("EvalConfig.server and key_file go together")


@dataclass(frozen=True, slots=True)
class PolicyEpisode(EpisodeResult):
    """A policy's episode: how it ended and, when it failed, why."""

    failure: Failure | None = None  # the find task's (a pick-up episode's: PickEnv.failure)


def failure_counts(results: Sequence[PolicyEpisode]) -> dict[Failure, int]:
    """Failed episodes by failure class, every class listed (zeros included)."""
    counts = collections.Counter(r.failure for r in results)
    return {f: counts[f] for f in Failure}


class SuccessTally:
    """Success counting over a record's ``results`` (an evaluation, a suite cell): mixed
    into the frozen dataclasses that hold them."""

    __slots__ = ()
    results: tuple[PolicyEpisode, ...]

    @property
    def successes(self) -> int:
        return sum(r.outcome is Outcome.SUCCESS for r in self.results)

    @property
    def success_rate(self) -> float:
        return self.successes / len(self.results)

    @property
    def success_ci(self) -> tuple[float, float]:
        """95% Wilson score interval of the success rate."""
        return wilson_interval(self.successes, len(self.results))

    @property
    def failures(self) -> dict[Failure, int]:
        """Failed episodes by failure class (every class listed, zeros included)."""
        return failure_counts(self.results)


@dataclass(frozen=True, slots=True)
class EvalSummary(SuccessTally):
    """The episodes of one evaluation and how long it took (wall clock)."""

    model_sha256: str
    results: tuple[PolicyEpisode, ...]
    wall_s: float

    @property
    def outcomes(self) -> dict[Outcome, int]:
        """Episodes by outcome (as episode files store it), the ones that occurred."""
        return dict(collections.Counter(r.outcome for r in self.results))

    @property
    def mean_steps(self) -> float:
        return sum(r.steps for r in self.results) / len(self.results)

    @property
    def steps_per_s(self) -> float:
        """Control steps simulated per wall-clock second (rendering and inference included)."""
        return sum(r.steps for r in self.results) / max(self.wall_s, 1e-9)

    def table(self, contract: Contract = DEFAULT) -> str:
        """The summary as an aligned text table."""
        low, high = self.success_ci
        n = len(self.results)
        rows = [("episodes", f"{n}"),
                ("success", (f"{self.successes} ({self.success_rate:.1%}, "
                             f"95% CI {low:.1%} - {high:.1%})"))]
        rows += [(f.value, f"{k} ({k / n:.1%})") for f, k in self.failures.items()]
        rows += [("mean length", (f"{self.mean_steps:.1f} steps "
                                  f"({self.mean_steps / contract.control_hz:.1f} s)")),
                 ("forced stops", f"{sum(r.forced_stops for r in self.results)}"),
                 ("speed", f"{self.steps_per_s:.1f} steps/s ({self.wall_s:.1f} s)")]
        return "\n".join(f"{name:<16}{value}" for name, value in rows)


class SimClock:
    """The runner's clock: sim time, set by the evaluation loop (never the wall clock).
    Read off the thread that made it (the policy's worker), it is ``inference_s`` later:
    an inference takes that long in sim time."""

    def __init__(self, inference_s: float = 0.0) -> None:
        self.now_s = 0.0
        self.inference_s = inference_s
        self._loop_thread = threading.get_ident()

    def __call__(self) -> float:
        if threading.get_ident() == self._loop_thread:
            return self.now_s
        return self.now_s + self.inference_s


def _filmed(env: ZimaEnv | PickEnv) -> list[int]:
    """The images a video shows, left to right, by index in the observation's images: the
    forward camera's newest; the pick task's grasp is seen by the wrist camera beside it."""
    c = env.contract
    newest = list(c.newest_images)
    if isinstance(env, PickEnv):
        return newest
    return [newest[c.cameras.index("forward")] if "forward" in c.cameras else newest[0]]


def _side_by_side(images: np.ndarray, indices: list[int]) -> np.ndarray:
    """The images at ``indices`` of [n_images, H, W, 3], left to right: [H, W * n, 3]."""
    return np.hstack([images[i] for i in indices])


def filmed_episode(env: ZimaEnv | PickEnv, model_path: Path, cfg: EvalConfig, seed: int,
                   path: Path | None) -> tuple[PolicyEpisode, str]:
    """:func:`policy_episode` run to its end and, with ``path``, filmed there: an MP4 of
    the images :func:`_filmed` picks, each frame labelled with the step."""
    if path is None:
        return asyncio.run(policy_episode(env, model_path, cfg, seed))
    c = env.contract
    size = (c.image_width * len(_filmed(env)), c.image_height)
    with VideoWriter(path, c.control_hz, size, scale=VIDEO_SCALE) as video:
        return asyncio.run(policy_episode(env, model_path, cfg, seed, video=video))


StepHook = Callable[[ZimaEnv, np.ndarray, Step], None]
"""Called each control step before the action is executed: (env, the observation's images
[n_images, H, W, 3], the step the runner chose: its action and, with an arm head, bins)."""


@dataclass(frozen=True, slots=True)
class EpisodeTiming:
    """When, in loop ticks since reset, the lock-step episode does what (module doc)."""

    tick_s: float  # the loop's period
    per_action: int  # loop ticks per action (one env step)
    lead: int  # a plan starts this many ticks before its chunk's first action (tick rule)
    ahead_s: float  # the frames a step's plan reads were captured this long before it ends
    delay_s: float  # ... and they reach the fusion this long after
    first_tick: int  # the first plan's: its result lands at step 1's start
    step_s: float  # an env step (one action period)
    paced: bool = False  # plans start on the frames as they arrive (runner.on_frame)

    @property
    def capture_s(self) -> float:
        """How long before its own end an env step captures frames: ``ahead_s`` when that
        is within the step; else (a slow policy, a remote round trip) the frames are for
        the next step's plan, captured ``ahead_s - step_s`` before this step ends."""
        return self.ahead_s if self.ahead_s <= self.step_s + 1e-9 else self.ahead_s - self.step_s

    @property
    def carried(self) -> bool:
        """The frames a step's plan reads come from the step before."""
        return self.ahead_s > self.step_s + 1e-9

    @classmethod
    def of(cls, cfg: EvalConfig, contract: Contract, physics_dt_s: float,
           latency_margin: float, seed: int) -> EpisodeTiming:
        tick_s = 1.0 / cfg.loop_hz
        per_action = round(cfg.loop_hz / contract.control_hz)
        if per_action < 1 or abs(per_action * tick_s - 1.0 / contract.control_hz) > 1e-9:
            raise ValueError(f"EvalConfig.loop_hz={cfg.loop_hz} must be a multiple of the "
                             f"contract's control_hz ({contract.control_hz})")
        lead = lead_ticks(cfg.latency_s, latency_margin, tick_s)  # the runner's own rule
        step_s = 1.0 / contract.control_hz
        first = per_action - min(max(1, math.ceil(cfg.latency_s / tick_s - 1e-9)), lead)
        delay_s = cfg.camera_delay_s if cfg.camera_fps is not None else 0.0

        def whole_steps(seconds: float) -> float:  # at or before the modelled moment
            return math.ceil(seconds / physics_dt_s - 1e-9) * physics_dt_s

        if cfg.camera_fps is not None:
            # The runtime plans on the driving camera's frame as it arrives, the last one
            # back in time (chunking's pacing): the frame is delivered the plan's lead
            # (latency times margin), the slack and the camera's phase against the ticks
            # (up to a frame interval less a tick) before the chunk starts.
            lead_s = cfg.latency_s * latency_margin + FRAME_SLACK_S
            ahead_s = whole_steps(delay_s + lead_s + _camera_phase_s(cfg, tick_s, seed))
            if ahead_s - delay_s < step_s - 1e-9:  # delivered inside its step
                return cls(tick_s, per_action, lead, ahead_s, delay_s, first, step_s, paced=True)
        # Frames taken as the plan starts (no camera model), or a plan slower than a step:
        # the tick rule, ``lead`` ticks ahead, on the newest frame then.
        ahead_s = whole_steps(lead * tick_s + _frame_age_s(cfg, seed))
        if lead >= per_action or ahead_s > 2 * step_s:
            raise ValueError(f"EvalConfig.latency_s={cfg.latency_s}: plans start "
                             f"{lead * tick_s} s ahead on frames {ahead_s:.3f} s old: a plan "
                             "must start within its action period, on frames at most two "
                             "periods old")
        return cls(tick_s, per_action, lead, ahead_s, delay_s, first, step_s)


async def policy_episode(env: ZimaEnv | PickEnv, model_path: Path, cfg: EvalConfig, seed: int,
                         *,
                         video: VideoWriter | None = None, on_step: StepHook | None = None,
                         on_plan: Callable[[PlanTrace], None] | None = None,
                         ) -> tuple[PolicyEpisode, str]:
    """One episode in lock-step (module doc); its result and the model's sha256.
    ``on_plan`` receives the runner's ``PlanTrace`` of each chunk, on the sim clock.
    A :class:`PickEnv` (the pick-up task) takes each step's arm bins too (module doc)."""
    c = env.contract
    world = env.world if isinstance(env, PickEnv) else env
    clock = SimClock(cfg.latency_s)
    fusion = FrameFusion(c)
    # latency_window=1: the runner's estimate is the modelled latency from its first plan
    # on; the one it measured with the wall clock (the load's warm-up) never counts.
    policy = PolicyConfig(model_path=model_path, execute_k=cfg.execute_k,
                          temperature=cfg.temperature, seed=seed, latency_window=1,
                          arm_temperature=cfg.arm_temperature)
    if cfg.server is not None:  # the robot's remote backend; a lost link fails the run
        policy = dataclasses.replace(policy, backend="remote", server=cfg.server,
                                     key_file=cfg.key_file, request_timeout_s=REMOTE_TIMEOUT_S)
    timing = EpisodeTiming.of(cfg, c, world.config.physics_dt_s, policy.latency_margin, seed)
    newest = c.newest_images
    filmed = _filmed(env)
    forced = 0
    arm_state = env.arm_state if isinstance(env, PickEnv) else None
    async with PolicyRunner(policy, c, fusion, clock=clock, on_plan=on_plan,
                            tick_s=timing.tick_s, arm_state=arm_state) as runner:
        images = env.reset(seed).images  # [n_images, H, W, 3]
        assert images is not None  # EvalConfig insists on rendering
        for cam, index in zip(c.cameras, newest, strict=True):
            fusion.push(cam, images[index], 0.0)
        step = Step(Action.STOP, "waiting for the first plan")  # step 0: none ticked yet
        carried: dict[str, np.ndarray] | None = None  # the last step's frames (timing.carried)
        tick = 0  # loop ticks since reset: the sim clock is tick * tick_s
        while True:
            if tick > 0:
                step = await _tick(runner, clock, tick * timing.tick_s)
            forced += step.reason is not None
            if video is not None:
                video.add(_side_by_side(images, filmed), _label(tick * timing.tick_s, step))
            if on_step is not None:
                on_step(world, images, step)
            if isinstance(env, PickEnv):
                arm = ARM_HOLD if step.arm is None else ArmAction(step.arm)
                result: StepResult | PickStepResult = env.step(
                    step.action, arm, capture_ahead_s=timing.capture_s)
            else:
                result = env.step(step.action, capture_ahead_s=timing.capture_s)
            if result.done:
                break
            images = result.observation.images
            assert images is not None
            captured = {cam: images[index] for cam, index in zip(c.cameras, newest, strict=True)}
            # Frames older than a step (module doc): this step's plan reads the last step's.
            # (The first step has none: the reset's frames serve its plan.)
            frames = (carried or {}) if timing.carried else captured
            carried = captured
            await _inside_step(runner, clock, fusion, timing, start=tick, frames=frames)
            tick += timing.per_action
        sha256 = runner.model_sha256
    if video is not None and result.observation.images is not None:
        video.add(_side_by_side(result.observation.images, filmed),
                  [f"t {result.time_s:5.1f} s", f"outcome: {result.outcome.value}",
                   *([f"failure: {result.failure.value}"] if result.failure else [])])
    failure = result.failure if isinstance(result.failure, Failure) else None
    return PolicyEpisode(seed, result.outcome, world.steps, result.time_s, forced,
                         failure), sha256


async def _inside_step(runner: PolicyRunner, clock: SimClock, fusion: FrameFusion,
                       timing: EpisodeTiming, *, start: int, frames: dict[str, np.ndarray]) -> None:
    """The loop's ticks inside the env step that began at tick ``start`` (the env holds
    its action): its ``frames`` reach the fusion once delivered, stamped with their
    capture time; the runner ticks from the first plan's tick on."""
    captured_s = (start + timing.per_action) * timing.tick_s - timing.ahead_s
    delivered_s = captured_s + timing.delay_s
    delivered = False

    async def deliver() -> None:
        for cam, image in frames.items():
            fusion.push(cam, image, captured_s)
        if timing.paced:  # the runtime's camera callback, between its ticks
            clock.now_s = delivered_s
            runner.on_frame(delivered_s)
            await runner.wait_plan()

    for i in range(start + 1, start + timing.per_action):
        if not delivered and i * timing.tick_s >= delivered_s - 1e-9:
            await deliver()
            delivered = True
        if i >= timing.first_tick:
            await _tick(runner, clock, i * timing.tick_s)
    if not delivered:  # in the step's last tick interval: before the next step's tick
        await deliver()


def _frame_age_s(cfg: EvalConfig, seed: int) -> float:
    """How old the newest frame is when a plan starts on a tick, this episode: the decode,
    and the camera's phase against the plans (drawn from the seed, apart from every other
    draw)."""
    if cfg.camera_fps is None:
        return 0.0
    return cfg.camera_delay_s + _camera_phase_s(cfg, 0.0, seed)


def _camera_phase_s(cfg: EvalConfig, tick_s: float, seed: int) -> float:
    """The camera's phase this episode: up to a frame interval less ``tick_s`` (the
    pacing's stretches take the rest), drawn from the seed apart from every other draw."""
    assert cfg.camera_fps is not None
    high = max(0.0, 1.0 / cfg.camera_fps - tick_s)
    return float(np.random.default_rng([seed, 0xCA3E]).uniform(0.0, 1.0)) * high


async def _tick(runner: PolicyRunner, clock: SimClock, now_s: float) -> Step:
    """One loop tick of the runner at ``now_s`` (sim time), its plan (if any) waited for."""
    clock.now_s = now_s
    step = runner.tick(now_s)
    await runner.wait_plan()
    return step


def _label(now_s: float, step: Step) -> list[str]:
    lines = [f"t {now_s:5.1f} s", step.action.name]
    if step.reason is not None:
        lines.append(step.reason[:40])
    return lines


Prepare = Callable[[ZimaEnv], None]
"""Applied once to each new environment of a task (before its first reset), e.g. the
suite's stress settings; must be picklable (a module-level function or a frozen dataclass
with ``__call__``) for worker processes."""


@dataclass(frozen=True, slots=True)
class EpisodeTask:
    """One policy episode to run: where, with which settings, and whether to film it."""

    scene: str
    env: EnvConfig
    seed: int
    video: Path | None = None  # an MP4 of the forward camera, or None (filmed_episode)
    prepare: Prepare | None = None  # tasks with equal (scene, env, prepare) share an env


class _Episodes:
    """Runs tasks in this process, keeping the last task's environment for the next."""

    def __init__(self, model_path: Path, cfg: EvalConfig, contract: Contract) -> None:
        self.model_path, self.cfg, self.contract = model_path, cfg, contract
        self.key: tuple[str, EnvConfig, Prepare | None] | None = None
        self.env: ZimaEnv | None = None

    def run(self, task: EpisodeTask) -> tuple[PolicyEpisode, str]:
        key = (task.scene, task.env, task.prepare)
        if self.env is None or key != self.key:
            self.close()
            self.env = ZimaEnv(task.scene, task.env, self.contract)
            if task.prepare is not None:
                task.prepare(self.env)
            self.key = key
        return filmed_episode(self.env, self.model_path, self.cfg, task.seed, task.video)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


_worker: _Episodes | None = None


def _init_worker(model_path: Path, cfg: EvalConfig, contract: Contract) -> None:
    global _worker  # noqa: PLW0603 -- one runner (and environment) per worker process
    _worker = _Episodes(model_path, cfg, contract)


def _run_worker(indexed: tuple[int, EpisodeTask]) -> tuple[int, PolicyEpisode, str]:
    assert _worker is not None, "pool initializer did not run"
    index, task = indexed
    return index, *_worker.run(task)


def run_episodes(model_path: Path, tasks: Sequence[EpisodeTask], cfg: EvalConfig,
                 contract: Contract = DEFAULT, *, workers: int = 1,
                 on_episode: Callable[[int, EpisodeTask, PolicyEpisode], None] | None = None,
                 ) -> tuple[list[PolicyEpisode], str]:
    """Run ``tasks`` with the policy at ``model_path`` (sampling: ``cfg.execute_k``,
    ``cfg.temperature``) in ``workers`` spawned processes: the results in task order and
    the model's sha256. ``on_episode(done, task, result)`` after each, in the order they
    finish. Each episode is a function of its task alone, so ``workers`` changes only the
    speed. A model the runtime refuses raises :class:`~zima.onboard.policy.ModelError`
    before any episode. (Spawned workers re-import the calling program's main module: a
    script needs the ``if __name__ == "__main__":`` guard.)"""
    from zima.onboard.policy import load_model  # noqa: PLC0415 -- onnxruntime

    sha256 = ""
    if cfg.server is None:
        load_model(model_path, contract)
    else:
        sha256 = asyncio.run(_check_server(cfg, contract))
    results: list[PolicyEpisode | None] = [None] * len(tasks)
    workers = max(1, min(workers, len(tasks)))

    def finished(index: int, result: PolicyEpisode) -> None:
        results[index] = result
        if on_episode is not None:
            on_episode(sum(r is not None for r in results), tasks[index], result)

    if workers == 1:
        runner = _Episodes(model_path, cfg, contract)
        try:
            for index, task in enumerate(tasks):
                result, sha256 = runner.run(task)
                finished(index, result)
        finally:
            runner.close()
    else:
        context = multiprocessing.get_context("spawn")  # an EGL context is not forked
        with context.Pool(workers, _init_worker, (model_path, cfg, contract)) as pool:
            for index, result, sha in pool.imap_unordered(_run_worker, list(enumerate(tasks))):
                finished(index, result)
                sha256 = sha
    done = [r for r in results if r is not None]
    assert len(done) == len(tasks)
    return done, sha256


async def _check_server(cfg: EvalConfig, contract: Contract) -> str:
    """Connect to ``cfg.server`` once as a robot would: its model's sha256, or the
    ``ModelError`` saying why it is refused (unreachable included)."""
    from zima.onboard.remote_policy import RemotePolicy  # noqa: PLC0415
    from zima.onboard.remote_protocol import read_key  # noqa: PLC0415

    assert cfg.server is not None
    assert cfg.key_file is not None
    remote = RemotePolicy(cfg.server, read_key(cfg.key_file.read_text(encoding="utf-8")),
                          contract)
    await remote.start(require=True)
    await remote.close()
    return remote.sha256


def evaluate(model_path: Path, cfg: EvalConfig, contract: Contract = DEFAULT,
             on_episode: Callable[[int, PolicyEpisode], None] | None = None) -> EvalSummary:
    """Run ``cfg.episodes`` episodes of ``cfg.scene`` (seeds ``cfg.seed`` on, the first
    ``cfg.videos`` filmed) in ``cfg.workers`` processes; ``on_episode(done, result)``
    after each. A model the runtime refuses raises
    :class:`~zima.onboard.policy.ModelError` before any episode."""
    start_s = time.perf_counter()
    tasks = [EpisodeTask(cfg.scene, cfg.env, seed, video=cfg.video_path(seed))
             for seed in range(cfg.seed, cfg.seed + cfg.episodes)]

    def progress(done: int, _task: EpisodeTask, result: PolicyEpisode) -> None:
        if on_episode is not None:
            on_episode(done, result)

    results, sha256 = run_episodes(model_path, tasks, cfg, contract, workers=cfg.workers,
                                   on_episode=progress)
    return EvalSummary(sha256, tuple(results), time.perf_counter() - start_s)
