"""`zima sim collect`: expert episodes as episode files, deterministic per seed."""

import argparse
import io
from pathlib import Path

import numpy as np
import pytest

from tests.onboard.onnx_models import build_model
from zima.contract import DEFAULT, Action
from zima.episodes import EpisodeReader
from zima.sim import cli
from zima.sim.collect import CollectConfig, EpisodeStats, Progress, collect, episode_path
from zima.sim.env import EnvConfig, ZimaEnv
from zima.sim.expert import Expert

# Episodes capped at 5 s (50 steps): in the arena seeds 8 and 12 succeed within it and
# seeds 9..11 time out, so a run of five has both kinds and takes a few seconds.
SHORT = EnvConfig(time_limit_s=5.0)
FIRST, N = 8, 5


def test_workers_do_not_change_the_episodes(tmp_path: Path) -> None:
    one = collect(tmp_path / "one", CollectConfig(episodes=N, seed=FIRST, env=SHORT,
                                                  keep_failures=True))
    two = collect(tmp_path / "two", CollectConfig(episodes=N, seed=FIRST, env=SHORT,
                                                  workers=2))
    assert [e.seed for e in one.episodes] == list(range(FIRST, FIRST + N))
    assert len(one.kept) == N  # failures kept
    successes = [e.seed for e in one.episodes if e.outcome == "success"]
    assert 0 < len(successes) < N  # the test sees both kinds
    # By default only successes are written; with 2 workers they are the same episodes.
    assert [e.seed for e in two.kept] == successes
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        episode_path(tmp_path / "two", "arena", s).name for s in successes]
    assert [e.outcome for e in two.episodes] == [e.outcome for e in one.episodes]
    for seed in successes:
        with (EpisodeReader(episode_path(tmp_path / "one", "arena", seed)) as a,
              EpisodeReader(episode_path(tmp_path / "two", "arena", seed)) as b):
            ea, eb = a.load(), b.load()
        np.testing.assert_array_equal(ea.action, eb.action)
        for cam in DEFAULT.cameras:
            np.testing.assert_array_equal(ea.images[cam], eb.images[cam])
    assert two.workers == 2
    assert two.success_rate == pytest.approx(len(successes) / N)


def test_episode_files_carry_the_run(tmp_path: Path) -> None:
    summary = collect(tmp_path, CollectConfig(episodes=1, seed=12, env=SHORT))
    (stats,) = summary.kept
    assert stats.path is not None
    with EpisodeReader(stats.path) as r:
        ep = r.load()
    assert ep.info.source == "sim"
    assert ep.info.scene == "arena"
    assert ep.info.seed == 12
    assert ep.info.outcome == "success"
    assert ep.info.steps_recorded == stats.steps >= len(ep) == stats.frames
    assert ep.action[-1] == Action.STOP  # the "arrived" label survives trimming
    assert (ep.action[:-1] != Action.STOP).all()  # the expert never idles before it
    np.testing.assert_allclose(np.diff(ep.timestamp_s), 1 / DEFAULT.control_hz)
    assert not ep.operator_takeover.any()
    # Row t's track speeds are measured over the step before it: the result of action t-1.
    speed = ep.telemetry["track_left_mm_s"][1:]
    forward, left = ep.action[:-1] == Action.FORWARD, ep.action[:-1] == Action.LEFT
    assert speed[forward].mean() > 0.5 * DEFAULT.forward_mm_s
    assert left.sum() == 0 or speed[left].mean() < 0
    assert ep.images["forward"].std() > 5  # a rendered scene, not a blank frame
    assert sum(summary.action_counts) == summary.frames == len(ep)


def test_cli_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["collect", "--episodes", "1", "--seed", "12", "--out",
                              str(tmp_path)])
    assert cli.run(args) == 0
    captured = capsys.readouterr()
    assert "1/1 episodes" in captured.err  # the progress line
    for text in ("episodes: 1 kept of 1", "frames:", "actions: stop 1 (", "demonstrations/hour"):
        assert text in captured.out
    assert episode_path(tmp_path, "arena", 12).exists()
    assert cli.run(parser.parse_args(["collect", "--workers", "0", "--out", "x"])) == 2


