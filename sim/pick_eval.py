"""A pick-up policy evaluated through the onboard runtime: ``zima sim eval --task pick``.

Each episode is :func:`zima.sim.evaluate.policy_episode` on a
:class:`~zima.sim.pick.PickEnv`: the same frame fusion, ``PolicyRunner``, output guard
and chunk queue as the robot, in lock-step with the simulation; the runner plans from
the env's commanded tool pose (``arm_state``) and each step's arm bins move the arm as
the console's jog would (:mod:`zima.sim.evaluate`'s module doc). The report is the pick
expert's (:class:`~zima.sim.pick_expert.PickExpertReport`): success with its 95 % Wilson
interval and the failure classes. Episode ``i`` uses seed ``seed + i``; the results do
not depend on the number of worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from zima.contract import PICK, Contract
from zima.episodes import Outcome
from zima.sim.evaluate import EvalConfig, filmed_episode
from zima.sim.pick import PickConfig, PickEnv
from zima.sim.pick_expert import PickEpisodeResult, PickExpertReport
from zima.sim.seeded_pool import run_seeds

__all__ = ["evaluate_pick", "pick_policy_episode"]


def pick_policy_episode(env: PickEnv, model_path: Path, cfg: EvalConfig,
                        seed: int) -> PickEpisodeResult:
    """One pick-up episode of the policy at ``model_path`` through the runtime's code,
    filmed (forward and wrist cameras side by side) where ``cfg.video_path`` says."""
    result, _ = filmed_episode(env, model_path, cfg, seed, cfg.video_path(seed))
    return PickEpisodeResult(seed, result.outcome, env.failure(result.outcome), result.steps,
                             result.time_s, grasps=0)


_Worker = tuple[PickEnv, Path, EvalConfig]


def _setup(arg: tuple[Path, EvalConfig, PickConfig, Contract]) -> _Worker:
    model_path, cfg, pick, contract = arg
    return PickEnv(cfg.scene, pick, contract), model_path, cfg


def _episode(worker: _Worker, seed: int) -> PickEpisodeResult:
    env, model_path, cfg = worker
    return pick_policy_episode(env, model_path, cfg, seed)


def _close(worker: _Worker) -> None:
    worker[0].close()


def evaluate_pick(model_path: Path, cfg: EvalConfig, pick: PickConfig | None = None,
                  contract: Contract = PICK,
                  progress: Callable[[int, int, float], None] | None = None,
                  ) -> PickExpertReport:
    """``cfg.episodes`` pick-up episodes of ``cfg.scene`` from seed ``cfg.seed`` in
    ``cfg.workers`` processes (``pick``: the task, its env ``cfg.env``); ``progress(done,
    total, success_rate)`` after each. A model the runtime refuses raises
    :class:`~zima.onboard.policy.ModelError` before any episode."""
    from zima.onboard.policy import load_model  # noqa: PLC0415 -- onnxruntime

    load_model(model_path, contract)
    pick = replace(pick or PickConfig(), env=cfg.env)
    start_s = time.perf_counter()
    seeds = range(cfg.seed, cfg.seed + cfg.episodes)
    results: list[PickEpisodeResult] = []

    def finished(result: PickEpisodeResult) -> None:
        results.append(result)
        if progress is not None:
            ok = sum(r.outcome is Outcome.SUCCESS for r in results)
            progress(len(results), cfg.episodes, ok / len(results))

    workers = max(1, min(cfg.workers, cfg.episodes))
    for result in run_seeds(_setup, _episode, _close, (model_path, cfg, pick, contract),
                            seeds, workers=workers):
        finished(result)
    ordered = tuple(sorted(results, key=lambda r: r.seed))
    return PickExpertReport(cfg.scene, ordered, time.perf_counter() - start_s)
