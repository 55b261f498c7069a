"""int8: onnxruntime's static quantisation of an exported float model, calibrated on frames.

The float file is pre-processed (onnxruntime's ``quant_pre_process``: shape inference and
the basic graph fusions), then its convolutions are quantised statically: weights signed
8-bit per output channel, activations unsigned 8-bit with ranges calibrated (MinMax) by
running the float model on recorded observations, in the QDQ format
(QuantizeLinear/DequantizeLinear pairs around each Conv, which onnxruntime's CPU provider
fuses into int8 kernels at load). U8S8 is what the x86 VNNI instruction (``vpdpbusd``)
multiplies. Left in float, measured on the demo policy and ResNet-18 (one thread):

- a convolution that sums fewer than MIN_INT8_SUM products per output (the small
  backbones' stem: 3 channels x 3x3 = 27): its int8 kernel is slower than float's
  NCHWc one, and the small policy as a whole was 0.3x of float with it, 1.4x without
  (ResNet-18's 7x7 stem sums 147 and gains);
- the head's Gemm and the spatial softmax's MatMul: one per-tensor range for features
  of very different scales moved logits by up to 18 (against 1 for convolutions alone)
  for no measurable time.

Whether it pays depends on the CPU: int8 dot-product instructions (x86 ``avx512_vnni``
or ``avx_vnni``, ARM ``asimddp``) make the convolutions up to 4x cheaper than float; the
quantise/dequantise steps around them are a fixed cost. Measured by
``bench/inference_bench.py`` on an AVX-512 VNNI core, one thread: ResNet-18 about 3x
faster than float onnxruntime, the small backbone about 1.4x (its ~1 ms is largely
those fixed steps). :func:`speed` times both files on the calibration inputs, so
``zima export --int8`` says at export time what this machine gains. (The earlier dynamic
quantisation, which quantises activations on the fly, was 0.93x of float for ResNet-18.)

The contract and the other metadata are copied over, so the runtime verifies an int8
file exactly as it verifies the float one. Accuracy is judged as argmax agreement with
the float model on held-out observations, not with PyTorch.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import onnx
import onnxruntime as ort  # type: ignore[import-untyped]
from onnxruntime.quantization import (  # type: ignore[import-untyped]
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from zima.onboard.ort_options import session_options

from .onnx_export import save_atomic, set_metadata
from .parity import Samples

GOAL_SPEEDUP: Final = 1.5  # int8 over float onnxruntime, batch 1: below it, ship float
CALIBRATION_BATCH: Final = 8  # observations per calibration run (the graph's batch is free)
MIN_INT8_SUM: Final = 64  # a Conv summing fewer products per output (C_in*k*k) stays float
INT8_DOT_FLAGS: Final = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
"""/proc/cpuinfo flags of int8 dot-product instructions (x86 VNNI and AMX, ARM dotprod
and i8mm): without one, int8 convolutions are no faster than float ones."""


class CalibrationReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds ``samples`` to the calibrator, CALIBRATION_BATCH observations at a time."""

    def __init__(self, samples: Samples) -> None:
        self._samples = samples
        self._start = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        start, stop = self._start, self._start + CALIBRATION_BATCH
        if start >= len(self._samples):
            return None
        self._start = stop
        return self._samples.feeds(start, stop)


def quantize_int8(float_path: str | os.PathLike[str], int8_path: str | os.PathLike[str],
                  calibration: Samples) -> Path:
    """Write the static int8 (QDQ, per-channel) quantisation of ``float_path``, calibrated
    on ``calibration``, to ``int8_path`` (atomically)."""
    if not len(calibration):
        raise ValueError("int8 calibration needs at least one observation")
    int8_path = Path(int8_path)
    props = {p.key: p.value for p in onnx.load(str(float_path)).metadata_props}
    with tempfile.TemporaryDirectory() as tmp, _quiet():
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(float_path), str(prepared))
        graph = onnx.load(str(prepared))
        for i, node in enumerate(graph.graph.node):  # exclusion goes by node name
            node.name = node.name or f"node{i}"
        onnx.save(graph, str(prepared))
        quantize_static(str(prepared), str(out), CalibrationReader(calibration),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=small_convs(graph))
        proto = onnx.load(str(out))
    set_metadata(proto, props)
    save_atomic(proto, int8_path)
    return int8_path


