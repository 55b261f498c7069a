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
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from zima.contract import DEFAULT, Action, Contract
from zima.episodes import EpisodeInfo, EpisodeWriter, IdleTrim, idle_mask
from zima.sim.env import EnvConfig, Outcome, ZimaEnv
from zima.sim.expert import Expert


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

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.workers < 1:
            raise ValueError("collect: episodes and workers must be at least 1")
        if not 0.0 <= self.noise < 1.0:
            raise ValueError(f"collect: noise={self.noise} must be in [0, 1)")


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


def episode_path(out_dir: Path, scene: str, seed: int) -> Path:
    """Where the episode of ``seed`` is written."""
    return out_dir / f"{scene}_seed{seed:06d}.h5"


def record_episode(env: ZimaEnv, seed: int, out_dir: Path, cfg: CollectConfig) -> EpisodeStats:
    """Run the expert for one episode of ``env`` and write it (if kept); in this process."""
    c = env.contract
    ticks_to_mm_s = 1000.0 * c.control_hz / env.config.robot.ticks_per_m
    newest = [i * c.image_history + c.image_history - 1 for i in range(len(c.cameras))]
    expert = Expert(env)
    observation = env.reset(seed)
    expert.reset(seed)
    frames: list[np.ndarray] = []  # per step [n_cameras, H, W, 3]
    actions: list[int] = []  # executed
    labels: list[int] = []  # the expert's (differs from executed under noise)
    stamps: list[float] = []
    rng = np.random.default_rng([seed, 0xDA27])
    burst: list[int] = []  # noise actions still to execute
    speeds: list[tuple[float, float]] = []  # mm/s over the previous step
    ticks = prev = env.drive.encoders(env.data)
    while True:
        assert observation.images is not None  # the env renders
        frames.append(observation.images[newest])
        ticks = env.drive.encoders(env.data)
        speeds.append(((ticks[0] - prev[0]) * ticks_to_mm_s, (ticks[1] - prev[1]) * ticks_to_mm_s))
        prev = ticks
        stamps.append(env.time_s)
        label = expert.act()
        if not burst and label is not Action.STOP and rng.uniform() < cfg.noise:
            wrong = [a for a in Action if a is not label]
            burst = [int(rng.choice(wrong))] * int(rng.integers(1, 4))
        action = Action(burst.pop()) if burst and label is not Action.STOP else label
        if label is Action.STOP:
            burst = []  # at the target: never push it off
        actions.append(int(action))
        labels.append(int(label))
        result = env.step(action)
        observation = result.observation
        if result.done:
            break
    outcome = result.outcome
    if outcome is not Outcome.SUCCESS and not cfg.keep_failures:
        return EpisodeStats(seed, outcome.value, len(actions), 0, (0,) * c.n_actions, None, 0)
    keep = idle_mask(np.array(actions), cfg.trim)  # [T] bool
    path = episode_path(out_dir, env.scene, seed)
    info = EpisodeInfo("sim", env.scene, seed, outcome.value, steps_recorded=len(actions),
                       idle_trim=cfg.trim.to_json())
    with EpisodeWriter(path, info, c, overwrite=True, flush_every=32) as writer:
        for t in np.flatnonzero(keep):
            writer.append(dict(zip(c.cameras, frames[t], strict=True)), actions[t], stamps[t],
                          expert_action=labels[t] if cfg.noise > 0 else None,
                          telemetry={"track_left_mm_s": speeds[t][0],
                                     "track_right_mm_s": speeds[t][1]})
    counts = np.bincount(np.array(labels)[keep], minlength=c.n_actions)
    return EpisodeStats(seed, outcome.value, len(actions), int(keep.sum()),
                        tuple(int(n) for n in counts), path, path.stat().st_size)


# --- workers ------------------------------------------------------------------------------

_worker: tuple[ZimaEnv, Path, CollectConfig] | None = None


def _init_worker(out_dir: Path, cfg: CollectConfig) -> None:
    global _worker  # noqa: PLW0603 -- one environment per worker process, made once
    _worker = (ZimaEnv(cfg.scene, cfg.env, cfg.contract), out_dir, cfg)


def _run_worker(seed: int) -> EpisodeStats:
    assert _worker is not None, "pool initializer did not run"
    env, out_dir, cfg = _worker
    return record_episode(env, seed, out_dir, cfg)


# --- collection ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CollectSummary:
    """All episodes of a run (by seed) and its wall-clock time."""

    episodes: tuple[EpisodeStats, ...]
    wall_s: float
    workers: int
    action_names: tuple[str, ...]

    @property
    def kept(self) -> tuple[EpisodeStats, ...]:
        """The episodes written to files."""
        return tuple(e for e in self.episodes if e.path is not None)

    @property
    def success_rate(self) -> float:
        """Fraction of all episodes the expert finished successfully."""
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
        lines = (
            (f"episodes: {len(kept)} kept of {len(self.episodes)}, expert success "
             f"{self.success_rate:.1%}, {self.wall_s:.1f} s with {self.workers} worker(s)"),
            (f"frames: {frames} ({frames / per:.1f} per episode), {size_mb:.1f} MB "
             f"({size_mb / per:.2f} MB per episode)"),
            f"actions: {actions}",
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

    if workers == 1:
        env = ZimaEnv(cfg.scene, cfg.env, cfg.contract)
        try:
            for seed in seeds:
                finished(record_episode(env, seed, out_dir, cfg))
        finally:
            env.close()
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(workers, _init_worker, (out_dir, cfg)) as pool:
            for stats in pool.imap_unordered(_run_worker, seeds):
                finished(stats)
    wall_s = time.perf_counter() - start
    return CollectSummary(tuple(sorted(done, key=lambda e: e.seed)), wall_s, workers,
                          cfg.contract.actions)


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
