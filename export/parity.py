"""Does the ONNX file compute what the PyTorch model computes? Held-out samples through both.

PyTorch runs in eval mode under ``no_grad``; onnxruntime runs the file on the CPU
provider, as the robot does. The report gives the largest absolute logit difference and
the share of (sample, chunk step) argmaxes that agree; ``check`` fails above the
thresholds. A model with an arm head (``contract.arm_dims``) is fed ``arm_state`` too, and
its ``arm_logits`` are compared as well (each dimension's argmax one more agreement). Samples
come from episode files (the validation split of
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

from zima.contract import ARM_STATE_DIMS, Contract
from zima.onboard.policy import (
    ACTION_HISTORY_INPUT,
    ARM_STATE_INPUT,
    IMAGES_INPUT,
    warmup_arm_state,
)

from .onnx_export import ExportError, check_eval_mode

MAX_ABS_DIFF: Final = 1e-3  # float32 ONNX vs PyTorch logits
MIN_AGREEMENT: Final = 0.99  # argmax agreement, float32 export


class ParityError(ExportError):
    """The exported model's outputs differ from PyTorch's beyond the thresholds."""


@dataclass(frozen=True, slots=True)
class Samples:
    """A batch of observations: images uint8 [S, N, H, W, 3], action_history int64 [S, A],
    and for a model with an arm head arm_state float32 [S, ARM_STATE_DIMS]."""

    images: np.ndarray
    action_history: np.ndarray
    source: str  # "random (seed 0)" or "N episodes"
    arm_state: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    def feeds(self, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The model's inputs for samples ``start:stop`` (onnxruntime's feeds)."""
        feeds = {IMAGES_INPUT: self.images[start:stop],  # [b, N, H, W, 3]
                 ACTION_HISTORY_INPUT: self.action_history[start:stop]}  # [b, A]
        if self.arm_state is not None:
            feeds[ARM_STATE_INPUT] = self.arm_state[start:stop]  # [b, ARM_STATE_DIMS]
        return feeds

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
    arm = None
    if contract.arm_dims:  # about the warm-up's pose: +-3 cm, +-0.3 rad, +-1 cm opening
        spread = np.array([0.03, 0.03, 0.03, 0.3, 0.3, 0.01], np.float32)
        arm = (warmup_arm_state(contract) + spread * rng.uniform(-1, 1, (n, ARM_STATE_DIMS))
               ).astype(np.float32)  # [S, ARM_STATE_DIMS]
    return Samples(images, history, f"random (seed {seed})", arm)


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
        arm = np.stack([r[3].numpy() for r in rows]) if contract.arm_dims else None  # [S, 6]
    return Samples(images, history, f"{len(paths)} episodes ({len(rows)} samples)", arm)


def torch_logits(model: nn.Module, samples: Samples) -> np.ndarray:
    """logits [S, chunk_len, n_actions] of ``model`` (must be in eval mode); with an arm
    head, its arm logits too, as one [S, chunk_len, n_actions + arm_dims * n_arm_levels]."""
    check_eval_mode(model)
    inputs = [torch.from_numpy(a) for a in samples.feeds().values()]
    with torch.no_grad():
        out = model(*inputs)
    if isinstance(out, tuple):
        return _joined(*(o.numpy() for o in out))
    logits: np.ndarray = out.numpy()
    return logits


def onnx_logits(path: str | os.PathLike[str], samples: Samples) -> np.ndarray:
    """:func:`torch_logits` of the ONNX file at ``path`` (CPU provider)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    out = [np.asarray(o) for o in session.run(outputs, samples.feeds())]
    return out[0] if len(out) == 1 else _joined(*out)


def _joined(logits: np.ndarray, arm_logits: np.ndarray) -> np.ndarray:
    """Drive logits [S, C, n_actions] and arm logits [S, C, D, L] side by side, [S, C,
    n_actions + D * L]; :func:`compare` takes the argmax of each block on its own."""
    return np.concatenate([logits, arm_logits.reshape(*arm_logits.shape[:2], -1)], axis=-1)


def compare(reference: np.ndarray, other: np.ndarray, n_actions: int | None = None,
            n_arm_levels: int = 0) -> ParityReport:
    """Parity of ``other`` against ``reference`` (both [S, chunk_len, n_actions], or
    :func:`torch_logits`' joined arm logits: then the first ``n_actions`` are the drive's
    and each ``n_arm_levels`` after them a jog dimension's, each block's argmax apart)."""
    if reference.shape != other.shape:
        raise ParityError(f"logit shapes differ: {reference.shape} vs {other.shape}")
    n = reference.shape[-1] if n_actions is None else n_actions
    blocks = [(0, n)] + [(i, i + n_arm_levels) for i in range(n, reference.shape[-1],
                                                             max(n_arm_levels, 1))]
    agree = np.stack([reference[..., a:b].argmax(-1) == other[..., a:b].argmax(-1)
                      for a, b in blocks], axis=-1)  # [S, chunk_len, blocks]
    diff = float(np.abs(reference - other).max()) if reference.size else 0.0
    return ParityReport(len(reference), diff, float(agree.mean()) if agree.size else 1.0)


def check_parity(model: nn.Module, path: str | os.PathLike[str], samples: Samples,
                 contract: Contract | None = None) -> ParityReport:
    """PyTorch ``model`` vs the ONNX file at ``path`` on ``samples`` (``contract``: the
    model's, to tell an arm head's logits apart; default the model's own)."""
    c = contract or getattr(model, "contract", None)
    n_actions, levels = (c.n_actions, c.n_arm_levels) if c is not None else (None, 0)
    return compare(torch_logits(model, samples), onnx_logits(path, samples), n_actions, levels)
