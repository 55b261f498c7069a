"""The behaviour-cloning training loop.

    select episodes: those of the outcomes the recipe clones (``data.outcomes``, default
        "success") and those an expert labelled (DAgger), the others skipped and counted
    for each epoch:
        train: WeightedRandomSampler (source mix) -> Augment -> Policy -> weighted
               cross-entropy over the chunk
        validate: model.eval() under torch.no_grad() -> loss, per-chunk-step accuracy
        checkpoint last.pt (and best.pt on a better validation loss); stop after
        ``patience`` epochs without one

The loss (:func:`weighted_loss`) is the cross-entropy of the logits against each chunk
step's label, weighted by the label's class weight. Accuracy is the share of chunk steps
whose argmax is the label. With an arm head (``contract.arm_dims``) the arm's loss
(:func:`arm_loss`: the cross-entropy of each jog dimension's bins, summed over the
dimensions) is added to it, and each epoch also reports ``val_arm_acc``, the share of
(chunk step, dimension) bins the argmax gets right.

Reproducibility: every random stream of an epoch (sampler order, augmentation, dropout)
is seeded from (seed, epoch), so an epoch depends only on the weights and optimiser
state it starts from. Resuming from ``last.pt`` therefore gives bit-identical weights to
an uninterrupted run (on CPU with deterministic algorithms; tested).

Data-parallel: under ``torchrun --nproc_per_node=N`` every process trains a
DistributedDataParallel replica on its own shard of each epoch's weighted draw, with
``batch_size / N`` samples per step (``batch_size`` stays the global batch, so a recipe
means the same on any N); metrics are reduced over the ranks, rank 0 decides early
stopping and alone writes checkpoints, plots, metrics and progress (zima.training.distributed).
Augmentation and dropout streams are seeded per rank as well; a one-process run is the
rank-0 case and unchanged by all this.

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
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TextIO

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Subset

from zima.contract import DEFAULT, Contract
from zima.episodes import EpisodeFormatError, EpisodeReader
from zima.training.augment import Augment
from zima.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from zima.training.config import DataConfig, TrainConfig
from zima.training.dataset import BCDataset, load_splits
from zima.training.distributed import (
    DistributedError,
    WeightedDistributedSampler,
    World,
    all_reduce_sums,
    broadcast_buffers,
    broadcast_flags,
    process_group,
)
from zima.training.models import Policy
from zima.training.plots import plot_run

LAST: Final = "last.pt"
BEST: Final = "best.pt"
METRICS: Final = "metrics.json"
SINGLE: Final = World()  # a one-process run


class TrainError(Exception):
    """A run that cannot start or continue (no data, mismatched checkpoint, a batch size
    the processes cannot share)."""


@dataclass(slots=True)
class TrainResult:
    """What a run did."""

    output_dir: Path
    epochs_done: int  # epochs completed, counting those before a resume
    best_val_loss: float
    stopped_early: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    episodes: int = 0  # episode files cloned (train and validation)
    skipped: dict[str, int] = field(default_factory=dict)  # outcome -> episodes not cloned


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


@dataclass(frozen=True, slots=True)
class EpisodeSelection:
    """Which episode files a run clones, and how many it skipped by outcome."""

    files: list[Path]
    skipped: dict[str, int]  # outcome -> episodes skipped

    def summary(self, data: DataConfig) -> str:
        """One line for the progress display."""
        used = f"{len(self.files)} of {len(self.files) + sum(self.skipped.values())} episodes"
        if not self.skipped:
            return f"episodes: {used}"
        why = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.skipped.items()))
        labelled = " or expert-labelled" if data.expert_labelled else ""
        return (f"episodes: {used}; skipped by outcome ({why}): data.outcomes = "
                f"{list(data.outcomes)}{labelled}")


def select_episodes(files: list[Path], data: DataConfig, contract: Contract,
                    progress: TextIO | None = None) -> EpisodeSelection:
    """The files whose outcome (or expert's labels) ``data`` takes (DataConfig.takes);
    how many were used and skipped is written to ``progress``."""
    kept: list[Path] = []
    skipped: dict[str, int] = {}
    for path in files:
        with EpisodeReader(path, contract) as reader:
            outcome = reader.info.outcome
            try:
                reader.read("expert_action")
            except EpisodeFormatError:  # no such dataset (a corrupt one fails the load later)
                labelled = False
            else:
                labelled = True
        if data.takes(outcome, labelled):
            kept.append(path)
        else:
            skipped[outcome] = skipped.get(outcome, 0) + 1
    if not kept:
        raise TrainError(f"no episode to clone: all {len(files)} skipped by outcome "
                         f"{skipped} (data.outcomes = {list(data.outcomes)}; '*' takes any)")
    selection = EpisodeSelection(kept, skipped)
    if progress is not None:
        progress.write(selection.summary(data) + "\n")
    return selection


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """Seed of one random stream of one epoch (rank 0's seeds are those of a single
    process, so adding ranks does not change what rank 0 draws)."""
    return (seed * 1_000_003 + epoch * 101 + stream + rank * 7_919) % (2 ** 63)


def _check_checkpoint(ckpt: Checkpoint, path: str | Path, contract: Contract) -> None:
    if ckpt.contract != contract:
        raise TrainError(f"{path}: checkpoint contract differs: "
                         f"{contract.mismatches(ckpt.contract)}")


def _progress(stream: TextIO | None,
              line: Callable[[int, int, float], str]) -> Callable[[int, int], None] | None:
    """A one-line progress display on ``stream`` (None: no display), redrawn at most every
    0.2 s and at the end: ``show(done, total)`` writes ``line(done, total, done per second)``."""
    if stream is None:
        return None
    start, shown = time.monotonic(), 0.0

    def show(done: int, total: int) -> None:
        nonlocal shown
        now = time.monotonic()
        if now - shown > 0.2 or done == total:
            shown = now
            stream.write("\r" + line(done, total, done / max(now - start, 1e-9)))
            stream.flush()
    return show


def _batches(loader: DataLoader[Any], label: str, stream: TextIO | None) -> Iterator[Any]:
    """The loader's batches, with a one-line progress display on ``stream``."""
    total = len(loader)
    show = _progress(stream, lambda i, n, rate: f"{label} [{i}/{n}] {rate:.1f} batch/s  ")
    for i, batch in enumerate(loader):
        yield batch
        if show is not None:
            show(i + 1, total)


def _decoding(stream: TextIO | None) -> Callable[[int, int], None] | None:
    """A one-line progress display of the episode cache's build on ``stream``."""
    return _progress(stream, lambda done, total, rate: (
        f"cache: decoding episodes [{done}/{total}] {rate:.1f}/s, "
        f"{(total - done) / max(rate, 1e-9) / 60:.0f} min left  "))


def weighted_loss(logits: torch.Tensor, target: torch.Tensor,
                  class_weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` [B, chunk, n_actions] against the labels ``target``
    int64 [B, chunk], each weighted by its label's ``class_weights`` [n_actions]."""
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), weight=class_weights)


def arm_loss(arm_logits: torch.Tensor, arm_target: torch.Tensor,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of ``arm_logits`` [B, chunk, D, L] against ``arm_target`` int64
    [B, chunk, D]: per dimension the mean over samples and chunk steps (weighted by each
    label's ``weights`` [D, L] when given), summed over the D dimensions (each dimension is
    a decision of its own, as each chunk step's drive is)."""
    per_bin = F.cross_entropy(arm_logits.flatten(0, 2), arm_target.flatten(),
                              reduction="none").view(arm_target.shape)  # [B, chunk, D]
    if weights is None:
        return per_bin.mean(dim=(0, 1)).sum()
    dims = torch.arange(arm_target.shape[-1], device=arm_target.device)
    w = weights[dims, arm_target]  # [B, chunk, D]: each label's weight
    return ((w * per_bin).sum(dim=(0, 1)) / w.sum(dim=(0, 1)).clamp_min(1e-12)).sum()


def _step_loss(model: nn.Module, images: torch.Tensor, hist: torch.Tensor,
               target: torch.Tensor, arm: list[torch.Tensor], *, class_weights: torch.Tensor,
               arm_weights: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One batch through ``model``: (loss, the driving logits [B, chunk, n_actions], the
    arm bins it gets right [B, chunk, D] bool or None). ``arm``: [] without an arm head,
    else [arm_state [B, 6], arm_target [B, chunk, D]] on the device."""
    if not arm:
        out = model(images, hist)  # [B, chunk, n_actions] logits
        return weighted_loss(out, target, class_weights), out, None
    arm_state, arm_target = arm
    out, arm_out = model(images, hist, arm_state)  # ..., [B, chunk, D, L]
    loss = weighted_loss(out, target, class_weights) + arm_loss(arm_out, arm_target,
                                                                arm_weights)
    return loss, out, arm_out.argmax(-1) == arm_target


def _train_epoch(model: nn.Module, augment: Augment, optimizer: torch.optim.Optimizer,
                 batches: Iterator[Any], *, class_weights: torch.Tensor,
                 device: torch.device, world: World = SINGLE,
                 arm_weights: torch.Tensor | None = None) -> tuple[float, float]:
    """One pass over ``batches`` (``model`` a Policy or its DDP wrapper): (mean weighted
    loss, mean accuracy over chunk steps), over the samples of every rank."""
    model.train()
    augment.train()
    loss_sum, correct, n = 0.0, 0.0, 0
    for images_cpu, hist_cpu, target_cpu, *arm_cpu in batches:
        images = augment(images_cpu).to(device)  # augmented on the CPU, by its generator
        hist = augment.history(hist_cpu, class_weights.numel()).to(device)
        target = target_cpu.to(device)
        loss, out, _ = _step_loss(model, images, hist, target,
                                  [t.to(device) for t in arm_cpu],
                                  class_weights=class_weights, arm_weights=arm_weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        loss_sum += float(loss.detach()) * len(target)
        correct += float((out.argmax(-1) == target).float().mean()) * len(target)
        n += len(target)
    loss_sum, correct, n = all_reduce_sums([loss_sum, correct, n], world).tolist()
    return loss_sum / max(n, 1), correct / max(n, 1)


def evaluate(model: Policy, data: BCDataset, class_weights: torch.Tensor, batch_size: int,
             device: torch.device, *, world: World = SINGLE,
             arm_weights: torch.Tensor | None = None,
             ) -> tuple[float, list[float], float | None]:
    """(mean weighted loss, accuracy at each chunk step [chunk_len], the share of arm bins
    it gets right or None without an arm head) of ``model`` on ``data``,
    in eval mode and without gradients (the prototype once lost a week to a missing eval()).
    Each rank of ``world`` takes every size-th sample; the sums are reduced over the ranks."""
    was_training = model.training
    model.eval()
    loss_sum, n, arm_hits, arm_bins = 0.0, 0, 0.0, 0
    correct = torch.zeros(model.contract.chunk_len, dtype=torch.float64)
    shard = Subset(data, range(world.rank, len(data), world.size))
    with torch.no_grad():
        for batch in DataLoader(shard, batch_size=batch_size):
            images, history, target, *arm = (t.to(device) for t in batch)
            loss, out, hits = _step_loss(model, images, history, target, arm,
                                         class_weights=class_weights, arm_weights=arm_weights)
            loss_sum += float(loss) * len(target)
            n += len(target)
            correct += (out.argmax(-1) == target).sum(0).double().cpu()
            if hits is not None:
                arm_hits, arm_bins = arm_hits + float(hits.sum()), arm_bins + hits.numel()
    model.train(was_training)
    sums = all_reduce_sums([loss_sum, n, arm_hits, arm_bins, *correct.tolist()], world)
    loss_sum, n, correct = float(sums[0]), int(sums[1]), sums[4:]  # correct: [chunk_len]
    arm_acc = float(sums[2]) / max(float(sums[3]), 1.0) if model.contract.arm_dims else None
    return loss_sum / max(n, 1), (correct / max(n, 1)).tolist(), arm_acc


def _tempered(weights: torch.Tensor, power: float) -> torch.Tensor:
    """``weights`` [n_actions] (0 for absent actions) raised to ``power`` and scaled back
    to mean 1 over the present actions; absent actions stay 0."""
    if power == 1.0:
        return weights  # bit for bit what it was before the option existed
    present = weights > 0
    out = torch.zeros_like(weights)
    out[present] = weights[present] ** power
    return out * present.sum() / out.sum()


def _arm_weights(config: TrainConfig, data: BCDataset,
                 device: torch.device) -> torch.Tensor | None:
    """Each arm dimension's bin weights [D, L] (``arm_class_weight_power``, tempered as
    the drive's), or None: no arm head, or the arm's loss unweighted."""
    if not data.contract.arm_dims or config.arm_class_weight_power <= 0:
        return None
    return torch.stack([_tempered(w, config.arm_class_weight_power)
                        for w in data.arm_class_weights()]).to(device)


def _sample_weights(config: TrainConfig, data: BCDataset) -> torch.Tensor:
    """Per-sample draw weights [S]: the source mix, transitions boosted."""
    weights = data.sample_weights(config.data.source_weights)  # [S] float64
    if config.transition_weight != 1.0:
        boost = np.where(data.transitions(), config.transition_weight, 1.0)
        weights = weights * torch.from_numpy(boost)
    return weights


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """The learning rates' factor in ``epoch`` (from 0) of the run's schedule."""
    if config.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    return 1.0


def _start_epoch(epoch: int, config: TrainConfig, *, optimizer: torch.optim.Optimizer,
                 sampler: WeightedDistributedSampler, augment: Augment, world: World) -> None:
    """The epoch's rates and random streams: functions of the epoch alone, so a resumed
    run starts an epoch as an uninterrupted one did."""
    for group in optimizer.param_groups:
        base = config.backbone_lr if group["name"] == "backbone" else config.head_lr
        group["lr"] = base * lr_factor(config, epoch)
    sampler.set_epoch(_epoch_seed(config.seed, epoch, 1))  # one draw, shared by the ranks
    augment.generator.manual_seed(_epoch_seed(config.seed, epoch, 2, world.rank))
    torch.manual_seed(_epoch_seed(config.seed, epoch, 3, world.rank))  # dropout


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
        arch = ("backbone", "action_embed_dim", "hidden_dim")
        differ = [f"{k}: checkpoint {getattr(ckpt.policy_config, k)!r}, "
                  f"[policy] {getattr(config.policy, k)!r}"
                  for k in arch if getattr(ckpt.policy_config, k) != getattr(config.policy, k)]
        if differ:  # else load_state_dict's raw RuntimeError about missing keys
            raise TrainError(f"{config.init_from}: another network than [policy] "
                             f"({'; '.join(differ)}); set [policy] to the pre-trained run's")
        model.load_state_dict(ckpt.model_state)  # weights only: a fresh optimiser and history
    return 0, [], float("inf"), 0


def train(config: TrainConfig, contract: Contract = DEFAULT,
          progress: TextIO | None = sys.stderr) -> TrainResult:
    """Run ``config`` on episodes of ``contract``; see the module docstring. Under
    torchrun this is one rank's share of the run (``progress`` is shown by rank 0 only)."""
    try:
        with process_group(_device(config.device)) as (world, device):
            return _train(config, contract, progress if world.is_main else None,
                          world, device)
    except DistributedError as exc:
        raise TrainError(str(exc)) from exc


def _train(config: TrainConfig, contract: Contract, progress: TextIO | None, world: World,
           device: torch.device) -> TrainResult:
    if config.batch_size % world.size:
        raise TrainError(f"batch_size {config.batch_size} (the global batch) is not a "
                         f"multiple of the {world.size} processes")
    rank_batch = config.batch_size // world.size
    out = Path(config.output_dir)
    selection = select_episodes(episode_files(config), config.data, contract, progress)
    if world.is_main:
        out.mkdir(parents=True, exist_ok=True)
        # Rank 0 builds the episode cache; the others open it once it is complete.
        train_ds, val_ds = load_splits(selection.files, config.data.cache_dir, contract,
                                       config.data.val_fraction, config.seed,
                                       progress=_decoding(progress))
        if progress is not None and train_ds.cache.decoded_episodes:
            progress.write("\n")
    world.barrier()
    if not world.is_main:
        train_ds, val_ds = load_splits(selection.files, config.data.cache_dir, contract,
                                       config.data.val_fraction, config.seed)
    if len(train_ds) == 0 or len(val_ds) == 0:
        raise TrainError("training needs at least two episodes (one for validation)")
    data_fingerprint = train_ds.cache.fingerprint

    torch.manual_seed(config.seed)  # initialisation, the same on every rank
    model = Policy(contract, config.policy).to(device)
    optimizer = torch.optim.AdamW(model.param_groups(config.backbone_lr, config.head_lr),
                                  weight_decay=config.weight_decay)
    start_epoch, history, best, since_best = _restore(config, model, optimizer, contract,
                                                      data_fingerprint)
    # DDP averages the gradients over the ranks in backward (and broadcasts rank 0's
    # weights and BatchNorm statistics), so the replicas stay equal step by step.
    replica: nn.Module = model if not world.distributed else DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    class_weights = _tempered(train_ds.class_weights(), config.class_weight_power).to(device)
    arm_weights = _arm_weights(config, train_ds, device)
    sampler = WeightedDistributedSampler(_sample_weights(config, train_ds), len(train_ds),
                                         world, seed=config.seed)
    augment = Augment(config.augment)
    stopped_early = since_best >= config.patience
    for epoch in range(start_epoch, config.epochs):
        if stopped_early:
            break
        t0 = time.monotonic()
        _start_epoch(epoch, config, optimizer=optimizer, sampler=sampler, augment=augment,
                     world=world)
        loader = DataLoader(train_ds, batch_size=rank_batch, sampler=sampler,
                            num_workers=config.num_workers)
        batches = _batches(loader, f"train epoch {epoch + 1}/{config.epochs}", progress)
        train_loss, train_acc = _train_epoch(replica, augment, optimizer, batches,
                                             class_weights=class_weights, device=device,
                                             world=world, arm_weights=arm_weights)
        broadcast_buffers(model, world)
        val_loss, val_acc, arm_acc = evaluate(model, val_ds, class_weights,
                                              config.batch_size, device, world=world,
                                              arm_weights=arm_weights)
        seconds = time.monotonic() - t0
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                        "val_loss": val_loss, "val_acc": float(np.mean(val_acc)),
                        "val_acc_per_step": val_acc, "seconds": seconds,
                        **({"val_arm_acc": arm_acc} if arm_acc is not None else {})})
        # The reduced losses agree across ranks anyway; broadcasting rank 0's verdict
        # makes sure that no rank can leave the loop alone and hang the others.
        improved, = broadcast_flags([val_loss < best], world)
        best, since_best = (val_loss, 0) if improved else (best, since_best + 1)
        stopped_early = since_best >= config.patience
        if world.is_main:
            trainer = {"optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                       "history": history, "best_val_loss": best,
                       "epochs_since_best": since_best}
            for path in (out / LAST, out / BEST) if improved else (out / LAST,):
                save_checkpoint(path, model,
                                config=json.loads(json.dumps(dataclasses.asdict(config))),
                                data_fingerprint=data_fingerprint, trainer=trainer)
        if progress is not None:
            progress.write(f"\repoch {epoch + 1}/{config.epochs}: train loss "
                           f"{train_loss:.4f}, val loss {val_loss:.4f}, val acc "
                           f"{np.mean(val_acc):.3f}"
                           + (f", val arm acc {arm_acc:.3f}" if arm_acc is not None else "")
                           + f", {seconds:.1f} s{' *' if improved else ''}\n")

    if world.is_main:
        (out / METRICS).write_text(json.dumps(history, indent=1))
        counts = np.bincount(train_ds.targets()[:, 0], minlength=contract.n_actions)
        plot_run(history, counts, contract.actions, out)
    world.barrier()  # the run's files are complete when any rank returns
    return TrainResult(out, len(history), best, stopped_early, history, len(selection.files),
                       selection.skipped)
