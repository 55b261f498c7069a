"""The behaviour-cloning dataset: split by episode, the memory-mapped cache, and samples
built exactly as the contract says (checked on a hand-made episode)."""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from zima.contract import Action, Contract
from zima.episodes import ContractMismatchError, EpisodeInfo, EpisodeWriter
from zima.training.dataset import (
    FREE_MARGIN_BYTES,
    BCDataset,
    CacheSpaceError,
    EpisodeCache,
    cache_bytes,
    load_splits,
    split_episodes,
)

TINY = Contract(image_height=6, image_width=8, image_history=2, action_history=3, chunk_len=4)
F, L, R, S = Action.FORWARD, Action.LEFT, Action.RIGHT, Action.STOP


def _frame(c: Contract, value: int) -> np.ndarray:
    return np.full((c.image_height, c.image_width, 3), value, np.uint8)


def write_episode(path: Path, actions: Sequence[int], *, source: str = "sim",
                  labels: Sequence[int] | None = None, c: Contract = TINY,
                  base: int = 0) -> Path:
    """An episode whose frame at step t is filled with base + t (forward camera) and
    base + 100 + t (wrist camera)."""
    labels = list(actions) if labels is None else list(labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    with EpisodeWriter(path, EpisodeInfo(source, "test"), c, flush_every=8) as w:
        for t, (a, y) in enumerate(zip(actions, labels, strict=True)):
            w.append({"forward": _frame(c, base + t), "wrist": _frame(c, base + 100 + t)},
                     a, t / c.control_hz, expert_action=y)
    return path


def many_episodes(folder: Path, n: int, steps: int = 6) -> list[Path]:
    return [write_episode(folder / f"ep{i:03d}.h5", [(i + t) % 4 for t in range(steps)],
                          source="real" if i % 3 == 0 else "sim")
            for i in range(n)]


def test_samples_follow_the_contract_on_a_hand_made_episode(tmp_path: Path) -> None:
    # Executed actions F F L R S; the expert relabels step 2 as RIGHT.
    path = write_episode(tmp_path / "ep.h5", [F, F, L, R, S], labels=[F, F, R, R, S])
    cache = EpisodeCache.open([path], tmp_path / "cache", TINY)
    data = BCDataset(cache, [0])
    assert len(data) == 5

    images, history, target = data[0]
    assert images.dtype == torch.uint8
    assert tuple(images.shape) == TINY.image_shape  # [N=4, 6, 8, 3]
    # camera-major, oldest first; the first frame repeats before the start
    assert images[:, 0, 0, 0].tolist() == [0, 0, 100, 100]
    assert history.dtype == torch.int64
    assert history.tolist() == [S, S, S]
    assert target.tolist() == [F, F, R, R]  # labels, not executed actions

    images, history, target = data[3]
    assert images[:, 0, 0, 0].tolist() == [2, 3, 102, 103]
    assert history.tolist() == [F, F, L]  # executed actions of steps 0..2
    assert target.tolist() == [R, S, S, S]  # STOP past the end

    _, history, target = data[4]
    assert history.tolist() == [F, L, R]
    assert target.tolist() == [S, S, S, S]


def test_samples_never_cross_episode_boundaries(tmp_path: Path) -> None:
    first = write_episode(tmp_path / "a.h5", [F, F, F])
    second = write_episode(tmp_path / "b.h5", [L, L, L], base=50)
    cache = EpisodeCache.open([first, second], tmp_path / "cache", TINY)
    data = BCDataset(cache, [0, 1])
    images, history, target = data[3]  # step 0 of b.h5
    assert images[:, 0, 0, 0].tolist() == [50, 50, 150, 150]
    assert history.tolist() == [S, S, S]
    _, _, target = data[2]  # last step of a.h5: no look into b.h5
    assert target.tolist() == [F, S, S, S]


def test_a_batch_has_the_model_io_shapes(tmp_path: Path) -> None:
    paths = many_episodes(tmp_path, 3)
    train, _ = load_splits(paths, tmp_path / "cache", TINY, val_fraction=0.0)
    images, history, target = next(iter(DataLoader(train, batch_size=5, shuffle=True)))
    assert tuple(images.shape) == (5, *TINY.image_shape)
    assert tuple(history.shape) == (5, TINY.action_history)
    assert tuple(target.shape) == (5, TINY.chunk_len)
    assert target.dtype == torch.int64


def test_split_is_by_episode_and_deterministic(tmp_path: Path) -> None:
    paths = many_episodes(tmp_path, 10)
    train, val = load_splits(paths, tmp_path / "cache", TINY, val_fraction=0.2, seed=3)
    train_paths = {e.path for e in train.episodes}
    val_paths = {e.path for e in val.episodes}
    assert len(val_paths) == 2
    assert not train_paths & val_paths
    assert train_paths | val_paths == {str(p.resolve()) for p in paths}
    assert len(train) + len(val) == 60
    again, _ = load_splits(list(reversed(paths)), tmp_path / "cache", TINY, 0.2, seed=3)
    assert {e.path for e in again.episodes} == train_paths  # listing order does not matter


def test_split_keeps_one_validation_episode_and_one_training_episode() -> None:
    assert split_episodes(2, 0.01, seed=0)[1] != []
    train, val = split_episodes(2, 0.9, seed=0)
    assert len(train) == 1
    assert len(val) == 1
    assert split_episodes(5, 0.0, seed=0) == ([0, 1, 2, 3, 4], [])
    with pytest.raises(ValueError, match="val_fraction"):
        split_episodes(5, 1.0, seed=0)


def test_cache_is_memory_mapped_and_reused(tmp_path: Path) -> None:
    paths = many_episodes(tmp_path, 3)
    first = EpisodeCache.open(paths, tmp_path / "cache", TINY)
    assert first.decoded_episodes == 3
    assert isinstance(first.images["forward"].parts[0], np.memmap)
    stored = first.folders[0] / "images_forward.npy"
    mtime = stored.stat().st_mtime_ns

    second = EpisodeCache.open(paths, tmp_path / "cache", TINY)
    assert second.decoded_episodes == 0
    assert second.folders == first.folders
    assert stored.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(second.images["wrist"].parts[0], first.images["wrist"].parts[0])

    paths[0].unlink()
    write_episode(paths[0], [S, S])  # a rewritten episode is a new data set
    third = EpisodeCache.open(paths, tmp_path / "cache", TINY)
    assert third.decoded_episodes == 3
    assert third.folders != first.folders
    assert third.n_rows == 2 + 6 + 6


def test_an_interrupted_build_is_redone(tmp_path: Path) -> None:
    paths = many_episodes(tmp_path, 2)
    cache = EpisodeCache.open(paths, tmp_path / "cache", TINY)
    (cache.folders[0] / "manifest.json").unlink()  # as if the build had died before its end
    assert EpisodeCache.open(paths, tmp_path / "cache", TINY).decoded_episodes == 2


def test_each_folder_has_its_own_cache_and_a_new_folder_decodes_alone(tmp_path: Path) -> None:
    first = many_episodes(tmp_path / "expert", 3)
    dagger = [write_episode(tmp_path / "dagger" / "ep000.h5", [R, R, L], base=40),
              write_episode(tmp_path / "dagger" / "ep001.h5", [L, F], base=60)]
    alone = EpisodeCache.open(first, tmp_path / "cache", TINY)
    calls: list[tuple[int, int]] = []
    both = EpisodeCache.open(first + dagger, tmp_path / "cache", TINY,
                             progress=lambda done, total: calls.append((done, total)))
    assert both.decoded_episodes == 2  # the expert folder's cache is reused
    assert calls == [(1, 2), (2, 2)]
    assert both.folders[1] == alone.folders[0]  # folders in path order: dagger, expert
    assert len(list((tmp_path / "cache").iterdir())) == 2  # one cache a folder, no copy
    assert both.n_rows == 18 + 5
    # the same data set under one key, whatever the order, for --resume's check
    again = EpisodeCache.open(dagger + first, tmp_path / "cache", TINY)
    assert again.fingerprint == both.fingerprint != alone.fingerprint
    assert again.decoded_episodes == 0
    # episodes by path, rows numbered across the folders: samples read the right frames
    assert [Path(e.path).parent.name for e in both.episodes] == ["dagger"] * 2 + ["expert"] * 3
    data = BCDataset(both, range(5))
    images, history, target = data[4]  # step 1 of ep001.h5 (after ep000's 3 steps)
    assert images[:, 0, 0, 0].tolist() == [60, 61, 160, 161]
    assert history.tolist() == [S, S, L]
    assert target.tolist() == [F, S, S, S]
    images, _, _ = data[5]  # step 0 of the expert folder's first episode
    assert images[:, 0, 0, 0].tolist() == [0, 0, 100, 100]


def test_frames_are_never_read_across_two_folders_caches(tmp_path: Path) -> None:
    paths = [write_episode(tmp_path / name / "ep.h5", [F, F]) for name in ("a", "b")]
    frames = EpisodeCache.open(paths, tmp_path / "cache", TINY).images["forward"]
    assert len(frames) == 4
    assert frames[np.array([2, 3])].shape == (2, 6, 8, 3)
    with pytest.raises(IndexError, match="span two cache folders"):
        frames[np.array([1, 2])]
    with pytest.raises(IndexError, match="outside"):
        frames[np.array([4])]


def test_the_space_for_every_folder_is_checked_before_any_is_built(tmp_path: Path) -> None:
    paths = [*many_episodes(tmp_path / "a", 2, steps=7), *many_episodes(tmp_path / "b", 1, steps=7)]
    cache_dir = tmp_path / "cache"
    need = cache_bytes(21, TINY)  # both folders: 14 + 7 steps
    with pytest.raises(CacheSpaceError, match=r"cache of 3 episode files needs 6\.1 kB"):
        EpisodeCache.open(paths, cache_dir, TINY,
                          free_bytes=lambda _folder: need + FREE_MARGIN_BYTES - 1)
    assert list(cache_dir.iterdir()) == []  # not even the first folder's cache
    EpisodeCache.open(paths[:2], cache_dir, TINY)
    with pytest.raises(CacheSpaceError) as refused:  # only b is left to build
        EpisodeCache.open(paths, cache_dir, TINY,
                          free_bytes=lambda _folder: cache_bytes(7, TINY) + FREE_MARGIN_BYTES - 1)
    # the data set's own cache of a is not offered for deletion
    assert "cache of 1 episode files" in str(refused.value)
    assert "0 other caches there" in str(refused.value)


def test_episodes_of_another_contract_are_refused(tmp_path: Path) -> None:
    other = Contract(image_height=6, image_width=8, chunk_len=8)
    path = write_episode(tmp_path / "ep.h5", [F, F], c=other)
    with pytest.raises(ContractMismatchError, match="chunk_len"):
        EpisodeCache.open([path], tmp_path / "cache", TINY)


def test_class_weights_are_inverse_frequencies_of_the_targets(tmp_path: Path) -> None:
    path = write_episode(tmp_path / "ep.h5", [F, F, F, F, F, F, F, L])
    data = BCDataset(EpisodeCache.open([path], tmp_path / "cache", TINY), [0])
    counts = np.bincount(data.targets().ravel(), minlength=TINY.n_actions)
    assert counts.tolist() == [6, 22, 4, 0]  # 8 steps x 4: STOP is the padding
    weights = data.class_weights()
    assert weights[R] == 0.0
    expected = 32 / (3 * counts[:3])
    np.testing.assert_allclose(weights[:3].numpy(), expected, rtol=1e-6)
    assert float((weights[:3] * torch.from_numpy(counts[:3]).float()).sum()) == pytest.approx(32)


def test_source_mixing_weights(tmp_path: Path) -> None:
    sim = [write_episode(tmp_path / f"sim{i}.h5", [F] * 6) for i in range(3)]
    real = [write_episode(tmp_path / "real.h5", [L] * 2, source="real")]
    data = BCDataset(EpisodeCache.open(sim + real, tmp_path / "cache", TINY), range(4))
    weights = data.sample_weights({"sim": 0.25, "real": 0.75})
    is_real = data.sources == "real"
    assert float(weights[torch.from_numpy(is_real)].sum()) == pytest.approx(0.75)
    assert float(weights[torch.from_numpy(~is_real)].sum()) == pytest.approx(0.25)
    only_sim = data.sample_weights({"sim": 1.0, "real": 0.0})
    assert float(only_sim[torch.from_numpy(is_real)].sum()) == 0.0
    with pytest.raises(ValueError, match="no sample"):
        data.sample_weights({"real": 0.0})


def test_transitions_are_where_the_label_differs_from_the_action_before(tmp_path: Path) -> None:
    # executed F F L R S, labels F F R R S: the action before step t is executed[t-1]
    path = write_episode(tmp_path / "ep.h5", [F, F, L, R, S], labels=[F, F, R, R, S])
    data = BCDataset(EpisodeCache.open([path], tmp_path / "cache", TINY), [0])
    # step 0: F after the history's STOP; 2: R after F; 3: R after L; 4: S after R
    assert data.transitions().tolist() == [True, False, True, True, True]


def test_cache_bytes_is_what_a_built_cache_holds(tmp_path: Path) -> None:
    paths = many_episodes(tmp_path, 3, steps=7)
    cache = EpisodeCache.open(paths, tmp_path / "cache", TINY)
    held = sum(f.nbytes for f in cache.images.values()) + cache.action.nbytes + cache.label.nbytes
    assert cache_bytes(cache.n_rows, TINY) == held == 21 * (2 * 144 + 2)


def test_a_cache_that_does_not_fit_is_refused_before_it_is_written(tmp_path: Path) -> None:
    paths = many_episodes(tmp_path, 3, steps=7)
    cache_dir = tmp_path / "cache"
    EpisodeCache.open(paths[:1], cache_dir, TINY)  # another cache there, which it counts
    need = cache_bytes(21, TINY)
    with pytest.raises(CacheSpaceError) as refused:
        EpisodeCache.open(paths, cache_dir, TINY,
                          free_bytes=lambda _folder: need + FREE_MARGIN_BYTES - 1)
    message = str(refused.value)
    assert need == 6090
    assert f"cache of 3 episode files needs 6.1 kB in {cache_dir}" in message
    assert "1 other caches there take" in message
    assert "data.cache_dir" in message
    assert len(list(cache_dir.iterdir())) == 1  # nothing written, not even a .building
    cache = EpisodeCache.open(paths, cache_dir, TINY,
                              free_bytes=lambda _folder: need + FREE_MARGIN_BYTES)
    assert cache.decoded_episodes == 3


def test_a_disk_full_in_the_middle_of_a_build_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = many_episodes(tmp_path, 2)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")  # what a full disk answers

    monkeypatch.setattr("os.posix_fallocate", full, raising=False)
    with pytest.raises(CacheSpaceError, match="needs"):
        EpisodeCache.open(paths, tmp_path / "cache", TINY)
    assert list((tmp_path / "cache").iterdir()) == []
