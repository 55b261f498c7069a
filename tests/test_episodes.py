"""The episode file: round trip, atomic publication, clear errors, idle trimming."""

import functools
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.contract import DEFAULT, METADATA_KEY, Action, Contract
from zima.episodes import (
    FORMAT_VERSION,
    SEAL_MAGIC,
    SEAL_SIZE,
    ContractMismatchError,
    EpisodeFormatError,
    EpisodeInfo,
    EpisodeReader,
    EpisodeWriter,
    IdleTrim,
    idle_mask,
    seal,
)

SMALL = Contract(image_height=12, image_width=16)


def _frames(c: Contract, t: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(t)
    return {cam: rng.integers(0, 256, (c.image_height, c.image_width, 3), np.uint8)
            for cam in c.cameras}


def _write(path: Path, steps: int, c: Contract = SMALL, **kwargs: object) -> Path:
    with EpisodeWriter(path, EpisodeInfo("sim", "arena", seed=7), c, flush_every=4) as w:
        for t in range(steps):
            w.append(_frames(c, t), t % c.n_actions, t / c.control_hz)
        w.set_outcome("success")
    return path


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    path = tmp_path / "ep.h5"
    info = EpisodeInfo("real", "kitchen", outcome="unknown", steps_recorded=12)
    with EpisodeWriter(path, info, SMALL, flush_every=4) as w:  # 10 steps: a partial flush
        for t in range(10):
            w.append(_frames(SMALL, t), Action.FORWARD, 100.0 + t * 0.1,
                     expert_action=Action.LEFT if t == 3 else Action.FORWARD,
                     operator_takeover=t >= 5,
                     telemetry={"track_left_mm_s": t, "track_right_mm_s": -t,
                                "battery_mv": 7400.0})
        w.set_outcome("collision")
    assert not path.with_name("ep.h5.partial").exists()
    with EpisodeReader(path, SMALL) as r:
        ep = r.load()
    assert len(ep) == 10
    assert ep.info.source == "real"
    assert ep.info.scene == "kitchen"
    assert ep.info.outcome == "collision"
    assert ep.info.seed == -1
    assert ep.info.steps_recorded == 12
    assert ep.contract == SMALL
    for t in range(10):
        for cam in SMALL.cameras:
            np.testing.assert_array_equal(ep.images[cam][t], _frames(SMALL, t)[cam])
    assert ep.action.dtype == np.uint8
    assert ep.action.tolist() == [Action.FORWARD] * 10
    assert ep.expert_action[3] == Action.LEFT
    assert ep.timestamp_s.dtype == np.float64
    np.testing.assert_allclose(ep.timestamp_s, 100.0 + np.arange(10) * 0.1)
    assert ep.operator_takeover.tolist() == [False] * 5 + [True] * 5
    assert ep.telemetry["track_right_mm_s"].tolist() == [-t for t in range(10)]
    assert set(ep.telemetry) == {"track_left_mm_s", "track_right_mm_s", "battery_mv"}


def test_file_layout_is_the_documented_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "ep.h5", 5, DEFAULT)
    with h5py.File(path) as f:
        assert f.attrs[METADATA_KEY] == DEFAULT.to_json()
        assert f.attrs["format_version"] == FORMAT_VERSION
        assert f.attrs["source"] == "sim"
        assert f.attrs["seed"] == 7
        for cam in DEFAULT.cameras:
            ds = f[f"images/{cam}"]
            assert ds.shape == (5, DEFAULT.image_height, DEFAULT.image_width, 3)
            assert ds.chunks == (1, DEFAULT.image_height, DEFAULT.image_width, 3)
        assert "expert_action" not in f
        assert "telemetry" not in f
    with EpisodeReader(path) as r:
        ep = r.load()
    np.testing.assert_array_equal(ep.expert_action, ep.action)  # absent: same as action
    assert ep.telemetry == {}


def test_an_error_mid_episode_leaves_only_the_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "ep.h5"

    def crash_mid_episode() -> None:
        with EpisodeWriter(path, EpisodeInfo("sim", "arena"), SMALL, flush_every=2) as w:
            for t in range(5):
                w.append(_frames(SMALL, t), Action.STOP, t)
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        crash_mid_episode()
    assert not path.exists()
    partial = tmp_path / "ep.h5.partial"
    assert partial.exists()
    with pytest.raises(EpisodeFormatError, match="incomplete"):
        EpisodeReader(partial, SMALL)


