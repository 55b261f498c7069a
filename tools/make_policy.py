"""`make policy`: the bundled demo policy, from demonstrations to a measured ONNX file.

    .venv/bin/python tools/make_policy.py [--episodes 150] [--eval-episodes 100] [--workers N]

Runs the `zima` commands below in order, each printed and timed, and stops at the first
that fails:

1. ``zima sim collect``: the scripted expert's arena episodes, seeds 0 .. E-1 (data/demo);
2. ``zima train configs/demo_policy.toml``: behaviour cloning (runs/demo);
3. ``zima export``: runs/demo/last.pt (the last epoch: the weighted validation loss
   follows closed-loop success poorly) to models/zima-demo.onnx, with the parity check;
4. ``zima sim eval``: the ONNX file through the onboard runtime in the simulator, on seeds
   from EVAL_SEED on (never used in training: those are 0 .. E-1), with the runtime's
   default sampling.

Then it writes models/zima-demo.json, the file's provenance: the commands, seeds, data
size, each step's wall-clock time, the training history and the success rate with its
95% Wilson interval. The ONNX file and its provenance are committed; data/ and runs/ are
not. Every step is seeded, so a rerun on the same software gives the same episodes and,
on the CPU, the same weights.
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
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
ZIMA: Final = Path(sys.executable).parent / "zima"
CONFIG: Final = "configs/demo_policy.toml"
DATA: Final = "data/demo"
RUN: Final = "runs/demo"
MODEL: Final = "models/zima-demo.onnx"
PROVENANCE: Final = "models/zima-demo.json"
EVAL_SEED: Final = 100_000  # far above any training seed
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
    """Collect, train, export, evaluate; write the provenance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200,
                        help="expert demonstrations, seeds 0 .. N-1 (default 200)")
    parser.add_argument("--eval-episodes", type=int, default=100,
                        help=f"evaluation episodes, seeds {EVAL_SEED} on (default 100)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="collection worker processes (default: one per core)")
    parser.add_argument("--reuse-data", action="store_true",
                        help="keep data/demo when it holds exactly the episodes of seeds "
                             "0 .. N-1 (collection is deterministic per seed)")
    args = parser.parse_args(argv)
    if args.episodes < 2 or args.eval_episodes < 1 or args.workers < 1:
        parser.error("need --episodes >= 2, --eval-episodes >= 1 and --workers >= 1")
    if args.episodes > EVAL_SEED:
        parser.error(f"--episodes must stay below the evaluation seeds ({EVAL_SEED})")

    from zima.sim.collect import episode_path  # noqa: PLC0415

    expected = {episode_path(ROOT / DATA, "arena", s) for s in range(args.episodes)}
    reuse = args.reuse_data and set((ROOT / DATA).glob("*.h5")) == expected
    # A fresh data set and run: stale episodes or a last.pt would change the result.
    for folder in (RUN,) if reuse else (DATA, RUN):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
    (ROOT / MODEL).parent.mkdir(exist_ok=True)
    collect = ["sim", "collect", "--scene", "arena", "--episodes", str(args.episodes),
               "--seed", "0", "--workers", str(args.workers), "--out", DATA]
    train = ["train", CONFIG, "--quiet"]
    export = ["export", f"{RUN}/last.pt", "--out", MODEL, "--samples", DATA]
    evaluate = ["sim", "eval", MODEL, "--scene", "arena", "--episodes",
                str(args.eval_episodes), "--seed", str(EVAL_SEED)]
    total_start = time.perf_counter()
    if reuse:
        print(f"\nreusing {DATA}: the episodes of seeds 0..{args.episodes - 1}")
    collect_s = None if reuse else _run(collect)[0]
    train_s, _ = _run(train)
    export_s, _ = _run(export)
    eval_s, eval_out = _run(evaluate, capture=True)
    total_s = time.perf_counter() - total_start

    from zima.sim.evaluate import wilson_interval  # noqa: PLC0415 -- after the steps: mujoco

    match = _SUCCESS.search(eval_out)
    if match is None:
        sys.exit("make policy: no success row in the output of `zima sim eval`")
    successes, n = int(match.group(1)), args.eval_episodes
    low, high = wilson_interval(successes, n)
    frames = sum(1 for _ in (ROOT / DATA).glob("*.h5"))
    history: list[dict[str, Any]] = json.loads((ROOT / RUN / "metrics.json").read_text())
    model = ROOT / MODEL
    provenance = {
        "model": MODEL,
        "sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
        "size_bytes": model.stat().st_size,
        "made_by": "make policy (tools/make_policy.py)",
        "commands": [f"zima {' '.join(c)}" for c in (collect, train, export, evaluate)],
        "config": CONFIG,
        "data_reused": reuse,  # --reuse-data: the episodes of an earlier, identical collect
        "training_data": {"scene": "arena", "seeds": [0, args.episodes - 1],
                          "episode_files": frames,
                          "steps": _steps(ROOT / DATA)},
        "evaluation": {"scene": "arena", "seeds": [EVAL_SEED, EVAL_SEED + n - 1],
                       "episodes": n, "successes": successes, "success_rate": successes / n,
                       "ci95_wilson": [low, high], "execute_k": 4, "temperature": 1.0,
                       "table": eval_out.strip().splitlines()},
        "training_history": [{k: h[k] for k in ("epoch", "train_loss", "val_loss", "val_acc",
                                                 "seconds")} for h in history],
        "wall_s": {"collect": collect_s, "train": train_s, "export": export_s,
                   "eval": eval_s, "total": total_s},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
    }
    (ROOT / PROVENANCE).write_text(json.dumps(provenance, indent=1) + "\n")
    print(f"\nmake policy: {MODEL} ({model.stat().st_size / 1e6:.2f} MB), success "
          f"{successes}/{n} = {successes / n:.1%} (95% CI {low:.1%} - {high:.1%}) on held-out "
          f"seeds {EVAL_SEED}..{EVAL_SEED + n - 1}; {total_s / 60:.1f} min in all "
          f"(collect {'reused' if collect_s is None else f'{collect_s:.0f} s'}, "
          f"train {train_s:.0f} s, export {export_s:.0f} s, "
          f"eval {eval_s:.0f} s); provenance in {PROVENANCE}")
    return 0


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
