"""The simulator's speed: physics real-time factor, and rendered frames per second.

    .venv/bin/python bench/sim_bench.py

Per scene: the physics real-time factor without rendering (the robot driving and
turning, with the base-follows-tracks update of every physics step; goal >= 100x), the
same for whole expert episodes (privileged checks included), and frames per second of
each contract camera at the contract's resolution through Mesa's software EGL, with and
without the image effects. Then demonstration collection (`zima sim collect`: rendering,
expert, trimming and episode files) with 1 and with 2 worker processes, and the speed-up
(2 workers include their start-up: spawning, importing MuJoCo, making the scene). Takes
about 40 s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zima.sim  # noqa: F401 -- sets MUJOCO_GL before mujoco is imported
from bench.results import record
from zima.contract import DEFAULT, Action
from zima.sim.collect import CollectConfig, CollectSummary, collect
from zima.sim.effects import EffectsConfig
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.expert import run_episode
from zima.sim.scenes import SCENES

PHYSICS_S = 20.0  # simulated seconds of driving per scene
GOAL_RTF = 100.0  # physics real-time factor without rendering
EXPERT_EPISODES = 20
FRAMES = 200  # rendered per camera
COLLECT_EPISODES = 16  # per worker count, arena


def physics_rtf(scene: str) -> float:
    """Simulated over wall-clock seconds, cycling FORWARD/LEFT/RIGHT/STOP, no rendering."""
    env = ZimaEnv(scene, EnvConfig(render=False))
    env.reset(0)
    steps = int(PHYSICS_S * DEFAULT.control_hz)
    cycle = (Action.FORWARD, Action.LEFT, Action.RIGHT, Action.STOP)
    start = time.perf_counter()
    for i in range(steps):
        command = DEFAULT.track_command(cycle[(i // 5) % 4])
        env.drive.set_tracks(env.data, command.left_mm_s, command.right_mm_s)
        env.drive.step(env.data, env.substeps)
    return PHYSICS_S / (time.perf_counter() - start)


def expert_rtf(scene: str) -> float:
    """Simulated over wall-clock seconds of whole expert episodes, no rendering."""
    env = ZimaEnv(scene, EnvConfig(render=False))
    start = time.perf_counter()
    sim_s = sum(run_episode(env, seed).time_s for seed in range(EXPERT_EPISODES))
    return sim_s / (time.perf_counter() - start)


def render_fps(scene: str, camera: str, effects: EffectsConfig) -> float:
    """Frames per second of one camera (with the given effects), robot standing still."""
    env = ZimaEnv(scene, EnvConfig(effects=effects))
    env.reset(0)
    env.render(camera)  # warm-up: textures upload on the first frame
    start = time.perf_counter()
    for _ in range(FRAMES):
        env.render(camera)
    fps = FRAMES / (time.perf_counter() - start)
    env.close()
    return fps


def collection(workers: int) -> CollectSummary:
    """Collect COLLECT_EPISODES arena demonstrations into a temporary folder."""
    with tempfile.TemporaryDirectory() as out:
        return collect(Path(out), CollectConfig("arena", COLLECT_EPISODES, workers=workers))


def main() -> None:
    """Print one table."""
    size = f"{DEFAULT.image_width}x{DEFAULT.image_height}"
    header = f"{'scene':<8} {'metric':<44} {'value':>9}"
    print(header)
    print("-" * len(header))
    for scene in SCENES:
        rtf = physics_rtf(scene)
        print(f"{scene:<8} {'physics real-time factor (no rendering)':<44} {rtf:>8.0f}x")
        record(f"sim {scene}", "physics real-time factor (no rendering)", f"{rtf:.0f}x",
               f">= {GOAL_RTF:.0f}x", rtf >= GOAL_RTF)
        print(f"{scene:<8} {'expert episodes real-time factor':<44} {expert_rtf(scene):>8.0f}x")
        for camera in DEFAULT.cameras:
            for label, fx in (("plain", EffectsConfig.off()),
                              ("all effects", EffectsConfig.always())):
                metric = f"{camera} camera {size} fps, {label}"
                fps = render_fps(scene, camera, fx)
                print(f"{scene:<8} {metric:<44} {fps:>9.0f}")
                if camera == DEFAULT.cameras[0] and label == "all effects":
                    record(f"sim {scene}", metric, f"{fps:.0f}")
    runs = {w: collection(w) for w in (1, 2)}
    for w, run in runs.items():
        print(f"{'arena':<8} {f'demonstrations/hour, {w} worker(s)':<44} "
              f"{run.demos_per_hour:>9.0f}")
        # Every control step renders each contract camera once (start-up included in wall_s).
        rendered = sum(e.steps for e in run.episodes) * len(DEFAULT.cameras) / run.wall_s
        print(f"{'arena':<8} {f'collection: rendered fps, {w} worker(s) total':<44} "
              f"{rendered:>9.0f}")
        print(f"{'arena':<8} {f'collection: rendered fps per worker ({w})':<44} "
              f"{rendered / w:>9.0f}")
        record("sim arena", f"collection rendered fps, {w} worker(s): total / per worker",
               f"{rendered:.0f} / {rendered / w:.0f}")
    one = runs[1]
    speedup = runs[2].demos_per_hour / one.demos_per_hour
    print(f"{'arena':<8} {'collection speed-up, 2 workers over 1':<44} {speedup:>8.2f}x")
    record("sim arena", "demonstrations/hour, 1 worker", f"{one.demos_per_hour:.0f}")
    record("sim arena", "collection speed-up, 2 workers over 1", f"{speedup:.2f}x")
    kept = max(1, len(one.kept))
    print(f"{'arena':<8} {'frames per episode (after trimming)':<44} {one.frames / kept:>9.1f}")
    size_mb = sum(e.size_bytes for e in one.kept) / 1e6 / kept
    print(f"{'arena':<8} {'episode file size, MB':<44} {size_mb:>9.2f}")


if __name__ == "__main__":
    main()
