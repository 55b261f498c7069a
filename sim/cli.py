"""`zima sim`: the simulator's scenes and the scripted expert.

    zima sim scenes                                   list the registered scenes
    zima sim expert --scene arena --episodes 100      the expert's success rate
    zima sim expert --scene room --episodes 20 --video out.mp4
                                                      ... and a video of the first episode
    zima sim collect --scene arena --episodes 200 --workers 2 --out data/arena
                                                      demonstrations as episode files

MuJoCo is imported inside ``run`` so that `zima --help` stays fast.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

# Video codecs by file suffix: both are in opencv-python-headless's own FFmpeg (avc1/H.264
# is not, so no .mp4 with H.264).
CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `zima sim`."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("scenes", help="list the registered scenes")
    expert = sub.add_parser("expert", help="run the scripted expert and print its success rate")
    expert.add_argument("--scene", default="arena", help="a registered scene (default: arena)")
    expert.add_argument("--episodes", type=int, default=20, help="episodes to run (default 20)")
    expert.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    expert.add_argument("--video", type=Path,
                        help=f"write the first episode's forward camera ({', '.join(CODECS)})")
    collect = sub.add_parser("collect", help="record expert demonstrations as episode files")
    collect.add_argument("--scene", default="arena", help="a registered scene (default: arena)")
    collect.add_argument("--episodes", type=int, default=100, help="episodes to run (default 100)")
    collect.add_argument("--workers", type=int, default=1,
                         help="worker processes, one environment each (default 1)")
    collect.add_argument("--out", type=Path, required=True, help="folder of the episode files")
    collect.add_argument("--seed", type=int, default=0,
                         help="seed of the first episode; episode i uses seed + i (default 0)")
    collect.add_argument("--keep-failures", action="store_true",
                         help="also write episodes the expert failed (outcome attribute)")
    collect.add_argument("--max-idle", type=int, default=3,
                         help="longest run of STOP frames kept between motions (default 3)")


def run(args: argparse.Namespace) -> int:
    """List scenes, run the expert or collect demonstrations."""
    from zima.sim.scenes import SCENES  # noqa: PLC0415 -- keeps `zima --help` fast

    if args.action == "scenes":
        for name, builder in SCENES.items():
            layout = builder()
            print(f"{name:<8} {2 * layout.half_x_m:.1f} m x {2 * layout.half_y_m:.1f} m, "
                  f"{len(layout.blocks)} furniture/clutter blocks, "
                  f"up to {layout.max_distractors} distractor cubes")
        return 0
    if args.scene not in SCENES:
        print(f"error: unknown scene {args.scene!r}; known: {', '.join(SCENES)}", file=sys.stderr)
        return 2
    if getattr(args, "video", None) is not None and args.video.suffix not in CODECS:
        print(f"error: --video must end in one of {', '.join(CODECS)}", file=sys.stderr)
        return 2
    if args.episodes < 1:
        print("error: --episodes must be at least 1", file=sys.stderr)
        return 2
    if args.action == "collect":
        return _collect(args)
    return _expert(args)


def _collect(args: argparse.Namespace) -> int:
    from zima.episodes import IdleTrim  # noqa: PLC0415
    from zima.sim.collect import CollectConfig, Progress, collect  # noqa: PLC0415

    if args.workers < 1 or args.max_idle < 0:
        print("error: --workers must be at least 1 and --max-idle at least 0", file=sys.stderr)
        return 2
    cfg = CollectConfig(scene=args.scene, episodes=args.episodes, workers=args.workers,
                        seed=args.seed, keep_failures=args.keep_failures,
                        trim=IdleTrim(max_run=args.max_idle))
    summary = collect(args.out, cfg, Progress(args.episodes))
    print(f"{args.out}: scene {args.scene}, seeds {args.seed}..{args.seed + args.episodes - 1}")
    print(summary.report())
    return 0


def _expert(args: argparse.Namespace) -> int:
    from zima.sim.env import EnvConfig, ZimaEnv  # noqa: PLC0415
    from zima.sim.expert import run_episode, success_rate  # noqa: PLC0415

    start = time.perf_counter()
    results = []
    env = ZimaEnv(args.scene, EnvConfig(render=False))
    try:
        for i in range(args.episodes):
            results.append(run_episode(env, args.seed + i))
            _progress(i + 1, args.episodes, success_rate(results))
    finally:
        env.close()
    print(file=sys.stderr)
    counts = collections.Counter(r.outcome.value for r in results)
    print(f"scene {args.scene}: success {success_rate(results):.1%} over {len(results)} "
          f"episodes ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
          f"{time.perf_counter() - start:.1f} s")
    if args.video is not None:
        frames = _write_video(args.scene, args.seed, args.video)
        print(f"video: {args.video} ({frames} frames, seed {args.seed})")
    return 0


def _progress(done: int, total: int, rate: float) -> None:
    width = 30
    bar = "#" * (width * done // total)
    print(f"\r[{bar:<{width}}] {done}/{total} success {rate:.0%}", end="", file=sys.stderr,
          flush=True)


def _write_video(scene: str, seed: int, path: Path) -> int:
    """Render one expert episode's forward camera into ``path``; return the frame count."""
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from zima.contract import Action  # noqa: PLC0415
    from zima.sim.env import StepResult, ZimaEnv  # noqa: PLC0415
    from zima.sim.expert import run_episode  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    env = ZimaEnv(scene)
    c = env.contract
    fourcc = cv2.VideoWriter.fourcc(*CODECS[path.suffix])
    writer = cv2.VideoWriter(str(path), fourcc, c.control_hz, (c.image_width, c.image_height))
    if not writer.isOpened():
        env.close()
        raise RuntimeError(f"OpenCV cannot write {path} with codec {CODECS[path.suffix]}")
    frames = 0

    newest = c.cameras.index("forward") * c.image_history + c.image_history - 1

    def record(_env: ZimaEnv, _action: Action, result: StepResult) -> None:
        nonlocal frames
        images = result.observation.images  # [n_images, H, W, 3] RGB
        assert images is not None  # the env renders
        writer.write(np.ascontiguousarray(images[newest, :, :, ::-1]))  # OpenCV wants BGR
        frames += 1

    try:
        run_episode(env, seed, on_step=record)
    finally:
        writer.release()
        env.close()
    return frames