def small_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the Conv nodes summing fewer than MIN_INT8_SUM products per output."""
    weights = {w.name: tuple(w.dims) for w in model.graph.initializer}
    small = []
    for node in model.graph.node:
        shape = weights.get(node.input[1]) if node.op_type == "Conv" else None
        if shape is not None and int(np.prod(shape[1:])) < MIN_INT8_SUM:  # [C_out, C_in, k, k]
            small.append(node.name)
    return small


@dataclass(frozen=True, slots=True)
class SpeedReport:
    """Batch-1 latency of the float and the int8 file, measured side by side."""

    float_ms: float  # median
    int8_ms: float
    threads: int
    runs: int  # per file
    dot_flags: tuple[str, ...]  # the CPU's int8 dot-product flags (INT8_DOT_FLAGS)

    @property
    def speedup(self) -> float:
        return self.float_ms / self.int8_ms

    def lines(self) -> list[str]:
        flags = ", ".join(self.dot_flags) or "none"
        out = [(f"int8 speed on this CPU ({self.threads} thread, batch 1, median of "
                f"{self.runs} runs each): float {self.float_ms:.2f} ms, int8 "
                f"{self.int8_ms:.2f} ms = {self.speedup:.2f}x (goal >= {GOAL_SPEEDUP}x; "
                f"int8 dot-product instructions: {flags})")]
        if self.speedup < GOAL_SPEEDUP:
            why = ("it has no int8 dot-product instructions, so int8 convolutions are no "
                   "cheaper than float ones" if not self.dot_flags else
                   "at this model's size the int8 convolutions save too little beside "
                   "the quantise/dequantise steps and the layers left in float")
            out.append(f"int8: not worth it on this CPU ({self.speedup:.2f}x < "
                       f"{GOAL_SPEEDUP}x): {why}; ship the float model")
        return out


def speed(float_path: str | os.PathLike[str], int8_path: str | os.PathLike[str],
          samples: Samples, threads: int = 1, seconds: float = 2.0) -> SpeedReport:
    """Time both files, alternating, on batch-1 observations of ``samples`` for about
    ``seconds`` (at least 5 runs each), with the runtime's session options."""
    sessions = [ort.InferenceSession(str(p), session_options(threads),
                                     providers=["CPUExecutionProvider"])
                for p in (float_path, int8_path)]
    feeds = [samples.feeds(i, i + 1) for i in range(len(samples))]  # batch-1 observations
    times: list[list[float]] = [[], []]
    for session in sessions:  # warm-up: the first runs allocate
        session.run(None, feeds[0])
    start = time.perf_counter()
    while len(times[0]) < 5 or time.perf_counter() - start < seconds:
        feed = feeds[len(times[0]) % len(feeds)]
        for session, laps in zip(sessions, times, strict=True):
            t0 = time.perf_counter()
            session.run(None, feed)
            laps.append((time.perf_counter() - t0) * 1e3)
    return SpeedReport(float(np.median(times[0])), float(np.median(times[1])), threads,
                       len(times[0]), int8_dot_flags())


def int8_dot_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    """The INT8_DOT_FLAGS this CPU reports (empty where /proc/cpuinfo is missing)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
    return tuple(f for f in INT8_DOT_FLAGS if f in flags)


@contextmanager
def _quiet() -> Iterator[None]:
    """The quantiser's root-logger chatter (pre-processing advice, every tensor it leaves
    in float) silenced: ``zima export`` prints its own lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
