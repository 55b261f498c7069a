"""The robustness suite: one model over every scene and one stress axis at a time.

    zima sim suite models/zima-demo.onnx --episodes 10 --workers 2 --out build/suite

Cells, each run through :func:`~zima.sim.evaluate.run_episodes` (the runtime's fusion and
policy runner, as ``zima sim eval``):

- every registered scene (``arena``, ``room``, the procedural worlds when ``procedural`` is
  registered; the table says so when it is not), with its nominal randomisation;
- on one scene (``axis_scene``, default ``arena``), each stress axis at a time, everything
  else nominal: light from dim to harsh, the target's distance, the number of distractor
  cubes, how close their colour is to the target's, the forward camera's pitch and field
  of view a few degrees off, and motion blur (the cameras' exposure time).

Every cell runs the same held-out seeds, ``SUITE_SEED`` .. ``SUITE_SEED + episodes - 1``
(no recipe uses seeds this high: ``tools/make_policy.py`` stays below 200 000), so the
cells of an axis differ only in that axis. Out come one table (per cell: episodes,
success with its 95 % Wilson interval, failed episodes by class), ``suite.json``,
``suite.png`` (success against each axis) and an MP4 of the first failure of each class
(re-run with the camera on: an episode is a function of its seed).

The axes are overrides of :class:`~zima.sim.env.EnvConfig` (lights and the target's least
distance in ``DomainConfig``, the camera in ``RobotConfig``, exposure in
``EffectsConfig``) plus :class:`Stress`, which redraws an episode's domain until the
target's distance and the distractor count fall in the cell's band and recolours the
distractors; no scene is recompiled per episode.
"""

from __future__ import annotations

import colorsys
import json
import math
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import numpy as np

from zima.contract import DEFAULT, Contract
from zima.sim.env import EnvConfig, Failure, ZimaEnv
from zima.sim.evaluate import (
    EpisodeTask,
    EvalConfig,
    PolicyEpisode,
    SuccessTally,
    run_episodes,
)
from zima.sim.randomize import EpisodeDomain, Randomizer
from zima.sim.scenes import SCENES

SUITE_SEED = 1_000_000  # every cell's episodes: SUITE_SEED + i; recipes stay below 200_000
MAX_EPISODES = 100_000  # per cell, so the suite's seeds stay in [1e6, 1.1e6)
PROCEDURAL = "procedural"  # the held-out procedural worlds' scene (listed when missing)
MAX_DRAWS = 500  # domains drawn per episode to meet a cell's band before giving up
SHORT = {Failure.COLLISION: "coll", Failure.WRONG_OBJECT: "wrong", Failure.NEVER_FOUND: "never",
         Failure.FOUND_AND_LOST: "lost", Failure.STOPPED_SHORT: "short"}


# --- stress settings applied to an environment ---------------------------------------


@dataclass(frozen=True, slots=True)
class Stress:
    """What a cell changes in each episode's drawn domain (None: as drawn). Applied to an
    environment once (:class:`~zima.sim.evaluate.EpisodeTask`'s ``prepare``)."""

    target_dist_m: tuple[float, float] | None = None  # robot start to target centre, [lo, hi)
    distractors: int | None = None  # exactly this many distractor cubes shown
    distractor_hue_deg: float | None = None  # every shown distractor this far from the target

    def __call__(self, env: ZimaEnv) -> None:
        # A Randomizer in all but its class: ZimaEnv only calls reset() on it.
        env.randomizer = cast(Randomizer, _Stressed(env, self))


