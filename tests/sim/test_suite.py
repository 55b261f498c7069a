"""The robustness suite: stress settings, held-out seeds, and its table, PNG and videos."""

import argparse
import colorsys
import json
import math
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.onboard.onnx_models import build_model
from tools import make_policy
from zima.contract import DEFAULT, Action
from zima.episodes import Outcome
from zima.sim import cli
from zima.sim.env import EnvConfig, Failure, ZimaEnv
from zima.sim.evaluate import EvalConfig, PolicyEpisode
from zima.sim.randomize import EpisodeDomain
from zima.sim.scenes import SCENES
from zima.sim.suite import (
    AXES,
    MAX_EPISODES,
    PROCEDURAL,
    SUITE_SEED,
    CellResult,
    Stress,
    SuiteConfig,
    SuiteResult,
    _film_failures,
    plot_suite,
    run_suite,
    suite_cells,
)

ROOT = Path(__file__).resolve().parents[2]
MakeEnv = Callable[..., ZimaEnv]
PHYSICS_ONLY = EnvConfig(render=False)
SHORT = EnvConfig(time_limit_s=2.0)  # 20 control steps per episode
SEEDS = range(SUITE_SEED, SUITE_SEED + 12)


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def _stressed(make_env: MakeEnv, stress: Stress, config: EnvConfig = PHYSICS_ONLY) -> ZimaEnv:
    env = make_env("arena", config)
    stress(env)
    return env


# --- held-out seeds ------------------------------------------------------------------


def _recipe_ranges() -> list[tuple[int, int]]:
    """[first, last] seeds of every recipe: make_policy's constants and argument limits, and
    every `--seed S ... --episodes E` command in the configs and model provenance."""
    eval_seed, dagger_seed = make_policy.EVAL_SEED, make_policy.DAGGER_SEED
    ranges = [(0, dagger_seed - 1),  # expert demonstrations: --episodes < DAGGER_SEED
              (dagger_seed, eval_seed - 1),  # DAgger rounds: (rounds + 1) * DAGGER_SEED <= EVAL
              (eval_seed, eval_seed + 99_999)]  # its evaluation, up to 100 000 episodes
    texts = [p.read_text() for p in (*ROOT.glob("configs/*.toml"), *ROOT.glob("models/*.json"),
                                     ROOT / "sim/cli.py")]
    for text in texts:
        for line in text.splitlines():
            if re.search(r"\b(eval|suite|pick-expert)\b", line):
                continue  # a measurement on held-out seeds, not a recipe that trains
            seed = re.search(r"--seed[\s=]+(\d+)", line)
            episodes = re.search(r"--episodes[\s=]+(\d+)", line)
            if seed:
                first = int(seed.group(1))
                ranges.append((first, first + (int(episodes.group(1)) if episodes else 1) - 1))
    return ranges


def test_held_out_seeds_are_used_by_no_recipe() -> None:
    ranges = _recipe_ranges()
    assert len(ranges) > 5  # the provenance's commands were read
    suite_last = SUITE_SEED + MAX_EPISODES - 1
    for first, last in ranges:
        assert last < SUITE_SEED or first > suite_last, (first, last)
    assert SuiteConfig(episodes=MAX_EPISODES).seeds == range(SUITE_SEED, suite_last + 1)
    with pytest.raises(ValueError, match="episodes"):
        SuiteConfig(episodes=MAX_EPISODES + 1)


# --- stress settings -----------------------------------------------------------------


def test_distance_bands_hold_and_the_same_seed_gives_the_same_domain(make_env: MakeEnv,
                                                                      ) -> None:
    env = _stressed(make_env, Stress(target_dist_m=(2.0, 2.8)))

    def domains() -> list[EpisodeDomain]:
        drawn = []
        for seed in SEEDS:
            env.reset(seed)
            assert env.domain is not None
            drawn.append(env.domain)
        return drawn

    first = domains()
    for domain in first:
        assert 2.0 <= math.dist(domain.robot_xy_yaw[:2], domain.target_xy) < 2.8
    assert domains() == first


@pytest.mark.parametrize("count", [0, 1, 3])
def test_distractor_counts_are_exact(make_env: MakeEnv, count: int) -> None:
    env = _stressed(make_env, Stress(distractors=count))
    m = env.model
    for seed in SEEDS:
        env.reset(seed)
        assert env.domain is not None
        assert len(env.domain.distractor_xy) == count
        inside = [abs(m.body(f"distractor_{i}").pos[0]) < env.layout.half_x_m
                  for i in range(env.layout.max_distractors)]
        assert sum(inside) == count


