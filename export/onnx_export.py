"""Trace a Policy into the ONNX file the robot loads (zima.onboard.policy's I/O contract).

The exported graph takes uint8 images (normalisation is inside the model) and int64
action history, with a symbolic batch dimension; its one output is ``logits``. A policy
with an arm head (``contract.arm_dims``) also takes ``arm_state`` and has a second output,
``arm_logits`` (:mod:`zima.onboard.policy`'s I/O contract). It carries in
``metadata_props``::

    zima_contract               Contract.to_json() (METADATA_KEY): the runtime checks it
    zima_version                the zima that exported it
    zima_source_sha256          sha256 of the checkpoint it came from ("" when none)
    zima_samples                optional (``shipped=``): a few real observations
                                (:mod:`zima.onboard.model_samples`); ``load_model``, so
                                the runtime's start and reload and ``zima deploy``, run the
                                model on them and refuse it if an output is not finite
                                and in range

A model with any submodule in training mode is refused before tracing (a missing
``model.eval()`` once cost the project a week: Dropout and batch statistics would be
baked into the graph). The file is written to a temporary name and renamed.

Exporter: the TorchScript exporter (``dynamo=False``). torch 2.13's default dynamo
exporter needs ``onnxscript``, which the ``train`` extra does not install; the
TorchScript path is deprecated but produces the same graph for this model.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Final

import numpy as np
import onnx
import torch
from torch import nn

from zima import __version__
from zima.atomic import write_atomic
from zima.contract import ARM_STATE_DIMS, METADATA_KEY, Contract
from zima.onboard.model_samples import SAMPLES_KEY, encode_samples
from zima.onboard.policy import io_names

OPSET: Final = 17
VERSION_KEY: Final = "zima_version"
SOURCE_SHA256_KEY: Final = "zima_source_sha256"


class ExportError(Exception):
    """Export refused or failed; the message says why."""


class TrainingModeError(ExportError):
    """The model (or a submodule) is in training mode."""


def check_eval_mode(model: nn.Module) -> None:
    """Raise ``TrainingModeError`` naming the submodules whose ``.training`` is True."""
    training = [name or "<root>" for name, m in model.named_modules() if m.training]
    if training:
        shown = ", ".join(training[:5]) + (" ..." if len(training) > 5 else "")
        raise TrainingModeError(
            f"refusing to export a model in training mode ({len(training)} modules, e.g. "
            f"{shown}): call model.eval() first; Dropout and batch statistics would be "
            "traced into the graph")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    """Set (replace) ``props`` in ``model.metadata_props``."""
    kept = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` to a temporary file beside ``path``, then rename it into place."""
    write_atomic(path, lambda f: f.write(model.SerializeToString()))


def export_onnx(model: nn.Module, contract: Contract, path: str | os.PathLike[str], *,
                source_sha256: str = "",
                shipped: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Export ``model`` (a Policy for ``contract``, in eval mode) to ``path``; ``shipped``
    (images uint8 [S, N, H, W, 3], action_history int64 [S, A], S <= MAX_SAMPLES) are
    written into it as its sample observations."""
    check_eval_mode(model)  # right before tracing: nothing between here and export
    model_contract = getattr(model, "contract", contract)
    if model_contract != contract:
        raise ExportError("model was built for another contract: "
                          + "; ".join(contract.mismatches(model_contract)))
    example: tuple[torch.Tensor, ...] = (
        torch.zeros((1, *contract.image_shape), dtype=torch.uint8),  # [1, N, H, W, 3]
        torch.zeros((1, contract.action_history), dtype=torch.int64))  # [1, A]
    if contract.arm_dims:
        example += (torch.zeros((1, ARM_STATE_DIMS), dtype=torch.float32),)  # [1, 6]
    inputs, outputs = io_names(contract)
    batch = {0: "batch"}
    path = Path(path)
    with tempfile.TemporaryDirectory() as tmp:
        traced = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            # The TorchScript exporter's deprecation notices (see the module docstring).
            for message in ("You are using the legacy TorchScript-based ONNX export",
                            "The feature will be removed"):
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            torch.onnx.export(
                model, example, str(traced), dynamo=False, opset_version=OPSET,
                input_names=inputs, output_names=outputs,
                dynamic_axes=dict.fromkeys((*inputs, *outputs), batch))
        proto = onnx.load(str(traced))
    props = {METADATA_KEY: contract.to_json(), VERSION_KEY: __version__,
             SOURCE_SHA256_KEY: source_sha256}
    if shipped is not None:
        try:
            props[SAMPLES_KEY] = encode_samples(shipped[0], shipped[1], contract)
        except ValueError as exc:
            raise ExportError(str(exc)) from exc
    set_metadata(proto, props)
    onnx.checker.check_model(proto)
    save_atomic(proto, path)
    return path
