"""Tiny ONNX policies built with the ``onnx`` helper API (no torch), for the policy tests.

Every model follows the model I/O contract of :mod:`zima.onboard.policy` unless a test
asks it not to. What the logits are, so that a test can predict the actions:

``table``    logits[b, j] = table[j]: a constant [chunk_len, n_actions] table
``tracks``   what the removed continuous head exported: output ``tracks``
             [B, chunk_len, 2] = ``table`` (track speeds in mm/s), which load_model refuses
``history``  logits[b, j] = 10 * one_hot((last + 1 + 2 j) mod n_actions), ``last`` being
             the newest entry of ``action_history``: argmax is :func:`history_chunk`
``noise``    adds RandomUniformLike noise: two runs on one input differ (onnxruntime's
             optimizer removes a Dropout even in training mode, so that is no test)
``nan_above_mean``  a model that is NaN only on live frames: where the mean of an
             observation's images (all cameras and history, 0..255) is above this, NaN
             is added to column ``nan_column`` of every chunk step (FORWARD by default:
             the first NaN is what ``argmax`` picks); finite otherwise, so it passes the
             random warm-up (mean ~127.5) when the threshold is above that
``samples``  shipped sample observations (``zima_samples`` metadata): (images, history)
             encoded by :func:`~zima.onboard.model_samples.encode_samples`, or a string
             written verbatim
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from zima.contract import METADATA_KEY, Action, Contract
from zima.onboard.model_samples import SAMPLES_KEY, encode_samples
from zima.onboard.policy import (
    ACTION_HISTORY_INPUT,
    IMAGES_INPUT,
    LOGITS_OUTPUT,
    REMOVED_TRACKS_OUTPUT,
)

OPSET = 17  # well inside what the installed onnxruntime runs
IR_VERSION = 8


def history_chunk(last: int, contract: Contract) -> list[int]:
    """The argmax chunk of the ``history`` model after ``last``."""
    return [(last + 1 + 2 * j) % contract.n_actions for j in range(contract.chunk_len)]


def zero_of_inputs(const: Callable[[str, np.ndarray], str],
                   images_name: str = IMAGES_INPUT) -> list[onnx.NodeProto]:
    """Nodes of ``z3``, a [B, 1, 1] float zero that depends on the images and the action
    history (keeps both in the graph), and of ``zero``, a float 0; ``const(name, value)``
    adds an initializer and returns its name."""
    return [
        helper.make_node("Cast", [images_name], ["img_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMax", ["img_f"], ["img_max"], keepdims=0, axes=[1, 2, 3, 4]),
        helper.make_node("Cast", [ACTION_HISTORY_INPUT], ["hist_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["hist_f", const("ax1", np.array([1], np.int64))],
                         ["hist_sum"], keepdims=0),
        helper.make_node("Add", ["img_max", "hist_sum"], ["both"]),  # [B]
        helper.make_node("Mul", ["both", const("zero", np.zeros((), np.float32))], ["z"]),
        helper.make_node("Unsqueeze", ["z", const("ax12", np.array([1, 2], np.int64))], ["z3"]),
    ]


def build_model(
    path: Path,
    contract: Contract,
    *,
    kind: str = "history",
    table: np.ndarray | None = None,
    metadata: str | Contract | None = None,
    noise: bool = False,
    images_name: str = IMAGES_INPUT,
    images_type: int = TensorProto.UINT8,
    chunk_len: int | None = None,
    extra_output: str | None = None,
    nan_above_mean: float | None = None,
    nan_column: int = int(Action.FORWARD),
    samples: tuple[np.ndarray, np.ndarray] | str | None = None,
) -> Path:
    """Write a tiny policy for ``contract`` to ``path`` (see the module docstring).
    ``metadata``: None writes ``contract``; a Contract writes that one; a string is
    written verbatim; ``""`` writes no contract at all. ``extra_output`` names a second
    output (a copy of the first)."""
    c = contract
    chunk = c.chunk_len if chunk_len is None else chunk_len
    n = 2 if kind == "tracks" else c.n_actions  # values per chunk step
    output = REMOVED_TRACKS_OUTPUT if kind == "tracks" else LOGITS_OUTPUT
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name))
        return name

    nodes += zero_of_inputs(const, images_name)
    if kind in ("table", "tracks"):
        values = np.zeros((chunk, n), np.float32) if table is None else table
        nodes.append(helper.make_node("Add", ["z3", const("table", values[None].astype(
            np.float32))], ["base"]))
    else:  # history
        offsets = const("offsets", (1 + 2 * np.arange(chunk)).astype(np.int64))
        nodes += [
            helper.make_node("Gather", [ACTION_HISTORY_INPUT,
                                        const("last_i", np.array(c.action_history - 1))],
                             ["last"], axis=1),  # [B]
            helper.make_node("Unsqueeze", ["last", const("ax1b", np.array([1], np.int64))],
                             ["last2"]),  # [B, 1]
            helper.make_node("Add", ["last2", offsets], ["idx"]),  # [B, chunk]
            helper.make_node("Mod", ["idx", const("n", np.array(n, np.int64))], ["idx_n"]),
            helper.make_node("OneHot", ["idx_n", const("depth", np.array(n, np.int64)),
                                        const("onoff", np.array([0, 10], np.float32))],
                             ["onehot"], axis=-1),  # [B, chunk, n]
            helper.make_node("Add", ["onehot", "z3"], ["base"]),
        ]
    out = "base"
    if nan_above_mean is not None:
        poison = np.zeros((1, chunk, n), np.float32)
        poison[..., nan_column] = np.nan
        nodes += [
            helper.make_node("ReduceMean", ["img_f"], ["img_mean"], keepdims=0,
                             axes=[1, 2, 3, 4]),  # [B]
            helper.make_node("Greater", ["img_mean", const(
                "nan_above", np.array(nan_above_mean, np.float32))], ["bright"]),  # [B]
            helper.make_node("Unsqueeze", ["bright", const("ax12c", np.array([1, 2], np.int64))],
                             ["bright3"]),  # [B, 1, 1]
            helper.make_node("Where", ["bright3", const("poison", poison),
                                       const("no_poison", np.zeros((1, chunk, n), np.float32))],
                             ["nan_or_0"]),  # [B, chunk, n]
            helper.make_node("Add", [out, "nan_or_0"], ["poisoned"]),
        ]
        out = "poisoned"
    if noise:
        nodes += [helper.make_node("RandomUniformLike", [out], ["u"]),
                  helper.make_node("Add", [out, "u"], ["noisy"])]
        out = "noisy"
    nodes.append(helper.make_node("Identity", [out], [output]))
    outputs = [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["B", chunk, n])]
    if extra_output is not None:
        nodes.append(helper.make_node("Identity", [out], [extra_output]))
        outputs.append(helper.make_tensor_value_info(extra_output, TensorProto.FLOAT,
                                                     ["B", chunk, n]))
    graph = helper.make_graph(
        nodes, "tiny_policy",
        [helper.make_tensor_value_info(images_name, images_type, ["B", *c.image_shape]),
         helper.make_tensor_value_info(ACTION_HISTORY_INPUT, TensorProto.INT64,
                                       ["B", c.action_history])],
        outputs,
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    text = (c if metadata is None else metadata)
    props = {}
    if text != "":
        props[METADATA_KEY] = text.to_json() if isinstance(text, Contract) else text
    if samples is not None:
        props[SAMPLES_KEY] = (samples if isinstance(samples, str)
                              else encode_samples(samples[0], samples[1], c))
    if props:
        helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path