def test_too_many_distractors_are_refused(make_env: MakeEnv) -> None:
    with pytest.raises(ValueError, match=r"holds 0\.\.3 distractors"):
        _stressed(make_env, Stress(distractors=4))


def test_distractors_take_a_hue_close_to_the_target(make_env: MakeEnv) -> None:
    env = _stressed(make_env, Stress(distractors=3, distractor_hue_deg=8.0))
    m = env.model
    env.reset(SEEDS[0])
    hue = [colorsys.rgb_to_hsv(*m.geom(name).rgba[:3])[0] * 360
           for name in ("target", "distractor_0", "distractor_1", "distractor_2")]
    gaps = [math.remainder(h - hue[0], 360) for h in hue[1:]]
    assert gaps == pytest.approx([8.0, -8.0, 8.0], abs=0.01)


def test_every_cell_builds_resets_and_renders(make_env: MakeEnv) -> None:
    """Each axis value is a valid configuration of today's scenes, randomiser and effects."""
    cells = suite_cells(SuiteConfig())
    assert {c.axis for c in cells} == {"scene", *AXES}
    assert len({c.name for c in cells}) == len(cells)
    assert [c.label for c in cells if c.axis == "scene"] == list(SCENES)
    for cell in cells:  # rendering costs: only where the effects differ
        env = make_env(cell.scene, replace(cell.env, render=cell.axis == "blur"))
        if cell.stress is not None:
            cell.stress(env)
        observation = env.reset(SUITE_SEED)
        assert observation.images is None or observation.images.shape[1:] == (
            DEFAULT.image_height, DEFAULT.image_width, 3)
        env.close()


def test_light_and_camera_axes_reach_the_model(make_env: MakeEnv) -> None:
    cells = {c.name: c for c in suite_cells(SuiteConfig(axes=("light", "fov")))}
    dim = make_env("arena", cells["light x0.15 dim"].env)
    harsh = make_env("arena", cells["light x3 harsh"].env)
    wide = make_env("arena", cells["fov +8 deg"].env)
    nominal = make_env("arena", SuiteConfig().env)
    means = {}
    for name, env in (("dim", dim), ("harsh", harsh), ("wide", wide), ("nominal", nominal)):
        images = env.reset(SUITE_SEED).images
        assert images is not None
        means[name] = float(images.mean())
    assert means["dim"] < means["nominal"] < means["harsh"]
    fovy = {name: float(env.model.cam_fovy[env.model.camera("forward").id])
            for name, env in (("wide", wide), ("nominal", nominal))}
    assert fovy["wide"] == pytest.approx(fovy["nominal"] + 8.0)  # the same seed's jitter


# --- a whole (tiny) run ----------------------------------------------------------------


def _model(tmp_path: Path, action: Action | None) -> Path:
    """A constant table model: always ``action``, or uniform logits (sampled) for None."""
    logits = [0.0] * DEFAULT.n_actions if action is None else [
        5.0 if a is action else 0.0 for a in Action]
    table = np.tile(np.array(logits, np.float32), (DEFAULT.chunk_len, 1))  # [chunk, actions]
    return build_model(tmp_path / "model.onnx", DEFAULT, kind="table", table=table)


