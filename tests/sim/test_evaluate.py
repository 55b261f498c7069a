"""`zima sim eval`: a policy through the onboard runtime in lock-step with the simulator."""

import argparse
import asyncio
import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.onboard.onnx_models import build_model
from zima.contract import DEFAULT, Action, TrackCommand
from zima.episodes import Outcome
from zima.onboard.chunking import FRAME_SLACK_S, ActionQueue
from zima.onboard.policy_runner import PlanTrace
from zima.sim import cli
from zima.sim.env import EnvConfig, Failure, ZimaEnv
from zima.sim.evaluate import (
    EpisodeTiming,
    EvalConfig,
    evaluate,
    policy_episode,
    wilson_interval,
)

SHORT = EnvConfig(time_limit_s=2.0)  # 20 control steps per episode


def _table_model(path: Path, logits: list[float]) -> Path:
    table = np.tile(np.array(logits, np.float32), (DEFAULT.chunk_len, 1))  # [chunk, actions]
    return build_model(path, DEFAULT, kind="table", table=table)


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    (0, 10, 0.0, 0.2775),  # upper bound z^2 / (n + z^2)
    (5, 10, 0.2366, 0.7634),
    (8, 10, 0.4902, 0.9433),
    (10, 10, 0.7225, 1.0),
    (1, 20, 0.0089, 0.2361),
    (0, 0, 0.0, 1.0),  # no episodes: nothing known
])
def test_wilson_interval_matches_known_values(successes: int, n: int, low: float,
                                              high: float) -> None:
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize("n", range(1, 60))
def test_wilson_interval_is_exact_at_the_ends(n: int) -> None:
    """No success: the lower bound is 0, not 1e-17 (a plot's error bar would be negative)."""
    assert wilson_interval(0, n)[0] == 0.0
    assert wilson_interval(n, n)[1] == 1.0


def test_wilson_interval_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)


def _first_seeds(*, in_view: bool, n: int) -> list[int]:
    """The first ``n`` arena seeds whose target starts in (or out of) the forward view."""
    env, seeds = ZimaEnv("arena", EnvConfig(render=False)), list[int]()
    for seed in range(100):
        env.reset(seed)
        if env.target_in_view("forward") == in_view and len(seeds) < n:
            seeds.append(seed)
    env.close()
    return seeds


def test_always_stop_is_never_found_or_stopped_short(tmp_path: Path) -> None:
    """Standing still where it starts: the target in view from the start is stopped short,
    one out of view is never found; both are time-outs."""
    stop = [5.0 if a is Action.STOP else 0.0 for a in Action]
    model = _table_model(tmp_path / "stop.onnx", stop)
    seen, unseen = _first_seeds(in_view=True, n=1)[0], _first_seeds(in_view=False, n=1)[0]
    summaries = {seed: evaluate(model, EvalConfig(episodes=1, seed=seed, temperature=0,
                                                  env=SHORT)) for seed in (seen, unseen)}
    for summary in summaries.values():
        assert summary.success_rate == 0
        assert summary.outcomes == {Outcome.TIMEOUT: 1}
        assert [r.steps for r in summary.results] == [20]
        assert summary.success_ci == pytest.approx(wilson_interval(0, 1))
    assert summaries[seen].results[0].failure is Failure.STOPPED_SHORT
    assert summaries[unseen].results[0].failure is Failure.NEVER_FOUND
    assert summaries[seen].failures == {Failure.COLLISION: 0, Failure.WRONG_OBJECT: 0,
                                        Failure.NEVER_FOUND: 0, Failure.FOUND_AND_LOST: 0,
                                        Failure.STOPPED_SHORT: 1}
    rows = dict(line.split(maxsplit=1) for line in summaries[unseen].table().splitlines())
    assert rows["never_found"] == "1 (100.0%)"
    assert rows["stopped_short"] == rows["collision"] == "0 (0.0%)"


def test_always_forward_ends_at_a_wall_or_a_cube(tmp_path: Path) -> None:
    """Driving straight on in the walled arena: every episode ends by a contact, and the
    failure class follows the outcome."""
    forward = _table_model(tmp_path / "forward.onnx",
                           [5.0 if a is Action.FORWARD else 0.0 for a in Action])
    summary = evaluate(forward, EvalConfig(episodes=3, temperature=0,
                                           env=EnvConfig(time_limit_s=15.0)))
    classes = {Outcome.COLLISION: Failure.COLLISION, Outcome.WRONG_CUBE: Failure.WRONG_OBJECT}
    assert [classes.get(r.outcome) for r in summary.results] == [
        r.failure for r in summary.results]
    assert summary.failures[Failure.COLLISION] >= 1
    assert sum(summary.failures.values()) == 3


def test_workers_give_the_same_results(tmp_path: Path) -> None:
    model = _table_model(tmp_path / "uniform.onnx", [0.0] * DEFAULT.n_actions)  # sampled
    cfg = EvalConfig(episodes=3, seed=11, temperature=1.0, env=SHORT)
    one = evaluate(model, cfg)
    two = evaluate(model, dataclasses.replace(cfg, workers=2))
    assert two.results == one.results
    assert two.model_sha256 == one.model_sha256 != ""


