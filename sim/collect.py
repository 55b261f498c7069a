"""Demonstrations: the scripted expert's episodes, rendered and written as episode files.

    zima sim collect --scene arena --episodes 200 --workers 2 --out data/arena

Episode ``i`` uses seed ``seed + i`` whatever the number of workers, and an episode is a
function of its seed alone (:meth:`ZimaEnv.reset`), so a data set is reproducible and the
workers only change how fast it comes. Each worker is a *spawned* process owning one
:class:`ZimaEnv`: MuJoCo's EGL context must be created in the process that renders, and
a forked copy of a live context is undefined. One worker runs in this process. (Spawned
workers re-import the calling program's main module: a script that calls :func:`collect`
needs the usual ``if __name__ == "__main__":`` guard.)

Each step stores the newest frame of every contract camera (with the episode's image
effects), the expert's action, the simulated time and the tracks' speeds measured from
the encoders over the previous step (what the robot's recorder stores too). Idle frames
are trimmed (:func:`zima.episodes.idle_mask`); only successful episodes are kept unless
``keep_failures``.

With ``policy`` (DAgger, Ross et al. 2011): an ONNX policy drives instead of the expert,
through the onboard runtime exactly as in ``zima sim eval`` (:mod:`zima.sim.evaluate`), and
the expert labels every step with the action it would take there (``expert_action``).
Behaviour cloning on clean demonstrations sees only the expert's own states; these
episodes show the states the policy really reaches (drifted off course, overshot, stopped
short) with the way back from each. Every episode is kept, failures above all, and idle
runs are trimmed by the labels (a policy standing still where the expert would drive is
what the data must show).

The pick-up task (``task="pick"``, :mod:`zima.sim.pick`): the pick expert
(:mod:`zima.sim.pick_expert`) plays :class:`~zima.sim.pick.PickEnv` under the pick
contract, and each step also stores its arm action (``arm_action``: the jog bins) and the
commanded tool pose and opening the policy sees (``arm_state``). A step counts as idle
for trimming only when the tracks STOP and the arm holds (the arm works while the robot
stands). Its ``noise`` perturbs the arm as well as the tracks: at each step, with that
probability, 1-3 steps of random x, y and z bins are executed instead of the expert's
(its pitch, roll and gripper kept), every step labelled with the expert's bins
(``expert_arm_action``): the data then shows the way back from a misplaced gripper to the
cube, and while driving back to the stowed pose (the expert's), so that an arm out of
place does not by itself mean "stop and grasp". ``policy`` (DAgger) is the find task's
only.
"""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from zima.contract import DEFAULT, Action, Contract
from zima.episodes import EpisodeInfo, EpisodeWriter, IdleTrim, Outcome, idle_mask
from zima.onboard.arm_policy import hold_bins
from zima.onboard.policy_runner import Step
from zima.sim.env import EnvConfig, Failure, ZimaEnv
from zima.sim.expert import Expert
from zima.sim.pick import ArmAction, PickConfig, PickEnv, PickFailure
from zima.sim.pick_expert import PickExpert
from zima.sim.seeded_pool import run_seeds

TASKS = ("find", "pick")


