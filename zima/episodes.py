"""The episode file: one HDF5 file per episode, written by the simulator and the robot alike.

Row ``t`` of every per-step dataset is one control step: the frames captured at
``timestamp_s[t]``, then the action chosen from them and held for ``1 / control_hz``.
(T = steps in the file, H x W = the contract's image size.)

    dataset                     dtype    shape         meaning (units)
    --------------------------  -------  ------------  ----------------------------------------
    images/<camera>             uint8    [T, H, W, 3]  RGB frame of each contract camera, as the
                                                       policy sees it; one frame per chunk, gzip 1
    action                      uint8    [T]           executed action, index into
                                                       contract.actions
    expert_action               uint8    [T]           optional: the demonstrator's label where
                                                       it may differ from ``action`` (an
                                                       operator correcting the policy);
                                                       absent means "same as action"
    timestamp_s                 float64  [T]           capture time of the frames, s, monotonic
                                                       clock (sim: simulated time since reset);
                                                       gaps show trimmed idle steps
    operator_takeover           bool     [T]           True where an operator, not the policy,
                                                       chose ``action`` (supervised autonomy)
    telemetry/track_left_mm_s   float32  [T]           optional: measured left track speed, mm/s
    telemetry/track_right_mm_s  float32  [T]           optional: measured right track speed
    telemetry/battery_mv        float32  [T]           optional: battery voltage, mV

    and with a contract that has an arm head (``contract.arm_dims`` = D > 0; absent else):

    arm_action                  uint8    [T, D]        executed arm action: per jog dimension
                                                       an index into contract.arm_jog_levels
    expert_arm_action           uint8    [T, D]        the demonstrator's arm label; present
                                                       exactly when expert_action is
    arm_state                   float32  [T, 6]        the commanded tool pose and gripper
                                                       opening when the frames were taken
                                                       (zima.contract.ARM_STATE_FIELDS)

    attribute (root)            type     meaning
    --------------------------  -------  ---------------------------------------------------------
    format / format_version     str/int  "zima-episode" / FORMAT_VERSION
    zima_contract               str      the contract's JSON (zima.contract.METADATA_KEY)
    source                      str      "sim" or "real"
    scene                       str      sim scene name, or where a real episode was recorded
    seed                        int      the sim episode's seed; -1 when there is none
    outcome                     str      an :class:`Outcome` value: "success", a sim failure
                                         mode ("collision", "timeout", ...), the robot's
                                         "failure" or "aborted", or "unknown"
    n_steps                     int      T; written last, so a file without it is incomplete
    steps_recorded              int      steps before idle trimming (-1: not trimmed)
    idle_trim                   str      JSON of the IdleTrim applied ("" for none)
    zima_version / created_utc  str      writer's version; ISO 8601 UTC creation time
    (any other name)            scalar   optional extras (:meth:`EpisodeWriter.set_attributes`),
                                         e.g. the robot recorder's robot_id, model_sha256,
                                         mode and events; :meth:`EpisodeReader.extras`

Names in an episode folder: ``NAME.h5`` is a finished episode (every reader takes the
folder's ``*.h5``); ``NAME.h5.partial`` one being written, or left by a writer that never
closed it; ``NAME.h5.bad`` a finished episode someone flagged bad (:func:`mark_bad`), which
the ``*.h5`` of the training set, `zima score` and export no longer match.

Whole datasets are meant to be read at once (:meth:`EpisodeReader.load`, one read per
dataset): the first prototype spent 95% of its training time on per-sample HDF5 reads.
Compression: gzip level 1, one frame per chunk. On the simulator's frames (with noise
and blur) it stores 12.7 KB per 128x96 frame against 36 KB raw and 15.9 KB with lzf,
for 0.5 ms of writing per frame (lzf 0.4 ms; rendering one frame costs ~3 ms), and
unlike lzf every HDF5 tool reads it. ``compression=None`` or ``"lzf"`` are accepted.

Errors (``EpisodeError`` and its subclasses)::

    EpisodeError
    |-- EpisodeWriteError       writing failed (disk full, permissions); the .partial stays
    +-- EpisodeFormatError      not an episode, corrupt, truncated, unknown version, bad
        |                       shapes or attributes, actions out of range
        +-- ContractMismatchError   written under another observation/action contract

Reading treats a file as outside input: whatever its bytes, :class:`EpisodeReader` and its
methods return the documented values or raise ``EpisodeFormatError`` naming the file (a
missing file stays ``FileNotFoundError``); what h5py or libhdf5 raise on a damaged file
(``OSError``, ``RuntimeError``, ``TypeError``, ``KeyError``...) never escapes raw.

**The seal.** libhdf5 is not written for hostile bytes: fuzzing found bit flips in an
episode's metadata that crash it (a segmentation fault in an attribute read, which no
``except`` catches, so one damaged file could end a training run). The writer therefore
reserves HDF5's *userblock*, the first ``SEAL_SIZE`` bytes, which libhdf5 and every HDF5
tool skip, and on close writes there ``SEAL_MAGIC``, the sha256 of the rest of the file
in hex, and a newline (:func:`seal`). The reader hashes the file before libhdf5 sees a
byte of it and refuses one whose hash differs (damaged, truncated or edited after it was
written), so libhdf5 only ever parses bytes our writer wrote. A tool that edits an episode
on purpose (h5py in ``"r+"`` mode) calls :func:`seal` after. Files without a seal, written
before it existed (their first bytes are HDF5's signature) or left ``.partial`` by a writer
that never closed (a userblock of zeros), are read as before, unverified. Hashing costs
about 2 ms per MB.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import h5py
import numpy as np

from zima import __version__
from zima.atomic import fsync_directory, fsync_file
from zima.bounded import InputError, parse_json_bounded
from zima.contract import ARM_STATE_DIMS, DEFAULT, METADATA_KEY, Action, Contract

FORMAT_NAME: Final = "zima-episode"
FORMAT_VERSION: Final = 1
SOURCES: Final = ("sim", "real")
TELEMETRY_FIELDS: Final = ("track_left_mm_s", "track_right_mm_s", "battery_mv")
PARTIAL_SUFFIX: Final = ".partial"
SEAL_SIZE: Final = 512  # the HDF5 userblock that holds the seal (libhdf5's smallest)
SEAL_MAGIC: Final = b"zima-episode sha256 "
HDF5_SIGNATURE: Final = b"\x89HDF\r\n\x1a\n"
BAD_SUFFIX: Final = ".bad"  # a finished episode flagged bad (:func:`mark_bad`)

_T = TypeVar("_T")


class Outcome(StrEnum):
    """How an episode stands or ended: the episode file's ``outcome`` attribute (files store
    the value; a reader takes any non-empty string, these are the ones Zima writes)."""

    RUNNING = "running"  # the simulator: not decided yet (never written to a file)
    SUCCESS = "success"  # sim: STOP in front of the target; robot: the operator says so
    COLLISION = "collision"  # sim: touched a wall, furniture or clutter
    WRONG_CUBE = "wrong_cube"  # sim: touched a distractor cube
    TIMEOUT = "timeout"  # sim: the time limit passed
    FAILURE = "failure"  # robot: the operator judged the run a failure
    ABORTED = "aborted"  # robot: stopped before anyone judged it (shutdown)
    UNKNOWN = "unknown"  # nobody judged the episode


JUDGED_OUTCOMES: Final = (Outcome.SUCCESS, Outcome.FAILURE)
"""What an operator says of a recorded episode (``record`` stop, MQTT and the console)."""


class EpisodeError(Exception):
    """Base of every error of this module."""


class EpisodeWriteError(EpisodeError):
    """An episode could not be written; its partial file is kept for inspection."""


class EpisodeFormatError(EpisodeError, ValueError):
    """A file is not a readable episode of this format."""


class ContractMismatchError(EpisodeFormatError):
    """An episode was recorded under a different contract."""


@dataclass(frozen=True, slots=True)
class EpisodeInfo:
    """The per-episode attributes (see the module table)."""

    source: str  # "sim" or "real"
    scene: str
    seed: int = -1  # -1: no seed (real episodes)
    outcome: str = Outcome.UNKNOWN.value  # an Outcome value (any non-empty string reads)
    steps_recorded: int = -1  # -1: not trimmed, equals the file's steps
    idle_trim: str = ""  # JSON of the IdleTrim applied, "" for none
    zima_version: str = __version__
    created_utc: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"episode source must be one of {SOURCES}, got {self.source!r}")
        if not self.outcome:
            raise ValueError("episode outcome must be non-empty ('unknown' when not known)")


@dataclass(frozen=True, slots=True)
class Episode:
    """A whole episode in memory (:meth:`EpisodeReader.load`)."""

    info: EpisodeInfo
    contract: Contract
    images: dict[str, np.ndarray]  # camera -> [T, H, W, 3] uint8
    action: np.ndarray  # [T] uint8
    expert_action: np.ndarray  # [T] uint8 (a copy of action when the file has none)
    timestamp_s: np.ndarray  # [T] float64
    operator_takeover: np.ndarray  # [T] bool
    telemetry: dict[str, np.ndarray]  # name -> [T] float32; empty when not recorded
    # With an arm head (contract.arm_dims = D), else None:
    arm_action: np.ndarray | None = None  # [T, D] uint8
    expert_arm_action: np.ndarray | None = None  # [T, D] uint8 (a copy when not labelled)
    arm_state: np.ndarray | None = None  # [T, ARM_STATE_DIMS] float32

    def __len__(self) -> int:
        return len(self.action)


# --- idle trimming ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdleTrim:
    """How many STOP steps survive trimming; the rest would unbalance the data."""

    # STOPs kept just before the first motion (the robot waiting for its operator).
    keep_leading: int = 0
    # Longest run of STOPs kept between motions; the first steps of a longer run are kept.
    max_run: int = 3
    # STOPs kept after the last motion: 1 keeps the "arrived, stop" label the task ends on.
    keep_trailing: int = 1

    def __post_init__(self) -> None:
        if min(self.keep_leading, self.max_run, self.keep_trailing) < 0:
            raise ValueError(f"idle trim counts must be >= 0: {self}")

    def to_json(self) -> str:
        """Canonical JSON, stored in the episode's ``idle_trim`` attribute."""
        return json.dumps(asdict(self), sort_keys=True)