def test_a_run_writes_one_table_a_plot_and_a_video_per_failure_class(tmp_path: Path) -> None:
    model = _model(tmp_path, Action.STOP)  # standing still: never found or stopped short
    cfg = SuiteConfig(episodes=2, axes=("scene", "distractors"), env=SHORT,
                      temperature=0, out_dir=tmp_path / "suite")
    stale = cfg.out_dir / "failures" / "collision" / "scene_arena_seed1000000.mp4"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's")
    suite = run_suite(model, cfg, draw="opencv")
    assert not stale.exists()
    cells = suite_cells(cfg)
    assert [c.cell for c in suite.cells] == cells
    # The table: a title, a header, a rule, one row per cell (then notes).
    lines = suite.table().splitlines()
    assert lines[1].split() == ["cell", "eps", "success", "95%", "CI", "coll", "wrong", "never",
                                "lost", "short"]
    for cell, line in zip(cells, lines[3:], strict=False):
        assert line.startswith(cell.name)
        assert line.split()[-8:-5] == ["2", "0%", "0%-66%"]  # episodes, success, CI
    assert ("not registered" in suite.table()) == (PROCEDURAL not in SCENES)
    # suite.json agrees with the table; every failed episode is classified.
    data = json.loads((cfg.out_dir / "suite.json").read_text())
    assert [c["name"] for c in data["cells"]] == [c.name for c in cells]
    for c in data["cells"]:
        assert c["successes"] == 0
        assert sum(c["failures"].values()) == c["episodes"] == 2
        assert set(c["failures"]) == {f.value for f in Failure}
        assert [s for s, _, _ in c["episodes_by_seed"]] == [SUITE_SEED, SUITE_SEED + 1]
    occurred = {f for c in suite.cells for f, k in c.failures.items() if k}
    assert occurred <= {Failure.NEVER_FOUND, Failure.STOPPED_SHORT}
    # One video of each class that occurred, readable, ending with its label's frame.
    assert set(suite.videos) == occurred
    for failure, video in suite.videos.items():
        assert video.parent == cfg.out_dir / "failures" / failure.value
        capture = cv2.VideoCapture(str(video))
        ok, frame = capture.read()
        assert ok
        assert frame.shape[2] == 3
        assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 21  # 20 steps and the outcome
        capture.release()
    # The plot: one panel per axis, drawn both ways.
    png = cv2.imread(str(cfg.out_dir / "suite.png"))
    assert png is not None
    assert png.shape[0] > 100
    assert png.shape[1] > 2 * 300
    pytest.importorskip("matplotlib")
    plot_suite(suite, tmp_path / "mpl.png", draw="matplotlib")
    assert cv2.imread(str(tmp_path / "mpl.png")) is not None


def test_a_failure_the_re_run_does_not_repeat_is_noted_not_filmed(tmp_path: Path) -> None:
    """The re-run of a filmed failure must end the same (an episode is a function of its
    seed); one that does not (the code changed meanwhile) leaves a note and no video."""
    model = _model(tmp_path, Action.STOP)
    cfg = SuiteConfig(episodes=1, axes=("distractors",), env=SHORT, temperature=0,
                      out_dir=tmp_path / "suite")
    cell = suite_cells(cfg)[0]
    claimed = CellResult(cell, (PolicyEpisode(SUITE_SEED, Outcome.COLLISION, 3, 0.3, 1,
                                              Failure.COLLISION),))
    videos, notes = _film_failures(model, [claimed], cfg, EvalConfig(temperature=0),
                                   DEFAULT)
    assert videos == {}
    assert len(notes) == 1
    assert notes[0].startswith("not filmed: collision, its re-run (distractors_0_seed1000000)")
    assert list((cfg.out_dir / "failures" / "collision").iterdir()) == []


def test_the_table_says_when_there_are_no_procedural_worlds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(SCENES, PROCEDURAL, raising=False)
    suite = SuiteResult(Path("m.onnx"), "0" * 64, SuiteConfig(axes=("scene",)), (), 0.0)
    assert f"scene {PROCEDURAL}" in suite.table()
    assert "not registered" in suite.table()
    assert [c.label for c in suite_cells(suite.config)] == list(SCENES)


def test_cli_prints_the_table_and_a_baseline_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _model(tmp_path, Action.FORWARD)  # drives into walls and cubes
    out = tmp_path / "suite"
    argv = ("suite", str(model), "--episodes", "1", "--axes", "distractors", "--time-limit",
            "8", "--temperature", "0", "--out", str(out), "--no-videos")
    assert _run(*argv) == 0
    first = capsys.readouterr().out
    assert "distractors 0" in first
    assert "before" not in first
    assert not (out / "failures").exists()
    assert _run(*argv, "--baseline", str(out / "suite.json")) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("distractors")]
    assert len(rows) == 3
    for row in rows:  # the same seeds: the same results, now and before
        assert row.split()[3] == row.split()[5]


def test_bad_suite_arguments_are_errors(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    model = str(tmp_path / "any.onnx")
    assert _run("suite", model, "--axes", "weather") == 2
    assert _run("suite", model, "--episodes", "0") == 2
    assert _run("suite", model, "--axis-scene", "moon") == 2
    assert _run("suite", model, "--workers", "0") == 2
    assert _run("suite", model, "--baseline", str(tmp_path / "missing.json")) == 2
    assert "error" in capsys.readouterr().err
