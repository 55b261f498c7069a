"""Inference speed of the policy at batch 1: PyTorch eager, onnxruntime as it comes,
onnxruntime as the robot runs it, and static int8, side by side.

    .venv/bin/python bench/inference_bench.py

For the policy with the small backbone and with ResNet-18 (random weights, the default
contract: 4 images of 96 x 128), on 1 intra-op thread (the runtime's) and on 2:

- **eager**: PyTorch in ``eval()`` under ``inference_mode`` on ``torch.set_num_threads``
  threads, in both memory layouts (contiguous NCHW and ``channels_last``); the faster is
  the baseline, so onnxruntime is compared with eager at its best;
- **ort default**: onnxruntime on the exported file with only the thread counts set
  (what ``load_model`` did before ``zima.onboard.ort_options``);
- **ort tuned**: ``zima.onboard.ort_options.session_options``;
- **int8**: the file ``zima.export.quantize`` writes (static QDQ, per-channel weights),
  calibrated on 32 synthetic frames (drifting colour bands, as ``training_bench.py``
  writes), in the tuned session.

The candidates run in turns (a few calls each, round after round) for the same wall time,
so a machine that is busy elsewhere slows them alike and the ratios stay fair even when
the absolute times do not. Goals: ort tuned >= 2.5x eager; int8 >= 1.5x ort tuned.

Then the float ceiling: the arithmetic of the convolutions and linear layers (counted with
forward hooks) over the fastest run, beside a 256 x 256 float32 matrix product (MKL)
timed in the same turns: float onnxruntime cannot beat eager by more than the product's
rate over eager's, whatever its settings. Last, on one thread, what each setting
contributes (the graph optimisation level; IOBinding, inputs and output bound once).
Takes about 50 s.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import record
from zima.contract import DEFAULT
from zima.export.onnx_export import export_onnx
from zima.export.parity import Samples
from zima.export.quantize import int8_dot_flags, quantize_int8
from zima.onboard.ort_options import session_options
from zima.onboard.policy import ACTION_HISTORY_INPUT, IMAGES_INPUT, LOGITS_OUTPUT
from zima.training.models import Policy, PolicyConfig

SECONDS: Final = {"small": 4.0, "resnet18": 12.0}  # per (model, threads), all candidates
THREADS: Final = (1, 2)
CALIBRATION: Final = 32
GOAL_ORT_X: Final = 2.5
GOAL_INT8_X: Final = 1.5
PART: Final = "inference"
GEMM: Final = 256  # big enough for MKL to reach its peak, short enough to run unpreempted
SGEMM: Final = f"sgemm {GEMM}"
CPU: Final = ["CPUExecutionProvider"]

Run = Callable[[], object]


def synthetic_samples(n: int) -> Samples:
    """``n`` observations of drifting colour bands with pixel noise (images [n, N, H, W, 3])."""
    rng = np.random.default_rng(0)
    h, w = DEFAULT.image_height, DEFAULT.image_width
    yy, xx = np.mgrid[0:h, 0:w]
    images = np.empty((n, *DEFAULT.image_shape), np.uint8)
    for i in range(n):
        for j in range(DEFAULT.n_images):
            shift = 3 * i + 7 * j
            bands = np.stack([(xx + shift + yy) % 256, (2 * yy + 40 * j) % 256,
                              (xx + 3 * yy + shift) % 256], axis=-1) // 64 * 64  # [H, W, 3]
            images[i, j] = np.clip(bands + rng.normal(0, 2, bands.shape), 0, 255)
    history = rng.integers(0, DEFAULT.n_actions, (n, DEFAULT.action_history), np.int64)
    return Samples(images, history, f"synthetic ({n})")


def interleaved_ms(runs: dict[str, Run], seconds: float,
                   per_turn: int = 2) -> dict[str, np.ndarray]:
    """Times (ms) of each of ``runs``, called ``per_turn`` times in turn for ``seconds``
    in all (at least 10 calls each), after 3 warm-up calls each."""
    for run in runs.values():
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    start = time.perf_counter()
    while min(map(len, times.values())) < 10 or time.perf_counter() - start < seconds:
        for name, run in runs.items():
            for _ in range(per_turn):
                t0 = time.perf_counter()
                run()
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: np.asarray(t) for name, t in times.items()}


def conv_linear_flops(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Floating-point operations (2 per multiply-add) of ``model``'s convolutions and
    linear layers on ``inputs``: all but a few percent of the policy's arithmetic."""
    macs = 0

    def count(module: torch.nn.Module, _args: object, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):  # per output value: C_in/groups * kh * kw
            macs += out.numel() * module.weight[0].numel()
        elif isinstance(module, torch.nn.Linear):
            macs += out.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return 2 * macs