@dataclass(frozen=True, slots=True)
class CollectConfig:
    """One collection run."""

    scene: str = "arena"
    episodes: int = 100
    # Worker processes, one environment each.
    workers: int = 1
    # Seed of the first episode; episode i uses seed + i.
    seed: int = 0
    # Keep failed episodes too (their outcome attribute says how they failed).
    keep_failures: bool = False
    # Idle (STOP) frames removed before writing.
    trim: IdleTrim = field(default_factory=IdleTrim)
    # Environment settings (tests shorten time_limit_s).
    env: EnvConfig = field(default_factory=EnvConfig)
    contract: Contract = DEFAULT
    # DART-style noise injection: at each step, with this probability, a burst of 1-3
    # random actions other than the expert's is executed instead; every step is still
    # labelled with the expert's action (``expert_action``). The data then shows how to
    # recover from mistakes, and the executed-action history stops predicting the label
    # (a policy trained on clean demonstrations learns to repeat its last action).
    noise: float = 0.0
    # DAgger: this ONNX policy drives (sampling as the runtime does), the expert labels.
    policy: Path | None = None
    execute_k: int = 4  # the runtime's partial chunk execution, for the policy
    temperature: float = 1.0  # the runtime's sampling temperature, for the policy
    # "find" (ZimaEnv and its expert) or "pick" (PickEnv and the pick expert; the contract
    # must have an arm head, zima.contract.PICK).
    task: str = "find"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"collect: task {self.task!r} must be one of {list(TASKS)}")
        if (self.task == "pick") != bool(self.contract.arm_dims):
            raise ValueError("collect: the pick task records under a contract with an arm "
                             "head (zima.contract.PICK), the find task under one without")
        if self.episodes < 1 or self.workers < 1:
            raise ValueError("collect: episodes and workers must be at least 1")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"collect: noise={self.noise} must be in [0, 1)")
        if self.policy is not None and self.noise > 0:
            raise ValueError("collect: noise is for the expert's own episodes, not with a policy")
        if self.policy is not None and not self.policy.is_file():
            raise ValueError(f"collect: policy {self.policy} is not a file")


@dataclass(frozen=True, slots=True)
class EpisodeStats:
    """What one episode gave."""

    seed: int
    outcome: str
    steps: int  # control steps the expert took
    frames: int  # steps written after trimming; 0 when the episode was discarded
    action_counts: tuple[int, ...]  # written steps per action, in contract order
    path: Path | None  # the episode file; None when discarded
    size_bytes: int
    failure: str | None = None  # why it failed (zima.sim.env.Failure's value); None: success


def episode_path(out_dir: Path, scene: str, seed: int) -> Path:
    """Where the episode of ``seed`` is written."""
    return out_dir / f"{scene}_seed{seed:06d}.h5"


class _Steps:
    """What one episode records, step by step, before it is written."""

    def __init__(self, env: ZimaEnv) -> None:
        c = env.contract
        self.env = env
        self.newest = list(c.newest_images)  # a list: numpy fancy-indexes it
        self.ticks_to_mm_s = 1000.0 * c.control_hz / env.config.robot.ticks_per_m
        self.frames: list[np.ndarray] = []  # per step [n_cameras, H, W, 3]
        self.actions: list[int] = []  # executed
        self.labels: list[int] = []  # the expert's (differs from executed under noise)
        self.stamps: list[float] = []
        self.speeds: list[tuple[float, float]] = []  # mm/s over the previous step
        self.prev = env.drive.encoders(env.data)
        # The pick task's, per step: the arm's bins and the commanded tool pose and opening.
        self.arm: list[tuple[int, ...]] = []  # executed
        self.arm_labels: list[tuple[int, ...]] = []  # the expert's
        self.arm_states: list[np.ndarray] = []

    def add_arm(self, bins: tuple[int, ...], label: tuple[int, ...], state: np.ndarray) -> None:
        """The arm's part of the step :meth:`add` records next: its executed bins, the
        expert's, and the arm_state [6] the policy saw."""
        self.arm.append(bins)
        self.arm_labels.append(label)
        self.arm_states.append(state)

    def trim_by(self, *, labels: bool) -> np.ndarray:
        """The actions idle trimming looks at [T]: the labels or the executed actions; in
        the pick task a step whose arm moves counts as moving (a stand-in FORWARD)."""
        actions = np.array(self.labels if labels else self.actions)
        if not self.arm:
            return actions
        hold = self.env.contract.arm_hold_bin
        arm = self.arm_labels if labels else self.arm
        moves = np.array([any(b != hold for b in bins) for bins in arm])  # [T]
        return np.where(moves, int(Action.FORWARD), actions)

    def add(self, images: np.ndarray, action: int, label: int) -> None:
        """One step: the observation's images [n_images, H, W, 3] (its newest frame of each
        camera is stored), the executed action and the expert's label."""
        env = self.env
        self.frames.append(images[self.newest])
        ticks = env.drive.encoders(env.data)
        self.speeds.append(((ticks[0] - self.prev[0]) * self.ticks_to_mm_s,
                            (ticks[1] - self.prev[1]) * self.ticks_to_mm_s))
        self.prev = ticks
        self.stamps.append(env.time_s)
        self.actions.append(int(action))
        self.labels.append(int(label))

    def write(self, seed: int, outcome: Outcome, out_dir: Path, cfg: CollectConfig,
              *, labelled: bool, trim_by: np.ndarray, driver: str,
              failure: Failure | PickFailure | None = None) -> EpisodeStats:
        """Write the episode (when kept): idle runs of ``trim_by`` [T] trimmed; the labels
        stored as ``expert_action`` when ``labelled``."""
        env, c = self.env, self.env.contract
        if outcome is not Outcome.SUCCESS and not cfg.keep_failures:
            return EpisodeStats(seed, outcome.value, len(self.actions), 0, (0,) * c.n_actions,
                                None, 0, failure.value if failure else None)
        keep = idle_mask(trim_by, cfg.trim)  # [T] bool
        path = episode_path(out_dir, env.scene, seed)
        info = EpisodeInfo("sim", env.scene, seed, outcome.value,
                           steps_recorded=len(self.actions), idle_trim=cfg.trim.to_json())
        with EpisodeWriter(path, info, c, overwrite=True, flush_every=32) as writer:
            writer.set_attributes({"driver": driver})
            for t in np.flatnonzero(keep):
                writer.append(dict(zip(c.cameras, self.frames[t], strict=True)),
                              self.actions[t], self.stamps[t],
                              expert_action=self.labels[t] if labelled else None,
                              telemetry={"track_left_mm_s": self.speeds[t][0],
                                         "track_right_mm_s": self.speeds[t][1]},
                              arm_action=self.arm[t] if self.arm else None,
                              expert_arm_action=(self.arm_labels[t] if self.arm and labelled
                                                 else None),
                              arm_state=self.arm_states[t].tolist() if self.arm else None)
        counts = np.bincount(np.array(self.labels)[keep], minlength=c.n_actions)
        return EpisodeStats(seed, outcome.value, len(self.actions), int(keep.sum()),
                            tuple(int(n) for n in counts), path, path.stat().st_size,
                            failure.value if failure else None)


