"""`zima score MODEL.onnx EPISODES...`: how often a model picks the recorded action.

The one offline measure there is for real data (:mod:`zima.training.score`: each episode
replayed through the runtime's fusion and model loader)::

    zima score runs/real/policy.onnx data/real                # tables on stdout
    zima score model.onnx data/real/lab_*.h5 --plot cm.png --json score.json
    zima score model.onnx data/real --json - | jq .agreement  # JSON only

Prints one line per episode (file, outcome, source, mode, steps, agreement), the
confusion matrix (label x predicted) with each label's agreement, and the overall
agreement. The model is loaded and verified as the robot loads it (the runtime's
contract). A file that is not a readable episode of that contract is named with the
reason on stderr, skipped and counted. Exit status: 0 when at least one episode was
scored, 2 otherwise (no episode files, none readable, a refused model, bad arguments).
Needs the onboard extras only (onnxruntime, h5py, OpenCV); ``--plot`` also matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from zima.stderr import fail, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `zima score` arguments."""
    parser.add_argument("model", type=Path, help="the policy model (ONNX, as the robot loads it)")
    parser.add_argument("episodes", type=Path, nargs="+", metavar="EPISODES",
                        help="episode folders (their *.h5, not recursive) or episode files")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the report as JSON to FILE ('-': to stdout, instead "
                             "of the tables)")
    parser.add_argument("--plot", type=Path, metavar="PNG",
                        help="draw the confusion matrix into PNG (needs matplotlib)")
    parser.add_argument("--threads", type=int, default=1,
                        help="onnxruntime threads (default 1, as on the robot)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress line (shown only on a terminal anyway)")


def run(args: argparse.Namespace) -> int:
    """Score; 0 when at least one episode was scored, 2 otherwise."""
    # Heavy imports (onnxruntime, h5py, OpenCV) here: `zima --help` stays fast.
    from zima.contract import DEFAULT  # noqa: PLC0415
    from zima.onboard.policy import ModelError, load_model  # noqa: PLC0415
    from zima.training.score import episode_paths, plot_confusion, score  # noqa: PLC0415

    if args.threads < 1:
        return _fail("--threads must be at least 1")
    try:
        paths = episode_paths(args.episodes)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    if not paths:
        return _fail(f"no episode files (*.h5) in {', '.join(map(str, args.episodes))}")
    try:
        model = load_model(args.model, DEFAULT, intra_op_threads=args.threads)
    except ModelError as exc:
        return _fail(f"the runtime refuses this model: {exc}")
    live = not args.quiet and sys.stderr.isatty()  # a progress line, on a terminal only
    shown_s = 0.0
    clear = "\r\033[K" if live else ""

    def progress(index: int, files: int, steps: int) -> None:
        nonlocal shown_s
        if live and (now_s := time.monotonic()) - shown_s > 0.5:
            shown_s = now_s
            say(f"{clear}scoring file {index + 1}/{files}, {steps} steps")

    def skipped(file: str, why: str) -> None:
        say(f"{clear}zima score: skipped: {why if file in why else f'{file}: {why}'}\n")

    report = score(model, paths, progress, skipped)
    say(clear)
    to_stdout = args.json is not None and str(args.json) == "-"
    if args.json is not None:
        text = json.dumps(report.to_json(), indent=1)
        if to_stdout:
            sys.stdout.write(text + "\n")
        else:
            args.json.write_text(text + "\n")
    if not to_stdout:
        sys.stdout.write(f"{args.model} (sha256 {report.model_sha256[:12]}) on "
                         f"{len(paths)} file(s); label: expert_action "
                         f"where recorded, else action\n{report.tables()}\n")
    if not report.episodes:
        return _fail(f"no episode could be scored ({len(report.skipped)} file(s) skipped)")
    if args.plot is not None:
        say(f"plot: {plot_confusion(report, args.plot)}\n")
    return 0


def _fail(message: str) -> int:
    return fail("zima score", message)