def idle_mask(actions: np.ndarray, trim: IdleTrim = IdleTrim()) -> np.ndarray:
    """Which steps of ``actions`` [T] to keep: [T] bool (all STOP: the last keep_leading)."""
    actions = np.asarray(actions)
    keep = np.ones(len(actions), bool)
    stop = actions == Action.STOP
    moving = np.flatnonzero(~stop)
    first = int(moving[0]) if len(moving) else len(actions)
    keep[: max(0, first - trim.keep_leading)] = False  # keep the last STOPs before moving
    if len(moving) == 0:
        return keep
    last = int(moving[-1])
    keep[last + 1 + trim.keep_trailing:] = False
    run = 0
    for t in range(first, last + 1):  # interior runs
        run = run + 1 if stop[t] else 0
        if run > trim.max_run:
            keep[t] = False
    return keep


# --- writing --------------------------------------------------------------------------------


class EpisodeWriter:
    """Appends steps to ``path + '.partial'``; renames it to ``path`` on a clean close.

    Used as a context manager: leaving the block normally publishes the file (fsync, an
    atomic rename, fsync of the folder: :mod:`zima.atomic`'s rule; ``fsync=False`` skips
    both fsyncs, for benchmarks), leaving it by an exception keeps only the ``.partial``. A reader
    therefore never finds a half-written file under the final name. Optional datasets
    (``expert_action``, telemetry fields) are present when the first step has them, and
    every later step must have the same ones.
    """

    def __init__(self, path: str | os.PathLike[str], info: EpisodeInfo,
                 contract: Contract = DEFAULT, *, compression: str | None = "gzip",
                 flush_every: int = 16, overwrite: bool = False, fsync: bool = True) -> None:
        self.path = Path(path)
        self.partial_path = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"episode {self.path} exists (pass overwrite=True)")
        self.info, self.contract, self.fsync = info, contract, fsync
        self._compression = compression
        self._opts = 1 if compression == "gzip" else None
        self._flush_every = max(1, flush_every)
        self._buffer: list[tuple[dict[str, np.ndarray], int, int, float, bool,
                                 dict[str, float]]] = []
        self._arm_buffer: list[tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]] = []
        self._has_expert: bool | None = None
        self._telemetry: tuple[str, ...] = ()
        self.n_steps = 0
        self._closed = False
        # No chunk cache: every frame goes to disk as it is written, so a full disk shows
        # up at the step that hit it, not at close.
        self._file = self._guard(lambda: h5py.File(self.partial_path, "w", rdcc_nbytes=0,
                                                   userblock_size=SEAL_SIZE))
        self._guard(self._create_datasets)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def set_outcome(self, outcome: str) -> None:
        """Record how the episode ended (often known only at its end)."""
        if not outcome:
            raise ValueError("outcome must be non-empty")
        self._file.attrs["outcome"] = outcome

    def set_attributes(self, attrs: Mapping[str, str | int | float | bool]) -> None:
        """Store extra root attributes; the format's own names are refused."""
        taken = set(attrs) & _FORMAT_ATTRS
        if taken:
            raise ValueError(f"attributes {sorted(taken)} belong to the episode format")
        if self._closed:
            raise RuntimeError(f"episode {self.path} is closed")
        self._guard(lambda: self._file.attrs.update(attrs))

    def append(self, images: Mapping[str, np.ndarray], action: Action | int, timestamp_s: float,
               *, expert_action: Action | int | None = None, operator_takeover: bool = False,
               telemetry: Mapping[str, float] | None = None,
               arm_action: Sequence[int] | None = None,
               expert_arm_action: Sequence[int] | None = None,
               arm_state: Sequence[float] | None = None) -> None:
        """Add one step: every contract camera's frame [H, W, 3] uint8 and what was done;
        with an arm head, ``arm_action`` and ``arm_state`` too (``expert_arm_action`` with
        ``expert_action``), and never without one."""
        c = self.contract
        if self._closed:
            raise RuntimeError(f"episode {self.path} is closed")
        if set(images) != set(c.cameras):
            raise ValueError(f"step images must be of cameras {c.cameras}, got {sorted(images)}")
        for cam, img in images.items():
            if img.shape != (c.image_height, c.image_width, 3) or img.dtype != np.uint8:
                raise ValueError(f"camera {cam}: frame must be uint8 [{c.image_height}, "
                                 f"{c.image_width}, 3], got {img.dtype} {list(img.shape)}")
        if not 0 <= int(action) < c.n_actions:
            raise ValueError(f"action {action} is not in 0..{c.n_actions - 1}")
        telemetry = dict(telemetry or {})
        if self.n_steps == 0 and not self._buffer:
            self._start_optional(expert_action is not None, tuple(telemetry))
        if (expert_action is not None) != self._has_expert or tuple(telemetry) != self._telemetry:
            raise ValueError("every step must carry the same optional fields as the first "
                             f"(expert_action: {self._has_expert}, telemetry: {self._telemetry})")
        label = int(action) if expert_action is None else int(expert_action)
        if c.arm_dims:
            self._arm_buffer.append(self._arm_step(arm_action, expert_arm_action, arm_state,
                                                   labelled=expert_action is not None))
        elif arm_action is not None or expert_arm_action is not None or arm_state is not None:
            raise ValueError("arm actions need a contract with an arm head (arm_dims > 0)")
        self._buffer.append((dict(images), int(action), label, float(timestamp_s),
                             bool(operator_takeover), telemetry))
        if len(self._buffer) >= self._flush_every:
            self._guard(self._flush)

    def _arm_step(self, arm_action: Sequence[int] | None,
                  expert_arm_action: Sequence[int] | None, arm_state: Sequence[float] | None,
                  *, labelled: bool) -> tuple[tuple[int, ...], tuple[int, ...], tuple[float, ...]]:
        """One step's arm fields, checked: (executed bins, label bins, state)."""
        c = self.contract
        if arm_action is None or arm_state is None:
            raise ValueError("a contract with an arm head records arm_action and arm_state "
                             "at every step")
        if (expert_arm_action is not None) != labelled:
            raise ValueError("expert_arm_action goes with expert_action (both or neither)")
        bins = tuple(int(b) for b in arm_action)
        label = bins if expert_arm_action is None else tuple(int(b) for b in expert_arm_action)
        for name, value in (("arm_action", bins), ("expert_arm_action", label)):
            if len(value) != c.arm_dims or not all(0 <= b < c.n_arm_levels for b in value):
                raise ValueError(f"{name} must be {c.arm_dims} bins in "
                                 f"0..{c.n_arm_levels - 1}, got {value}")
        state = tuple(float(v) for v in arm_state)
        if len(state) != ARM_STATE_DIMS:
            raise ValueError(f"arm_state has {ARM_STATE_DIMS} values, got {len(state)}")
        return bins, label, state

    def close(self) -> Path:
        """Write what is buffered, then publish the file under its final name; return it."""
        if self._closed:
            return self.path
        try:
            self._guard(self._flush)
            self._guard(lambda: self._file.attrs.__setitem__("n_steps", self.n_steps))
            self._closed = True
            self._guard(self._file.close)
            self._guard(lambda: seal(self.partial_path))
            if self.fsync:
                self._guard(lambda: fsync_file(self.partial_path))
            self._guard(lambda: self.partial_path.replace(self.path))
            if self.fsync:
                fsync_directory(self.path.parent)  # the rename survives a power loss too
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and keep the ``.partial`` file (it never takes the final name)."""
        if self._closed:
            return  # closing an HDF5 file twice after a failed close crashes libhdf5
        self._closed = True
        with contextlib.suppress(OSError, RuntimeError, ValueError):
            self._file.close()  # a failed close is the error already being reported

    # --- internals ------------------------------------------------------------------------

    def _guard(self, op: Callable[[], _T]) -> _T:
        """Run ``op``; turn an OSError into an EpisodeWriteError that names the file."""
        try:
            return op()
        except OSError as exc:
            if hasattr(self, "_file"):
                self.abort()  # no-op when the failure was the close itself
            full = exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or (
                "write" in str(exc).lower())
            hint = " (disk full or file too large?)" if full else ""
            detail = " ".join(str(exc).split())  # libhdf5's messages span lines
            raise EpisodeWriteError(
                f"writing episode {self.path} failed{hint}: {detail}; the partial file is kept "
                f"as {self.partial_path}") from exc

    def _create_datasets(self) -> None:
        f, c, info = self._file, self.contract, self.info
        f.attrs.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                        METADATA_KEY: c.to_json(), **asdict(info)})
        frame = (c.image_height, c.image_width, 3)
        for cam in c.cameras:
            f.create_dataset(f"images/{cam}", shape=(0, *frame), maxshape=(None, *frame),
                             dtype=np.uint8, chunks=(1, *frame), compression=self._compression,
                             compression_opts=self._opts)
        self._step_dataset("action", np.uint8)
        self._step_dataset("timestamp_s", np.float64)
        self._step_dataset("operator_takeover", np.bool_)
        if c.arm_dims:
            self._step_dataset("arm_action", np.uint8, c.arm_dims)
            self._step_dataset("arm_state", np.float32, ARM_STATE_DIMS)

    def _step_dataset(self, name: str, dtype: type, width: int = 0) -> None:
        """A per-step dataset: [T] values, or [T, width] rows when ``width``."""
        row = (width,) if width else ()
        self._file.create_dataset(name, shape=(0, *row), maxshape=(None, *row), dtype=dtype,
                                  chunks=(1024, *row))

    def _start_optional(self, has_expert: bool, telemetry: tuple[str, ...]) -> None:
        unknown = set(telemetry) - set(TELEMETRY_FIELDS)
        if unknown:
            raise ValueError(f"unknown telemetry {sorted(unknown)}; known: {TELEMETRY_FIELDS}")
        self._has_expert, self._telemetry = has_expert, telemetry
        if has_expert:
            self._guard(lambda: self._step_dataset("expert_action", np.uint8))
            if self.contract.arm_dims:
                self._guard(lambda: self._step_dataset("expert_arm_action", np.uint8,
                                                       self.contract.arm_dims))
        for name in telemetry:
            self._guard(functools.partial(self._step_dataset, f"telemetry/{name}", np.float32))

    def _flush(self) -> None:
        if not self._buffer:
            return
        f, n, k = self._file, self.n_steps, len(self._buffer)
        images, action, label, stamp, takeover, telemetry = zip(*self._buffer, strict=True)
        columns: dict[str, Any] = {"action": action, "timestamp_s": stamp,
                                   "operator_takeover": takeover}
        if self._has_expert:
            columns["expert_action"] = label
        for name in self._telemetry:
            columns[f"telemetry/{name}"] = [t[name] for t in telemetry]
        for cam in self.contract.cameras:
            columns[f"images/{cam}"] = np.stack([im[cam] for im in images])
        if self.contract.arm_dims:
            bins, labels, states = zip(*self._arm_buffer, strict=True)
            columns["arm_action"], columns["arm_state"] = bins, states
            if self._has_expert:
                columns["expert_arm_action"] = labels
            self._arm_buffer.clear()
        for name, values in columns.items():
            ds = f[name]
            ds.resize(n + k, axis=0)
            ds[n:] = np.asarray(values, ds.dtype)
        self.n_steps += k
        self._buffer.clear()


_FORMAT_ATTRS: Final = frozenset(
    {"format", "format_version", METADATA_KEY, "n_steps", *EpisodeInfo.__dataclass_fields__})


# --- reading --------------------------------------------------------------------------------

# What h5py, libhdf5 and numpy raise on a damaged file (seen by fuzzing saved episodes:
# "bad heap index", "Unknown string encoding", "integer offset+precision out of bounds").
_DAMAGE: Final = (OSError, RuntimeError, TypeError, ValueError, KeyError, IndexError,
                  AttributeError, OverflowError)
MAX_CONTRACT_JSON_BYTES: Final = 65_536


@contextlib.contextmanager
def _damage_as_format_error(where: str, doing: str) -> Iterator[None]:
    """Any exception of a damaged file while ``doing`` becomes one EpisodeFormatError."""
    try:
        yield
    except EpisodeFormatError:
        raise
    except FileNotFoundError:
        raise
    except _DAMAGE as exc:
        detail = " ".join(str(exc).split())[:300]  # libhdf5's messages span lines
        raise EpisodeFormatError(f"{where}: {doing} failed (corrupt or truncated file?): "
                                 f"{type(exc).__name__}: {detail}") from exc


def seal(path: str | os.PathLike[str]) -> str:
    """Write the seal (module doc) into the userblock of the episode file at ``path``, in
    place; its sha256 (hex). The writer seals every file it closes; call it after editing
    an episode on purpose. A file written without a userblock has no room for one:
    ``EpisodeFormatError``."""
    path = Path(path)
    with path.open("r+b") as f:
        f.seek(SEAL_SIZE)
        if f.read(len(HDF5_SIGNATURE)) != HDF5_SIGNATURE:
            raise EpisodeFormatError(f"{path}: no room for a seal: not an HDF5 file with a "
                                     f"{SEAL_SIZE}-byte userblock (written before seals?)")
        f.seek(SEAL_SIZE)
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        f.seek(0)
        f.write((SEAL_MAGIC + digest.encode() + b"\n").ljust(SEAL_SIZE, b"\0"))
    return digest


def check_seal(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` is sealed (True: its bytes are the ones sealed) or was
    written without a seal (False: read unverified); ``EpisodeFormatError`` when the seal
    or the bytes it covers are damaged, or the file is not HDF5 at all. A missing file:
    ``FileNotFoundError``."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(SEAL_SIZE)
            if head.startswith(HDF5_SIGNATURE):
                return False  # no userblock: written before the seal
            signed = head.startswith(SEAL_MAGIC)
            if not signed and f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                if head == bytes(SEAL_SIZE):
                    return False  # a userblock of zeros: a writer that never closed
                raise EpisodeFormatError(f"{path}: its seal is damaged (the first {SEAL_SIZE} "
                                         "bytes, which hold the sha256 of the rest)")
            if not signed:
                raise EpisodeFormatError(f"{path}: not a readable HDF5 file (corrupt or "
                                         "truncated?): no HDF5 signature")
            sealed = head[len(SEAL_MAGIC):len(SEAL_MAGIC) + 64]
            f.seek(SEAL_SIZE)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
    except (FileNotFoundError, EpisodeFormatError):
        raise
    except OSError as exc:
        raise EpisodeFormatError(f"{path}: not a readable HDF5 file: {exc}") from exc
    if digest.encode() != sealed:
        raise EpisodeFormatError(
            f"{path}: damaged, truncated or edited after it was written: the sha256 of its "
            f"contents is {digest[:16]}..., its seal says {sealed[:16].decode(errors='replace')}..."
            " (a tool that edits episodes on purpose reseals them: zima.episodes.seal)")
    return True


class EpisodeReader:
    """A validated, read-only episode; ``contract=None`` accepts any contract. A sealed
    file's hash is checked before libhdf5 reads it (module doc: the seal); ``sealed`` says
    whether it was."""

    def __init__(self, path: str | os.PathLike[str], contract: Contract | None = DEFAULT) -> None:
        self.path = Path(path)
        self.sealed = check_seal(self.path)
        try:
            self._file = h5py.File(self.path, "r")
        except FileNotFoundError:
            raise
        except _DAMAGE as exc:
            raise EpisodeFormatError(
                f"{self.path}: not a readable HDF5 file (corrupt or truncated?): {exc}") from exc
        try:
            with _damage_as_format_error(str(self.path), "reading the episode's layout"):
                self.contract, self.info, self.n_steps = self._validate(contract)
        except BaseException:
            with contextlib.suppress(*_DAMAGE):
                self._file.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_steps

    def close(self) -> None:
        """Close the file."""
        with contextlib.suppress(*_DAMAGE):  # nothing was written: nothing to lose
            self._file.close()

    def read(self, name: str) -> np.ndarray:
        """A whole dataset (``"action"``, ``"images/forward"``, ...) in one read."""
        try:
            ds = self._file[name]
        except KeyError as exc:
            raise EpisodeFormatError(f"{self.path}: no dataset {name!r}") from exc
        with _damage_as_format_error(str(self.path), f"reading {name!r}"):
            if not isinstance(ds, h5py.Dataset):
                raise EpisodeFormatError(f"{self.path}: {name!r} is not a dataset")
            try:
                data: np.ndarray = ds[()]
            except OSError as exc:
                detail = " ".join(str(exc).split())[:300]
                raise EpisodeFormatError(
                    f"{self.path}: dataset {name!r} is corrupt: {detail}") from exc
        return data

    def extras(self) -> dict[str, Any]:
        """The root attributes beyond the format's (:meth:`EpisodeWriter.set_attributes`)."""
        with _damage_as_format_error(str(self.path), "reading its attributes"):
            return {k: (v.item() if isinstance(v, np.generic) else v)
                    for k, v in self._file.attrs.items() if k not in _FORMAT_ATTRS}

    def load(self) -> Episode:
        """The whole episode in memory, every dataset read once; action labels checked."""
        f = self._file
        with _damage_as_format_error(str(self.path), "loading the episode"):
            action = self._actions("action")
            telemetry = ({n: self.read(f"telemetry/{n}") for n in self._telemetry_names()})
            return Episode(
                info=self.info, contract=self.contract,
                images={c: self.read(f"images/{c}") for c in self.contract.cameras},
                action=action,
                expert_action=(self._actions("expert_action") if "expert_action" in f
                               else action.copy()),
                timestamp_s=self.read("timestamp_s"),
                operator_takeover=self.read("operator_takeover"),
                telemetry=telemetry, **self._arm())

    def _arm(self) -> dict[str, np.ndarray]:
        """The arm's datasets (a contract with an arm head), bins checked; else none."""
        if not self.contract.arm_dims:
            return {}
        bins = self._bins("arm_action")
        label = self._bins("expert_arm_action") if "expert_arm_action" in self._file \
            else bins.copy()
        return {"arm_action": bins, "expert_arm_action": label,
                "arm_state": self.read("arm_state")}

    def _bins(self, name: str) -> np.ndarray:
        """An arm action dataset whose every value indexes the contract's arm levels."""
        values = self.read(name)
        if values.size and int(values.max()) >= self.contract.n_arm_levels:
            raise EpisodeFormatError(f"{self.path}: {name} holds {int(values.max())}, not a "
                                     f"bin of 0..{self.contract.n_arm_levels - 1}")
        return values

    def _actions(self, name: str) -> np.ndarray:
        """An action dataset whose every value indexes the contract's actions."""
        values = self.read(name)
        if len(values) and int(values.max()) >= self.contract.n_actions:
            raise EpisodeFormatError(f"{self.path}: {name} holds {int(values.max())}, not an "
                                     f"action of 0..{self.contract.n_actions - 1}")
        return values

    def _telemetry_names(self) -> list[str]:
        group = self._file.get("telemetry")
        if group is None:
            return []
        if not isinstance(group, h5py.Group):
            raise EpisodeFormatError(f"{self.path}: 'telemetry' is not a group of datasets")
        return [str(name) for name in group]

    def _validate(self, expected: Contract | None) -> tuple[Contract, EpisodeInfo, int]:
        f, where = self._file, str(self.path)
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT_NAME:
            raise EpisodeFormatError(f"{where}: not a zima episode (format attribute "
                                     f"{str(attrs.get('format'))[:64]!r}, expected "
                                     f"{FORMAT_NAME!r})")
        version = attrs.get("format_version")
        if version != FORMAT_VERSION:
            raise EpisodeFormatError(f"{where}: episode format version {str(version)[:32]}; "
                                     f"this zima ({__version__}) reads version "
                                     f"{FORMAT_VERSION}")
        text = attrs.get(METADATA_KEY)
        try:
            if not isinstance(text, str):
                raise InputError("not a string")
            # Bounded first: json.loads of deeply nested text raises RecursionError.
            parse_json_bounded(text.encode(), max_bytes=MAX_CONTRACT_JSON_BYTES, max_depth=4,
                               what="the contract")
            contract = Contract.from_json(text)
        except (InputError, UnicodeEncodeError, ValueError, TypeError, KeyError) as exc:
            raise EpisodeFormatError(f"{where}: bad {METADATA_KEY} attribute: {exc}") from exc
        if expected is not None and contract != expected:
            diffs = [f"{k}: file {v!r}, expected {asdict(expected)[k]!r}"
                     for k, v in asdict(contract).items() if v != asdict(expected)[k]]
            raise ContractMismatchError(f"{where}: recorded under another contract: "
                                        + "; ".join(diffs))
        names = {f.name for f in EpisodeInfo.__dataclass_fields__.values()}
        try:
            info = EpisodeInfo(**{k: attrs[k] for k in names})
            _check_info_types(info)
        except (KeyError, TypeError, ValueError) as exc:
            raise EpisodeFormatError(f"{where}: missing or bad episode attribute: {exc}") from exc
        n = attrs.get("n_steps")
        if not isinstance(n, int) or isinstance(n, bool):
            raise EpisodeFormatError(f"{where}: incomplete episode (no n_steps attribute; "
                                     "a .partial file whose writer never closed it?)")
        expect = _expected_datasets(contract, n, labelled="expert_action" in f)
        for name in self._telemetry_names():
            expect[f"telemetry/{name}"] = ((n,), "f")
        for name, (shape, kind) in expect.items():
            ds = f.get(name)
            if not isinstance(ds, h5py.Dataset):
                raise EpisodeFormatError(f"{where}: missing dataset {name!r}")
            if ds.shape != shape or ds.dtype.kind != kind:
                raise EpisodeFormatError(f"{where}: dataset {name!r} is {ds.dtype} "
                                         f"{list(ds.shape)}, expected kind {kind!r} {list(shape)}")
        return contract, info, n


