"""`make policy`: the bundled policy for every scene, from demonstrations to a measured ONNX file.

    .venv/bin/python tools/make_policy.py [--episodes 1200] [--dagger-rounds 1] [--workers N]
                                          [--device cpu|cuda] [--resume]

A user's robot lives in rooms, not in the empty arena, so the policy learns from a mix of
scenes (``MIX``): mostly procedural worlds (a new room per seed), and the two fixed test
worlds ``room`` and ``arena`` at seeds their evaluation never uses. It runs the `zima`
commands below in order, each printed and timed, and stops at the first that fails:

1. ``zima sim collect``: the scripted expert's episodes of every scene in ``MIX``, seeds
   0 .. n-1 per scene (data/policy/expert-<scene>);
2. ``zima train configs/demo_policy.toml``: behaviour cloning on them (runs/policy/bc);
3. ``zima export``: its best.pt (the epoch of the lowest validation loss) to policy.onnx,
   with the parity check;
4. DAgger rounds r = 1 .. R: ``zima sim collect --policy`` lets the last round's policy
   drive episodes of every scene in ``DAGGER_MIX``, seeds r * 10000 on
   (data/policy/dagger<r>-<scene>), the expert labelling every step; ``zima train --set
   ...`` fine-tunes the last round's best checkpoint on all episodes so far
   (runs/policy/dagger<r>); ``zima export`` its best.pt. Behaviour cloning alone only ever
   sees the expert's states; these rounds teach the policy the way back from its own
   mistakes, in the scenes where it makes them;
5. the last export is copied to models/zima-demo.onnx, and ``zima sim eval`` runs it
   through the onboard runtime in the simulator in every scene on seeds from EVAL_SEED on
   (no recipe uses them; `zima sim suite` holds out 1000000 on), with the runtime's
   default sampling.

Then it writes models/zima-demo.json, the file's provenance: the commands, seeds, data
sizes, each step's wall-clock time, the training histories, each DAgger round's on-policy
success and every scene's success and collision rates with their 95% Wilson intervals.
The ONNX file and its provenance are committed; data/ and runs/ are not.

Every step is seeded, so a rerun on the same software gives the same episodes and, on the
CPU, the same weights; that is also why ``--resume`` may keep what an interrupted run
finished: a collection whose folder holds its completion record (``collected.json``: the
scene, seeds, driver and options that filled it, written last), and the training runs through
`zima train --resume`.
``--device cuda`` trains on a GPU (collection and evaluation render on the CPU either way);
the recipe is sized to need none: about 70 minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
ZIMA: Final = Path(sys.executable).parent / "zima"
CONFIG: Final = "configs/demo_policy.toml"
DATA: Final = "data/policy"
RUNS: Final = "runs/policy"
MODEL: Final = "models/zima-demo.onnx"
PROVENANCE: Final = "models/zima-demo.json"
DONE: Final = "collected.json"  # a collection folder's completion record, written last
# step(name, zima argv, capture=False, reused=None) -> captured stdout; ``reused``: the
# output of an earlier run's identical step, listed with no time instead of run again
Step = Callable[..., str]
EVAL_SEED: Final = 100_000  # far above any training seed
DAGGER_SEED: Final = 10_000  # DAgger round r collects seeds r * DAGGER_SEED on
# A DAgger round fine-tunes at this rate, under the behaviour cloning's 1e-3 start, along
# the configuration's cosine (the pick policy's rounds did best fine-tuned below 3e-4).
DAGGER_LR: Final = 3e-4
# Shares of the expert demonstrations per scene. Procedural worlds carry the variety (a
# new room, furniture, light and distractors per seed); the fixed worlds are in the mix
# at training seeds because they are judged too, and `room`'s furniture layout is one
# the procedural family draws rarely.
MIX: Final = (("procedural", 4), ("room", 1), ("arena", 1))
# Shares of the policy-driven DAgger episodes: more of the fixed worlds than above, where
# the 95% targets leave the least room for mistakes.
DAGGER_MIX: Final = (("procedural", 2), ("room", 1), ("arena", 1))
SCENES: Final = tuple(scene for scene, _ in MIX)
_RATE: Final = r"^{}\s+(\d+) \("
_SUCCESS: Final = re.compile(_RATE.format("success"), re.MULTILINE)
_COLLISION: Final = re.compile(_RATE.format("collision"), re.MULTILINE)


def split(total: int, mix: tuple[tuple[str, int], ...]) -> dict[str, int]:
    """``total`` episodes shared out by ``mix``'s weights (the first scene takes what
    rounding leaves), each scene at least one."""
    weight = sum(w for _, w in mix)
    counts = {scene: max(1, total * w // weight) for scene, w in mix[1:]}
    return {mix[0][0]: max(1, total - sum(counts.values())), **counts}


class Steps:
    """Runs the recipe's steps (a :data:`Step`) and keeps what ran: each command line, and
    its wall-clock seconds (None: kept from an earlier run under ``--resume``)."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.seconds: dict[str, float | None] = {}

    def __call__(self, name: str, argv: list[str], capture: bool = False,
                 reused: str | None = None) -> str:
        self.commands.append(f"zima {' '.join(argv)}")
        if reused is not None:
            self.seconds[name] = None
            return reused
        self.seconds[name], out = _run(argv, capture)
        return out


