"""Behaviour-cloning samples from episode files, through a memory-mapped cache.

The first prototype spent 95% of its training time in per-sample HDF5 reads (gzip
frames, one chunk each). Here every episode is decoded once, with one read per dataset
(:meth:`EpisodeReader.load`), into plain ``.npy`` arrays under a cache folder named by a
fingerprint of the files and the contract; later runs memory-map them, so a data set
larger than memory trains with the page cache as its only buffer. Decoding holds one
episode in memory at a time.

Each folder of episode files has its own cache (:class:`CacheFolder`), keyed by the files
in it, and a training run reads the caches of its folders side by side
(:class:`EpisodeCache`): a data set that grows by a folder (a DAgger round, a new day of
real episodes) decodes that folder alone, and two recipes that share folders share their
caches on the disk. A cache takes the disk its images take decoded (:func:`cache_bytes`:
about 37 kB per step and camera at 128 x 96). Builds that would not fit are refused before
anything is written (:class:`CacheSpaceError`, which names the space needed, the space
free and what the other caches there take), and image files are allocated on the disk
before they are filled: a disk that fills up in the middle ends the build with that error
too, where a memory-mapped write to a full disk would kill the process with SIGBUS and no
word. A failed build leaves nothing behind.

Cache folder ``<cache_dir>/<fingerprint>/`` of one folder's episode files (R = their
steps, concatenated)::

    images_<camera>.npy   uint8  [R, H, W, 3]   every contract camera
    action.npy            uint8  [R]           executed action (fed back as history)
    label.npy             uint8  [R]           expert_action: the training target
    arm_label.npy         uint8  [R, D]        with an arm head (D = arm_dims): the arm's
                                               target bins (expert_arm_action)
    arm_state.npy         float32 [R, 6]       with an arm head: the arm_state input
    manifest.json                              episodes (path, source, first row, steps)
                                               and the contract; written last, so a
                                               folder without it is an interrupted build

A sample at step ``t`` of an episode (the contract's ordering; see zima.contract)::

    images          uint8  [N, H, W, 3]    per camera the frames of steps t-h+1 .. t
                                           (h = image_history), the first frame repeated
                                           before the episode starts
    action_history  int64  [A]             executed actions of steps t-A .. t-1, STOP
                                           before the start
    target          int64  [chunk_len]     labels of steps t .. t+chunk_len-1, STOP past
                                           the end (the task ends stopped)

and with an arm head (``contract.arm_dims`` = D), two more::

    arm_state       float32 [6]            step t's commanded tool pose and opening
    arm_target      int64  [chunk_len, D]  arm labels of steps t .. t+chunk_len-1, the
                                           hold bin past the end
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import torch
from torch.utils.data import Dataset

from zima.contract import ARM_STATE_DIMS, Action, Contract
from zima.episodes import EpisodeReader

CACHE_VERSION: Final = 1  # bump when the cache layout changes (arm files: arm contracts only)
MANIFEST: Final = "manifest.json"
_NONE: Final = -1  # a row index meaning "no row: STOP"
# Left free beside a new cache: the checkpoints, the plots, the system.
FREE_MARGIN_BYTES: Final = 512 * 2**20

Sample = tuple[torch.Tensor, ...]
"""(images uint8 [N, H, W, 3], action_history int64 [A], target int64 [chunk_len]), and
with an arm head (arm_state float32 [6], arm_target int64 [chunk_len, D])."""


class CacheSpaceError(OSError):
    """The disk under the cache folder cannot hold a cache being built."""


def cache_bytes(n_rows: int, contract: Contract) -> int:
    """The bytes of the arrays of a cache of ``n_rows`` steps under ``contract``."""
    frame = contract.image_height * contract.image_width * 3
    arm = contract.arm_dims + 4 * ARM_STATE_DIMS if contract.arm_dims else 0
    return n_rows * (frame * len(contract.cameras) + 2 + arm)  # + action and label


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def _used_bytes(folder: Path) -> int:
    """Disk blocks under ``folder`` (a sparse file counts what it holds)."""
    return sum(f.stat().st_blocks * 512 for f in folder.rglob("*") if f.is_file())


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def _no_space(cache_dir: Path, files: int, need: int, free: int,
              keep: Sequence[Path] = ()) -> CacheSpaceError:
    """The error for caches of ``files`` episode files needing ``need`` bytes where
    ``free`` are; the caches in ``keep`` (this data set's own) are not offered for deletion."""
    own = {k.name for k in keep}
    others = [d for d in cache_dir.iterdir() if d.is_dir() and d.name not in own]
    taken = sum(_used_bytes(d) for d in others)
    return CacheSpaceError(
        f"the training cache of {files} episode files needs {_size(need)} in {cache_dir} "
        f"and {_size(FREE_MARGIN_BYTES)} left free beside it; {_size(free)} is free; "
        f"{len(others)} other caches there take {_size(taken)} (delete them: a cache is "
        f"rebuilt from its episodes when needed), or set data.cache_dir on a larger disk")


@dataclass(frozen=True, slots=True)
class CachedEpisode:
    """Where one episode lies in a cache's concatenated arrays."""

    path: str  # the episode file, resolved
    source: str  # "sim" or "real"
    first_row: int
    n_steps: int


def fingerprint(paths: Sequence[Path], contract: Contract) -> str:
    """Cache key of ``paths`` under ``contract``: resolved path, size and mtime of each
    file (a rewritten episode gets a new key), the contract and the cache version."""
    h = hashlib.sha256(f"zima-cache-v{CACHE_VERSION}\n{contract.to_json()}\n".encode())
    for path in sorted(Path(p).resolve() for p in paths):
        st = path.stat()
        h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


class CacheFolder:
    """The decoded steps of one folder's episode files, as stored in one cache folder."""

    def __init__(self, folder: Path, contract: Contract) -> None:
        manifest = json.loads((folder / MANIFEST).read_text())
        self.folder = folder
        self.episodes = tuple(CachedEpisode(**e) for e in manifest["episodes"])
        self.images = {cam: np.load(folder / f"images_{cam}.npy", mmap_mode="r")
                       for cam in contract.cameras}  # camera -> [R, H, W, 3] uint8
        self.action = np.load(folder / "action.npy")  # [R] uint8, small: in memory
        self.label = np.load(folder / "label.npy")  # [R] uint8
        if contract.arm_dims:
            self.arm_label: np.ndarray = np.load(folder / "arm_label.npy")  # [R, D] uint8
            self.arm_state: np.ndarray = np.load(folder / "arm_state.npy")  # [R, 6] float32


class CameraFrames:
    """One camera's frames over the cache folders of a data set, rows numbered across
    them in folder order: ``frames[rows]`` for rows of one episode (one folder)."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        self.parts = tuple(parts)  # memory-mapped [R_i, H, W, 3] uint8
        self.starts = np.cumsum([0, *(len(p) for p in parts)])  # [P + 1] first rows

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def __getitem__(self, rows: np.ndarray | int) -> np.ndarray:
        rows = np.asarray(rows)
        low, high = int(rows.min()), int(rows.max())
        if low < 0 or high >= len(self):
            raise IndexError(f"rows {low}..{high} outside 0..{len(self) - 1}")
        part = int(np.searchsorted(self.starts, low, side="right")) - 1
        if high >= self.starts[part + 1]:
            raise IndexError(f"rows {low}..{high} span two cache folders")
        frames: np.ndarray = self.parts[part][rows - self.starts[part]]
        return frames


class EpisodeCache:
    """The decoded, memory-mapped steps of a set of episode files, one cache folder per
    folder of files (:class:`CacheFolder`), read side by side.

    ``EpisodeCache.open(paths, cache_dir, contract)`` reuses each folder's cache when it
    is complete and builds the missing ones; ``decoded_episodes`` says how many episodes
    this open decoded (0 on reuse). Rows are numbered across the folders' caches: small
    arrays (actions, labels, arm state) are concatenated in memory, images stay
    memory-mapped per folder (:class:`CameraFrames`). ``episodes`` are ordered by path.
    """

    def __init__(self, folders: Sequence[Path], contract: Contract, decoded_episodes: int,
                 key: str) -> None:
        parts = [CacheFolder(f, contract) for f in folders]
        self.folders = tuple(folders)
        self.contract = contract
        self.decoded_episodes = decoded_episodes
        self.fingerprint = key  # of all the files: fingerprint(paths, contract)
        starts = np.cumsum([0, *(len(p.action) for p in parts)])
        self.episodes = tuple(sorted(
            (CachedEpisode(e.path, e.source, int(start) + e.first_row, e.n_steps)
             for part, start in zip(parts, starts, strict=False) for e in part.episodes),
            key=lambda e: Path(e.path)))
        self.images = {cam: CameraFrames([p.images[cam] for p in parts])
                       for cam in contract.cameras}
        self.action = np.concatenate([p.action for p in parts])  # [R] uint8
        self.label = np.concatenate([p.label for p in parts])  # [R] uint8
        if contract.arm_dims:
            self.arm_label: np.ndarray = np.concatenate([p.arm_label for p in parts])
            self.arm_state: np.ndarray = np.concatenate([p.arm_state for p in parts])

    @classmethod
    def open(cls, paths: Sequence[str | Path], cache_dir: str | Path, contract: Contract,
             free_bytes: Callable[[Path], int] | None = None,
             progress: Callable[[int, int], None] | None = None) -> EpisodeCache:
        """The caches of ``paths`` (episode files of ``contract``) under ``cache_dir``, one
        per folder of files; :class:`CacheSpaceError` where the caches to build do not
        fit on the disk together (``free_bytes(folder)``: the free space there,
        ``shutil.disk_usage`` by default), before any is built. ``progress(done, total)``
        is called after each episode decoded."""
        files = sorted(Path(p).resolve() for p in paths)
        if not files:
            raise ValueError("no episode files given")
        free_bytes = free_bytes or _free_bytes
        groups: dict[Path, list[Path]] = {}
        for f in files:
            groups.setdefault(f.parent, []).append(f)
        folders = [Path(cache_dir) / fingerprint(g, contract) for g in groups.values()]
        plans = [(folder, _plan(group, contract)) for folder, group
                 in zip(folders, groups.values(), strict=True)
                 if not (folder / MANIFEST).exists()]
        if plans:
            cache_root = Path(cache_dir)
            cache_root.mkdir(parents=True, exist_ok=True)
            need = sum(cache_bytes(_rows(episodes), contract) for _, episodes in plans)
            free = free_bytes(cache_root)
            n_files = sum(len(episodes) for _, episodes in plans)
            if need + FREE_MARGIN_BYTES > free:
                raise _no_space(cache_root, n_files, need, free, folders)
            done = 0

            def decoded() -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, n_files)

            for folder, episodes in plans:
                _build(episodes, folder, contract, free_bytes, keep=folders, decoded=decoded)
        return cls(folders, contract, sum(len(episodes) for _, episodes in plans),
                   fingerprint(files, contract))

    @property
    def n_rows(self) -> int:
        """Steps of all episodes."""
        return len(self.action)


def _plan(files: Sequence[Path], contract: Contract) -> list[CachedEpisode]:
    """Where each of ``files`` will lie in its cache (attributes only: sizes the arrays)."""
    episodes: list[CachedEpisode] = []
    row = 0
    for path in files:
        with EpisodeReader(path, contract) as reader:
            episodes.append(CachedEpisode(str(path), reader.info.source, row, reader.n_steps))
            row += reader.n_steps
    return episodes


def _rows(episodes: Sequence[CachedEpisode]) -> int:
    return sum(e.n_steps for e in episodes)


def _build(episodes: Sequence[CachedEpisode], folder: Path, contract: Contract,
           free_bytes: Callable[[Path], int], *, keep: Sequence[Path],
           decoded: Callable[[], None]) -> None:
    """Decode ``episodes`` into ``folder``: built beside it, then renamed into place, so
    a crash leaves no half cache under the final name; a failed build removed. (The
    space of every folder to build was checked together first, :meth:`EpisodeCache.open`;
    a disk that fills since is ENOSPC from the allocation.)"""
    tmp = folder.with_name(folder.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    row = _rows(episodes)
    tmp.mkdir()
    try:
        _fill(tmp, episodes, row, contract, decoded)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # the disk filled since
            raise _no_space(folder.parent, len(episodes), cache_bytes(row, contract),
                            free_bytes(folder.parent), keep) from exc
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def _allocated_memmap(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A uint8 ``.npy`` memmap whose blocks are allocated on the disk now: a full disk
    raises ENOSPC here, not SIGBUS at a later write."""
    array = np.lib.format.open_memmap(path, "w+", np.uint8, shape)
    if hasattr(os, "posix_fallocate"):  # Linux; elsewhere the space check alone
        with path.open("r+b") as f:
            os.posix_fallocate(f.fileno(), 0, path.stat().st_size)
    return array


def _fill(tmp: Path, episodes: Sequence[CachedEpisode], row: int, contract: Contract,
          decoded: Callable[[], None]) -> None:
    """Write the cache's arrays and manifest of ``episodes`` (``row`` steps) into ``tmp``,
    calling ``decoded()`` after each episode."""
    frame = (contract.image_height, contract.image_width, 3)
    images = {cam: _allocated_memmap(tmp / f"images_{cam}.npy", (row, *frame))
              for cam in contract.cameras}
    action = np.empty(row, np.uint8)
    label = np.empty(row, np.uint8)
    arm_label = np.empty((row, contract.arm_dims), np.uint8)
    arm_state = np.empty((row, ARM_STATE_DIMS), np.float32)
    for ep in episodes:  # second pass: one episode in memory at a time
        with EpisodeReader(ep.path, contract) as reader:
            loaded = reader.load()
        rows = slice(ep.first_row, ep.first_row + ep.n_steps)
        for cam in contract.cameras:
            images[cam][rows] = loaded.images[cam]
        action[rows] = loaded.action
        label[rows] = loaded.expert_action
        if loaded.expert_arm_action is not None and loaded.arm_state is not None:
            arm_label[rows], arm_state[rows] = loaded.expert_arm_action, loaded.arm_state
        decoded()
    for array in images.values():
        array.flush()
    del images
    np.save(tmp / "action.npy", action)
    np.save(tmp / "label.npy", label)
    if contract.arm_dims:
        np.save(tmp / "arm_label.npy", arm_label)
        np.save(tmp / "arm_state.npy", arm_state)
    manifest = {"contract": json.loads(contract.to_json()),
                "episodes": [{"path": e.path, "source": e.source, "first_row": e.first_row,
                              "n_steps": e.n_steps} for e in episodes]}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))


