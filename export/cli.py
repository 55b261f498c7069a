"""`zima export CHECKPOINT`: a trained checkpoint to the ONNX file the robot loads.

Steps, each printed: rebuild the Policy from the checkpoint (eval mode, verified), take
the held-out samples (``--samples`` episodes, else seeded random inputs), trace it to
ONNX with the contract in its metadata and, with ``--samples``, ``--ship-samples`` of the
episodes' observations (default 4, spread over them; 0: none), verify the file as the
robot does (``zima.onboard.policy.load_model`` for the checkpoint's contract: it also
runs the model on the shipped observations and refuses it when an output is not finite
and in range), compare PyTorch and onnxruntime logits on the samples and fail above the
thresholds. With ``--int8`` also write a statically quantised copy (``<out>.int8.onnx``:
QDQ, per-channel int8 weights, activation ranges calibrated on ``--n-calibrate``
observations of the *training* episodes of ``--calibrate``, default the ``--samples``
folder; the same metadata and shipped observations, verified the same way), report its
size and its argmax agreement with the float file on the held-out parity samples, and
time both files side by side on this machine (one thread, batch 1): below 1.5x it says
that int8 does not pay on this CPU and why (``zima.export.quantize``). ``zima export
MODEL.onnx --int8 --calibrate EPISODE_DIR`` does the int8 part alone for a model that was
exported already (the bundled one, whose checkpoint is not shipped): the copy is written
beside it (``MODEL.int8.onnx``, or ``--out``), its agreement measured on ``--samples`` (by
default the held-out episodes of ``--calibrate``). The shipped
observations travel inside the file: ``zima
deploy`` checks them before it uploads, the robot's runtime at start and at every
reload (a model that is NaN on real frames but finite on random ones is refused).
Exit status: 0 exported and within thresholds, 1 refused or failed (message on stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zima.contract import Contract

    from .parity import Samples

DEFAULT_SHIPPED = 4  # observations --samples ships in the model: ~150 kB each, raw, at 96x128
DEFAULT_CALIBRATION = 64  # observations --int8 calibrates on (ResNet-18: ~10 s)

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path,
                        help="checkpoint file (zima.training.checkpoint), or an exported "
                        "model (*.onnx) to make only its --int8 copy of")
    parser.add_argument("--out", type=Path,
                        help="ONNX file to write (default: model.onnx; for an *.onnx input "
                        "with --int8: its int8 copy, default MODEL.int8.onnx beside it)")
    parser.add_argument("--int8", action="store_true",
                        help="also write a static int8 copy beside --out, calibrated on "
                        "--calibrate's episodes, and time it against the float file")
    parser.add_argument("--calibrate", type=Path, metavar="EPISODE_DIR",
                        help="with --int8: episode folder (*.h5) whose training episodes "
                        "calibrate the int8 ranges (default: the --samples folder)")
    parser.add_argument("--n-calibrate", type=int, default=DEFAULT_CALIBRATION, metavar="N",
                        help=f"with --int8: calibration observations (default: "
                        f"{DEFAULT_CALIBRATION})")
    parser.add_argument("--samples", type=Path, metavar="EPISODE_DIR",
                        help="episode folder (*.h5) for the parity check (default: random)")
    parser.add_argument("--n-samples", type=int, default=32,
                        help="samples in the parity check (default: 32)")
    parser.add_argument("--ship-samples", type=int, default=DEFAULT_SHIPPED, metavar="N",
                        help="with --samples: observations written into the model, which "
                        f"load, reload and deploy run it on (default: {DEFAULT_SHIPPED}; "
                        "0: none)")


def int8_path(out: Path) -> Path:
    """Where ``--int8`` writes its copy: model.onnx -> model.int8.onnx."""
    return out.with_name(f"{out.stem}.int8{out.suffix or '.onnx'}")


def run(args: argparse.Namespace) -> int:
    from zima.onboard.model_samples import MAX_SAMPLES
    from zima.onboard.policy import ModelError, load_model
    from zima.training.checkpoint import (
        CheckpointError,
        build_policy,
        load_checkpoint,
    )

    from .onnx_export import ExportError, export_onnx, file_sha256
    from .parity import (
        check_parity,
        episode_samples,
        random_samples,
    )

    if not 0 <= args.ship_samples <= MAX_SAMPLES:
        print(f"zima export: --ship-samples {args.ship_samples} must be 0..{MAX_SAMPLES}",
              file=sys.stderr)
        return 1
    calibrate = args.calibrate or args.samples
    if args.int8 and calibrate is None:
        print("zima export: --int8 calibrates on recorded frames: give --calibrate "
              "EPISODE_DIR (or --samples)", file=sys.stderr)
        return 1
    if args.checkpoint.suffix == ".onnx":
        return _int8_of_onnx(args, calibrate)
    args.out = args.out or Path("model.onnx")
    try:
        checkpoint = load_checkpoint(args.checkpoint)
        model = build_policy(checkpoint)
        contract = checkpoint.contract
        samples = (episode_samples(args.samples, contract, args.n_samples) if args.samples
                   else random_samples(contract, args.n_samples))
        shipped = samples.spread(args.ship_samples) if args.samples and args.ship_samples \
            else None
        start_s = time.perf_counter()
        export_onnx(model, contract, args.out, source_sha256=file_sha256(args.checkpoint),
                    shipped=shipped)
        print(f"exported {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, "
              f"backbone {checkpoint.policy_config.backbone}) "
              f"in {time.perf_counter() - start_s:.2f} s")
        loaded = load_model(args.out, contract)
        print("verified: the onboard runtime accepts it for the checkpoint's contract")
        if loaded.samples_checked:
            print(f"shipped {loaded.samples_checked} observations of {samples.source} in it: "
                  "its outputs on them are finite and in range (load, reload and deploy "
                  "check them again)")
        print(f"parity samples: {samples.source}")
        report = check_parity(model, args.out, samples)
        for line in report.lines():
            print(line)
        report.check()
        if args.int8:
            _int8_copy(args.out, int8_path(args.out), contract, samples, calibrate=calibrate,
                       n_calibrate=args.n_calibrate)
    except (CheckpointError, ExportError, ModelError, OSError) as exc:
        print(f"zima export: {exc}", file=sys.stderr)
        return 1
    return 0


def _int8_of_onnx(args: argparse.Namespace, calibrate: Path | None) -> int:
    """``zima export MODEL.onnx --int8``: the int8 copy of an exported model."""
    from zima.onboard.policy import ModelError, load_model

    from .parity import episode_samples

    if not args.int8 or calibrate is None:
        print(f"zima export: {args.checkpoint} is an exported model: give --int8 "
              "--calibrate EPISODE_DIR for its int8 copy (a checkpoint exports afresh)",
              file=sys.stderr)
        return 1
    try:
        contract = load_model(args.checkpoint, None).contract
        samples = episode_samples(args.samples or calibrate, contract, args.n_samples)
        print(f"{args.checkpoint}: the runtime accepts it; its contract: "
              f"{contract.n_actions} actions, {contract.n_images} images")
        print(f"parity samples: {samples.source}")
        _int8_copy(args.checkpoint, args.out or int8_path(args.checkpoint), contract, samples,
                   calibrate=calibrate, n_calibrate=args.n_calibrate)
    except (ModelError, ValueError, OSError) as exc:
        print(f"zima export: {exc}", file=sys.stderr)
        return 1
    return 0


def _int8_copy(float_path: Path, out: Path, contract: Contract, samples: Samples, *,
               calibrate: Path, n_calibrate: int) -> None:
    """Write, verify, compare and time the int8 copy of ``float_path`` (module doc)."""
    from zima.onboard.policy import load_model

    from .parity import compare, episode_samples, onnx_logits
    from .quantize import quantize_int8, speed

    calibration = episode_samples(calibrate, contract, n_calibrate, held_out=False)
    start_s = time.perf_counter()
    q_path = quantize_int8(float_path, out, calibration)
    load_model(q_path, contract)
    print(f"int8: {q_path} {float_path.stat().st_size / 1e6:.2f} MB -> "
          f"{q_path.stat().st_size / 1e6:.2f} MB, calibrated on "
          f"{calibration.source} (training split) in "
          f"{time.perf_counter() - start_s:.1f} s; the runtime accepts it")
    q_report = compare(onnx_logits(float_path, samples), onnx_logits(q_path, samples),
                       contract.n_actions, contract.n_arm_levels)
    for line in q_report.lines("int8 vs float"):
        print(line)
    for line in speed(float_path, q_path, calibration).lines():
        print(line)