def sgemm() -> Run:
    """A GEMM x GEMM float32 matrix product (MKL through torch, on torch's threads): what
    the cores do in float at most."""
    a, b = torch.randn(GEMM, GEMM), torch.randn(GEMM, GEMM)
    out = torch.empty(GEMM, GEMM)
    return functools.partial(torch.mm, a, b, out=out)


def candidates(backbone: str, folder: Path, calibration: Samples,
               threads: int) -> tuple[dict[str, Run], int]:
    """The callables to time for one model on ``threads`` threads, by name, and the
    model's float operations per inference."""
    torch.manual_seed(0)
    model = Policy(DEFAULT, PolicyConfig(backbone=backbone)).eval()
    fp32 = folder / f"{backbone}.onnx"
    int8 = folder / f"{backbone}.int8.onnx"
    if not int8.exists():
        export_onnx(model, DEFAULT, fp32)
        quantize_int8(fp32, int8, calibration)
    nhwc = Policy(DEFAULT, PolicyConfig(backbone=backbone)).eval()
    nhwc.load_state_dict(model.state_dict())
    nhwc.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # in place
    images, history = calibration.images[:1], calibration.action_history[:1]  # batch 1
    tensors = (torch.from_numpy(images), torch.from_numpy(history))
    feeds = {IMAGES_INPUT: images, ACTION_HISTORY_INPUT: history}

    def eager(module: torch.nn.Module) -> Run:
        def run() -> object:
            with torch.inference_mode():
                return module(*tensors)
        return run

    def plain_options() -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return options

    def bound(path: Path) -> Run:
        """IOBinding at its best: the inputs bound once, the output pre-allocated."""
        session = ort.InferenceSession(str(path), session_options(threads), providers=CPU)
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        out = ort.OrtValue.ortvalue_from_shape_and_type(
            (1, DEFAULT.chunk_len, DEFAULT.n_actions), np.float32)  # [1, chunk_len, n_actions]
        binding.bind_ortvalue_output(LOGITS_OUTPUT, out)
        return functools.partial(session.run_with_iobinding, binding)

    extended = session_options(threads)
    extended.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    sessions = {"ort default": (fp32, plain_options()),
                "ort tuned": (fp32, session_options(threads)),
                "ort tuned, ORT_ENABLE_EXTENDED": (fp32, extended),
                "int8 tuned": (int8, session_options(threads))}
    runs: dict[str, Run] = {"eager NCHW": eager(model), "eager channels_last": eager(nhwc)}
    for name, (path, options) in sessions.items():
        session = ort.InferenceSession(str(path), options, providers=CPU)
        runs[name] = functools.partial(session.run, None, feeds)
    runs["ort tuned + IOBinding"] = bound(fp32)
    runs[SGEMM] = sgemm()
    return runs, conv_linear_flops(model, tensors)


def p50(ms: np.ndarray) -> float:
    return float(np.median(ms))


def cell(ms: np.ndarray) -> str:
    return f"{np.percentile(ms, 50):.2f} / {np.percentile(ms, 99):.2f}"


Rows = list[tuple[str, ...]]


