"""The behaviour-cloning training loop.

    for each epoch:
        train: WeightedRandomSampler (source mix) -> Augment -> Policy -> weighted CE over the chunk
        validate: model.eval() under torch.no_grad() -> loss, per-chunk-step accuracy
        checkpoint last.pt (and best.pt on a better validation loss); stop after
        ``patience`` epochs without one

Reproducibility: every random stream of an epoch (sampler order, augmentation, dropout)
is seeded from (seed, epoch), so an epoch depends only on the weights and optimiser
state it starts from. Resuming from ``last.pt`` therefore gives bit-identical weights to
an uninterrupted run (on CPU with deterministic algorithms; tested).

A checkpoint (``torch.load(..., weights_only=True)`` reads it) holds::

    model, optimizer      state dicts
    epoch                 epochs completed
    contract              the contract's JSON (zima.contract)
    policy_config         PolicyConfig fields (rebuild the network for export)
    config                the TrainConfig, as plain dicts
    data_fingerprint      the episode cache's key (which files, which contract)
    history               per-epoch metrics so far
    best_val_loss, epochs_since_best
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch.utils.data import DataLoader, WeightedRandomSampler

from zima.contract import DEFAULT, Contract
from zima.training.augment import Augment
from zima.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from zima.training.config import TrainConfig
from zima.training.dataset import BCDataset, load_splits
from zima.training.models import Policy
from zima.training.plots import plot_run

LAST: Final = "last.pt"
BEST: Final = "best.pt"
METRICS: Final = "metrics.json"


class TrainError(Exception):
    """A run that cannot start or continue (no data, mismatched checkpoint)."""


@dataclass(slots=True)
class TrainResult:
    """What a run did."""

    output_dir: Path
    epochs_done: int  # epochs completed, counting those before a resume
    best_val_loss: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def episode_files(config: TrainConfig) -> list[Path]:
    """Every ``*.h5`` in the configured folders, sorted."""
    files: list[Path] = []
    for folder in config.data.dirs:
        if not Path(folder).is_dir():
            raise TrainError(f"data folder {folder} does not exist")
        files += sorted(Path(folder).glob("*.h5"))
    if not files:
        raise TrainError(f"no episode files (*.h5) in {list(config.data.dirs)}")
    return files


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 101 + stream) % (2 ** 63)


def _check_checkpoint(ckpt: Checkpoint, path: str | Path, contract: Contract) -> None:
    if ckpt.contract != contract:
        raise TrainError(f"{path}: checkpoint contract differs: "
                         f"{contract.mismatches(ckpt.contract)}")


def _batches(loader: DataLoader[Any], label: str, stream: TextIO | None) -> Iterator[Any]:
    """The loader's batches, with a one-line progress display on ``stream``."""
    total, shown, start = len(loader), 0.0, time.monotonic()
    for i, batch in enumerate(loader):
        yield batch
        now = time.monotonic()
        if stream is not None and (now - shown > 0.2 or i + 1 == total):
            shown = now
            rate = (i + 1) / max(now - start, 1e-9)
            stream.write(f"\r{label} [{i + 1}/{total}] "
                         f"{rate:.1f} batch/s  ")
            stream.flush()


def _train_epoch(model: Policy, augment: Augment, optimizer: torch.optim.Optimizer,
                 batches: Iterator[Any], *, class_weights: torch.Tensor,
                 device: torch.device) -> tuple[float, float]:
    """One pass over ``batches``: (mean weighted loss, mean accuracy over chunk steps)."""
    model.train()
    augment.train()
    loss_sum, correct, n = 0.0, 0.0, 0
    for images_cpu, hist_cpu, target_cpu in batches:
        images = augment(images_cpu).to(device)  # augmented on the CPU, by its generator
        hist, target = hist_cpu.to(device), target_cpu.to(device)
        logits = model(images, hist)  # [B, chunk, n_actions]
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), weight=class_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        loss_sum += float(loss.detach()) * len(target)
        correct += float((logits.argmax(-1) == target).float().mean()) * len(target)
        n += len(target)
    return loss_sum / max(n, 1), correct / max(n, 1)


def evaluate(model: Policy, data: BCDataset, class_weights: torch.Tensor, batch_size: int,
             device: torch.device) -> tuple[float, list[float]]:
    """(mean weighted loss, accuracy at each chunk step [chunk_len]) of ``model`` on ``data``,
    in eval mode and without gradients (the prototype once lost a week to a missing eval())."""
    was_training = model.training
    model.eval()
    loss_sum, n = 0.0, 0
    correct = torch.zeros(model.contract.chunk_len, dtype=torch.float64)
    with torch.no_grad():
        for batch in DataLoader(data, batch_size=batch_size):
            images, history, target = (t.to(device) for t in batch)
            logits = model(images, history)  # [B, chunk, n_actions]
            loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(),
                                   weight=class_weights, reduction="mean")
            loss_sum += float(loss) * len(target)
            n += len(target)
            correct += (logits.argmax(-1) == target).sum(0).double().cpu()
    model.train(was_training)
    return loss_sum / max(n, 1), (correct / max(n, 1)).tolist()


