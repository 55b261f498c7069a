"""`zima sim`: the simulator's scenes and the scripted expert.

    zima sim scenes                                   list the registered scenes
    zima sim expert --scene arena --episodes 100      the expert's success rate
    zima sim expert --scene room --episodes 20 --video out.mp4
                                                      ... and a video of the first episode
    zima sim pick-expert --scene arena --episodes 100 --seed 1000000
                                                      the pick-up task's expert (sim/pick.py)
    zima sim collect --scene arena --episodes 200 --workers 2 --out data/arena
                                                      demonstrations as episode files
    zima sim collect --policy runs/demo/policy.onnx --episodes 100 --seed 1000 --out data/dagger1
                                                      DAgger: the policy drives, the expert
                                                      labels every step
    zima sim eval policy.onnx --scene arena --episodes 50 --video-dir out --videos 3
                                                      a policy's success rate (95% CI),
                                                      failure modes and videos
    zima sim suite policy.onnx --episodes 10 --workers 2 --out build/suite
                                                      the robustness suite: every scene and
                                                      one stress axis at a time, one table,
                                                      suite.png, a video of each failure kind
    zima sim run --episodes 5 --model models/zima-demo.onnx --out build/demo
                                                      hardware in the loop: the onboard
                                                      runtime drives the MuJoCo robot through
                                                      the firmware on the emulated board

MuJoCo is imported inside ``run`` so that `zima --help` stays fast.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from zima.sim.video import CODECS

if TYPE_CHECKING:  # MuJoCo loads only for the commands that run it
    from zima.sim.env import EnvConfig


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
    _add_pick_expert(sub)
    collect = sub.add_parser("collect", help="record expert demonstrations as episode files")
    collect.add_argument("--scene", default="arena", help="a registered scene (default: arena)")
    collect.add_argument("--task", choices=("find", "pick"), default="find",
                         help="find: drive to the cube; pick: the pick-up task's expert, arm "
                              "actions recorded under the pick contract (default find)")
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
    collect.add_argument("--target-distance", type=float, nargs=2, metavar=("MIN_M", "MAX_M"),
                         help="fixed scenes: start the robot this far from the target, m "
                              "(default: at least 0.8 m; e.g. 0.3 0.6 for pick episodes that "
                              "are mostly grasp)")
    collect.add_argument("--noise", type=float, default=0.0,
                         help="chance per step of a 1-3 step burst of random actions, labelled "
                              "with the expert's (DART; default 0: clean demonstrations)")
    collect.add_argument("--policy", type=Path, metavar="MODEL.onnx",
                         help="DAgger: this policy drives through the onboard runtime and the "
                              "expert labels each step; every episode is kept")
    collect.add_argument("--execute-k", type=int,
                         help="with --policy: actions executed per chunk (default 4 for "
                              "find, 1 for pick)")
    collect.add_argument("--temperature", type=float, default=1.0,
                         help="with --policy: sampling temperature (default 1.0)")
    ev = sub.add_parser("eval", help="run an ONNX policy through the onboard runtime in the sim")
    ev.add_argument("model", type=Path, nargs="?",
                    help="the policy's ONNX file (not with --server)")
    ev.add_argument("--server", metavar="HOST:PORT",
                    help="evaluate the model a policy server serves (`zima serve`), through "
                         "the robot's remote backend")
    ev.add_argument("--key-file", type=Path,
                    help="with --server: the shared key file")
    ev.add_argument("--latency-ms", type=float,
                    help="inference latency modelled in sim time, ms (default 10; with "
                         "--server: set it to the round trip to model it)")
    ev.add_argument("--scene", default="arena", help="a registered scene (default: arena)")
    ev.add_argument("--task", choices=("find", "pick"), default="find",
                    help="pick: the pick-up task, a model with an arm head (default find)")
    ev.add_argument("--arm-temperature", type=float, default=0.0,
                    help="pick: the arm's sampling temperature (default 0: argmax, the "
                         "runtime's)")
    ev.add_argument("--episodes", type=int, default=20, help="episodes to run (default 20)")
    ev.add_argument("--seed", type=int, default=0,
                    help="seed of the first episode; episode i uses seed + i (default 0)")
    ev.add_argument("--video-dir", type=Path, help="folder of the episodes' MP4 videos")
    ev.add_argument("--videos", type=int, default=1,
                    help="film the first K episodes when --video-dir is given (default 1)")
    _policy_episode_arguments(ev)
    ev.add_argument("--workers", type=int, default=1,
                    help="worker processes, one environment each (default 1; the results "
                         "do not depend on it)")
    _add_suite(sub)
    hil = sub.add_parser("run", help="hardware in the loop: runtime, emulated MCU and MuJoCo "
                                     "in real time")
    hil.add_argument("--scene", default="arena", help="a registered scene (default: arena)")
    hil.add_argument("--episodes", type=int, default=5, help="episodes to run (default 5)")
    hil.add_argument("--model", type=Path, default=Path("models/zima-demo.onnx"),
                     help="the policy's ONNX file (default models/zima-demo.onnx)")
    hil.add_argument("--out", type=Path, default=Path("build/demo"),
                     help="folder of the video and the telemetry plot (default build/demo)")
    hil.add_argument("--seed", type=int, default=100_000,
                     help="seed of the first episode; episode i uses seed + i (default 100000)")
    hil.add_argument("--mqtt", choices=("auto", "off"), default="auto",
                     help="auto: telemetry through a local Mosquitto if one can start")
    hil.add_argument("--realtime-factor", type=float, default=1.0,
                     help="emulated seconds per wall second (default 1.0)")
    hil.add_argument("--time-limit", type=float, default=40.0,
                     help="episode time limit, emulated s (default 40)")
    hil.add_argument("--drive", choices=("policy", "operator"), default="policy",
                     help="policy: autonomous episodes; operator: a person drives (with "
                          "--web or MQTT teleop) and records demonstrations")
    hil.add_argument("--temperature", type=float, default=1.0,
                     help="policy sampling temperature, 0 = argmax (default 1.0, the runtime's)")
    hil.add_argument("--web", type=int, metavar="PORT", default=None,
                     help="serve the teleoperation console on 127.0.0.1:PORT")


def _add_pick_expert(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Arguments of `zima sim pick-expert`."""
    pick = sub.add_parser("pick-expert", help="run the pick-up task's scripted expert and "
                          "print its success rate (zima.sim.pick)")
    pick.add_argument("--scene", default="arena", help="a registered scene (default: arena)")
    pick.add_argument("--episodes", type=int, default=20, help="episodes to run (default 20)")
    pick.add_argument("--seed", type=int, default=0, help="seed of the first episode")