def split_episodes(n_episodes: int, val_fraction: float, seed: int,
                   names: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """(train, validation) episode indices; no episode is in both.

    Episodes are ranked by a hash of (seed, name) — the file name when ``names`` is
    given — so the split does not depend on listing order and an episode keeps its side
    when others are added. At least one validation episode when ``val_fraction > 0`` and
    there are two or more episodes.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = list(names) if names is not None else [str(i) for i in range(n_episodes)]
    if len(keys) != n_episodes:
        raise ValueError(f"{len(keys)} names for {n_episodes} episodes")
    rank = sorted(range(n_episodes),
                  key=lambda i: hashlib.sha256(f"{seed}\t{keys[i]}".encode()).digest())
    n_val = round(n_episodes * val_fraction)
    if val_fraction > 0 and n_episodes >= 2:
        n_val = min(max(n_val, 1), n_episodes - 1)
    return sorted(rank[n_val:]), sorted(rank[:n_val])


class BCDataset(Dataset[Sample]):
    """The samples of some of a cache's episodes, every step of each one a sample."""

    def __init__(self, cache: EpisodeCache, episodes: Sequence[int]) -> None:
        c = cache.contract
        self.cache = cache
        self.contract = c
        self.episodes = tuple(cache.episodes[i] for i in episodes)
        image_rows, history_rows, target_rows, sources = [], [], [], []
        for ep in self.episodes:
            start, end = ep.first_row, ep.first_row + ep.n_steps
            t = np.arange(start, end)[:, None]  # [T, 1] rows of the samples
            back = np.arange(c.image_history - 1, -1, -1)  # oldest first
            image_rows.append(np.maximum(t - back, start))  # [T, image_history]
            hist = t - np.arange(c.action_history, 0, -1)  # [T, A] steps t-A .. t-1
            history_rows.append(np.where(hist >= start, hist, _NONE))
            ahead = t + np.arange(c.chunk_len)  # [T, chunk_len] steps t .. t+chunk_len-1
            target_rows.append(np.where(ahead < end, ahead, _NONE))
            sources.extend([ep.source] * ep.n_steps)
        self._image_rows = np.concatenate(image_rows) if image_rows else np.empty(
            (0, c.image_history), np.int64)
        self._history_rows = np.concatenate(history_rows) if history_rows else np.empty(
            (0, c.action_history), np.int64)
        self._target_rows = np.concatenate(target_rows) if target_rows else np.empty(
            (0, c.chunk_len), np.int64)
        self.sources = np.asarray(sources, dtype=object)  # [S] "sim" / "real"

    def __len__(self) -> int:
        return len(self._image_rows)

    def __getitem__(self, index: int) -> Sample:
        rows = self._image_rows[index]  # [image_history]
        images = np.concatenate([self.cache.images[cam][rows] for cam in self.contract.cameras])
        history = _gather(self.cache.action, self._history_rows[index])  # [A]
        target = _gather(self.cache.label, self._target_rows[index])  # [chunk_len]
        sample = (torch.from_numpy(images), torch.from_numpy(history), torch.from_numpy(target))
        if not self.contract.arm_dims:
            return sample
        row = self._image_rows[index, -1]  # step t
        arm_rows = self._target_rows[index]  # [chunk_len]
        arm_target = self.cache.arm_label[np.maximum(arm_rows, 0)].astype(np.int64)  # [C, D]
        arm_target[arm_rows == _NONE] = self.contract.arm_hold_bin
        return (*sample, torch.from_numpy(self.cache.arm_state[row].copy()),
                torch.from_numpy(arm_target))

    def targets(self) -> np.ndarray:
        """Every sample's chunk target: [S, chunk_len] int64 (what the loss sees)."""
        return _gather(self.cache.label, self._target_rows)

    def class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights of the actions over this split's chunk targets:
        float32 [n_actions], mean 1 over the actions present, 0 for absent ones."""
        n = self.contract.n_actions
        counts = np.bincount(self.targets().ravel(), minlength=n).astype(np.float64)
        present = counts > 0
        weights = np.zeros(n)
        weights[present] = counts.sum() / (present.sum() * counts[present])
        return torch.from_numpy(weights.astype(np.float32))

    def arm_class_weights(self) -> torch.Tensor:
        """Inverse-frequency weights of each arm dimension's bins over this split's arm
        targets: float32 [arm_dims, n_arm_levels], per dimension mean 1 over the bins
        present, 0 for absent ones (hold is most of every dimension's labels)."""
        c = self.contract
        rows = np.maximum(self._target_rows, 0).ravel()  # [S * chunk_len]
        labels = self.cache.arm_label[rows]  # [S * chunk_len, D]
        weights = np.zeros((c.arm_dims, c.n_arm_levels))
        for d in range(c.arm_dims):
            counts = np.bincount(labels[:, d], minlength=c.n_arm_levels).astype(np.float64)
            present = counts > 0
            weights[d, present] = counts.sum() / (present.sum() * counts[present])
        return torch.from_numpy(weights.astype(np.float32))

    def transitions(self) -> np.ndarray:
        """[S] bool: the sample's label differs from the action executed just before it
        (the moments a policy must decide from its cameras, not from its history)."""
        last = _gather(self.cache.action, self._history_rows[:, -1]) if (
            self.contract.action_history > 0) else np.full(len(self), int(Action.STOP))
        return np.asarray(self.targets()[:, 0] != last)

    def sample_weights(self, source_mix: Mapping[str, float]) -> torch.Tensor:
        """Per-sample weights [S] float64 for ``WeightedRandomSampler`` such that each
        source is drawn with its share of ``source_mix`` (e.g. ``{"sim": 0.7, "real":
        0.3}``); shares of sources absent from this split are redistributed."""
        weights = np.zeros(len(self))
        present = {s: float(w) for s, w in source_mix.items()
                   if w > 0 and np.any(self.sources == s)}
        if not present:
            raise ValueError(f"no sample of any source with a positive share in {source_mix}")
        total = sum(present.values())
        for source, share in present.items():
            mask = self.sources == source
            weights[mask] = share / total / mask.sum()
        return torch.from_numpy(weights)


def _gather(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` as int64, STOP where ``rows`` is _NONE."""
    out: np.ndarray = values[np.maximum(rows, 0)].astype(np.int64)
    out[rows == _NONE] = int(Action.STOP)
    return out


def load_splits(paths: Sequence[str | Path], cache_dir: str | Path, contract: Contract,
                val_fraction: float = 0.1, seed: int = 0, *,
                progress: Callable[[int, int], None] | None = None,
                ) -> tuple[BCDataset, BCDataset]:
    """(train, validation) datasets of episode ``paths``, split by episode;
    ``progress(done, total)`` after each episode the cache decodes."""
    cache = EpisodeCache.open(paths, cache_dir, contract, progress=progress)
    names = [Path(e.path).name for e in cache.episodes]
    train, val = split_episodes(len(names), val_fraction, seed, names)
    return BCDataset(cache, train), BCDataset(cache, val)
