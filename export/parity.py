"""Does the ONNX file compute what the PyTorch model computes? Held-out samples through both.

PyTorch runs in eval mode under ``no_grad``; onnxruntime runs the file on the CPU
provider, as the robot does. The report gives the largest absolute difference of the
outputs and the share of (sample, chunk step) actions that agree; ``check`` fails above
the thresholds. A discrete model's outputs are logits and its actions their argmaxes; a
continuous model's are track speeds in mm/s (output ``tracks``) and its actions their
:func:`~zima.contract.nearest_action`, with a threshold in mm/s. Samples come from
episode files (the validation split of ``training.dataset``: episodes training did not
see when the split is the trainer's) or, without episodes, from seeded random inputs of
the contract's shapes.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import torch
from torch import nn

from zima.contract import Contract, nearest_actions
from zima.onboard.policy import (
    ACTION_HISTORY_INPUT,
    IMAGES_INPUT,
    LOGITS_OUTPUT,
    OUTPUTS,
    TRACKS_OUTPUT,
)

from .onnx_export import ExportError, check_eval_mode

MAX_ABS_DIFF: Final = 1e-3  # float32 ONNX vs PyTorch logits
# float32 ONNX vs PyTorch track speeds, mm/s: a tenth of the DRIVE command's resolution
# (whole mm/s), far above float32's error on values up to forward_mm_s.
MAX_TRACKS_DIFF_MM_S: Final = 0.1
MIN_AGREEMENT: Final = 0.99  # action agreement (argmax or nearest action), float32 export


class ParityError(ExportError):
    """The exported model's outputs differ from PyTorch's beyond the thresholds."""


@dataclass(frozen=True, slots=True)
class Samples:
    """A batch of observations: images uint8 [S, N, H, W, 3], action_history int64 [S, A]."""

    images: np.ndarray
    action_history: np.ndarray
    source: str  # "random (seed 0)" or "N episodes"

    def __len__(self) -> int:
        return len(self.images)

    def spread(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` (at most ``len(self)``) samples spread evenly over these: images
        [n, N, H, W, 3], action_history [n, A] (what export ships in a model)."""
        picks = np.linspace(0, len(self) - 1, min(n, len(self))).round().astype(int)
        return self.images[picks], self.action_history[picks]


@dataclass(frozen=True, slots=True)
class ParityReport:
    """How far two models' outputs are apart on the same samples."""

    n_samples: int
    max_abs_diff: float  # logits, or track speeds in mm/s
    agreement: float  # share of actions (over samples and chunk steps) that agree
    output: str = LOGITS_OUTPUT  # what was compared: LOGITS_OUTPUT or TRACKS_OUTPUT

    @property
    def _terms(self) -> tuple[str, str, str]:
        """(what differs, its unit suffix, which actions agree) in this report's terms."""
        if self.output == TRACKS_OUTPUT:
            return "track speed difference", " mm/s", "nearest-action agreement"
        return "logit difference", "", "argmax agreement"

    def lines(self, name: str = "parity") -> list[str]:
        diff, unit, agree = self._terms
        return [(f"{name}: max |{diff}| {self.max_abs_diff:.3g}{unit} "
                 f"on {self.n_samples} samples"),
                f"{name}: {agree} {100 * self.agreement:.2f}%"]

    def check(self, max_abs_diff: float | None = None,
              min_agreement: float = MIN_AGREEMENT) -> None:
        """Raise ``ParityError`` when beyond either threshold (``max_abs_diff`` defaults
        to MAX_ABS_DIFF for logits, MAX_TRACKS_DIFF_MM_S for track speeds)."""
        if max_abs_diff is None:
            max_abs_diff = (MAX_TRACKS_DIFF_MM_S if self.output == TRACKS_OUTPUT
                            else MAX_ABS_DIFF)
        if not self.max_abs_diff <= max_abs_diff or self.agreement < min_agreement:
            diff, unit, agree = self._terms
            raise ParityError(
                f"ONNX and PyTorch disagree: max |{diff}| {self.max_abs_diff:.3g}{unit} "
                f"(limit {max_abs_diff:g}{unit}), {agree} {100 * self.agreement:.2f}% "
                f"(limit {100 * min_agreement:g}%)")