def record_episode(env: ZimaEnv | PickEnv, seed: int, out_dir: Path,
                   cfg: CollectConfig) -> EpisodeStats:
    """Run one episode of ``env`` (the expert drives, or ``cfg.policy``) and write it (if
    kept); in this process."""
    if cfg.policy is not None:
        return _record_policy_episode(env, seed, out_dir, cfg, cfg.policy)
    if isinstance(env, PickEnv):
        return _record_pick_episode(env, seed, out_dir, cfg)
    expert = Expert(env)
    observation = env.reset(seed)
    expert.reset(seed)
    steps = _Steps(env)
    rng = np.random.default_rng([seed, 0xDA27])
    burst: list[int] = []  # noise actions still to execute
    while True:
        assert observation.images is not None  # the env renders
        label = expert.act()
        if not burst and label is not Action.STOP and rng.uniform() < cfg.noise:
            wrong = [a for a in Action if a is not label]
            burst = [int(rng.choice(wrong))] * int(rng.integers(1, 4))
        action = Action(burst.pop()) if burst and label is not Action.STOP else label
        if label is Action.STOP:
            burst = []  # at the target: never push it off
        steps.add(observation.images, action, label)
        result = env.step(action)
        observation = result.observation
        if result.done:
            break
    return steps.write(seed, result.outcome, out_dir, cfg, labelled=cfg.noise > 0,
                       trim_by=np.array(steps.actions), driver="expert", failure=result.failure)


