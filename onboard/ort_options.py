"""onnxruntime's settings for the policy on the robot's CPU, in one place (no torch here).

:func:`session_options` is what every session that runs the policy should be opened with,
and :class:`BoundRunner` runs one observation through pre-allocated input and output
buffers. Both were chosen by ``bench/inference_bench.py`` at batch 1 (onnxruntime 1.32, one
AVX-512 core; figures in its table and in the README):

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

Tried and left out: a batch dimension fixed to 1 in the file (about 1 %, within the
noise). Folding the model's three-step uint8
normalisation (divide, subtract, divide) into one multiply-add would save ~5 % of the
small policy's time: that is the model's ``forward`` (``zima.training.models``).

:class:`BoundRunner` binds NumPy buffers once (IOBinding): a call copies the observation
into them and runs, with no allocation or name lookup per call: about 30 us (3 %) of the
small policy's ~1 ms, nothing measurable on ResNet-18's ~40 ms.
"""

from __future__ import annotations

import threading
from typing import Any, Final

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]

__all__ = ["SPINNING_KEY", "BoundRunner", "session_options"]

SPINNING_KEY: Final = "session.intra_op.allow_spinning"


def session_options(threads: int = 1) -> ort.SessionOptions:
    """Session options for the policy on ``threads`` intra-op threads (the runtime: 1,
    leaving the other cores to the cameras and the serial link)."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry(SPINNING_KEY, "0")
    return options


class BoundRunner:
    """One session's inputs and output bound to pre-allocated NumPy buffers of batch 1.

    ``run(**inputs)`` copies each input into its buffer (a dtype or shape other than the
    session's is an error, as ``session.run``'s would be) and returns a copy of every
    output, in the session's order (as ``session.run(None, inputs)``). Thread-safe: the
    buffers are shared, so calls are serialised.
    """

    def __init__(self, session: Any) -> None:
        self._session = session
        self._binding = session.io_binding()
        self._inputs: dict[str, np.ndarray] = {}
        for arg in session.get_inputs():
            buffer = np.zeros(_batch1(arg.shape), _DTYPES[arg.type])
            self._binding.bind_input(arg.name, "cpu", 0, buffer.dtype, buffer.shape,
                                     buffer.ctypes.data)
            self._inputs[arg.name] = buffer
        self._outputs: list[np.ndarray] = []
        for arg in session.get_outputs():
            buffer = np.zeros(_batch1(arg.shape), _DTYPES[arg.type])
            self._binding.bind_output(arg.name, "cpu", 0, buffer.dtype, buffer.shape,
                                      buffer.ctypes.data)
            self._outputs.append(buffer)
        self._lock = threading.Lock()

    def run(self, **inputs: np.ndarray) -> list[np.ndarray]:
        """The outputs (batch-1 shapes, e.g. logits [1, chunk_len, n_actions]) for
        ``inputs``."""
        if inputs.keys() != self._inputs.keys():
            raise ValueError(f"inputs {sorted(inputs)}, expected {sorted(self._inputs)}")
        with self._lock:
            for name, value in inputs.items():
                buffer = self._inputs[name]
                if value.dtype != buffer.dtype or value.shape != buffer.shape:
                    raise ValueError(f"input {name} is {value.dtype} {list(value.shape)}, "
                                     f"expected {buffer.dtype} {list(buffer.shape)}")
                np.copyto(buffer, value)
            self._session.run_with_iobinding(self._binding)
            return [out.copy() for out in self._outputs]


_DTYPES: Final = {"tensor(uint8)": np.uint8, "tensor(int64)": np.int64,
                  "tensor(float)": np.float32}


def _batch1(shape: list[int | str | None]) -> tuple[int, ...]:
    """A declared shape with its (symbolic or 1) batch dimension set to 1."""
    if not shape or any(not isinstance(d, int) for d in shape[1:]):
        raise ValueError(f"shape {shape}: only the batch dimension may be symbolic")
    return (1, *(int(d) for d in shape[1:]))  # type: ignore[arg-type]