def random_samples(contract: Contract, n: int = 32, seed: int = 0) -> Samples:
    """``n`` seeded random observations of ``contract``'s shapes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *contract.image_shape), np.uint8)  # [S, N, H, W, 3]
    history = rng.integers(0, contract.n_actions, (n, contract.action_history), np.int64)
    return Samples(images, history, f"random (seed {seed})")


def episode_samples(episode_dir: str | os.PathLike[str], contract: Contract,
                    n: int = 64) -> Samples:
    """Up to ``n`` observations spread over the validation episodes in ``episode_dir``
    (all episodes when the split leaves none for validation)."""
    from zima.training.dataset import load_splits  # noqa: PLC0415  (torch-side, heavy)

    paths = sorted(Path(episode_dir).glob("*.h5"))
    if not paths:
        raise ExportError(f"no episode files (*.h5) in {episode_dir}")
    with tempfile.TemporaryDirectory() as cache:
        train, val = load_splits(paths, cache, contract)
        data = val if len(val) else train
        picks = np.linspace(0, len(data) - 1, min(n, len(data))).round().astype(int)
        rows = [data[int(i)] for i in picks]
        images = np.stack([r[0].numpy() for r in rows])  # [S, N, H, W, 3]
        history = np.stack([r[1].numpy() for r in rows])  # [S, A]
    return Samples(images, history, f"{len(paths)} episodes ({len(rows)} samples)")


def torch_logits(model: nn.Module, samples: Samples) -> np.ndarray:
    """The outputs of ``model`` (must be in eval mode): logits [S, chunk_len, n_actions],
    or track speeds [S, chunk_len, 2] in mm/s for a continuous Policy."""
    check_eval_mode(model)
    with torch.no_grad():
        out = model(torch.from_numpy(samples.images), torch.from_numpy(samples.action_history))
    logits: np.ndarray = out.numpy()
    return logits


def onnx_output_name(path: str | os.PathLike[str]) -> str:
    """The output of the ONNX file at ``path``: LOGITS_OUTPUT or TRACKS_OUTPUT."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _output_name(path, session)


def _output_name(path: str | os.PathLike[str], session: ort.InferenceSession) -> str:
    names = [o.name for o in session.get_outputs()]
    if len(names) != 1 or names[0] not in OUTPUTS:
        raise ParityError(f"{path}: outputs {names}, expected one of {list(OUTPUTS)}")
    name: str = names[0]
    return name


def onnx_logits(path: str | os.PathLike[str], samples: Samples) -> np.ndarray:
    """The outputs of the ONNX file at ``path`` (CPU provider): ``logits``
    [S, chunk_len, n_actions] or ``tracks`` [S, chunk_len, 2], whichever it has."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([_output_name(path, session)],
                         {IMAGES_INPUT: samples.images,
                          ACTION_HISTORY_INPUT: samples.action_history})
    logits: np.ndarray = np.asarray(out)
    return logits


def compare(reference: np.ndarray, other: np.ndarray,
            output: str = LOGITS_OUTPUT) -> ParityReport:
    """Parity of ``other`` against ``reference``: both logits [S, chunk_len, n_actions],
    or both track speeds [S, chunk_len, 2] in mm/s when ``output`` is TRACKS_OUTPUT."""
    if reference.shape != other.shape:
        raise ParityError(f"{output} shapes differ: {reference.shape} vs {other.shape}")
    if output == TRACKS_OUTPUT:
        agree = nearest_actions(reference) == nearest_actions(other)  # [S, chunk_len]
    else:
        agree = reference.argmax(-1) == other.argmax(-1)  # [S, chunk_len]
    diff = float(np.abs(reference - other).max()) if reference.size else 0.0
    return ParityReport(len(reference), diff, float(agree.mean()) if agree.size else 1.0,
                        output)


def check_parity(model: nn.Module, path: str | os.PathLike[str],
                 samples: Samples) -> ParityReport:
    """PyTorch ``model`` vs the ONNX file at ``path`` on ``samples`` (logits or track
    speeds, as the file's output says)."""
    return compare(torch_logits(model, samples), onnx_logits(path, samples),
                   onnx_output_name(path))