class _Stressed:
    """Wraps a scene's randomiser: redraws a domain until it meets the stress's bands (the
    same seed gives the same draws), then parks or recolours distractors."""

    def __init__(self, env: ZimaEnv, stress: Stress) -> None:
        self.inner, self.model, self.stress = env.randomizer, env.model, stress
        self.scene = env.scene
        n = env.layout.max_distractors
        if stress.distractors is not None and not 0 <= stress.distractors <= n:
            raise ValueError(f"scene {env.scene!r} holds 0..{n} distractors, "
                             f"not {stress.distractors}")
        self._bodies = [self.model.body(f"distractor_{i}").id for i in range(n)]
        self._geoms = [self.model.geom(f"distractor_{i}").id for i in range(n)]
        self._target = self.model.geom("target").id

    def _meets(self, domain: EpisodeDomain) -> bool:
        s = self.stress
        dist = math.dist(domain.robot_xy_yaw[:2], domain.target_xy)
        count_ok = s.distractors in (None, 0) or len(domain.distractor_xy) == s.distractors
        return count_ok and (s.target_dist_m is None
                             or s.target_dist_m[0] <= dist < s.target_dist_m[1])

    def reset(self, rng: np.random.Generator) -> EpisodeDomain:
        for _ in range(MAX_DRAWS):
            domain = self.inner.reset(rng)
            if self._meets(domain):
                break
        else:
            raise RuntimeError(f"suite: no domain of scene {self.scene!r} meets {self.stress} "
                               f"in {MAX_DRAWS} draws")
        m, s = self.model, self.stress
        if s.distractors == 0:
            for i, body in enumerate(self._bodies):  # parked as the randomiser parks them
                m.body_pos[body, :2] = (50.0 + i, 50.0)
            domain = replace(domain, distractor_xy=())
        if s.distractor_hue_deg is not None:
            h, sat, val = colorsys.rgb_to_hsv(*m.geom_rgba[self._target, :3])
            for i, geom in enumerate(self._geoms[: len(domain.distractor_xy)]):
                hue = h + (1 if i % 2 == 0 else -1) * s.distractor_hue_deg / 360.0
                m.geom_rgba[geom, :3] = colorsys.hsv_to_rgb(hue % 1.0, sat, val)
        return domain


# --- cells and axes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One row of the suite: a scene and its settings."""

    axis: str  # "scene" or a stress axis's name
    label: str  # the value, as the table shows it
    x: float  # the value on the axis's plot
    scene: str
    env: EnvConfig
    stress: Stress | None = None

    @property
    def name(self) -> str:
        return f"{self.axis} {self.label}"


def _scaled(band: tuple[float, float], factor: float) -> tuple[float, float]:
    mid = factor * (band[0] + band[1]) / 2
    return mid * 0.9, mid * 1.1


def _light(env: EnvConfig, factor: float) -> EnvConfig:
    """Sun, lamp and ambient light at ``factor`` times their nominal mid-range (+-10 %)."""
    d = env.domain
    return replace(env, domain=replace(d, sun_diffuse=_scaled(d.sun_diffuse, factor),
                                       lamp_diffuse=_scaled(d.lamp_diffuse, factor),
                                       ambient=_scaled(d.ambient, factor)))


def _camera(env: EnvConfig, *, tilt_deg: float = 0.0, fovy_deg: float = 0.0) -> EnvConfig:
    """The forward camera tilted ``tilt_deg`` further down, its field of view wider by
    ``fovy_deg`` (on top of the per-episode mount jitter)."""
    r = env.robot
    return replace(env, robot=replace(r, forward_tilt_deg=r.forward_tilt_deg + tilt_deg,
                                      forward_fovy_deg=r.forward_fovy_deg + fovy_deg))


def _exposure(env: EnvConfig, ms: float) -> EnvConfig:
    """Every episode blurred by the robot's motion over an exposure of ``ms``."""
    return replace(env, effects=replace(env.effects, p_motion_blur=1.0, exposure_ms=(ms, ms)))


def _distance(env: EnvConfig, lo: float, hi: float) -> tuple[EnvConfig, Stress]:
    domain = replace(env.domain, min_target_dist_m=lo)  # fewer draws rejected
    return replace(env, domain=domain), Stress(target_dist_m=(lo, hi))