def _expected_datasets(contract: Contract, n: int, *, labelled: bool,
                       ) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype kind) of every dataset but telemetry an episode of ``n`` steps
    under ``contract`` has (``labelled``: it has expert_action)."""
    frame = (contract.image_height, contract.image_width, 3)
    expect: dict[str, tuple[tuple[int, ...], str]] = {
        **{f"images/{c}": ((n, *frame), "u") for c in contract.cameras},
        "action": ((n,), "u"), "timestamp_s": ((n,), "f"), "operator_takeover": ((n,), "b")}
    if labelled:
        expect["expert_action"] = ((n,), "u")
    if contract.arm_dims:
        expect["arm_action"] = ((n, contract.arm_dims), "u")
        expect["arm_state"] = ((n, ARM_STATE_DIMS), "f")
        if labelled:
            expect["expert_arm_action"] = ((n, contract.arm_dims), "u")
    return expect


def _check_info_types(info: EpisodeInfo) -> None:
    """The attributes' types, which the dataclass itself does not check."""
    for name, kind in (("source", str), ("scene", str), ("outcome", str), ("idle_trim", str),
                       ("zima_version", str), ("created_utc", str), ("seed", int),
                       ("steps_recorded", int)):
        value = getattr(info, name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise TypeError(f"{name} is {type(value).__name__}, not {kind.__name__}")


# --- flagging bad episodes ------------------------------------------------------------------


def mark_bad(path: str | os.PathLike[str]) -> Path:
    """Flag the finished episode ``path`` (``NAME.h5``) bad; return its new name.

    The flag is the name: ``NAME.h5`` becomes ``NAME.h5.bad`` by one atomic rename (then an
    fsync of the folder), so every tool that takes a folder's ``*.h5`` (training, `zima
    score`, export) skips it without learning anything new, the data stays intact for a
    second look, and :func:`unmark_bad` undoes it. Refuses a name that is not ``*.h5`` (a
    ``.partial`` is not finished) and a target that exists.
    """
    src = Path(path)
    if src.suffix != ".h5":
        raise ValueError(f"{src}: only a finished episode (*.h5) can be marked bad")
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist")
    return _rename_once(src, src.with_name(src.name + BAD_SUFFIX))


def unmark_bad(path: str | os.PathLike[str]) -> Path:
    """Undo :func:`mark_bad`: ``NAME.h5.bad`` (or the ``NAME.h5`` it was) back to ``NAME.h5``."""
    src = Path(path)
    if src.suffix == ".h5":
        src = src.with_name(src.name + BAD_SUFFIX)
    if not src.name.endswith(".h5" + BAD_SUFFIX):
        raise ValueError(f"{src}: not a marked episode (NAME.h5{BAD_SUFFIX})")
    if not src.is_file():
        raise FileNotFoundError(f"{src} does not exist")
    return _rename_once(src, src.with_name(src.name.removesuffix(BAD_SUFFIX)))


def _rename_once(src: Path, dst: Path) -> Path:
    """Rename ``src`` to ``dst``, never over an existing file, durably."""
    if dst.exists():
        raise FileExistsError(f"{dst} exists; not renaming {src.name} over it")
    src.rename(dst)
    fsync_directory(dst.parent)
    return dst
