"""onnxruntime's settings for the policy on the robot's CPU, in one place (no torch here).

:func:`session_options` is what every session that runs the policy should be opened with.
It was chosen by ``bench/inference_bench.py`` at batch 1 (onnxruntime 1.32, one AVX-512
core; figures in its table and in the README):

- ``ORT_ENABLE_ALL``: the level that adds the layout passes (``ORT_ENABLE_LAYOUT`` and
  up: NCHWc convolutions on x86, NHWC for int8 ones); ``ORT_ENABLE_EXTENDED`` stops
  before them and is 1.2-1.3x (ResNet-18) to 2.2x (small backbone) slower. It is also
  the Python default: set here so that no default can change under us.
- ``ORT_SEQUENTIAL``: the policy graph is one chain; a parallel executor only adds its
  scheduling.
- ``session.intra_op.allow_spinning = 0``: with more than one intra-op thread the
  workers would otherwise busy-wait between operators, taking a core from the cameras
  and the serial link (with one thread there are no workers and it changes nothing).
- no model optimised offline (``optimized_model_filepath``): an ``ORT_ENABLE_ALL``
  graph holds NCHWc nodes for the CPU that wrote it, and onnxruntime warns to run it on
  that hardware only; it would save 30 ms of ResNet-18's 60 ms load, once.

With these, float onnxruntime runs the convolutions at 90-100 % of what a float32 matrix
product reaches on this core (the bench's "float ceiling"): more speed takes int8
(``zima.export.quantize``), not settings. Tried and left out: a batch dimension fixed to 1
in the file (about 1 %, within the noise). Folding the model's three-step uint8
normalisation (divide, subtract, divide) into one multiply-add would save ~5 % of the
small policy's time: that is the model's ``forward`` (``zima.training.models``).

IOBinding (inputs and output bound once to pre-allocated buffers, ``run_with_iobinding``)
was timed too and gains nothing measurable here (within 1 %, either way, on both models):
``session.run`` already reads NumPy inputs in place, and one small output is cheap to
allocate, so the runtime keeps ``run``.
"""

from __future__ import annotations

from typing import Final

import onnxruntime as ort  # type: ignore[import-untyped]

__all__ = ["SPINNING_KEY", "session_options"]

SPINNING_KEY: Final = "session.intra_op.allow_spinning"


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Session options for the policy on ``threads`` intra-op threads (the runtime: 1,
    leaving the other cores to the cameras and the serial link; 0: onnxruntime's choice,
    one a core, as ``zima serve`` runs by default)."""
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0: onnxruntime's choice), got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry(SPINNING_KEY, "0")
    return options