def test_cli_target_distance_starts_the_robot_near(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    steps = {}
    for name, extra in (("near", ["--target-distance", "0.3", "0.5"]), ("far", [])):
        args = parser.parse_args(["collect", "--episodes", "1", "--seed", "12", "--out",
                                  str(tmp_path / name), *extra])
        assert cli.run(args) == 0
        with EpisodeReader(episode_path(tmp_path / name, "arena", 12)) as r:
            steps[name] = len(r.load())
    assert steps["near"] < steps["far"]  # a shorter drive to the cube
    bad = ["collect", "--out", "x", "--target-distance", "0.5", "0.3"]
    assert cli.run(parser.parse_args(bad)) == 2
    procedural = ["collect", "--out", "x", "--scene", "procedural", "--target-distance", "0.3",
                  "0.5"]
    assert cli.run(parser.parse_args(procedural)) == 2  # not silently ignored


def test_progress_line_shows_rate_and_eta() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(4, out, clock=lambda: now[0])
    stats = EpisodeStats(0, "success", 10, 10, (1, 9, 0, 0), None, 0)
    now[0] = 30.0
    progress(stats)
    assert "1/4 episodes 2.0/min ETA 1:30 success 100%" in out.getvalue()


def test_noise_executes_other_actions_but_labels_the_experts(tmp_path: Path) -> None:
    cfg = CollectConfig(episodes=2, seed=FIRST, env=SHORT, noise=0.3, keep_failures=True)
    summary = collect(tmp_path, cfg)
    executed, labels = [], []
    for stats in summary.kept:
        assert stats.path is not None
        with EpisodeReader(stats.path) as reader:
            episode = reader.load()
        executed.append(episode.action)
        labels.append(episode.expert_action)
    action, label = np.concatenate(executed), np.concatenate(labels)
    differ = action != label
    assert differ.any()  # some steps were perturbed ...
    assert not differ.all()  # ... most were the expert's own
    assert not (differ & (label == int(Action.STOP))).any()  # never pushed off the target
    with pytest.raises(ValueError, match="noise"):
        CollectConfig(noise=1.0)


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def _forward_policy(path: Path) -> Path:
    table = np.tile(np.array([0.0, 9.0, 0.0, 0.0], np.float32), (DEFAULT.chunk_len, 1))
    return build_model(path, DEFAULT, kind="table", table=table)  # FORWARD, all but always


def test_dagger_the_policy_drives_and_the_expert_labels_its_states(tmp_path: Path) -> None:
    cfg = CollectConfig(episodes=2, seed=FIRST, env=SHORT, keep_failures=True,
                        policy=_forward_policy(tmp_path / "forward.onnx"))
    summary = collect(tmp_path / "dagger", cfg)
    assert len(summary.kept) == 2  # failures too: they are what DAgger is for
    assert "policy success" in summary.report()  # the policy's, not the expert's
    env = ZimaEnv("arena", SHORT)
    try:
        for stats in summary.kept:
            assert stats.path is not None
            with EpisodeReader(stats.path) as reader:
                episode = reader.load()
                assert str(reader.extras()["driver"]).startswith("policy ")
            assert episode.info.steps_recorded == len(episode)  # nothing idle to trim
            # The runtime's first step is a STOP while the first plan runs; then the policy.
            assert episode.action[0] == Action.STOP
            assert (episode.action[1:] == Action.FORWARD).all()
            # Replayed, the labels are the expert's at the states the policy reached.
            env.reset(stats.seed)
            expert = Expert(env)
            expert.reset(stats.seed)
            last: Action | None = None
            for action, label in zip(episode.action, episode.expert_action, strict=True):
                assert expert.act(last) == label
                env.step(Action(int(action)))
                last = Action(int(action))
            assert (episode.expert_action != Action.FORWARD).any()  # it disagreed somewhere
    finally:
        env.close()
    again = collect(tmp_path / "again", cfg)
    assert [e.outcome for e in again.episodes] == [e.outcome for e in summary.episodes]
    assert [e.frames for e in again.episodes] == [e.frames for e in summary.episodes]


def test_dagger_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = _forward_policy(tmp_path / "forward.onnx")
    with pytest.raises(ValueError, match="noise"):
        CollectConfig(policy=model, noise=0.1)
    with pytest.raises(ValueError, match="not a file"):
        CollectConfig(policy=tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert _run("collect", "--policy", str(tmp_path / "junk.onnx"), "--out",
                str(tmp_path / "out")) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