def _record_policy_episode(env: ZimaEnv | PickEnv, seed: int, out_dir: Path,
                           cfg: CollectConfig, policy: Path) -> EpisodeStats:
    """DAgger: ``policy`` drives one episode through the runtime, the expert labels it
    (in the pick task its arm too: the arm's executed bins are the policy's)."""
    from zima.sim.evaluate import EvalConfig, policy_episode  # noqa: PLC0415 -- onnxruntime

    picker = PickExpert(env, labelling=True) if isinstance(env, PickEnv) else None
    expert = Expert(env) if isinstance(env, ZimaEnv) else None
    for demonstrator in (picker, expert):
        if demonstrator is not None:
            demonstrator.reset(seed)
    steps: _Steps | None = None

    def label(world: ZimaEnv, images: np.ndarray, step: Step) -> None:
        nonlocal steps
        if steps is None:  # the first step: the env has just been reset
            steps = _Steps(world)
        last = Action(steps.actions[-1]) if steps.actions else None
        if expert is not None:
            steps.add(images, step.action, expert.act(last))
            return
        assert picker is not None
        drive, arm = picker.act(last_action=last)
        steps.add_arm(step.arm or hold_bins(picker.env.contract), arm.bins,
                      picker.env.arm_state())
        steps.add(images, step.action, drive)

    run = EvalConfig(cfg.scene, episodes=1, seed=seed, execute_k=cfg.execute_k,
                     temperature=cfg.temperature, env=cfg.env)
    result, sha256 = asyncio.run(policy_episode(env, policy, run, seed, on_step=label))
    assert steps is not None, "an episode has at least one step"
    failure = env.failure(result.outcome) if isinstance(env, PickEnv) else result.failure
    return steps.write(seed, result.outcome, out_dir, cfg, labelled=True,
                       trim_by=steps.trim_by(labels=True), driver=f"policy {sha256[:12]}",
                       failure=failure)


def _record_pick_episode(env: PickEnv, seed: int, out_dir: Path,
                         cfg: CollectConfig) -> EpisodeStats:
    """The pick expert's episode of ``seed``, its arm's actions and state recorded."""
    expert = PickExpert(env)
    observation = env.reset(seed)
    expert.reset(seed)
    steps = _Steps(env.world)
    rng = np.random.default_rng([seed, 0xA53])
    refused, burst = False, 0  # burst: noise steps still to execute
    while True:
        assert observation.images is not None  # the env renders
        label, arm_label = expert.act(refused)
        drive, arm = label, arm_label
        if burst or rng.uniform() < cfg.noise:
            burst = burst - 1 if burst else int(rng.integers(0, 3))
            xyz = tuple(int(b) for b in rng.integers(0, env.contract.n_arm_levels, 3))
            arm = ArmAction(xyz + arm_label.bins[3:])
            if label is not Action.STOP:  # never push a cube in reach away
                drive = Action(int(rng.choice([a for a in Action if a is not label])))
        # The state the frames were taken in, before this step's jog.
        steps.add_arm(arm.bins, arm_label.bins, env.arm_state())
        steps.add(observation.images, drive, label)
        result = env.step(drive, arm)
        refused, observation = result.arm_refused, result.observation
        if result.done:
            break
    return steps.write(seed, result.outcome, out_dir, cfg, labelled=cfg.noise > 0,
                       trim_by=steps.trim_by(labels=False), driver="pick expert",
                       failure=result.failure)


# --- workers ------------------------------------------------------------------------------

_Worker = tuple[ZimaEnv | PickEnv, Path, CollectConfig]


def make_env(cfg: CollectConfig) -> ZimaEnv | PickEnv:
    """The environment of ``cfg.task``."""
    if cfg.task == "pick":
        return PickEnv(cfg.scene, PickConfig(env=cfg.env), cfg.contract)
    return ZimaEnv(cfg.scene, cfg.env, cfg.contract)


def _setup(arg: tuple[Path, CollectConfig]) -> _Worker:
    out_dir, cfg = arg
    return make_env(cfg), out_dir, cfg


def _record(worker: _Worker, seed: int) -> EpisodeStats:
    env, out_dir, cfg = worker
    return record_episode(env, seed, out_dir, cfg)


def _close(worker: _Worker) -> None:
    worker[0].close()