def _restore(config: TrainConfig, model: Policy, optimizer: torch.optim.Optimizer,
             contract: Contract, data_fingerprint: str,
             ) -> tuple[int, list[dict[str, Any]], float, int]:
    """Resume from last.pt or start from init_from's weights, as configured: (epochs
    done, history, best validation loss, epochs since the best)."""
    last_path = Path(config.output_dir) / LAST
    if config.resume and last_path.exists():
        ckpt = load_checkpoint(last_path)
        _check_checkpoint(ckpt, last_path, contract)
        if ckpt.data_fingerprint != data_fingerprint:
            raise TrainError(f"{last_path}: trained on other data (fingerprint "
                             f"{ckpt.data_fingerprint}, now {data_fingerprint})")
        if ckpt.trainer is None:
            raise TrainError(f"{last_path}: holds no trainer state to resume from")
        model.load_state_dict(ckpt.model_state)
        optimizer.load_state_dict(ckpt.trainer["optimizer"])
        state = ckpt.trainer
        return (state["epoch"], list(state["history"]), state["best_val_loss"],
                state["epochs_since_best"])
    if config.init_from:
        ckpt = load_checkpoint(config.init_from)
        _check_checkpoint(ckpt, config.init_from, contract)
        model.load_state_dict(ckpt.model_state)  # weights only: a fresh optimiser and history
    return 0, [], float("inf"), 0


def train(config: TrainConfig, contract: Contract = DEFAULT,
          progress: TextIO | None = sys.stderr) -> TrainResult:
    """Run ``config`` on episodes of ``contract``; see the module docstring."""
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_ds, val_ds = load_splits(episode_files(config), config.data.cache_dir, contract,
                                   config.data.val_fraction, config.seed)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise TrainError("training needs at least two episodes (one for validation)")
    data_fingerprint = train_ds.cache.folder.name
    device = _device(config.device)

    torch.manual_seed(config.seed)  # initialisation
    model = Policy(contract, config.policy).to(device)
    optimizer = torch.optim.AdamW(model.param_groups(config.backbone_lr, config.head_lr),
                                  weight_decay=config.weight_decay)
    start_epoch, history, best, since_best = _restore(config, model, optimizer, contract,
                                                      data_fingerprint)
    class_weights = train_ds.class_weights().to(device)
    sample_weights = train_ds.sample_weights(config.data.source_weights)
    augment = Augment(config.augment)
    stopped_early = since_best >= config.patience
    for epoch in range(start_epoch, config.epochs):
        if stopped_early:
            break
        t0 = time.monotonic()
        sampler_gen = torch.Generator().manual_seed(_epoch_seed(config.seed, epoch, 1))
        augment.generator.manual_seed(_epoch_seed(config.seed, epoch, 2))
        torch.manual_seed(_epoch_seed(config.seed, epoch, 3))  # dropout
        sampler = WeightedRandomSampler(sample_weights.tolist(), len(train_ds), replacement=True,
                                        generator=sampler_gen)
        loader = DataLoader(train_ds, batch_size=config.batch_size, sampler=sampler,
                            num_workers=config.num_workers)
        batches = _batches(loader, f"train epoch {epoch + 1}/{config.epochs}", progress)
        train_loss, train_acc = _train_epoch(model, augment, optimizer, batches,
                                             class_weights=class_weights, device=device)
        val_loss, val_acc = evaluate(model, val_ds, class_weights, config.batch_size, device)
        seconds = time.monotonic() - t0
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                        "val_loss": val_loss, "val_acc": float(np.mean(val_acc)),
                        "val_acc_per_step": val_acc, "seconds": seconds})
        improved = val_loss < best
        best, since_best = (val_loss, 0) if improved else (best, since_best + 1)
        stopped_early = since_best >= config.patience
        trainer = {"optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                   "history": history, "best_val_loss": best, "epochs_since_best": since_best}
        for path in (out / LAST, out / BEST) if improved else (out / LAST,):
            save_checkpoint(path, model, config=json.loads(json.dumps(dataclasses.asdict(config))),
                            data_fingerprint=data_fingerprint, trainer=trainer)
        if progress is not None:
            progress.write(f"\repoch {epoch + 1}/{config.epochs}: train loss "
                           f"{train_loss:.4f}, val loss {val_loss:.4f}, val acc "
                           f"{np.mean(val_acc):.3f}, {seconds:.1f} s{' *' if improved else ''}\n")

    (out / METRICS).write_text(json.dumps(history, indent=1))
    counts = np.bincount(train_ds.targets()[:, 0], minlength=contract.n_actions)
    plot_run(history, counts, contract.actions, out)
    return TrainResult(out, len(history), best, stopped_early, history)
