"""PNG plots of a training run: loss and accuracy curves, the action distribution.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
backend switch), so plotting works on a headless training machine and inside tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LOSS_PNG = "loss.png"
ACCURACY_PNG = "accuracy.png"
ACTIONS_PNG = "actions.png"


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_curves(history: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """loss.png (train/validation weighted cross-entropy) and accuracy.png (train,
    validation, and validation per chunk step) from per-epoch ``history`` rows."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="validation")
    ax.set(xlabel="epoch", ylabel="weighted cross-entropy", title="loss")
    ax.legend()
    loss = _save(fig, out_dir / LOSS_PNG)

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(epochs, [h["train_acc"] for h in history], "o-", label="train")
    ax.plot(epochs, [h["val_acc"] for h in history], "o-", label="validation")
    per_step = np.array([h["val_acc_per_step"] for h in history])  # [epochs, chunk_len]
    for k in range(per_step.shape[1] if per_step.ndim == 2 else 0):
        ax.plot(epochs, per_step[:, k], ":", alpha=0.6, label=f"validation, step {k}")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="accuracy")
    ax.legend(fontsize="small")
    return [loss, _save(fig, out_dir / ACCURACY_PNG)]


def plot_actions(counts: Sequence[int] | np.ndarray, names: Sequence[str],
                 out_dir: Path) -> Path:
    """actions.png: how often each action is the label in the training set."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.bar(list(names), [int(c) for c in counts])
    ax.set(ylabel="training samples", title="action distribution (training labels)")
    return _save(fig, out_dir / ACTIONS_PNG)


def plot_run(history: Sequence[dict[str, Any]], action_counts: Sequence[int] | np.ndarray,
             action_names: Sequence[str], out_dir: Path) -> list[Path]:
    """Every plot of a run into ``out_dir``; the paths written."""
    return [*plot_curves(history, out_dir),
            plot_actions(action_counts, action_names, out_dir)]