def test_the_same_seeds_give_the_same_results(tmp_path: Path) -> None:
    model = _table_model(tmp_path / "uniform.onnx", [0.0] * DEFAULT.n_actions)  # sampled
    cfg = EvalConfig(episodes=2, seed=7, temperature=1.0, execute_k=2, env=SHORT)
    first, second = evaluate(model, cfg), evaluate(model, cfg)
    assert first.results == second.results
    other = evaluate(model, dataclasses.replace(cfg, seed=8))
    assert other.results != first.results  # the seed does reach the episodes


def test_videos_are_written_and_readable(tmp_path: Path) -> None:
    model = _table_model(tmp_path / "forward.onnx",
                         [5.0 if a is Action.FORWARD else 0.0 for a in Action])
    videos = tmp_path / "videos"
    summary = evaluate(model, EvalConfig(episodes=2, temperature=0, env=SHORT,
                                         video_dir=videos, videos=1))
    assert sorted(p.name for p in videos.iterdir()) == ["episode_0.mp4"]
    capture = cv2.VideoCapture(str(videos / "episode_0.mp4"))
    ok, frame = capture.read()
    assert ok
    assert frame.shape[2] == 3
    # One frame per step and one of the outcome.
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == summary.results[0].steps + 1
    capture.release()


def test_cli_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _table_model(tmp_path / "stop.onnx", [5.0, 0.0, 0.0, 0.0])
    videos = tmp_path / "videos"
    assert _run("eval", str(model), "--episodes", "2", "--seed", "3", "--time-limit", "1",
                "--temperature", "0", "--video-dir", str(videos), "--videos", "1") == 0
    captured = capsys.readouterr()
    assert "2/2" in captured.err  # the progress line
    lines = dict(line.split(maxsplit=1) for line in captured.out.splitlines()[1:]
                 if not line.startswith(("mean", "forced", "videos")))
    assert lines["success"].startswith("0 (0.0%, 95% CI 0.0% - 65.8%)")
    # Standing still for 1 s: each episode is stopped short or never found.
    assert int(lines["never_found"].split()[0]) + int(lines["stopped_short"].split()[0]) == 2
    assert (videos / "episode_3.mp4").is_file()


def test_bad_eval_arguments_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "any.onnx"
    assert _run("eval", str(model), "--execute-k", "0") == 2
    assert _run("eval", str(model), "--time-limit", "0") == 2
    assert _run("eval", str(model), "--scene", "moon") == 2
    assert "error" in capsys.readouterr().err


def test_execute_k_defaults_to_the_task_s_and_a_given_value_is_kept() -> None:
    def resolved(**given: object) -> int:
        args = argparse.Namespace(execute_k=None, temperature=1.0, **given)
        cli._check_sampling(args)
        return int(args.execute_k)

    assert resolved(task="find") == 4 == DEFAULT.chunk_len
    assert resolved(task="pick") == 1  # the grasp is planned on every frame
    assert resolved() == 4  # the suite has no --task: the find task's
    args = argparse.Namespace(execute_k=2, temperature=1.0, task="pick")
    cli._check_sampling(args)
    assert args.execute_k == 2


def test_a_model_for_another_contract_is_refused_with_the_mismatch_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = dataclasses.replace(DEFAULT, chunk_len=DEFAULT.chunk_len + 4)
    model = build_model(tmp_path / "other.onnx", other)
    assert _run("eval", str(model), "--episodes", "1") == 1
    err = capsys.readouterr().err
    assert "refuses" in err
    assert f"chunk_len: model {other.chunk_len}, runtime {DEFAULT.chunk_len}" in err


def test_the_env_steps_a_track_command_as_its_nearest_action(make_env: Callable[..., ZimaEnv],
                                                            ) -> None:
    env = make_env("arena", EnvConfig(render=False))
    env.reset(3)
    history = [env.step(command).observation.action_history[-1] for command in (
        TrackCommand(-100, 100), TrackCommand(10, 10), TrackCommand(250, 200))]
    assert history == [int(Action.LEFT), int(Action.STOP), int(Action.FORWARD)]


# ---- the observation's age: the simulator's is the runtime's -------------------------------


@pytest.mark.parametrize(("latency_s", "camera_fps"), [
    (0.004, None), (0.02, None), (0.05, None), (0.004, 30.0), (0.02, 30.0), (0.05, 30.0),
    # A slow camera and a remote round trip: frames from the step before, the tick rule.
    (0.05, 10.0)])