def _run(argv: list[str], capture: bool = False) -> tuple[float, str]:
    """Run ``zima argv`` in the repository root: (wall-clock seconds, its stdout if
    ``capture``, also echoed). Exits with the command's status when it fails."""
    print(f"\n$ zima {' '.join(argv)}", flush=True)
    start = time.perf_counter()
    proc = subprocess.run([str(ZIMA), *argv], cwd=ROOT, check=False, text=True,  # noqa: S603
                          stdout=subprocess.PIPE if capture else None)
    seconds = time.perf_counter() - start
    if capture:
        print(proc.stdout, end="", flush=True)
    if proc.returncode != 0:
        sys.exit(f"make policy: `zima {' '.join(argv)}` failed with status {proc.returncode}")
    return seconds, proc.stdout if capture else ""


def main(argv: list[str] | None = None) -> int:
    """Collect, train, export, DAgger rounds, evaluate; write the provenance."""
    args = _arguments(argv)
    if not args.resume:  # a fresh start: stale episodes or checkpoints would change the result
        for folder in (DATA, RUNS):
            shutil.rmtree(ROOT / folder, ignore_errors=True)
    (ROOT / MODEL).parent.mkdir(exist_ok=True)
    total_start = time.perf_counter()
    step = Steps()

    device = ["--set", f"device={args.device}"]
    resume = ["--resume"] if args.resume else []
    expert = split(args.episodes, MIX)
    data_dirs = []
    for scene, n in expert.items():
        folder = f"{DATA}/expert-{scene}"
        _collect(args, step, f"collect_{scene}", folder, scene, seed=0, episodes=n)
        data_dirs.append(folder)
    samples = data_dirs[0]  # the parity check's inputs
    run = f"{RUNS}/bc"
    step("train", ["train", CONFIG, "--quiet", "--set", f"output_dir={run}",
                   "--set", f"data.dirs={_toml_list(data_dirs)}",
                   "--set", f"epochs={args.epochs}", *device, *resume])
    onnx = f"{run}/policy.onnx"
    step("export", ["export", f"{run}/best.pt", "--out", onnx, "--samples", samples])
    histories = {"bc": _history(run)}
    rounds: list[dict[str, Any]] = []
    for r in range(1, args.dagger_rounds + 1):
        driven: dict[str, Any] = {}
        for scene, n in split(args.dagger_episodes, DAGGER_MIX).items():
            folder = f"{DATA}/dagger{r}-{scene}"
            out = _collect(args, step, f"dagger{r}_collect_{scene}", folder, scene,
                           seed=r * DAGGER_SEED, episodes=n, policy=onnx)
            data_dirs.append(folder)
            driven[scene] = {"seeds": [r * DAGGER_SEED, r * DAGGER_SEED + n - 1],
                             "driver_success": _on_policy_success(out),
                             "steps": _steps(ROOT / folder)}
        previous, run = run, f"{RUNS}/dagger{r}"
        step(f"dagger{r}_train",
             ["train", CONFIG, "--quiet", "--set", f"output_dir={run}",
              "--set", f"init_from={previous}/best.pt", "--set", f"epochs={args.dagger_epochs}",
              "--set", f"patience={args.dagger_epochs}",
              "--set", f"backbone_lr={DAGGER_LR}", "--set", f"head_lr={DAGGER_LR}",
              "--set", f"data.dirs={_toml_list(data_dirs)}", *device, *resume])
        onnx = f"{run}/policy.onnx"
        step(f"dagger{r}_export", ["export", f"{run}/best.pt", "--out", onnx,
                                   "--samples", samples])
        histories[f"dagger{r}"] = _history(run)
        rounds.append({"round": r, "scenes": driven})
    shutil.copyfile(ROOT / onnx, ROOT / MODEL)
    n = args.eval_episodes
    evaluation = {scene: _evaluate(args, step, scene) for scene in SCENES}
    total_s = time.perf_counter() - total_start
    model = ROOT / MODEL
    provenance = {
        "model": MODEL,
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "size_bytes": model.stat().st_size,
        "made_by": "make policy (tools/make_policy.py)",
        "commands": step.commands,
        "config": CONFIG,
        "device": args.device,
        "resumed": args.resume,  # --resume: finished steps of an earlier, identical run kept
        "training_data": {scene: {"seeds": [0, count - 1],
                                  "episode_files": _files(ROOT / f"{DATA}/expert-{scene}"),
                                  "steps": _steps(ROOT / f"{DATA}/expert-{scene}")}
                          for scene, count in expert.items()},
        "dagger_rounds": rounds,
        "evaluation": {"seeds": [EVAL_SEED, EVAL_SEED + n - 1], "episodes": n,
                       "execute_k": 4, "temperature": 1.0, "scenes": evaluation},
        "training_history": histories,
        "wall_s": {**step.seconds, "total": total_s},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
    }
    (ROOT / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"\nmake policy: {MODEL} ({model.stat().st_size / 1e6:.2f} MB) on held-out seeds "
          f"{EVAL_SEED}..{EVAL_SEED + n - 1}; {total_s / 60:.1f} min in all; provenance in "
          f"{PROVENANCE}")
    for scene, e in evaluation.items():
        low, high = e["ci95_wilson"]
        print(f"  {scene:<11} success {e['successes']}/{n} = {e['success_rate']:.1%} "
              f"(95% CI {low:.1%} - {high:.1%}), collisions {e['collision_rate']:.1%}")
    return 0


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--resume``, as this recipe and the pick policy's take them."""
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="collection and evaluation worker processes (default: one per "
                             "core)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the collections that finished and continue the training "
                             "runs (each step is deterministic)")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=1200,
                        help="expert demonstrations, shared out over the scenes 4:1:1 "
                             "(procedural, room, arena), seeds 0 .. n-1 each (default 1200)")
    parser.add_argument("--epochs", type=int, default=4,
                        help="behaviour-cloning epochs (default 4; the learning rates fall "
                             "along a cosine over them)")
    parser.add_argument("--dagger-rounds", type=int, default=1,
                        help="DAgger rounds after behaviour cloning (default 1: a second "
                             "round, one more pass over the demonstrations, lost in every "
                             "scene)")
    parser.add_argument("--dagger-episodes", type=int, default=300,
                        help="policy-driven episodes per DAgger round, shared out 2:1:1 "
                             "(default 300)")
    parser.add_argument("--dagger-epochs", type=int, default=1,
                        help=f"fine-tuning epochs per DAgger round, at {DAGGER_LR:g} "
                             f"(default 1)")
    parser.add_argument("--eval-episodes", type=int, default=100,
                        help=f"evaluation episodes per scene, seeds {EVAL_SEED} on (default 100)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the training runs (default cpu; cuda: a GPU, if any)")
    add_run_options(parser)
    args = parser.parse_args(argv)
    if (args.episodes < 2 * len(MIX) or args.eval_episodes < 1 or args.workers < 1
            or args.epochs < 1 or args.dagger_rounds < 0 or args.dagger_episodes < len(DAGGER_MIX)
            or args.dagger_epochs < 1):
        parser.error(f"need --episodes >= {2 * len(MIX)}, --dagger-episodes >= "
                     f"{len(DAGGER_MIX)}, --eval-episodes, --workers, --epochs and "
                     f"--dagger-epochs >= 1 and --dagger-rounds >= 0")
    if args.episodes > DAGGER_SEED or args.dagger_episodes > DAGGER_SEED:
        parser.error(f"--episodes and --dagger-episodes must stay below {DAGGER_SEED}")
    if (args.dagger_rounds + 1) * DAGGER_SEED > EVAL_SEED:
        parser.error(f"at most {EVAL_SEED // DAGGER_SEED - 1} DAgger rounds: their seeds "
                     f"must stay below the evaluation seeds ({EVAL_SEED})")
    return args


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def _collect(args: argparse.Namespace, step: Step, name: str, folder: str, scene: str, *,
             seed: int, episodes: int, policy: str | None = None,
             extra: tuple[str, ...] = ()) -> str:
    """Collect ``episodes`` of ``scene`` from ``seed`` into ``folder`` (``policy`` driving,
    or the expert; ``extra``: more ``zima sim collect`` options). Under ``--resume`` a
    folder whose completion record names the same scene, seeds, driver and options is kept
    (the expert's failed episodes leave no file, so the files alone cannot say whether a
    collection finished). The collection's output (captured when a policy drives), or the
    recorded one when kept."""
    argv = ["sim", "collect", "--scene", scene, "--episodes", str(episodes), "--seed",
            str(seed), "--workers", str(args.workers), "--out", folder, *extra]
    argv += ["--policy", policy] if policy else []
    what: dict[str, Any] = {"scene": scene, "seed": seed, "episodes": episodes,
                            "policy": policy}
    if extra:
        what["options"] = list(extra)
    record = ROOT / folder / DONE
    if args.resume and record.is_file():
        done = json.loads(record.read_text())
        if done.get("collected") == what:  # the worker count changes nothing
            print(f"\nreusing {folder}: {scene} episodes of seeds {seed}..{seed + episodes - 1}")
            return step(name, argv, reused=str(done.get("output", "")))
    shutil.rmtree(ROOT / folder, ignore_errors=True)
    out = step(name, argv, capture=policy is not None)
    record.write_text(json.dumps({"collected": what, "output": out}, indent=1) + "\n")
    return out


