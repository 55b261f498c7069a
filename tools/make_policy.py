"""`make policy`: the bundled demo policy, from demonstrations to a measured ONNX file.

    .venv/bin/python tools/make_policy.py [--episodes 400] [--dagger-rounds 2] [--workers N]

Runs the `zima` commands below in order, each printed and timed, and stops at the first
that fails:

1. ``zima sim collect``: the scripted expert's arena episodes, seeds 0 .. E-1 (data/demo);
2. ``zima train configs/demo_policy.toml``: behaviour cloning (runs/demo);
3. ``zima export``: runs/demo/best.pt (the epoch of the lowest validation loss) to
   runs/demo/policy.onnx, with the parity check;
4. DAgger rounds r = 1 .. R: ``zima sim collect --policy`` lets the last round's policy
   drive episodes of seeds r * 10000 on (data/dagger<r>) with the expert labelling every
   step; ``zima train --set ...`` fine-tunes the last round's best checkpoint on all
   episodes so far (runs/dagger<r>); ``zima export`` its best.pt. Behaviour cloning
   alone only ever sees the expert's states; these rounds teach the policy the way back
   from its own mistakes;
5. the last round's export is copied to models/zima-demo.onnx, and ``zima sim eval`` runs
   it through the onboard runtime in the simulator on seeds from EVAL_SEED on (never used
   in training), with the runtime's default sampling.

Then it writes models/zima-demo.json, the file's provenance: the commands, seeds, data
size, each step's wall-clock time, the training histories, each DAgger round's on-policy
success and the success rate with its 95% Wilson interval. The ONNX file and its
provenance are committed; data/ and runs/ are not. Every step is seeded, so a rerun on the
same software gives the same episodes and, on the CPU, the same weights; that is also why
``--resume`` may keep what an interrupted run finished (episode folders holding exactly
their seeds, training runs through `zima train --resume`).
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
DATA: Final = "data/demo"
RUN: Final = "runs/demo"
MODEL: Final = "models/zima-demo.onnx"
PROVENANCE: Final = "models/zima-demo.json"
Step = Callable[..., str]  # step(name, zima argv, capture=False) -> captured stdout
EVAL_SEED: Final = 100_000  # far above any training seed
DAGGER_SEED: Final = 10_000  # DAgger round r collects seeds r * DAGGER_SEED on
_SUCCESS: Final = re.compile(r"^success\s+(\d+) \(", re.MULTILINE)


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
        for folder in (DATA, RUN, *_dagger_folders()):
            shutil.rmtree(ROOT / folder, ignore_errors=True)
    (ROOT / MODEL).parent.mkdir(exist_ok=True)
    total_start = time.perf_counter()
    commands: list[list[str]] = []
    seconds: dict[str, float | None] = {}

    def step(name: str, argv: list[str], capture: bool = False) -> str:
        commands.append(argv)
        seconds[name], out = _run(argv, capture)
        return out

    data_dirs = [DATA]
    collected = _collect(args, step, "collect", DATA, seed=0, episodes=args.episodes)
    step("train", ["train", CONFIG, "--quiet", *(["--resume"] if args.resume else [])])
    run, onnx = RUN, f"{RUN}/policy.onnx"
    step("export", ["export", f"{run}/best.pt", "--out", onnx, "--samples", DATA])
    histories = {"bc": _history(run)}
    rounds: list[dict[str, Any]] = []
    for r in range(1, args.dagger_rounds + 1):
        folder = f"data/dagger{r}"
        out = _collect(args, step, f"dagger{r}_collect", folder, seed=r * DAGGER_SEED,
                       episodes=args.dagger_episodes, policy=onnx)
        data_dirs.append(folder)
        previous, run = run, f"runs/dagger{r}"
        dirs = "[" + ", ".join(f'"{d}"' for d in data_dirs) + "]"
        step(f"dagger{r}_train",
             ["train", CONFIG, "--quiet", "--set", f"output_dir={run}",
              "--set", f"init_from={previous}/best.pt", "--set", f"epochs={args.dagger_epochs}",
              "--set", f"patience={args.dagger_epochs}", "--set", f"data.dirs={dirs}",
              *(["--resume"] if args.resume else [])])
        onnx = f"{run}/policy.onnx"
        step(f"dagger{r}_export", ["export", f"{run}/best.pt", "--out", onnx,
                                   "--samples", DATA])
        histories[f"dagger{r}"] = _history(run)
        rounds.append({"round": r, "seeds": [r * DAGGER_SEED,
                                             r * DAGGER_SEED + args.dagger_episodes - 1],
                       "driver_success": _on_policy_success(out),
                       "steps": _steps(ROOT / folder)})
    shutil.copyfile(ROOT / onnx, ROOT / MODEL)
    eval_out = step("eval", ["sim", "eval", MODEL, "--scene", "arena", "--episodes",
                             str(args.eval_episodes), "--seed", str(EVAL_SEED)], capture=True)
    total_s = time.perf_counter() - total_start

    from zima.sim.evaluate import wilson_interval  # noqa: PLC0415 -- after the steps: mujoco

    match = _SUCCESS.search(eval_out)
    if match is None:
        sys.exit("make policy: no success row in the output of `zima sim eval`")
    successes, n = int(match.group(1)), args.eval_episodes
    low, high = wilson_interval(successes, n)
    model = ROOT / MODEL
    provenance = {
        "model": MODEL,
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "size_bytes": model.stat().st_size,
        "made_by": "make policy (tools/make_policy.py)",
        "commands": [f"zima {' '.join(c)}" for c in commands],
        "config": CONFIG,
        "resumed": args.resume,  # --resume: finished steps of an earlier, identical run kept
        "training_data": {"scene": "arena", "seeds": [0, args.episodes - 1],
                          "episode_files": sum(1 for _ in (ROOT / DATA).glob("*.h5")),
                          "steps": _steps(ROOT / DATA), "collected": collected is not None},
        "dagger_rounds": rounds,
        "evaluation": {"scene": "arena", "seeds": [EVAL_SEED, EVAL_SEED + n - 1],
                       "episodes": n, "successes": successes, "success_rate": successes / n,
                       "ci95_wilson": [low, high], "execute_k": 4, "temperature": 1.0,
                       "table": eval_out.strip().splitlines()},
        "training_history": histories,
        "wall_s": {**seconds, "total": total_s},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
    }
    (ROOT / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"\nmake policy: {MODEL} ({model.stat().st_size / 1e6:.2f} MB), success "
          f"{successes}/{n} = {successes / n:.1%} (95% CI {low:.1%} - {high:.1%}) on held-out "
          f"seeds {EVAL_SEED}..{EVAL_SEED + n - 1}; {total_s / 60:.1f} min in all; "
          f"provenance in {PROVENANCE}")
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=400,
                        help="expert demonstrations, seeds 0 .. N-1 (default 400)")
    parser.add_argument("--dagger-rounds", type=int, default=2,
                        help="DAgger rounds after behaviour cloning (default 2)")
    parser.add_argument("--dagger-episodes", type=int, default=100,
                        help="policy-driven episodes per DAgger round (default 100)")
    parser.add_argument("--dagger-epochs", type=int, default=4,
                        help="fine-tuning epochs per DAgger round (default 4)")
    parser.add_argument("--eval-episodes", type=int, default=100,
                        help=f"evaluation episodes, seeds {EVAL_SEED} on (default 100)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="collection worker processes (default: one per core)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the episode folders that hold exactly their seeds and "
                             "continue the training runs (each step is deterministic)")
    args = parser.parse_args(argv)
    if (args.episodes < 2 or args.eval_episodes < 1 or args.workers < 1
            or args.dagger_rounds < 0 or args.dagger_episodes < 1 or args.dagger_epochs < 1):
        parser.error("need --episodes >= 2, --eval-episodes, --workers, --dagger-episodes and "
                     "--dagger-epochs >= 1 and --dagger-rounds >= 0")
    if args.episodes > DAGGER_SEED or args.dagger_episodes > DAGGER_SEED:
        parser.error(f"--episodes and --dagger-episodes must stay below {DAGGER_SEED}")
    if (args.dagger_rounds + 1) * DAGGER_SEED > EVAL_SEED:
        parser.error(f"at most {EVAL_SEED // DAGGER_SEED - 1} DAgger rounds: their seeds "
                     f"must stay below the evaluation seeds ({EVAL_SEED})")
    return args


def _dagger_folders() -> list[str]:
    """Every DAgger round's episode and run folder there is (a fresh start removes them)."""
    return [str(p.relative_to(ROOT)) for pattern in ("data/dagger*", "runs/dagger*")
            for p in sorted(ROOT.glob(pattern))]