AxisValues = Callable[[EnvConfig, int], list[tuple[str, float, EnvConfig, Stress | None]]]
"""(nominal env, the scene's max distractors) -> (label, x, env, stress) per value."""

AXES: dict[str, tuple[str, AxisValues]] = {
    "light": ("light, x nominal", lambda e, _n: [
        (f"x{f:g}{name}", f, _light(e, f), None)
        for f, name in ((0.15, " dim"), (0.4, ""), (1.8, ""), (3.0, " harsh"))]),
    "distance": ("target distance, m", lambda e, _n: [
        (f"{lo:g}-{hi:g} m", (lo + hi) / 2, *_distance(e, lo, hi))
        for lo, hi in ((0.4, 0.8), (0.8, 1.4), (1.4, 2.0), (2.0, 2.8))]),
    "distractors": ("distractor cubes", lambda e, n: [
        (f"{k}", k, e, Stress(distractors=k)) for k in sorted({0, 1, n})]),
    "similarity": ("distractor hue from the target, deg", lambda e, n: [
        (f"{h:g} deg", h, e, Stress(distractors=n, distractor_hue_deg=h))
        for h in (60.0, 30.0, 15.0, 8.0)]),
    "pitch": ("forward camera pitch offset, deg (+ down)", lambda e, _n: [
        (f"{d:+g} deg", d, _camera(e, tilt_deg=d), None) for d in (-6.0, -3.0, 3.0, 6.0)]),
    "fov": ("forward camera field of view offset, deg", lambda e, _n: [
        (f"{d:+g} deg", d, _camera(e, fovy_deg=d), None) for d in (-8.0, -4.0, 4.0, 8.0)]),
    "blur": ("exposure time (motion blur), ms", lambda e, _n: [
        (f"{ms:g} ms", ms, _exposure(e, ms), None) for ms in (2.0, 8.0, 33.0, 66.0, 100.0)]),
}


AXES_ALL = ("scene", *AXES)


@dataclass(frozen=True, slots=True)
class SuiteConfig:
    """One suite run."""

    episodes: int = 10  # per cell: a quick look (about 5 min for 31 cells on 2 cores)
    axis_scene: str = "arena"  # where the stress axes run
    axes: tuple[str, ...] = AXES_ALL  # which rows: "scene" and/or AXES names
    env: EnvConfig = field(default_factory=EnvConfig)  # the nominal settings
    execute_k: int = 4
    temperature: float = 1.0
    workers: int = 1
    out_dir: Path = Path("build/suite")
    film_failures: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.episodes <= MAX_EPISODES:
            raise ValueError(f"suite: episodes must be in 1..{MAX_EPISODES}, not {self.episodes}")
        unknown = set(self.axes) - {"scene", *AXES}
        if unknown or not self.axes:
            raise ValueError(f"suite: unknown axes {sorted(unknown)}; known: scene, "
                             f"{', '.join(AXES)}")
        if self.workers < 1:
            raise ValueError(f"suite: workers must be at least 1, not {self.workers}")
        if self.axis_scene not in SCENES:
            raise ValueError(f"suite: unknown scene {self.axis_scene!r}; known: {list(SCENES)}")

    @property
    def seeds(self) -> range:
        return range(SUITE_SEED, SUITE_SEED + self.episodes)


def suite_cells(cfg: SuiteConfig) -> list[Cell]:
    """The suite's cells, in table order."""
    cells = []
    if "scene" in cfg.axes:
        cells += [Cell("scene", name, i, name, cfg.env) for i, name in enumerate(SCENES)]
    n = SCENES[cfg.axis_scene]().max_distractors
    for axis, (_title, values) in AXES.items():
        if axis in cfg.axes:
            cells += [Cell(axis, label, x, cfg.axis_scene, env, stress)
                      for label, x, env, stress in values(cfg.env, n)]
    return cells


# --- running and reporting ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CellResult(SuccessTally):
    cell: Cell
    results: tuple[PolicyEpisode, ...]