def _add_suite(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Arguments of `zima sim suite`."""
    su = sub.add_parser("suite", help="the robustness suite: a policy over every scene and one "
                                      "stress axis at a time (table, PNG, failure videos)")
    su.add_argument("model", type=Path, help="the policy's ONNX file")
    su.add_argument("--episodes", type=int, default=10,
                    help="episodes per cell, seeds 1000000 on (default 10: a quick look; "
                         "100 for figures to report)")
    su.add_argument("--workers", type=int, default=1,
                    help="worker processes, one environment each (default 1)")
    su.add_argument("--out", type=Path, default=Path("build/suite"),
                    help="folder of suite.json, suite.png and failures/ (default build/suite)")
    su.add_argument("--axis-scene", default="arena",
                    help="the scene the stress axes run in (default arena)")
    su.add_argument("--axes", default=None,
                    help="comma-separated rows to run: scene and/or light, distance, "
                         "distractors, similarity, pitch, fov, blur (default: all)")
    su.add_argument("--baseline", type=Path, metavar="SUITE.json",
                    help="a previous run's suite.json: its success rates beside these")
    su.add_argument("--no-videos", action="store_true",
                    help="do not film the first failure of each class")
    _policy_episode_arguments(su)


def run(args: argparse.Namespace) -> int:
    """List scenes, run the expert or collect demonstrations."""
    from zima.sim.scenes import SCENES

    if args.action == "scenes":
        for name, builder in SCENES.items():
            print(f"{name:<11} {builder().summary()}")
        return 0
    if args.action == "suite":
        return _suite(args)
    if args.scene not in SCENES:
        print(f"error: unknown scene {args.scene!r}; known: {', '.join(SCENES)}", file=sys.stderr)
        return 2
    if getattr(args, "video", None) is not None and args.video.suffix not in CODECS:
        print(f"error: --video must end in one of {', '.join(CODECS)}", file=sys.stderr)
        return 2
    if args.episodes < 1:
        print("error: --episodes must be at least 1", file=sys.stderr)
        return 2
    handlers = {"collect": _collect, "eval": _eval, "expert": _expert, "run": _run,
                "pick-expert": _pick_expert}
    return handlers[args.action](args)


def _collect(args: argparse.Namespace) -> int:
    from zima.contract import CONTRACTS
    from zima.episodes import IdleTrim
    from zima.sim.collect import CollectConfig, Progress, collect
    from zima.sim.env import EnvConfig
    from zima.sim.pick import PickConfig

    try:
        _check_sampling(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.policy is not None:
        from zima.onboard.policy import ModelError, load_model

        try:
            # A refused model: one line, before any worker.
            load_model(args.policy, CONTRACTS[args.task])
        except (ModelError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    try:
        env = PickConfig().env if args.task == "pick" else EnvConfig()
        if args.target_distance is not None:
            from zima.sim.scenes import SCENES

            if SCENES[args.scene]().pool is not None:
                raise ValueError(f"--target-distance is for the fixed scenes; {args.scene!r} "
                                 f"draws its target's distance from its world bands")
            lo, hi = args.target_distance
            env = dataclasses.replace(env, domain=dataclasses.replace(
                env.domain, min_target_dist_m=lo, max_target_dist_m=hi))
        cfg = CollectConfig(scene=args.scene, episodes=args.episodes, workers=args.workers,
                            seed=args.seed, keep_failures=args.keep_failures or (
                                args.policy is not None),
                            trim=IdleTrim(max_run=args.max_idle), noise=args.noise,
                            policy=args.policy, execute_k=args.execute_k,
                            temperature=args.temperature, task=args.task,
                            contract=CONTRACTS[args.task], env=env)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = collect(args.out, cfg, Progress(args.episodes))
    driver = "expert" if args.policy is None else f"policy {args.policy}, labelled by the expert"
    print(f"{args.out}: scene {args.scene}, seeds {args.seed}..{args.seed + args.episodes - 1}, "
          f"driven by {driver}")
    print(summary.report())
    return 0


def _check_sampling(args: argparse.Namespace) -> None:
    """A policy's --execute-k and --temperature (eval, suite, and collect --policy), the
    task's default filled in: ValueError."""
    from zima.contract import CONTRACTS, DEFAULT
    from zima.onboard.policy_runner import default_execute_k

    if args.execute_k is None:  # as the runtime: 4 for driving, 1 with an arm head
        args.execute_k = default_execute_k(CONTRACTS[getattr(args, "task", "find")])
    if not (1 <= args.execute_k <= DEFAULT.chunk_len and args.temperature >= 0):
        raise ValueError(f"--execute-k must be in 1..{DEFAULT.chunk_len} "
                         "and --temperature at least 0")


def _policy_episode_arguments(parser: argparse.ArgumentParser) -> None:
    """How a policy drives an episode (eval, suite): sampling, chunking, time limit."""
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="sampling temperature, 0 = argmax (default 1.0, the runtime's)")
    parser.add_argument("--execute-k", type=int,
                        help="actions executed per chunk (default 4, the runtime's; with "
                             "--task pick 1)")
    parser.add_argument("--time-limit", type=float,
                        help="episode time limit, s (default: the environment's)")