def test_the_policy_sees_observations_as_old_as_the_runtimes(
        tmp_path: Path, latency_s: float, camera_fps: float | None) -> None:
    """With a camera, each chunk's plan starts on its frame as the frame arrives (the
    runtime's pacing: runner.on_frame), the last one back in time, at the episode's camera
    phase; without one (or frames slower than a step), it starts the lead the runtime's
    tick rule gives (whole 20 ms ticks) before its first action, on frames of the camera's
    age. Each chunk's first action starts with an env step; every step drives the
    runner's action of that tick."""
    model = build_model(tmp_path / "history.onnx", DEFAULT)  # its chunk follows the history
    env = ZimaEnv("arena", SHORT)
    traces: list[PlanTrace] = []
    driven: list[Action] = []
    cfg = EvalConfig(episodes=1, temperature=0, env=SHORT, latency_s=latency_s,
                     camera_fps=camera_fps)
    try:
        asyncio.run(policy_episode(env, model, cfg, seed=0, on_plan=traces.append,
                                   on_step=lambda _env, _images, step: driven.append(step.action)))
    finally:
        env.close()
    # The runtime's model: its queue, at its loop's period, after an inference this long.
    runtime = ActionQueue(DEFAULT, cfg.execute_k, tick_s=1 / cfg.loop_hz)
    runtime.latency.add(latency_s)
    timing = EpisodeTiming.of(cfg, DEFAULT, env.config.physics_dt_s, 1.5, 0)
    assert timing.paced == (camera_fps == 30.0)
    assert timing.carried == ((latency_s, camera_fps) == (0.05, 10.0))
    assert len(traces) == math.ceil((len(driven) - 1) / cfg.execute_k)
    camera_ages = set()
    for trace in traces:
        step = trace.acted_s * DEFAULT.control_hz
        assert step == pytest.approx(round(step))  # at an env step's start
        lead_s = trace.acted_s - trace.tick_s
        if trace is traces[0]:  # as late as its result allows, before any rhythm
            assert lead_s <= runtime.lead_s + 1e-9
            if timing.carried:  # no step before it: the reset's frames
                assert min(trace.captured_s) == 0.0
            continue
        age_s = trace.acted_s - min(trace.captured_s)
        if timing.paced:  # planned as its frame arrived, back in time with the margin
            assert trace.tick_s == pytest.approx(min(trace.captured_s) + cfg.camera_delay_s)
            assert age_s == pytest.approx(timing.ahead_s)
            assert lead_s >= runtime.plan_lead_s + FRAME_SLACK_S - 1e-9
            assert lead_s <= runtime.plan_lead_s + FRAME_SLACK_S + 1 / 30 - 0.02 + 0.005
        else:
            assert lead_s == pytest.approx(runtime.lead_s)
            camera_ages.add(round(age_s - runtime.lead_s, 9))
    if not timing.paced:
        (camera_age_s,) = camera_ages  # one camera phase for the episode
        if camera_fps is None:
            assert camera_age_s == 0.0  # taken as the plan starts
        else:  # decode, and up to one frame interval (whole 5 ms physics steps)
            assert cfg.camera_delay_s <= camera_age_s < cfg.camera_delay_s + 1 / camera_fps + 0.005
    assert driven[0] is Action.STOP  # while the first plan runs
    assert traces[0].acted_s == pytest.approx(1 / DEFAULT.control_hz)


def test_the_camera_phase_is_drawn_per_episode_from_its_seed() -> None:
    ages = [EpisodeTiming.of(EvalConfig(), DEFAULT, 0.005, 1.5, seed).ahead_s for seed in range(40)]
    assert ages == [EpisodeTiming.of(EvalConfig(), DEFAULT, 0.005, 1.5, seed).ahead_s
                    for seed in range(40)]
    # Paced: the 4 ms decode, the 15 ms lead (10 ms with its margin) and 2 ms slack, and
    # up to a frame interval less a tick, in 5 ms physics steps.
    assert all(0.025 - 1e-9 <= age <= 0.035 + 1e-9 for age in ages)
    assert max(ages) - min(ages) >= 0.01  # the phase differs between episodes
    slow = EpisodeTiming.of(EvalConfig(latency_s=0.05, camera_fps=10.0), DEFAULT, 0.005, 1.5, 0)
    assert slow.carried  # 80 ms of lead on frames 4-104 ms old: from the step before
    assert not slow.paced
    assert slow.capture_s == pytest.approx(slow.ahead_s - 0.1)
    with pytest.raises(ValueError, match="must start within its action period"):
        EpisodeTiming.of(EvalConfig(latency_s=0.08), DEFAULT, 0.005, 1.5, 0)


def test_capturing_ahead_moves_the_frames_not_the_physics(make_env: Callable[..., ZimaEnv],
                                                          ) -> None:
    at_end, ahead = make_env("arena", SHORT), make_env("arena", SHORT)
    for env in (at_end, ahead):
        env.reset(5)
    for _ in range(3):
        a = at_end.step(Action.LEFT)
        b = ahead.step(Action.LEFT, capture_ahead_s=0.02)
        assert a.time_s == b.time_s
        assert at_end.robot_pose() == ahead.robot_pose()  # the same physics
        assert a.observation.images is not None
        assert b.observation.images is not None
        assert not np.array_equal(a.observation.images, b.observation.images)  # turning