def test_a_full_disk_is_a_clear_error_naming_the_file(tmp_path: Path) -> None:
    # A real write failure: the child may not write files beyond 64 KiB (RLIMIT_FSIZE),
    # which fails the write like a full disk would (EFBIG instead of ENOSPC).
    path = tmp_path / "ep.h5"
    script = textwrap.dedent(f"""
        import resource, signal
        import numpy as np
        from zima.episodes import EpisodeInfo, EpisodeWriteError, EpisodeWriter
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        rng = np.random.default_rng(0)
        try:
            with EpisodeWriter({str(path)!r}, EpisodeInfo("sim", "arena")) as w:
                for t in range(50):
                    w.append({{c: rng.integers(0, 256, (96, 128, 3), np.uint8)
                              for c in ("forward", "wrist")}}, 1, t)
        except EpisodeWriteError as exc:
            print("ERROR", exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.startswith("ERROR")
    assert str(path) in out
    assert "partial" in out
    assert not path.exists()
    assert (tmp_path / "ep.h5.partial").exists()


def test_a_killed_writer_never_publishes(tmp_path: Path) -> None:
    path = tmp_path / "ep.h5"
    script = textwrap.dedent(f"""
        import os
        import numpy as np
        from zima.contract import Contract
        from zima.episodes import EpisodeInfo, EpisodeWriter
        c = Contract(image_height=12, image_width=16)
        w = EpisodeWriter({str(path)!r}, EpisodeInfo("sim", "arena"), c, flush_every=1)
        for t in range(5):
            w.append({{cam: np.zeros((12, 16, 3), np.uint8) for cam in c.cameras}}, 1, t)
        os._exit(1)
    """)
    subprocess.run([sys.executable, "-c", script], timeout=60, check=False)
    assert not path.exists()
    assert (tmp_path / "ep.h5.partial").exists()


def test_contract_mismatch_names_the_fields(tmp_path: Path) -> None:
    other = Contract(image_height=12, image_width=16, chunk_len=8)
    path = _write(tmp_path / "ep.h5", 3, other)
    with pytest.raises(ContractMismatchError, match=r"chunk_len: file 8, expected 4") as info:
        EpisodeReader(path, SMALL)
    assert str(path) in str(info.value)
    with EpisodeReader(path, contract=None) as r:  # any contract
        assert r.contract == other


def test_files_that_are_not_episodes_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(EpisodeFormatError, match="not a readable HDF5 file") as info:
        EpisodeReader(garbage)
    assert str(garbage) in str(info.value)

    whole = _write(tmp_path / "ep.h5", 8)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(EpisodeFormatError, match="truncated"):
        EpisodeReader(truncated, SMALL)

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2, 3]
    with pytest.raises(EpisodeFormatError, match="not a zima episode"):
        EpisodeReader(other)

    with h5py.File(whole, "a") as f:
        f.attrs["format_version"] = FORMAT_VERSION + 1
    seal(whole)  # edited on purpose
    with pytest.raises(EpisodeFormatError, match="format version 2"):
        EpisodeReader(whole, SMALL)


def test_a_missing_or_misshapen_dataset_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "ep.h5", 4)
    with h5py.File(path, "a") as f:
        del f["timestamp_s"]
        f["timestamp_s"] = np.zeros(3)
    seal(path)
    with pytest.raises(EpisodeFormatError, match=r"'timestamp_s' is float64 \[3\]"):
        EpisodeReader(path, SMALL)
    with h5py.File(path, "a") as f:
        del f["images/wrist"]
    seal(path)
    with pytest.raises(EpisodeFormatError, match="missing dataset 'images/wrist'"):
        EpisodeReader(path, SMALL)


def test_a_corrupt_frame_is_reported_with_its_dataset(tmp_path: Path) -> None:
    path = _write(tmp_path / "ep.h5", 4)
    with h5py.File(path) as f:
        chunk = f["images/wrist"].id.get_chunk_info(2)
    with path.open("r+b") as raw:  # garble the compressed bytes of frame 2
        raw.seek(chunk.byte_offset)
        raw.write(b"\xff" * chunk.size)
    seal(path)  # as a writer's bug would: sealed, yet the frame does not decode
    with EpisodeReader(path, SMALL) as r, pytest.raises(EpisodeFormatError,
                                                        match="'images/wrist' is corrupt"):
        r.load()


def test_writer_rejects_bad_steps_and_overwrites(tmp_path: Path) -> None:
    path = _write(tmp_path / "ep.h5", 2)
    with pytest.raises(FileExistsError):
        EpisodeWriter(path, EpisodeInfo("sim", "arena"), SMALL)
    with EpisodeWriter(tmp_path / "b.h5", EpisodeInfo("sim", "arena"), SMALL) as w:
        with pytest.raises(ValueError, match="cameras"):
            w.append({"forward": _frames(SMALL, 0)["forward"]}, 0, 0.0)
        with pytest.raises(ValueError, match="uint8"):
            w.append({c: np.zeros((12, 16, 3), np.float32) for c in SMALL.cameras}, 0, 0.0)
        with pytest.raises(ValueError, match="action 9"):
            w.append(_frames(SMALL, 0), 9, 0.0)
        w.append(_frames(SMALL, 0), 0, 0.0, telemetry={"battery_mv": 7000.0})
        with pytest.raises(ValueError, match="same optional fields"):
            w.append(_frames(SMALL, 1), 0, 0.1)
    with pytest.raises(ValueError, match="source"):
        EpisodeInfo("simulated", "arena")


S, F, L = Action.STOP, Action.FORWARD, Action.LEFT


@pytest.mark.parametrize(
    ("actions", "trim", "kept"),
    [
        # leading STOPs go, the final STOP (the "arrived" label) stays, a long pause shrinks
        ([S, S, F, S, S, S, S, S, L, S, S], IdleTrim(max_run=2, keep_trailing=1),
         [2, 3, 4, 8, 9]),
        ([S, S, F, S], IdleTrim(keep_leading=1, keep_trailing=0), [1, 2]),
        ([F, S, S, L], IdleTrim(max_run=0), [0, 3]),
        ([S, S, S], IdleTrim(keep_leading=2), [1, 2]),
        ([F, L, F], IdleTrim(), [0, 1, 2]),
        ([], IdleTrim(), []),
    ],
)
def test_idle_trimming(actions: list[int], trim: IdleTrim, kept: list[int]) -> None:
    assert np.flatnonzero(idle_mask(np.array(actions, np.uint8), trim)).tolist() == kept


@given(st.lists(st.sampled_from(list(Action)), max_size=60), st.integers(0, 4))
def test_trimming_keeps_every_motion_and_caps_every_pause(actions: list[Action],
                                                         max_run: int) -> None:
    a = np.array(actions, np.uint8)
    kept = a[idle_mask(a, IdleTrim(max_run=max_run, keep_trailing=max_run))]
    assert (kept != S).sum() == (a != S).sum()
    runs = "".join("s" if x == S else "m" for x in kept).split("m")
    assert all(len(r) <= max_run for r in runs)


@functools.cache
def _episode_bytes() -> bytes:
    """A small valid episode file's bytes (with expert labels and telemetry), made once."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ep.h5"
        with EpisodeWriter(path, EpisodeInfo("sim", "arena", seed=7), SMALL,
                           flush_every=4) as w:
            for t in range(6):
                w.append(_frames(SMALL, t), t % SMALL.n_actions, t / SMALL.control_hz,
                         expert_action=(t + 1) % SMALL.n_actions,
                         telemetry={"battery_mv": 12000.0 - t})
            w.set_attributes({"robot_id": "zima"})
        return path.read_bytes()


DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)),
                                        min_size=1, max_size=20)),
    st.tuples(st.just("garble"), st.tuples(st.integers(0, 10**9), st.binary(min_size=1,
                                                                            max_size=64))),
    st.tuples(st.just("truncate"), st.integers(0, 10**9)),
)