@dataclass(frozen=True, slots=True)
class SuiteResult:
    model: Path
    model_sha256: str
    config: SuiteConfig
    cells: tuple[CellResult, ...]
    wall_s: float
    videos: dict[Failure, Path] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what went otherwise than planned (printed with the table)

    def table(self, baseline: dict[str, float] | None = None) -> str:
        """The one table: per cell, episodes, success and its 95 % Wilson interval, failed
        episodes by class; with ``baseline`` (cell name -> success rate) a column of it."""
        cfg = self.config
        head = (f"{'cell':<26}{'eps':>4}{'success':>9}  {'95% CI':<12}"
                + ("  before" if baseline is not None else "")
                + "".join(f"{SHORT[f]:>6}" for f in Failure))
        title = (f"{self.model} (sha256 {self.model_sha256[:12]}): seeds "
                 f"{cfg.seeds.start}..{cfg.seeds.stop - 1} in every cell, axes on scene "
                 f"{cfg.axis_scene}, execute_k {cfg.execute_k}, temperature {cfg.temperature}")
        lines = [title, head, "-" * len(head)]
        for c in self.cells:
            low, high = c.success_ci
            before = "" if baseline is None else (
                f"{baseline[c.cell.name]:>8.0%}" if c.cell.name in baseline else f"{'-':>8}")
            lines.append(f"{c.cell.name:<26}{len(c.results):>4}{c.success_rate:>9.0%}  "
                         f"{f'{low:.0%}-{high:.0%}':<12}{before}"
                         + "".join(f"{c.failures[f]:>6}" for f in Failure))
        if "scene" in cfg.axes and PROCEDURAL not in SCENES:
            lines.append(f"{'scene ' + PROCEDURAL:<26}   -  not registered (zima sim scenes): "
                         "no held-out procedural worlds")
        lines.append("failures: " + ", ".join(f"{SHORT[f]} = {f.value}" for f in Failure))
        lines += self.notes
        lines.append(f"{sum(len(c.results) for c in self.cells)} episodes in "
                     f"{self.wall_s:.0f} s with {cfg.workers} worker(s)")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "model": str(self.model), "sha256": self.model_sha256,
            "seeds": [cfg.seeds.start, cfg.seeds.stop - 1], "axis_scene": cfg.axis_scene,
            "execute_k": cfg.execute_k, "temperature": cfg.temperature,
            "procedural_registered": PROCEDURAL in SCENES, "wall_s": self.wall_s,
            "cells": [{"name": c.cell.name, "axis": c.cell.axis, "label": c.cell.label,
                       "x": c.cell.x, "scene": c.cell.scene, "episodes": len(c.results),
                       "successes": c.successes, "success_rate": c.success_rate,
                       "ci95_wilson": list(c.success_ci),
                       "failures": {f.value: k for f, k in c.failures.items()},
                       "episodes_by_seed": [[r.seed, r.outcome.value,
                                             r.failure.value if r.failure else None]
                                            for r in c.results]}
                      for c in self.cells],
            "failure_videos": {f.value: str(p) for f, p in self.videos.items()},
            "notes": list(self.notes),
        }


def load_baseline(path: Path) -> dict[str, float]:
    """A previous run's ``suite.json``: cell name -> success rate."""
    data = json.loads(path.read_text())
    return {c["name"]: float(c["success_rate"]) for c in data["cells"]}


def _tasks(cell: Cell, seeds: Sequence[int], video_dir: Path | None = None,
           ) -> list[EpisodeTask]:
    return [EpisodeTask(cell.scene, cell.env, seed, prepare=cell.stress,
                        video=None if video_dir is None else video_dir / (
                            f"{re.sub(r'[^A-Za-z0-9.+-]+', '_', cell.name)}_seed{seed}.mp4"))
            for seed in seeds]


