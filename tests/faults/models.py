"""A policy that is fine when checked and bad on the robot, built with the ``onnx`` helper
API as tests/onboard/onnx_models.py builds its models (no torch).

``nan_on_live_frames``: constant logits that say STOP, except that the FORWARD logit is NaN
whenever the mean of the input images is above ``threshold``. A uniform random image (what
the runtime checks a model on at load: mean about 127.5) gives finite logits, so the model
passes ``reload`` and ``zima deploy``; the light camera frames of tests/faults/stack.py
(mean about 227) give a NaN, and argmax at temperature 0 picks the first NaN: FORWARD.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from zima.contract import DEFAULT, METADATA_KEY, Action, Contract
from zima.onboard.policy import ACTION_HISTORY_INPUT, IMAGES_INPUT, LOGITS_OUTPUT

__all__ = ["nan_on_live_frames"]

OPSET, IR_VERSION = 17, 8  # as tests/onboard/onnx_models.py


def nan_on_live_frames(path: Path, contract: Contract = DEFAULT,
                       threshold: float = 180.0) -> Path:
    """Write the model of the module docstring to ``path`` (atomically, as deploy does)."""
    c = contract
    chunk, n = c.chunk_len, c.n_actions
    table = np.full((1, chunk, n), -5.0, np.float32)  # [1, chunk, n]: STOP everywhere
    table[..., int(Action.STOP)] = 5.0
    forward = np.zeros((1, chunk, n), bool)  # [1, chunk, n]: the FORWARD column
    forward[..., int(Action.FORWARD)] = True
    inits = [numpy_helper.from_array(value, name) for name, value in (
        ("table", table), ("forward", forward), ("threshold", np.array(threshold, np.float32)),
        ("nan", np.array(np.nan, np.float32)), ("zero", np.zeros((), np.float32)),
        ("ax1", np.array([1], np.int64)), ("ax12", np.array([1, 2], np.int64)))]
    nodes = [
        helper.make_node("Cast", [IMAGES_INPUT], ["img_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["img_f"], ["img_mean"], keepdims=0,
                         axes=[1, 2, 3, 4]),  # [B]
        helper.make_node("Greater", ["img_mean", "threshold"], ["bright"]),  # [B]
        helper.make_node("Unsqueeze", ["bright", "ax12"], ["bright3"]),  # [B, 1, 1]
        helper.make_node("And", ["bright3", "forward"], ["poisoned"]),  # [B, chunk, n]
        # the action history stays in the graph (the contract's input), adding zero
        helper.make_node("Cast", [ACTION_HISTORY_INPUT], ["hist_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["hist_f", "ax1"], ["hist_sum"], keepdims=0),  # [B]
        helper.make_node("Mul", ["hist_sum", "zero"], ["z"]),
        helper.make_node("Unsqueeze", ["z", "ax12"], ["z3"]),  # [B, 1, 1]
        helper.make_node("Add", ["z3", "table"], ["base"]),  # [B, chunk, n]
        helper.make_node("Where", ["poisoned", "nan", "base"], [LOGITS_OUTPUT]),
    ]
    graph = helper.make_graph(
        nodes, "nan_on_live_frames",
        [helper.make_tensor_value_info(IMAGES_INPUT, TensorProto.UINT8, ["B", *c.image_shape]),
         helper.make_tensor_value_info(ACTION_HISTORY_INPUT, TensorProto.INT64,
                                       ["B", c.action_history])],
        [helper.make_tensor_value_info(LOGITS_OUTPUT, TensorProto.FLOAT, ["B", chunk, n])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              ir_version=IR_VERSION)
    helper.set_model_props(model, {METADATA_KEY: c.to_json()})
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(model.SerializeToString())
    tmp.replace(path)
    return path