@given(DAMAGE)
@settings(max_examples=200)
def test_a_damaged_episode_loads_or_is_an_episode_format_error(
    damage: tuple[str, object],
) -> None:
    """Fuzzing found RuntimeError, OSError and TypeError escaping from h5py's attribute
    reads ("bad heap index", "Unknown string encoding"); one error type now, naming the file."""
    data = bytearray(_episode_bytes())
    kind, how = damage
    if kind == "flip":
        assert isinstance(how, list)
        for offset, bit in how:
            data[offset % len(data)] ^= 1 << bit
    elif kind == "garble":
        assert isinstance(how, tuple)
        offset, junk = how
        start = offset % len(data)
        data[start:start + len(junk)] = junk[: len(data) - start]
    else:
        assert isinstance(how, int)
        del data[how % len(data):]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.h5"
        path.write_bytes(bytes(data))
        error = ""
        try:
            with EpisodeReader(path, SMALL) as reader:
                episode = reader.load()
                reader.extras()
        except EpisodeFormatError as exc:
            error = str(exc)
        if error:
            assert error.startswith(f"{path}: ")
        else:
            assert len(episode) == 6
            assert int(episode.expert_action.max()) < SMALL.n_actions


def _replace(f: h5py.File, name: str, data: object) -> None:
    del f[name]
    f.create_dataset(name, data=data)