def run_suite(model: Path, cfg: SuiteConfig, contract: Contract = DEFAULT,
              on_episode: Callable[[int, int], None] | None = None,
              draw: str = "auto") -> SuiteResult:
    """Run every cell (``on_episode(done, total)`` after each episode), film the first
    failure of each class, write ``suite.json`` and ``suite.png`` into ``cfg.out_dir``.
    ``draw``: "matplotlib", "opencv" or "auto" (matplotlib when it is installed)."""
    start = time.perf_counter()
    cells = suite_cells(cfg)
    tasks = [t for c in cells for t in _tasks(c, cfg.seeds)]
    sampling = EvalConfig(episodes=1, execute_k=cfg.execute_k, temperature=cfg.temperature)

    def progress(done: int, _task: EpisodeTask, _result: PolicyEpisode) -> None:
        if on_episode is not None:
            on_episode(done, len(tasks))

    results, sha256 = run_episodes(model, tasks, sampling, contract, workers=cfg.workers,
                                   on_episode=progress)
    n = cfg.episodes
    per_cell = tuple(CellResult(c, tuple(results[i * n:(i + 1) * n])) for i, c in enumerate(cells))
    suite = SuiteResult(model, sha256, cfg, per_cell, time.perf_counter() - start)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    json_path = cfg.out_dir / "suite.json"
    json_path.write_text(json.dumps(suite.to_json(), indent=1) + "\n")  # before the videos
    plot_suite(suite, cfg.out_dir / "suite.png", draw)
    if cfg.film_failures:
        videos, notes = _film_failures(model, per_cell, cfg, sampling, contract)
        suite = replace(suite, videos=videos, notes=notes,
                        wall_s=time.perf_counter() - start)
        json_path.write_text(json.dumps(suite.to_json(), indent=1) + "\n")
    return suite


def _film_failures(model: Path, cells: Sequence[CellResult], cfg: SuiteConfig,
                   sampling: EvalConfig, contract: Contract,
                   ) -> tuple[dict[Failure, Path], tuple[str, ...]]:
    """Re-run the first failed episode of each class with the camera filmed: the videos,
    and a note for each re-run that ended otherwise (its video removed)."""
    first: dict[Failure, tuple[Cell, int]] = {}
    for c in cells:
        for r in c.results:
            if r.failure is not None and r.failure not in first:
                first[r.failure] = (c.cell, r.seed)
    video_dir = cfg.out_dir / "failures"
    shutil.rmtree(video_dir, ignore_errors=True)  # an earlier run's videos would mislead
    tasks = [_tasks(cell, [seed], video_dir / failure.value)[0]
             for failure, (cell, seed) in first.items()]
    again, _ = run_episodes(model, tasks, sampling, contract, workers=cfg.workers)
    videos, notes = {}, []
    for (failure, _), task, result in zip(first.items(), tasks, again, strict=True):
        assert task.video is not None
        if result.failure is failure:
            videos[failure] = task.video
        else:  # an episode is a function of its seed: did the code change meanwhile?
            task.video.unlink(missing_ok=True)
            notes.append(f"not filmed: {failure.value}, its re-run ({task.video.stem}) ended "
                         f"{(result.failure or result.outcome).value}")
    return videos, tuple(notes)


def plot_suite(suite: SuiteResult, path: Path, draw: str = "auto") -> Path:
    """Success (with its 95 % interval) against each axis, one panel per axis, as PNG."""
    panels: dict[str, list[CellResult]] = {}
    for c in suite.cells:
        panels.setdefault(c.cell.axis, []).append(c)
    nominal = next((c.success_rate for c in suite.cells
                    if c.cell.axis == "scene" and c.cell.scene == suite.config.axis_scene), None)
    if draw == "auto":
        try:
            import matplotlib  # noqa: F401, PLC0415 -- an optional extra (zima[train])

            draw = "matplotlib"
        except ImportError:
            draw = "opencv"
    path.parent.mkdir(parents=True, exist_ok=True)
    if draw == "matplotlib":
        _plot_matplotlib(panels, nominal, suite.config.axis_scene, path)
    elif draw == "opencv":
        _plot_opencv(panels, nominal, path)
    else:
        raise ValueError(f"plot_suite: draw must be auto, matplotlib or opencv, not {draw!r}")
    return path


