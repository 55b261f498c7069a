"""`zima sim`: the simulator's scenes and the scripted expert.

    zima sim scenes                                   list the registered scenes
    zima sim expert --scene arena --episodes 100      the expert's success rate
    zima sim expert --scene room --episodes 20 --video out.mp4
                                                      ... and a video of the first episode
    zima sim collect --scene arena --episodes 200 --workers 2 --out data/arena
                                                      demonstrations as episode files
    zima sim eval policy.onnx --scene arena --episodes 50 --video-dir out --videos 3
                                                      a policy's success rate (95% CI),
                                                      failure modes and videos

MuJoCo is imported inside ``run`` so that `zima --help` stays fast.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
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
    ev = sub.add_parser("eval", help="run an ONNX policy through the onboard runtime in the sim")
    ev.add_argument("model", type=Path, help="the policy's ONNX file")
    ev.add_argument("--scene", default="arena", help="a registered scene (default: arena)")
    ev.add_argument("--episodes", type=int, default=20, help="episodes to run (default 20)")
    ev.add_argument("--seed", type=int, default=0,
                    help="seed of the first episode; episode i uses seed + i (default 0)")
    ev.add_argument("--video-dir", type=Path, help="folder of the episodes' MP4 videos")
    ev.add_argument("--videos", type=int, default=1,
                    help="film the first K episodes when --video-dir is given (default 1)")
    ev.add_argument("--temperature", type=float, default=1.0,
                    help="sampling temperature, 0 = argmax (default 1.0, the runtime's)")
    ev.add_argument("--execute-k", type=int, default=4,
                    help="actions executed per chunk (default 4, the runtime's)")
    ev.add_argument("--time-limit", type=float,
                    help="episode time limit, s (default: the environment's)")


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
    handlers = {"collect": _collect, "eval": _eval, "expert": _expert}
    return handlers[args.action](args)


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


def _eval(args: argparse.Namespace) -> int:
    from zima.contract import DEFAULT  # noqa: PLC0415
    from zima.onboard.policy import ModelError  # noqa: PLC0415
    from zima.sim.env import EnvConfig, Outcome  # noqa: PLC0415
    from zima.sim.evaluate import EpisodeResult, EvalConfig, evaluate  # noqa: PLC0415

    try:
        env = EnvConfig()
        if args.time_limit is not None:
            if not args.time_limit > 0:
                raise ValueError("--time-limit must be positive")
            env = dataclasses.replace(env, time_limit_s=args.time_limit)
        cfg = EvalConfig(scene=args.scene, episodes=args.episodes, seed=args.seed,
                         execute_k=args.execute_k, temperature=args.temperature,
                         video_dir=args.video_dir, videos=args.videos, env=env)
        if not (1 <= args.execute_k <= DEFAULT.chunk_len and args.temperature >= 0):
            raise ValueError(f"--execute-k must be in 1..{DEFAULT.chunk_len} "
                             "and --temperature at least 0")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    successes = 0

    def progress(done: int, result: EpisodeResult) -> None:
        nonlocal successes
        successes += result.outcome is Outcome.SUCCESS
        _progress(done, args.episodes, successes / done)

    try:
        summary = evaluate(args.model, cfg, on_episode=progress)
    except ModelError as exc:
        print(f"error: the runtime refuses this model: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print(f"{args.model} (sha256 {summary.model_sha256[:12]}) on scene {args.scene}, seeds "
          f"{args.seed}..{args.seed + args.episodes - 1}, execute_k {args.execute_k}, "
          f"temperature {args.temperature}")
    print(summary.table())
    if args.video_dir is not None and args.videos > 0:
        print(f"videos: {args.video_dir}/episode_<seed>.mp4 "
              f"({min(args.videos, args.episodes)} episodes)")
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