def _env_config(args: argparse.Namespace) -> EnvConfig:
    """The environment with its --time-limit (eval, suite): ValueError when not positive."""
    from zima.sim.env import EnvConfig

    env = EnvConfig()
    if args.time_limit is not None:
        if not args.time_limit > 0:
            raise ValueError("--time-limit must be positive")
        env = dataclasses.replace(env, time_limit_s=args.time_limit)
    return env


def _eval(args: argparse.Namespace) -> int:
    from zima.episodes import Outcome
    from zima.onboard.policy import ModelError
    from zima.sim.evaluate import EvalConfig, PolicyEpisode, evaluate
    from zima.sim.pick import PickConfig
    from zima.sim.pick_eval import evaluate_pick

    try:
        env = _env_config(args)
        if (args.model is None) == (args.server is None):
            raise ValueError("give the model's ONNX file or --server HOST:PORT (one of them)")
        if args.server is not None and args.key_file is None:
            raise ValueError("--server needs --key-file")
        remote = {} if args.server is None else {"server": args.server,
                                                 "key_file": args.key_file}
        latency = {} if args.latency_ms is None else {"latency_s": args.latency_ms / 1e3}
        if args.task == "pick" and args.time_limit is None:
            env = PickConfig().env
        _check_sampling(args)
        cfg = EvalConfig(scene=args.scene, episodes=args.episodes, seed=args.seed,
                         execute_k=args.execute_k, temperature=args.temperature,
                         video_dir=args.video_dir, videos=args.videos, env=env,
                         workers=args.workers, arm_temperature=args.arm_temperature,
                         **remote, **latency)
        if args.task == "pick" and args.server is not None:
            raise ValueError("--task pick runs a model file, not --server")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    successes = 0

    def progress(done: int, result: PolicyEpisode) -> None:
        nonlocal successes
        successes += result.outcome is Outcome.SUCCESS
        _progress(done, args.episodes, successes / done)

    try:
        if args.task == "pick":  # the pick-up task: its own report (zima.sim.pick_eval)
            report = evaluate_pick(args.model, cfg, progress=_progress)
            print(f"\n{args.model}: execute_k {args.execute_k}, temperature "
                  f"{args.temperature}, arm temperature {args.arm_temperature}\n"
                  f"{report.text()}")
            _print_videos(args)
            return 0
        summary = evaluate(args.model or Path("remote"), cfg, on_episode=progress)
    except ModelError as exc:
        print(f"error: the runtime refuses this model: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # the key file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    source = args.model if args.server is None else f"server {args.server}"
    print(f"{source} (sha256 {summary.model_sha256[:12]}) on scene {args.scene}, seeds "
          f"{args.seed}..{args.seed + args.episodes - 1}, execute_k {args.execute_k}, "
          f"temperature {args.temperature}")
    print(summary.table())
    _print_videos(args)
    return 0


def _print_videos(args: argparse.Namespace) -> None:
    """Where eval's --video-dir put the filmed episodes, if it did."""
    if args.video_dir is not None and args.videos > 0:
        print(f"videos: {args.video_dir}/episode_<seed>.mp4 "
              f"({min(args.videos, args.episodes)} episodes)")


def _suite(args: argparse.Namespace) -> int:
    from zima.onboard.policy import ModelError
    from zima.sim.suite import AXES_ALL, SuiteConfig, load_baseline, run_suite

    try:
        env = _env_config(args)
        _check_sampling(args)
        axes = tuple(a.strip() for a in args.axes.split(",")) if args.axes else AXES_ALL
        cfg = SuiteConfig(episodes=args.episodes, axis_scene=args.axis_scene, axes=axes,
                          env=env, execute_k=args.execute_k, temperature=args.temperature,
                          workers=args.workers, out_dir=args.out,
                          film_failures=not args.no_videos)
        baseline = load_baseline(args.baseline) if args.baseline is not None else None
    except (ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def progress(done: int, total: int) -> None:
        _progress(done, total, 0.0, show_rate=False)

    try:
        suite = run_suite(args.model, cfg, on_episode=progress)
    except ModelError as exc:
        print(f"error: the runtime refuses this model: {exc}", file=sys.stderr)
        return 1
    print(file=sys.stderr)
    print(suite.table(baseline))
    print(f"written: {args.out / 'suite.json'}, {args.out / 'suite.png'}")
    for failure, video in suite.videos.items():
        print(f"first {failure.value}: {video}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from zima.episodes import Outcome
    from zima.sim.evaluate import wilson_interval
    from zima.sim.hil import HilEpisode, HilSession, run_episodes
    from zima.sim.hil_config import HilConfig, HilError
    from zima.sim.hil_telemetry import plot_telemetry

    try:
        cfg = HilConfig(scene=args.scene, episodes=args.episodes, seed=args.seed,
                        model_path=args.model, out_dir=args.out, mqtt=args.mqtt,
                        realtime_factor=args.realtime_factor, time_limit_s=args.time_limit,
                        drive=args.drive, web_port=args.web, temperature=args.temperature)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def report(line: str) -> None:
        print(line, flush=True)

    def progress(done: int, result: HilEpisode) -> None:
        report(f"episode {done}/{args.episodes} seed {result.seed}: {result.outcome.value:<10} "
               f"after {result.time_s:5.1f} s (wall {result.wall_s:5.1f} s)"
               + (f"; autonomy re-engaged {result.reengaged}x after link losses"
                  if result.reengaged else ""))

    async def main() -> tuple[list[HilEpisode], HilSession]:
        async with HilSession(cfg, report=report) as hil:
            report(f"running {args.episodes} episodes of {args.scene}, model {args.model} "
                   f"(sha256 {(hil.runtime.model_sha256 or '')[:12]}), seeds "
                   f"{args.seed}..{args.seed + args.episodes - 1}")
            return await run_episodes(hil, progress), hil

    start = time.perf_counter()
    try:
        results, hil = asyncio.run(main())
    except HilError as exc:  # a part did not start (or died): say which
        print(f"error: {exc}", file=sys.stderr)
        return 1
    wall_s = time.perf_counter() - start
    successes = sum(r.outcome is Outcome.SUCCESS for r in results)
    low, high = wilson_interval(successes, len(results))
    counts = collections.Counter(r.outcome.value for r in results)
    print(f"success {successes}/{len(results)} ({successes / len(results):.0%}, 95% CI "
          f"{low:.0%} - {high:.0%}); {', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}"
          f"; {wall_s:.1f} s")
    loop = hil.runtime.loop_stats()
    print(f"runtime control loop: {loop.rate_hz:.1f} Hz, period p99 {loop.period_p99_ms:.1f} ms, "
          f"{loop.overruns} overruns; MCU link losses: {hil.link_losses}")
    for video in hil.world.videos:
        print(f"video: {video}")
    print(f"plot: {plot_telemetry(hil.telemetry, args.out / 'telemetry.png')}")
    return 0


def _expert(args: argparse.Namespace) -> int:
    from zima.contract import Action
    from zima.sim.env import EnvConfig, Failure, StepResult, ZimaEnv
    from zima.sim.expert import run_episode, success_rate

    start = time.perf_counter()
    results = []
    failures = collections.Counter[Failure]()

    def note(_env: ZimaEnv, _action: Action, result: StepResult) -> None:
        if result.failure is not None:
            failures[result.failure] += 1

    env = ZimaEnv(args.scene, EnvConfig(render=False))
    try:
        for i in range(args.episodes):
            results.append(run_episode(env, args.seed + i, on_step=note))
            _progress(i + 1, args.episodes, success_rate(results))
    finally:
        env.close()
    print(file=sys.stderr)
    counts = collections.Counter(r.outcome.value for r in results)
    print(f"scene {args.scene}: success {success_rate(results):.1%} over {len(results)} "
          f"episodes ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
          f"{time.perf_counter() - start:.1f} s")
    print(f"failures: {', '.join(f'{f.value} {failures[f]}' for f in Failure)}")
    if args.video is not None:
        frames = _write_video(args.scene, args.seed, args.video)
        print(f"video: {args.video} ({frames} frames, seed {args.seed})")
    return 0


def _pick_expert(args: argparse.Namespace) -> int:
    from zima.sim.pick_expert import evaluate_pick_expert

    report = evaluate_pick_expert(args.scene, args.episodes, args.seed, progress=_progress)
    print(file=sys.stderr)
    print(report.text())
    return 0


def _progress(done: int, total: int, rate: float, *, show_rate: bool = True) -> None:
    width = 30
    bar = "#" * (width * done // total)
    print(f"\r[{bar:<{width}}] {done}/{total}" + (f" success {rate:.0%}" if show_rate else ""),
          end="", file=sys.stderr, flush=True)


def _write_video(scene: str, seed: int, path: Path) -> int:
    """Render one expert episode's forward camera into ``path``; return the frame count."""
    from zima.contract import Action
    from zima.sim.env import StepResult, ZimaEnv
    from zima.sim.expert import run_episode
    from zima.sim.video import VideoWriter

    env = ZimaEnv(scene)
    c = env.contract
    newest = c.cameras.index("forward") * c.image_history + c.image_history - 1
    try:
        with VideoWriter(path, c.control_hz, (c.image_width, c.image_height)) as video:

            def record(_env: ZimaEnv, _action: Action, result: StepResult) -> None:
                images = result.observation.images  # [n_images, H, W, 3] RGB
                assert images is not None  # the env renders
                video.add(images[newest])

            run_episode(env, seed, on_step=record)
    finally:
        env.close()
    return video.frames