def _title(axis: str) -> str:
    return "scene" if axis == "scene" else AXES[axis][0]


def _plot_matplotlib(panels: dict[str, list[CellResult]], nominal: float | None,
                     axis_scene: str, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, (axis, cells) in zip(axes.flat, panels.items(), strict=False):
        rates = np.array([c.success_rate for c in cells]) * 100  # [n] percent
        ci = np.array([c.success_ci for c in cells]).T * 100  # [2, n]
        err = np.clip(np.stack([rates - ci[0], ci[1] - rates]), 0.0, None)  # [2, n]
        if axis == "scene":
            ax.bar(range(len(cells)), rates, yerr=err, capsize=4, color="tab:blue")
            ax.set_xticks(range(len(cells)), [c.cell.label for c in cells])
        else:
            xs = [c.cell.x for c in cells]
            ax.errorbar(xs, rates, yerr=err, marker="o", capsize=4)
            if nominal is not None:
                ax.axhline(nominal * 100, ls="--", color="tab:gray",
                           label=f"nominal ({axis_scene})")
                ax.legend(loc="lower left", fontsize="small")
        ax.set_title(_title(axis), fontsize="medium")
        ax.set_ylim(0, 105)
        ax.set_ylabel("success %")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _plot_opencv(panels: dict[str, list[CellResult]], nominal: float | None,
                 path: Path) -> None:
    """The same panels drawn with OpenCV (no matplotlib): points, interval bars, a dashed
    nominal line."""
    import cv2  # noqa: PLC0415

    w, h, pad = 360, 240, 40
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    img = np.full((rows * h, cols * w, 3), 255, np.uint8)  # [H, W, 3] BGR
    font = cv2.FONT_HERSHEY_SIMPLEX
    for k, (axis, cells) in enumerate(panels.items()):
        ox, oy = (k % cols) * w, (k // cols) * h
        x0, x1, y0, y1 = ox + pad, ox + w - 15, oy + h - pad, oy + 30  # plot area

        def py(rate: float, y0: int = y0, y1: int = y1) -> int:
            return round(y0 + (y1 - y0) * rate)

        cv2.rectangle(img, (x0, y1), (x1, y0), (0, 0, 0), 1)
        cv2.putText(img, _title(axis)[:44], (ox + 8, oy + 20), font, 0.42, (0, 0, 0), 1,
                    cv2.LINE_AA)
        for rate in (0.0, 0.5, 1.0):
            cv2.putText(img, f"{rate:.0%}", (ox + 2, py(rate) + 4), font, 0.35, (0, 0, 0), 1)
        if nominal is not None and axis != "scene":
            for dash in range(x0, x1, 8):
                cv2.line(img, (dash, py(nominal)), (min(dash + 4, x1), py(nominal)),
                         (128, 128, 128))
        xs = [float(i) for i in range(len(cells))] if axis == "scene" else [
            c.cell.x for c in cells]
        lo, hi = min(xs), max(xs)
        span = (hi - lo) or 1.0
        points = []
        for c, x in zip(cells, xs, strict=True):
            px = round(x0 + 20 + (x1 - x0 - 40) * (x - lo) / span)
            low, high = c.success_ci
            cv2.line(img, (px, py(low)), (px, py(high)), (180, 120, 30), 1)
            cv2.circle(img, (px, py(c.success_rate)), 4, (180, 120, 30), -1)
            cv2.putText(img, c.cell.label[:9], (px - 20, y0 + 14), font, 0.33, (0, 0, 0), 1)
            points.append((px, py(c.success_rate)))
        if axis != "scene":
            cv2.polylines(img, [np.array(points, np.int32)], isClosed=False,
                          color=(180, 120, 30))
    if not cv2.imwrite(str(path), img):
        raise RuntimeError(f"OpenCV cannot write {path}")