def _evaluate(args: argparse.Namespace, step: Step, scene: str) -> dict[str, Any]:
    """``zima sim eval`` of the bundled model in ``scene`` on the held-out seeds: success
    and collision counts and rates, the success rate's 95% Wilson interval, the table."""
    from zima.sim.evaluate import wilson_interval  # noqa: PLC0415 -- after the steps: mujoco

    n = args.eval_episodes
    out = step(f"eval_{scene}", ["sim", "eval", MODEL, "--scene", scene, "--episodes", str(n),
                                 "--seed", str(EVAL_SEED), "--workers", str(args.workers)],
               capture=True)
    success, collision = _SUCCESS.search(out), _COLLISION.search(out)
    if success is None or collision is None:
        sys.exit("make policy: no success or collision row in the output of `zima sim eval`")
    successes, collisions = int(success.group(1)), int(collision.group(1))
    return {"successes": successes, "success_rate": successes / n,
            "ci95_wilson": list(wilson_interval(successes, n)),
            "collisions": collisions, "collision_rate": collisions / n,
            "collision_ci95_wilson": list(wilson_interval(collisions, n)),
            "table": out.strip().splitlines()}


def _on_policy_success(collect_out: str | None) -> float | None:
    """The driving policy's success rate in a DAgger collection (None when unknown)."""
    match = re.search(r"policy success ([\d.]+)%", collect_out or "")
    return float(match.group(1)) / 100 if match else None


def _history(run: str) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = json.loads((ROOT / run / "metrics.json").read_text())
    return [{k: h[k] for k in ("epoch", "train_loss", "val_loss", "val_acc", "seconds")}
            for h in history]


def _files(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.h5"))


def _steps(folder: Path) -> int:
    """Steps in the episode files of ``folder``."""
    from zima.contract import DEFAULT  # noqa: PLC0415
    from zima.episodes import EpisodeReader  # noqa: PLC0415

    total = 0
    for path in sorted(folder.glob("*.h5")):
        with EpisodeReader(path, DEFAULT) as reader:
            total += reader.n_steps
    return total


if __name__ == "__main__":
    sys.exit(main())
