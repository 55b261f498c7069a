"""Training data speed: the episode cache against per-sample HDF5 reads, and the training
step it must keep up with. (Inference speed: ``bench/inference_bench.py``.)

    .venv/bin/python bench/training_bench.py

**Loader.** EPISODES synthetic episodes of STEPS steps are written with
``zima.episodes.EpisodeWriter`` (gzip frames, one per chunk, as the simulator writes them;
the frames are smooth moving gradients with pixel noise, so they compress about as the
rendered ones do) into a temporary folder. Samples per second through a
``DataLoader`` (batch 32, shuffled, no worker processes, as ``configs/demo_policy.toml``
trains) of (1) the first prototype's loader, which opens the episode file and reads one
sample's frames, action history and target per ``__getitem__``, and (2)
``zima.training.dataset``'s memory-mapped cache (``BCDataset``), built once before (its
build time is shown). Both read files the page cache already holds, and both are checked
to give the same samples. Beside them, the training step rate: samples per second through
forward, backward and an AdamW step of the small-backbone policy (batch 32, CPU, on one
thread and on torch's default threads), so the table shows whether a loader keeps up
with the faster of the two (goal: the cache 20x or more faster than the naive reads).
The loaders run on one torch thread, as in a DataLoader worker process.

**Augmentation.** ``zima.training.augment.Augment`` at its default strengths (as
``[augment] enabled = true`` trains) on batches of 32 observations of the contract's
images, one torch thread, against the straightforward chain it replaced (a bilinear
``grid_sample`` for the whole-pixel shift, brightness, contrast and saturation one pass
each, every sample blurred and the unchosen put back), checked to agree within one grey
level. Its rate beside the training step's says what switching it on costs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import h5py
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (torch's own convention)
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results import record
from zima.contract import DEFAULT, Action, Contract
from zima.episodes import EpisodeInfo, EpisodeWriter
from zima.training.augment import Augment, AugmentConfig, barrel_grid
from zima.training.dataset import BCDataset, EpisodeCache, Sample
from zima.training.models import Policy, PolicyConfig

EPISODES: Final = 8
STEPS: Final = 150  # per episode: 1200 samples
BATCH: Final = 32
LOADER_S: Final = 3.0  # per loader, at most (the cache passes the whole set sooner)
TRAIN_STEPS: Final = 12
GOAL_LOADER_X: Final = 20.0
PART_DATA: Final = "training data"
AUGMENT_REPEATS: Final = 10


# --- episodes and the two loaders --------------------------------------------------------------


def write_episodes(folder: Path, contract: Contract) -> list[Path]:
    """EPISODES synthetic episode files: frames a banded scene drifting by a pixel per
    step under pixel noise (about 13 KB a frame with gzip 1, as rendered frames: 12.7 KB),
    random runs of actions."""
    rng = np.random.default_rng(0)
    h, w = contract.image_height, contract.image_width
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w * 2]  # twice as wide: the view drifts across it
    paths = []
    for e in range(EPISODES):
        scene = np.stack([(xx * (1 + e) + yy) % 256, (2 * yy + 40 * e) % 256,
                          (xx + 3 * yy) % 256], axis=-1) // 64 * 64  # [H, 2W, 3] flat bands
        path = folder / f"episode_{e:03d}.h5"
        with EpisodeWriter(path, EpisodeInfo(source="sim", scene="bench", seed=e), contract,
                           fsync=False) as writer:
            action = int(Action.FORWARD)
            for t in range(STEPS):
                if rng.random() < 0.1:
                    action = int(rng.integers(0, contract.n_actions))
                frames = {}
                for c, cam in enumerate(contract.cameras):
                    view = scene[:, (t + 7 * c) % w:(t + 7 * c) % w + w]
                    noise = rng.normal(0, 0.6, view.shape)
                    frames[cam] = np.clip(view + noise, 0, 255).astype(np.uint8)
                writer.append(frames, action, t / contract.control_hz)
        paths.append(path)
    return paths


class NaiveDataset(Dataset[Sample]):
    """The first prototype's loader: each sample opens its episode file and reads its
    frames (one gzip chunk each), action history and target; samples in the order of
    ``BCDataset`` over the same episodes, and the same tensors."""

    def __init__(self, paths: Sequence[str], contract: Contract) -> None:
        self.contract = contract
        self.index: list[tuple[str, int, int]] = []  # (file, step, steps of the episode)
        for path in paths:
            with h5py.File(path, "r") as f:
                n = int(f.attrs["n_steps"])
            self.index += [(path, t, n) for t in range(n)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> Sample:
        c, (path, t, n) = self.contract, self.index[index]
        stop = int(Action.STOP)
        with h5py.File(path, "r") as f:
            frames = [f[f"images/{cam}"][max(t - back, 0)]  # [H, W, 3], oldest first
                      for cam in c.cameras for back in range(c.image_history - 1, -1, -1)]
            past = f["action"][max(t - c.action_history, 0):t]
            labels = f["expert_action" if "expert_action" in f else "action"]
            ahead = labels[t:min(t + c.chunk_len, n)]
        history = np.full(c.action_history, stop, np.int64)  # [A], STOP before the start
        history[c.action_history - len(past):] = past
        target = np.full(c.chunk_len, stop, np.int64)  # [chunk_len], STOP past the end
        target[:len(ahead)] = ahead
        return (torch.from_numpy(np.stack(frames)), torch.from_numpy(history),
                torch.from_numpy(target))


def loader_rate(dataset: Dataset[Sample], seconds: float) -> float:
    """Samples per second through a shuffled batch-32 DataLoader, for up to ``seconds``."""
    g = torch.Generator().manual_seed(0)
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, generator=g)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for images, _history, _target in loader:
            n += len(images)
            if time.perf_counter() - start >= seconds:
                break
    return n / (time.perf_counter() - start)


def train_step_rate(data: BCDataset, threads: int) -> float:
    """Samples per second of forward + backward + AdamW step, small backbone, batch 32,
    on ``threads`` torch threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Policy(data.contract, PolicyConfig(backbone="small")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, history, target = next(iter(DataLoader(data, batch_size=BATCH, shuffle=True)))

    def step() -> None:
        logits = model(images, history)  # [B, chunk_len, n_actions]
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()

    for _ in range(2):  # warm-up: allocator, kernels' first calls
        step()
    start = time.perf_counter()
    for _ in range(TRAIN_STEPS):
        step()
    return TRAIN_STEPS * BATCH / (time.perf_counter() - start)


def data_rows(folder: Path) -> list[tuple[str, str]]:
    """Write the episodes, measure both loaders and the step rate; (metric, value) rows."""
    paths = write_episodes(folder / "episodes", DEFAULT)
    start = time.perf_counter()
    cache = EpisodeCache.open(paths, folder / "cache", DEFAULT)
    build_s = time.perf_counter() - start
    cached = BCDataset(cache, range(len(cache.episodes)))
    naive = NaiveDataset([e.path for e in cache.episodes], DEFAULT)
    assert len(naive) == len(cached) == EPISODES * STEPS
    for i in (0, 1, STEPS - 1, STEPS, len(naive) - 1):  # the same samples, or no comparison
        assert all(torch.equal(a, b) for a, b in zip(naive[i], cached[i], strict=True)), i
    cores = torch.get_num_threads()
    # The loaders on one thread, as in a DataLoader worker process: collating is a copy,
    # and on a busy machine a multi-threaded copy waits for its threads' time slices.
    torch.set_num_threads(1)
    naive_rate = loader_rate(naive, LOADER_S)
    cache_rate = loader_rate(cached, LOADER_S)
    steps = {n: train_step_rate(cached, n) for n in sorted({1, cores})}
    torch.set_num_threads(cores)
    step_rate = max(steps.values())  # the faster training is what a loader must keep up with
    ratio = cache_rate / naive_rate
    mb = sum(p.stat().st_size for p in paths) / 1e6
    record(PART_DATA, "loader, naive per-sample HDF5 reads", f"{naive_rate:,.0f} samples/s")
    record(PART_DATA, "loader, memory-mapped cache", f"{cache_rate:,.0f} samples/s")
    record(PART_DATA, "loader speed-up, cache over naive", f"{ratio:.0f}x",
           f">= {GOAL_LOADER_X:.0f}x", ratio >= GOAL_LOADER_X)
    record(PART_DATA, f"train step, small backbone, batch {BATCH}, CPU (best thread count)",
           f"{step_rate:,.0f} samples/s", "cache >= step rate", cache_rate >= step_rate)
    return [
        ("episodes (synthetic, EpisodeWriter, gzip)",
         f"{EPISODES} x {STEPS} steps, {mb:.1f} MB"),
        ("cache build (decode every episode once)", f"{build_s:.2f} s"),
        ("loader, naive per-sample HDF5 reads", f"{naive_rate:,.0f} samples/s"),
        ("loader, memory-mapped cache (BCDataset)", f"{cache_rate:,.0f} samples/s"),
        ("cache over naive", f"{ratio:.1f}x (goal >= {GOAL_LOADER_X:.0f}x)"),
        *((f"train step, small backbone, batch {BATCH}, CPU, {n} thread(s)",
           f"{rate:,.0f} samples/s") for n, rate in steps.items()),
        ("naive loader over the faster step rate", f"{naive_rate / step_rate:.2f}x"),
        ("cache loader over the faster step rate", f"{cache_rate / step_rate:.1f}x"),
    ]


def chain_augment(images: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """The straightforward chain, drawing what :class:`Augment` draws in the same order."""
    b, n, h, w, _ = images.shape
    x = images.reshape(b * n, h, w, 3).permute(0, 3, 1, 2).float()

    def draw(low: float, high: float) -> torch.Tensor:  # [B] -> [M, 1, 1, 1]
        v = low + (high - low) * torch.rand(b, generator=g)
        return v.repeat_interleave(n)[:, None, None, None]

    draw(0, 0)  # the barrel coefficient and its coin: no lens at the defaults
    torch.rand(b, generator=g)
    shift = torch.randint(-cfg.shift_px, cfg.shift_px + 1, (b, 2), generator=g).float()
    grid = barrel_grid(h, w, torch.zeros(b)) + (shift * torch.tensor([2 / w, 2 / h]))[:, None, None]
    x = F.grid_sample(x, grid.repeat_interleave(n, dim=0), mode="bilinear",
                      padding_mode="border", align_corners=False)
    x = x * draw(1 - cfg.brightness, 1 + cfg.brightness)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * draw(1 - cfg.contrast, 1 + cfg.contrast) + mean
    grey = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)
    x = (x - grey) * draw(1 - cfg.saturation, 1 + cfg.saturation) + grey
    sigma = draw(0.3, cfg.blur_sigma_max).flatten()
    chosen = draw(0, 1) < cfg.blur_prob
    radius = max(1, int(np.ceil(2.0 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(3, dim=0)
    y = F.pad(x.reshape(1, b * n * 3, h, w), (radius,) * 4, mode="replicate")
    y = F.conv2d(y, kernel[:, None, None, :], groups=b * n * 3)
    y = F.conv2d(y, kernel[:, None, :, None], groups=b * n * 3).reshape_as(x)
    x = torch.where(chosen, y, x)
    x = x + draw(0, cfg.noise_std) * torch.randn(x.shape, generator=g)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(images.shape)


def augment_rows() -> list[tuple[str, str]]:
    """Samples per second of :class:`Augment` and of the chain, one thread; (metric, value)."""
    torch.set_num_threads(1)
    c = DEFAULT
    shape = (BATCH, len(c.cameras) * c.image_history, c.image_height, c.image_width, 3)
    images = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)
    cfg = AugmentConfig()
    augment = Augment(cfg, torch.Generator().manual_seed(1)).train()
    ours = augment(images)
    theirs = chain_augment(images, cfg, torch.Generator().manual_seed(1))
    worst = int((ours.int() - theirs.int()).abs().max())
    assert worst <= 1, f"Augment and the chain differ by {worst} grey levels"

    def rate(run: Callable[[], object]) -> float:
        start = time.perf_counter()
        for _ in range(AUGMENT_REPEATS):
            run()
        return AUGMENT_REPEATS * BATCH / (time.perf_counter() - start)

    fast = rate(lambda: augment(images))
    slow = rate(lambda: chain_augment(images, cfg, torch.Generator().manual_seed(1)))
    torch.set_num_threads(os.cpu_count() or 1)
    record(PART_DATA, "augmentation (Augment), defaults, 1 thread", f"{fast:,.0f} samples/s")
    record(PART_DATA, "augmentation speed-up over the per-op chain", f"{fast / slow:.1f}x")
    return [
        (f"augmentation, chain, batch {BATCH} x {shape[1]} images, 1 thread",
         f"{slow:,.0f} samples/s"),
        (f"augmentation, Augment, batch {BATCH} x {shape[1]} images, 1 thread",
         f"{fast:,.0f} samples/s"),
        ("Augment over the chain", f"{fast / slow:.1f}x (largest difference {worst} grey level)"),
    ]


def main() -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zima-training-bench-") as tmp:
        data = data_rows(Path(tmp)) + augment_rows()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"training bench: {os.cpu_count()} cores, load average {load}")
    width = max(len(m) for m, _ in data)
    print(f"{'metric':<{width}}  value")
    print("-" * (width + 30))
    for metric, value in data:
        print(f"{metric:<{width}}  {value}")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
