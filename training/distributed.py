"""Data-parallel training: the process group, the per-rank sampler and the reductions.

`zima train` runs as one process, or as N under ``torchrun`` (DistributedDataParallel)::

    torchrun --standalone --nproc_per_node=2 -m zima.cli train configs/train_sim_small.toml

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`process_group` joins the group they describe (gloo on the CPU, nccl on CUDA, one
GPU per local rank) and leaves it at the end. Without them it is a one-rank world and
nothing distributed happens, so one code path serves both.

The rules, each needed for the ranks to stay in step:

- every rank starts from the same weights (seeded, and DDP broadcasts rank 0's);
- :class:`WeightedDistributedSampler` draws the epoch's weighted sample once, from the
  same seed on every rank, and gives rank ``r`` the draws ``r, r + N, ...``: disjoint
  shards of equal length, so every rank takes the same number of optimiser steps;
- metrics are sums reduced over the ranks (:func:`all_reduce_sums`) before any mean;
- rank 0 decides what all ranks must agree on (early stopping) and broadcasts it
  (:func:`broadcast_flags`); only rank 0 writes files or progress.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

_ENV: Final = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class DistributedError(RuntimeError):
    """A distributed launch that cannot work (bad environment, device or batch size)."""


@dataclass(frozen=True, slots=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, plots, metrics and progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.size > 1

    def barrier(self) -> None:
        """Wait for every rank (nothing in a one-rank world)."""
        if self.distributed:
            dist.barrier()


def world_from_env(env: dict[str, str] | None = None) -> World:
    """The world torchrun describes in ``env`` (default ``os.environ``); one rank without."""
    env = dict(os.environ) if env is None else env
    if "WORLD_SIZE" not in env:
        return World()
    try:
        rank, size, local = (int(env.get(k, "0")) for k in _ENV)
    except ValueError as exc:
        raise DistributedError(f"bad torchrun environment {[env.get(k) for k in _ENV]}: "
                               f"{exc}") from exc
    if not (size >= 1 and 0 <= rank < size and local >= 0):
        raise DistributedError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={size}, "
                               f"LOCAL_RANK={local}")
    return World(rank, size, local)


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[World, torch.device]]:
    """Join torchrun's process group for training on ``device`` (type "cpu" or "cuda"):
    (this rank's world, the device it trains on). Leaves the group at the end if it
    joined it here; a group the caller already started is used as it is."""
    world = world_from_env()
    if not world.distributed:
        yield world, device
        return
    if device.type == "cuda":
        if world.local_rank >= torch.cuda.device_count():
            raise DistributedError(f"LOCAL_RANK {world.local_rank} but only "
                                   f"{torch.cuda.device_count()} CUDA devices")
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    owned = not dist.is_initialized()
    if owned:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        if dist.get_world_size() != world.size or dist.get_rank() != world.rank:
            raise DistributedError(f"process group (rank {dist.get_rank()} of "
                                   f"{dist.get_world_size()}) differs from the environment "
                                   f"(rank {world.rank} of {world.size})")
        yield world, device
    finally:
        if owned:
            dist.destroy_process_group()


class WeightedDistributedSampler(Sampler[int]):
    """``WeightedRandomSampler`` (with replacement) split over the ranks, the weighted
    counterpart of torch's ``DistributedSampler``: call :meth:`set_epoch` before each
    epoch. The epoch's ``size * ceil(n / size)`` draws come from one generator seeded
    with ``seed_for(epoch)`` on every rank; rank ``r`` takes draws ``r::size``. In a
    one-rank world it yields exactly what ``WeightedRandomSampler(weights, n,
    generator=torch.Generator().manual_seed(seed))`` yields."""

    def __init__(self, weights: Sequence[float] | torch.Tensor, num_samples: int,
                 world: World, seed: int) -> None:
        super().__init__()
        self.weights = torch.as_tensor(weights, dtype=torch.double)  # [S]
        if self.weights.ndim != 1 or len(self.weights) == 0 or num_samples < 1:
            raise ValueError("sampler: need a non-empty 1-D weight vector and num_samples >= 1")
        self.world = world
        self.per_rank = -(-num_samples // world.size)  # ceil: every rank the same count
        self.seed = seed

    def set_epoch(self, seed: int) -> None:
        """Seed of the next epoch's draw (the same on every rank)."""
        self.seed = seed

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed)
        draws = torch.multinomial(self.weights, self.per_rank * self.world.size,
                                  replacement=True, generator=g)  # [size * per_rank]
        yield from draws[self.world.rank::self.world.size].tolist()


def all_reduce_sums(values: Sequence[float] | torch.Tensor, world: World) -> torch.Tensor:
    """Element-wise sums of ``values`` over the ranks (float64, on the CPU)."""
    t = torch.as_tensor(values, dtype=torch.float64).clone()
    if world.distributed:
        if dist.get_backend() == "nccl":  # nccl reduces CUDA tensors only
            cuda = t.cuda()
            dist.all_reduce(cuda)
            return cuda.cpu()
        dist.all_reduce(t)
    return t


def broadcast_flags(flags: Sequence[bool], world: World) -> list[bool]:
    """Rank 0's ``flags``, on every rank."""
    t = torch.tensor([int(f) for f in flags], dtype=torch.int64)
    if world.distributed:
        if dist.get_backend() == "nccl":
            cuda = t.cuda()
            dist.broadcast(cuda, src=0)
            t = cuda.cpu()
        else:
            dist.broadcast(t, src=0)
    return [bool(v) for v in t.tolist()]


def broadcast_buffers(module: torch.nn.Module, world: World) -> None:
    """Rank 0's buffers (BatchNorm running statistics) into every rank's ``module``. DDP
    broadcasts them before each forward, but each rank's last training step updates its
    own copy: this makes the replicas equal again before evaluation and at the end."""
    if world.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer.data, src=0)