def _collect(args: argparse.Namespace, step: Step, name: str, folder: str, *, seed: int,
             episodes: int, policy: str | None = None) -> str | None:
    """Collect ``episodes`` from ``seed`` into ``folder`` (``policy`` driving, or the
    expert); under ``--resume`` a folder holding exactly those seeds is kept. The
    collection's output (captured when a policy drives), None when kept."""
    from zima.sim.collect import episode_path  # noqa: PLC0415

    expected = {episode_path(ROOT / folder, "arena", s) for s in range(seed, seed + episodes)}
    if args.resume and set((ROOT / folder).glob("*.h5")) == expected:
        print(f"\nreusing {folder}: the episodes of seeds {seed}..{seed + episodes - 1}")
        return None
    shutil.rmtree(ROOT / folder, ignore_errors=True)
    argv = ["sim", "collect", "--scene", "arena", "--episodes", str(episodes), "--seed",
            str(seed), "--workers", str(args.workers), "--out", folder]
    return step(name, argv + (["--policy", policy] if policy else []), capture=policy is not None)


def _on_policy_success(collect_out: str | None) -> float | None:
    """The driving policy's success rate in a DAgger collection (None when reused)."""
    match = re.search(r"policy success ([\d.]+)%", collect_out or "")
    return float(match.group(1)) / 100 if match else None


def _history(run: str) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = json.loads((ROOT / run / "metrics.json").read_text())
    return [{k: h[k] for k in ("epoch", "train_loss", "val_loss", "val_acc", "seconds")}
            for h in history]


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
