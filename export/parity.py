"""Does the ONNX file compute what the PyTorch model computes? Held-out samples through both.

PyTorch runs in eval mode under ``no_grad``; onnxruntime runs the file on the CPU
provider, as the robot does. The report gives the largest absolute logit difference and
the share of (sample, chunk step) argmaxes that agree; ``check`` fails above the
thresholds. Samples come from episode files (the validation split of
``training.dataset``: episodes training did not see when the split is the trainer's) or,
without episodes, from seeded random inputs of the contract's shapes.
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

from zima.contract import Contract
from zima.onboard.policy import ACTION_HISTORY_INPUT, IMAGES_INPUT, LOGITS_OUTPUT

from .onnx_export import ExportError, check_eval_mode

MAX_ABS_DIFF: Final = 1e-3  # float32 ONNX vs PyTorch logits
MIN_AGREEMENT: Final = 0.99  # argmax agreement, float32 export


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
    """How far two models' logits are apart on the same samples."""

    n_samples: int
    max_abs_diff: float
    agreement: float  # share of argmaxes (over samples and chunk steps) that agree

    def lines(self, name: str = "parity") -> list[str]:
        return [(f"{name}: max |logit difference| {self.max_abs_diff:.3g} "
                 f"on {self.n_samples} samples"),
                f"{name}: argmax agreement {100 * self.agreement:.2f}%"]

    def check(self, max_abs_diff: float = MAX_ABS_DIFF,
              min_agreement: float = MIN_AGREEMENT) -> None:
        """Raise ``ParityError`` when beyond either threshold."""
        if not self.max_abs_diff <= max_abs_diff or self.agreement < min_agreement:
            raise ParityError(
                f"ONNX and PyTorch disagree: max |logit difference| {self.max_abs_diff:.3g} "
                f"(limit {max_abs_diff:g}), argmax agreement {100 * self.agreement:.2f}% "
                f"(limit {100 * min_agreement:g}%)")


def random_samples(contract: Contract, n: int = 32, seed: int = 0) -> Samples:
    """``n`` seeded random observations of ``contract``'s shapes."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *contract.image_shape), np.uint8)  # [S, N, H, W, 3]
    history = rng.integers(0, contract.n_actions, (n, contract.action_history), np.int64)
    return Samples(images, history, f"random (seed {seed})")


def episode_samples(episode_dir: str | os.PathLike[str], contract: Contract,
                    n: int = 64, *, held_out: bool = True) -> Samples:
    """Up to ``n`` observations spread over the validation episodes in ``episode_dir``
    (all episodes when the split leaves none for validation); ``held_out=False``: over
    the training episodes instead (int8 calibration, which the parity check must not
    see)."""
    from zima.training.dataset import load_splits  # noqa: PLC0415  (torch-side, heavy)

    paths = sorted(Path(episode_dir).glob("*.h5"))
    if not paths:
        raise ExportError(f"no episode files (*.h5) in {episode_dir}")
    with tempfile.TemporaryDirectory() as cache:
        train, val = load_splits(paths, cache, contract)
        data = val if held_out and len(val) else train
        picks = np.linspace(0, len(data) - 1, min(n, len(data))).round().astype(int)
        rows = [data[int(i)] for i in picks]
        images = np.stack([r[0].numpy() for r in rows])  # [S, N, H, W, 3]
        history = np.stack([r[1].numpy() for r in rows])  # [S, A]
    return Samples(images, history, f"{len(paths)} episodes ({len(rows)} samples)")


def torch_logits(model: nn.Module, samples: Samples) -> np.ndarray:
    """logits [S, chunk_len, n_actions] of ``model`` (must be in eval mode)."""
    check_eval_mode(model)
    with torch.no_grad():
        out = model(torch.from_numpy(samples.images), torch.from_numpy(samples.action_history))
    logits: np.ndarray = out.numpy()
    return logits


def onnx_logits(path: str | os.PathLike[str], samples: Samples) -> np.ndarray:
    """logits [S, chunk_len, n_actions] of the ONNX file at ``path`` (CPU provider)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run([LOGITS_OUTPUT], {IMAGES_INPUT: samples.images,
                                           ACTION_HISTORY_INPUT: samples.action_history})
    logits: np.ndarray = np.asarray(out)
    return logits


def compare(reference: np.ndarray, other: np.ndarray) -> ParityReport:
    """Parity of ``other`` against ``reference`` (both [S, chunk_len, n_actions])."""
    if reference.shape != other.shape:
        raise ParityError(f"logit shapes differ: {reference.shape} vs {other.shape}")
    agree = reference.argmax(-1) == other.argmax(-1)  # [S, chunk_len]
    diff = float(np.abs(reference - other).max()) if reference.size else 0.0
    return ParityReport(len(reference), diff, float(agree.mean()) if agree.size else 1.0)


def check_parity(model: nn.Module, path: str | os.PathLike[str],
                 samples: Samples) -> ParityReport:
    """PyTorch ``model`` vs the ONNX file at ``path`` on ``samples``."""
    return compare(torch_logits(model, samples), onnx_logits(path, samples))