WRONG: dict[str, Callable[[h5py.File], object]] = {
    "telemetry is a dataset": lambda f: f.create_dataset("telemetry", data=[1.0]),
    "images is a dataset": lambda f: _replace(f, "images", [0]),
    "seed is a string": lambda f: f.attrs.update({"seed": "seven"}),
    "n_steps is a bool": lambda f: f.attrs.update({"n_steps": np.True_}),
    "contract is nested JSON": lambda f: f.attrs.update({METADATA_KEY: "[" * 5000}),
    "contract is opaque": lambda f: f.attrs.update({METADATA_KEY: np.void(b"\x00")}),
    "an action is 200": lambda f: f["action"].__setitem__(0, 200),
}


@pytest.mark.parametrize("wrong", WRONG)
def test_wrong_shapes_types_and_labels_are_episode_format_errors(tmp_path: Path,
                                                                 wrong: str) -> None:
    path = _write(tmp_path / "ep.h5", 4)
    with h5py.File(path, "a") as f:
        WRONG[wrong](f)
    seal(path)
    with pytest.raises(EpisodeFormatError) as info:
        _open_and_load(path)
    assert str(info.value).startswith(f"{path}: ")


def _open_and_load(path: Path) -> None:
    with EpisodeReader(path, SMALL) as reader:
        reader.load()


def test_a_sealed_episode_is_checked_before_libhdf5_reads_it(tmp_path: Path) -> None:
    """The writer seals what it closes (the sha256 of the HDF5 part in the userblock, which
    h5py skips); a flipped bit anywhere, a truncation or an unsealed edit is refused before
    libhdf5 parses a byte; a deliberate edit resealed reads again."""
    path = _write(tmp_path / "ep.h5", 4)
    data = path.read_bytes()
    assert data.startswith(SEAL_MAGIC)
    assert data[SEAL_SIZE:SEAL_SIZE + 8] == b"\x89HDF\r\n\x1a\n"
    with h5py.File(path) as f:  # every HDF5 tool still reads it
        assert f.attrs["n_steps"] == 4
    with EpisodeReader(path, SMALL) as r:
        assert r.sealed
    for offset in (0, len(SEAL_MAGIC) + 3, SEAL_SIZE + 100, len(data) // 2, len(data) - 1):
        damaged = bytearray(data)
        damaged[offset] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(EpisodeFormatError, match=r"seal|damaged"):
            EpisodeReader(path, SMALL)
    path.write_bytes(data[:-1])
    with pytest.raises(EpisodeFormatError, match="truncated"):
        EpisodeReader(path, SMALL)
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        f.attrs["scene"] = "room"
    with pytest.raises(EpisodeFormatError, match="edited after it was written"):
        EpisodeReader(path, SMALL)
    seal(path)
    with EpisodeReader(path, SMALL) as r:
        assert r.info.scene == "room"


def test_episodes_without_a_seal_read_unverified(tmp_path: Path) -> None:
    """A file written before the seal (no userblock: HDF5's signature first) and one a writer
    never closed (a userblock of zeros) read as before; the first has no room for a seal."""
    data = _write(tmp_path / "ep.h5", 4).read_bytes()
    old = tmp_path / "old.h5"
    old.write_bytes(data[SEAL_SIZE:])  # HDF5's addresses count from its superblock
    with EpisodeReader(old, SMALL) as r:
        assert not r.sealed
        assert len(r.load()) == 4
    with pytest.raises(EpisodeFormatError, match="no room for a seal"):
        seal(old)
    unclosed = tmp_path / "unclosed.h5"
    unclosed.write_bytes(bytes(SEAL_SIZE) + data[SEAL_SIZE:])
    with EpisodeReader(unclosed, SMALL) as r:
        assert not r.sealed
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5" * 100)
    with pytest.raises(EpisodeFormatError, match="not a readable HDF5 file"):
        EpisodeReader(junk, SMALL)