# --- collection ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CollectSummary:
    """All episodes of a run (by seed) and its wall-clock time."""

    episodes: tuple[EpisodeStats, ...]
    wall_s: float
    workers: int
    action_names: tuple[str, ...]
    driver: str = "expert"  # who drove: "expert", or "policy" (DAgger)
    failure_classes: tuple[str, ...] = tuple(f.value for f in Failure)  # the task's

    @property
    def kept(self) -> tuple[EpisodeStats, ...]:
        """The episodes written to files."""
        return tuple(e for e in self.episodes if e.path is not None)

    @property
    def success_rate(self) -> float:
        """Fraction of all episodes the driver (expert or policy) finished successfully."""
        ok = sum(e.outcome == Outcome.SUCCESS for e in self.episodes)
        return ok / max(1, len(self.episodes))

    @property
    def frames(self) -> int:
        """Steps written, all files together."""
        return sum(e.frames for e in self.kept)

    @property
    def action_counts(self) -> tuple[int, ...]:
        """Written steps per action."""
        return tuple(int(n) for n in np.sum([e.action_counts for e in self.episodes], axis=0))

    @property
    def demos_per_hour(self) -> float:
        """Episode files written per hour of wall-clock time."""
        return len(self.kept) * 3600.0 / max(self.wall_s, 1e-9)

    def report(self) -> str:
        """The summary printed at the end of `zima sim collect`."""
        kept, frames = self.kept, self.frames
        size_mb = sum(e.size_bytes for e in kept) / 1e6
        per = max(1, len(kept))
        counts = self.action_counts
        actions = ", ".join(f"{name} {n} ({n / max(1, frames):.1%})"
                            for name, n in zip(self.action_names, counts, strict=True))
        wall_s = max(self.wall_s, 1e-9)
        failures = collections.Counter(e.failure for e in self.episodes)
        lines = (
            (f"episodes: {len(kept)} kept of {len(self.episodes)}, {self.driver} success "
             f"{self.success_rate:.1%}, {self.wall_s:.1f} s with {self.workers} worker(s)"),
            (f"frames: {frames} ({frames / per:.1f} per episode), {size_mb:.1f} MB "
             f"({size_mb / per:.2f} MB per episode)"),
            f"actions: {actions}",
            "failures: " + ", ".join(f"{f} {failures[f]}" for f in self.failure_classes),
            (f"throughput: {self.demos_per_hour:.0f} demonstrations/hour, "
             f"{frames / wall_s:.0f} frames/s written"),
        )
        return "\n".join(lines)


def collect(out_dir: Path, cfg: CollectConfig,
            on_episode: Callable[[EpisodeStats], None] | None = None) -> CollectSummary:
    """Run ``cfg.episodes`` expert episodes in ``cfg.workers`` processes into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seeds = range(cfg.seed, cfg.seed + cfg.episodes)
    workers = min(cfg.workers, cfg.episodes)
    done: list[EpisodeStats] = []
    start = time.perf_counter()

    def finished(stats: EpisodeStats) -> None:
        done.append(stats)
        if on_episode is not None:
            on_episode(stats)

    for stats in run_seeds(_setup, _record, _close, (out_dir, cfg), seeds, workers=workers):
        finished(stats)
    wall_s = time.perf_counter() - start
    failures = PickFailure if cfg.task == "pick" else Failure
    return CollectSummary(tuple(sorted(done, key=lambda e: e.seed)), wall_s, workers,
                          cfg.contract.actions, "expert" if cfg.policy is None else "policy",
                          tuple(f.value for f in failures))


class Progress:
    """A one-line progress bar on ``stream``: episodes done, rate, ETA, success so far."""

    def __init__(self, total: int, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.stream, self.clock = total, stream or sys.stderr, clock
        self.start = clock()
        self.done = self.ok = 0

    def __call__(self, stats: EpisodeStats) -> None:
        """Count one finished episode and redraw the line."""
        self.done += 1
        self.ok += stats.outcome == Outcome.SUCCESS
        elapsed = self.clock() - self.start
        rate = self.done / max(elapsed, 1e-9)
        eta = (self.total - self.done) / rate
        width = 24
        bar = "#" * (width * self.done // self.total)
        self.stream.write(f"\r[{bar:<{width}}] {self.done}/{self.total} episodes "
                          f"{rate * 60:.1f}/min ETA {int(eta) // 60}:{int(eta) % 60:02d} "
                          f"success {self.ok / self.done:.0%} ")
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()
