"""`make pick-policy`: the pick-up policy in four stages, from demonstrations to a measured model.

    .venv/bin/python tools/make_pick_policy.py [--stages 4] [--workers N] [--resume]

The recipe of the README's pick section, as one command (issue 17, item 4). Each stage
collects its episodes with ``zima sim collect --task pick``, trains its configuration
(``configs/pick_policy*.toml``: each names its data folders, its output folder and the
checkpoint it fine-tunes) and exports that run's ``last.pt``:

1. ``bc``: behaviour cloning of 800 noisy expert episodes (seeds 0..799);
2. ``grasp``: fine-tuned on 800 more that start near the cube, and 400 from afar;
3. ``dagger-grasp``: stage 2's policy drives 200 episodes (seeds 4000000..), the
   labelling expert says at every step what it would do (DAgger), one epoch of fine-tuning;
4. ``dagger-2``: a second round, stage 3's policy driving 300 (seeds 4000200..).

Then ``zima sim eval --task pick`` measures the last stage's export on the validation seeds
(500000.., which the README's comparisons used) and the held-out ones (1000000..), in the
arena. A summary with the commands and timings goes to ``runs/pick/make-pick-policy.json``.

It takes about three hours on two CPU cores, most of it training (``--resume`` continues an
interrupted run: finished collections are kept by their completion record, and each
training run goes on from its last epoch). ``--stages K`` stops after stage K.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script
from tools import make_policy  # its step runner and resumable collections

ROOT: Final = make_policy.ROOT
SUMMARY: Final = "runs/pick/make-pick-policy.json"
SAMPLES: Final = "data/pick/expert-open-arena"  # the export's parity-check inputs
NOISY: Final = ("--task", "pick", "--noise", "0.1")
NEAR: Final = (*NOISY, "--target-distance", "0.3", "0.6")
# (name, seed, episodes) of each evaluation: validation first, kept apart from held-out.
EVALS: Final = (("validation", 500_000, 60), ("held_out", 1_000_000, 100))
_PICKED: Final = re.compile(r"pick-up success\s+(\d+)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Collection:
    """One ``zima sim collect --task pick`` into ``folder``: the expert's episodes, or
    (``driver``: a stage's name) that stage's exported policy driving them."""

    folder: str
    seed: int
    episodes: int
    options: tuple[str, ...] = NOISY
    driver: str | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """A configuration to train after its collections; its run folder is the config's."""

    name: str
    config: str
    run: str
    collections: tuple[Collection, ...]


STAGES: Final = (
    Stage("bc", "configs/pick_policy.toml", "runs/pick/bc", (
        Collection("data/pick/expert-open-arena", 0, 400),
        Collection("data/pick/expert-open-arena-2", 400, 400))),
    Stage("grasp", "configs/pick_policy_grasp.toml", "runs/pick/grasp", (
        Collection("data/pick/expert-open-arena-3", 800, 400),
        Collection("data/pick/expert-near-arena", 3_000_000, 400, NEAR),
        Collection("data/pick/expert-near-arena-2", 3_000_400, 400, NEAR))),
    Stage("dagger-grasp", "configs/pick_policy_dagger.toml", "runs/pick/dagger-grasp", (
        Collection("data/pick/dagger-grasp", 4_000_000, 200, ("--task", "pick"), "grasp"),)),
    Stage("dagger-2", "configs/pick_policy_dagger2.toml", "runs/pick/dagger-2", (
        Collection("data/pick/dagger-2", 4_000_200, 300, ("--task", "pick"), "dagger-grasp"),)),
)


def policy(stage: Stage) -> str:
    """The ONNX file a stage's run exports."""
    return f"{stage.run}/policy.onnx"


def main(argv: list[str] | None = None) -> int:
    """Run the stages in order, evaluate the last one's export, write the summary."""
    args = _arguments(argv)
    runs = {stage.name: stage for stage in STAGES}
    step = make_policy.Steps()

    start = time.perf_counter()
    stages = STAGES[:args.stages]
    for stage in stages:
        for c in stage.collections:
            driver = policy(runs[c.driver]) if c.driver else None
            make_policy._collect(args, step, f"collect {c.folder}", c.folder, "arena",
                                 seed=c.seed, episodes=c.episodes, policy=driver,
                                 extra=c.options)
        step(f"train {stage.name}", ["train", stage.config, *(["--resume"] * args.resume)])
        step(f"export {stage.name}", ["export", f"{stage.run}/last.pt", "--out", policy(stage),
                                      "--samples", SAMPLES])
    model = policy(stages[-1])
    scores: dict[str, Any] = {}
    for name, seed, n in EVALS:
        out = step(f"eval {name}", ["sim", "eval", "--task", "pick", model, "--scene", "arena",
                                    "--episodes", str(n), "--seed", str(seed), "--workers",
                                    str(args.workers)], capture=True)
        picked = _PICKED.search(out)
        if picked is None:
            sys.exit("make pick-policy: no pick-up success row in the output of `zima sim eval`")
        scores[name] = {"seeds": [seed, seed + n - 1], "picked": int(picked.group(1)),
                        "episodes": n, "table": out.strip().splitlines()}
    total = time.perf_counter() - start
    summary = {"model": model, "stages": [stage.name for stage in stages],
               "resumed": args.resume, "commands": step.commands, "evaluation": scores,
               "wall_s": {**step.seconds, "total": total}}
    (ROOT / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nmake pick-policy: {model}, {total / 60:.1f} min in all; summary in {SUMMARY}")
    for name, score in scores.items():
        first, last = score["seeds"]
        print(f"  {name:<10} seeds {first}..{last}: {score['picked']}/{score['episodes']} "
              f"picked up")
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", type=int, default=len(STAGES),
                        help=f"run stages 1..K (default {len(STAGES)}: all)")
    make_policy.add_run_options(parser)
    args = parser.parse_args(argv)
    if not 1 <= args.stages <= len(STAGES) or args.workers < 1:
        parser.error(f"need 1 <= --stages <= {len(STAGES)} and --workers >= 1")
    return args


if __name__ == "__main__":
    sys.exit(main())