def measure(folder: Path) -> tuple[Rows, Rows, Rows]:
    """(main table rows, float ceiling rows, one-thread ablation rows)."""
    calibration = synthetic_samples(CALIBRATION)
    table: Rows = []
    ceiling: Rows = []
    ablation: Rows = []
    torch_threads = torch.get_num_threads()
    try:
        for backbone, seconds in SECONDS.items():
            for threads in THREADS:
                torch.set_num_threads(threads)
                runs, flops = candidates(backbone, folder, calibration, threads)
                ms = interleaved_ms(runs, seconds)
                eager_name = min(("eager NCHW", "eager channels_last"), key=lambda k: p50(ms[k]))
                eager, default, tuned, int8 = (ms[eager_name], ms["ort default"],
                                               ms["ort tuned"], ms["int8 tuned"])
                ort_x, int8_x = p50(eager) / p50(tuned), p50(tuned) / p50(int8)
                table.append((backbone, str(threads),
                              f"{cell(eager)} ({eager_name.removeprefix('eager ')})",
                              cell(default), cell(tuned), cell(int8),
                              f"{ort_x:.2f}x", f"{p50(eager) / p50(int8):.2f}x",
                              f"{int8_x:.2f}x"))
                where = f"{backbone}, batch 1, {threads} thread{'s' if threads > 1 else ''}"
                record(PART, f"{where}: eager / ort tuned p50",
                       f"{p50(eager):.2f} / {p50(tuned):.2f} ms = {ort_x:.2f}x",
                       f">= {GOAL_ORT_X}x", ort_x >= GOAL_ORT_X)
                record(PART, f"{where}: ort tuned / int8 static p50",
                       f"{p50(tuned):.2f} / {p50(int8):.2f} ms = {int8_x:.2f}x",
                       f">= {GOAL_INT8_X}x", int8_x >= GOAL_INT8_X)
                # Fastest runs: what each does when nothing else holds the core.
                peak = 2 * GEMM**3 / float(ms[SGEMM].min()) / 1e6  # GFLOP/s
                rate = {k: flops / float(t.min()) / 1e6 for k, t in (("eager", eager),
                                                                   ("ort", tuned))}
                ceiling.append((backbone, str(threads), f"{flops / 1e9:.2f}", f"{peak:.0f}",
                                f"{rate['eager']:.0f} ({100 * rate['eager'] / peak:.0f} %)",
                                f"{rate['ort']:.0f} ({100 * rate['ort'] / peak:.0f} %)",
                                f"{peak / rate['eager']:.2f}x"))
                share = 100 * rate["ort"] / peak
                record(PART, f"{where}: ort tuned float, share of the core's sgemm rate",
                       f"{rate['ort']:.0f} of {peak:.0f} GFLOP/s ({share:.0f} %)")
                if threads == 1:
                    ablation += [(backbone, name, f"{p50(t):.2f}", f"{p50(t) / p50(tuned):.2f}x")
                                 for name, t in ms.items() if name != SGEMM]
    finally:
        torch.set_num_threads(torch_threads)
    return table, ceiling, ablation


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]], left: int) -> None:
    """``rows`` under ``header``, the first ``left`` columns left-aligned."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for index, row in enumerate(table):
        print("  ".join(c.ljust(w) if i < left else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))


def main() -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zima-inference-bench-") as tmp:
        table, ceiling, ablation = measure(Path(tmp))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    flags = ", ".join(int8_dot_flags()) or "none"
    print(f"inference bench: {os.cpu_count()} cores, load average {load}, onnxruntime "
          f"{ort.__version__}, torch {torch.__version__}, int8 dot-product: {flags}")
    print("p50 / p99 ms, batch 1; eager: the faster memory layout")
    print_table(("model", "threads", "eager", "ort default", "ort tuned", "int8 static",
                 f"eager/tuned (>= {GOAL_ORT_X}x)", "eager/int8",
                 f"tuned/int8 (>= {GOAL_INT8_X}x)"), table, left=2)
    print(f"\nfloat ceiling: GFLOP/s of convolutions and linear layers in the fastest run, "
          f"against a {GEMM} x {GEMM} sgemm's fastest, timed in the same turns")
    print_table(("model", "threads", "GFLOP/inference", "sgemm GFLOP/s", "eager GFLOP/s",
                 "ort tuned GFLOP/s", "sgemm over eager (float's most)"), ceiling, left=2)
    print("\none thread, p50 ms, and over ort tuned (higher: slower)")
    print_table(("model", "setting", "p50 ms", "/ ort tuned"), ablation, left=2)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
