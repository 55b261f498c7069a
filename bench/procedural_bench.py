"""Procedural worlds: the scripted expert's success, what a reset costs, how fast they render.

    .venv/bin/python bench/procedural_bench.py [--episodes 200] [--first-seed 0]

The expert (privileged state, no rendering) runs ``--episodes`` seeds of every scene:
success with its 95% Wilson interval (goal on `procedural`: >= 97%) and the failures by
outcome, and for `procedural` by kind of world (target partly hidden or not; near,
middle or far). Then the CPU time of a reset (drawing the world and writing it into the
one compiled model), and the forward camera's frames per second against `arena`'s (the
pool's parked bodies and the extra lights are drawn too). About 2 minutes for 200
episodes per scene on one core.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import zima.sim  # noqa: F401 -- sets MUJOCO_GL before mujoco is imported
from bench.results import record
from zima.episodes import Outcome
from zima.sim.effects import EffectsConfig
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.evaluate import wilson_interval
from zima.sim.expert import run_episode
from zima.sim.scenes import SCENES

GOAL_SUCCESS = 0.97
RESETS = 200
FRAMES = 100


def _band(distance_m: float) -> str:
    return "near" if distance_m < 1.5 else ("middle" if distance_m < 3.0 else "far")


def expert(scene: str, seeds: range) -> None:
    """Print (and record) the expert's success over ``seeds`` and its failures."""
    env = ZimaEnv(scene, EnvConfig(render=False))
    kinds: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    outcomes: Counter[Outcome] = Counter()
    start = time.perf_counter()
    for seed in seeds:
        result = run_episode(env, seed)
        outcomes[result.outcome] += 1
        d = env.domain
        assert d is not None
        kind = (f"{'hidden' if d.partly_hidden else 'clear'}/"
                f"{_band(math.dist(d.target_xy, d.robot_xy_yaw[:2]))}")
        kinds[kind] += 1
        if result.outcome is not Outcome.SUCCESS:
            failed[kind] += 1
            print(f"  {scene} seed {seed}: {result.outcome} after {result.time_s:.1f} s ({kind})")
    wall_s = time.perf_counter() - start
    n, k = len(seeds), outcomes[Outcome.SUCCESS]
    low, high = wilson_interval(k, n)
    print(f"{scene:<11} expert success {k}/{n} = {k / n:.1%} [95% CI {low:.1%}, {high:.1%}]"
          f"  ({wall_s:.0f} s)")
    print(f"{'':<11} outcomes: " + ", ".join(f"{o} {c}" for o, c in outcomes.most_common()))
    if scene == "procedural":
        print(f"{'':<11} worlds (failed/all): " + ", ".join(
            f"{kind} {failed[kind]}/{count}" for kind, count in sorted(kinds.items())))
    ok = k / n >= GOAL_SUCCESS if scene == "procedural" else None
    record(f"sim {scene}", f"expert success, {n} seeds (95% CI)",
           f"{k / n:.1%} [{low:.1%}, {high:.1%}]",
           f">= {GOAL_SUCCESS:.0%}" if ok is not None else "", ok)


def reset_cost_ms(scene: str) -> np.ndarray:
    """CPU milliseconds of each of RESETS resets (no rendering)."""
    env = ZimaEnv(scene, EnvConfig(render=False))
    costs = []
    for seed in range(RESETS):
        start = time.process_time()
        env.reset(seed)
        costs.append(time.process_time() - start)
    return np.array(costs) * 1e3


def render_fps(scene: str) -> float:
    """Frames per second of the forward camera, no effects, over a few worlds."""
    env = ZimaEnv(scene, EnvConfig(effects=EffectsConfig.off()))
    frames, busy_s = 0, 0.0
    for seed in range(4):
        env.reset(seed)
        env.render("forward")  # warm-up
        start = time.perf_counter()
        for _ in range(FRAMES // 4):
            env.render("forward")
        busy_s += time.perf_counter() - start
        frames += FRAMES // 4
    env.close()
    return frames / busy_s


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200, help="seeds per scene (200)")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed (0)")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.episodes)
    for scene in SCENES:
        expert(scene, seeds)
    for scene in SCENES:
        ms = reset_cost_ms(scene)
        print(f"{scene:<11} reset CPU ms: mean {ms.mean():.1f}, median {np.median(ms):.1f}, "
              f"p95 {np.percentile(ms, 95):.1f}, max {ms.max():.1f}")
        if scene == "procedural":
            record("sim procedural", "reset CPU time, mean / p95",
                   f"{ms.mean():.1f} / {np.percentile(ms, 95):.1f} ms")
    arena, procedural = render_fps("arena"), render_fps("procedural")
    print(f"forward camera fps (no effects): arena {arena:.0f}, procedural {procedural:.0f}")
    record("sim procedural", "forward camera fps (arena's)", f"{procedural:.0f} ({arena:.0f})")


if __name__ == "__main__":
    main()
