"""``Recorder``: the robot's episodes (demonstrations or autonomous runs) as episode files.

One HDF5 file per episode, in exactly the format the simulator writes (:mod:`zima.episodes`:
frames of every contract camera fitted to the contract's size as the policy sees them,
actions, telemetry, capture times, outcome). The robot adds root attributes of its own::

    attribute       meaning
    --------------  -----------------------------------------------------------------------
    mode            who drove: "teleop", "autonomous" or "supervised" (``start(source=)``)
    events          JSON list of {"kind": "takeover"|"handback", "t_s": now_s, "step": i},
                    i = the first step the event applies to; steps between a take-over and
                    the next hand-back have ``operator_takeover`` set
    (metadata)      the constructor's ``metadata`` (robot_id, software, model_sha256, ...)

Use, from the runtime's event loop::

    async with Recorder(RecorderConfig(directory=path), contract, metadata={...}) as rec:
        rec.start(source="teleop", now_s=t)
        rec.add_step(images={...}, captured_s={...}, action=a, telemetry={...}, now_s=t)
        rec.mark_event("takeover", now_s=t)
        path = await rec.stop(outcome="success")   # or: await rec.discard()
        rec.status                                  # what the web console shows

One worker thread does all file work; ``add_step`` only checks its input and queues the
step (a full queue drops it and counts it in ``status.dropped_steps``), so it never waits
on the disk.

Failure rule: recording must never stop the robot. A write error (a full disk, a removed
card) ends the current episode: its partial file is removed (freeing the space it held),
``status.error`` names the file and the error, it is logged, and the next ``start`` tries
afresh; ``add_step`` keeps returning normally. A finished episode is fsynced and renamed
into place (then its folder fsynced) and never opened again, so a crash or power loss can
only lose the episode being recorded, left as a ``.partial`` file that the next startup
lists (log and ``status.leftover_partials``) and leaves alone. Only wrong input
(``ValueError``) and wrong use (``RecorderError``: start while recording, stop while not)
raise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import json
import logging
import os
import queue
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import numpy as np

from zima.contract import METADATA_KEY, Action, Contract
from zima.episodes import (
    PARTIAL_SUFFIX,
    SOURCES,
    TELEMETRY_FIELDS,
    EpisodeInfo,
    EpisodeWriteError,
    EpisodeWriter,
    Outcome,
)
from zima.onboard.fusion import fit_image
from zima.onboard.safety import DRIVING_MODES

__all__ = ["EVENT_KINDS", "MODES", "OUTCOMES", "Recorder", "RecorderConfig", "RecorderError",
           "RecorderStatus"]

log = logging.getLogger(__name__)

MODES: Final = tuple(sorted(m.value for m in DRIVING_MODES))  # who drove: start(source=)
# How a robot episode ends: the operator's judgement, or ABORTED when the recorder stopped
# before anyone judged it (shutdown).
OUTCOMES: Final = (Outcome.SUCCESS, Outcome.FAILURE, Outcome.ABORTED)
EVENT_KINDS: Final = ("takeover", "handback")


class RecorderError(Exception):
    """Wrong use (start while recording, stop while not) or an episode that failed to write."""


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """Where and how episodes are written."""

    # Folder of the episode files; created when missing.
    directory: Path
    # Where the robot records (the episode's ``scene`` attribute), e.g. "lab-table".
    scene: str = "real"
    # The episode's ``source`` attribute: "real" on the robot, "sim" where the MCU is the
    # emulated board under the simulator (`zima sim run`), so training never takes a
    # simulated episode for a real one. (Who drove is ``start(source=)``, the ``mode``.)
    source: str = "real"
    # Steps buffered before a write: 16 steps at 10 Hz risk 1.6 s of the episode in a crash.
    flush_every: int = 16
    # Steps waiting for the writer before new ones are dropped: 3 s at 10 Hz (at most
    # ~55 MB of queued 640x480 frames of two cameras).
    max_queued_steps: int = 32

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"RecorderConfig.source={self.source!r} must be one of {SOURCES}")
        if self.flush_every < 1 or self.max_queued_steps < 1:
            raise ValueError(f"RecorderConfig: flush_every ({self.flush_every}) and "
                             f"max_queued_steps ({self.max_queued_steps}) must be >= 1")


@dataclass(frozen=True, slots=True)
class RecorderStatus:
    """A snapshot for the operator's console."""

    recording: bool
    episode: str | None  # file name of the episode being recorded
    steps: int  # steps accepted into the current episode
    episodes_written: int  # finished and kept this session
    action_counts: dict[str, int]  # action name -> steps, over the episodes kept this session
    dropped_steps: int  # steps dropped because the writer fell behind, this session
    error: str | None  # the last write error, cleared by the next start
    takeover: bool  # an operator is driving (between "takeover" and "handback")
    leftover_partials: tuple[str, ...] = ()  # .partial files found at startup (crashes)
    last_step_s: float | None = None  # now_s of the last step queued


@dataclass(eq=False, slots=True)
class _Episode:
    """One episode; the caller's fields are set before it is queued, the worker's after."""

    path: Path
    mode: str
    telemetry: tuple[str, ...] | None = None  # the first step's fields, every step's
    steps: int = 0
    takeover: bool = False
    writer: EpisodeWriter | None = None  # worker
    written: int = 0  # worker: steps handed to the writer
    events: list[dict[str, object]] = field(default_factory=list)  # worker
    counts: np.ndarray | None = None  # worker: [n_actions] steps per action
    error: str | None = None  # worker: why writing failed; later work for it is skipped


@dataclass(frozen=True, slots=True)
class _Step:
    episode: _Episode
    images: dict[str, np.ndarray]  # camera -> [h, w, 3] uint8 as captured
    timestamp_s: float
    action: int
    takeover: bool
    telemetry: dict[str, float]


@dataclass(frozen=True, slots=True)
class _Event:
    episode: _Episode
    kind: str
    t_s: float


@dataclass(frozen=True, slots=True)
class _Finish:
    episode: _Episode
    outcome: Outcome | None  # None: discard
    done: concurrent.futures.Future[Path | None]


_Job = _Episode | _Step | _Event | _Finish | None  # None: the worker ends


class Recorder:
    """Records episodes from the control loop; an async context manager (see module)."""

    def __init__(self, config: RecorderConfig, contract: Contract,
                 metadata: Mapping[str, str | int | float | bool] | None = None) -> None:
        self.config, self.contract = config, contract
        self.metadata = dict(metadata or {})
        for key, value in self.metadata.items():
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"recorder metadata {key!r} must be a str, int, float or "
                                 f"bool, got {type(value).__name__}")
        taken = set(self.metadata) & _RESERVED
        if taken:
            raise ValueError(f"recorder metadata may not be named {sorted(taken)}: the "
                             "episode format or the recorder uses these attributes")
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards what both threads touch below
        self._current: _Episode | None = None
        self._queued_steps = 0
        self._dropped = 0
        self._written = 0
        self._counts = np.zeros(contract.n_actions, np.int64)  # [n_actions]
        self._error: str | None = None
        self._leftovers: tuple[str, ...] = ()
        self._sequence = 0
        self._last_step_s: float | None = None

    async def __aenter__(self) -> Self:
        self._leftovers = await asyncio.to_thread(self._prepare_directory)
        self._thread = threading.Thread(target=self._work, name="recorder", daemon=True)
        self._thread.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Finish an episode still recording as "aborted", then end the worker."""
        if self._thread is None:
            return
        if self.recording:
            with contextlib.suppress(RecorderError):  # already logged and in the status
                await self.stop(Outcome.ABORTED)
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    # --- the control loop's calls (never wait on the disk) --------------------------------

    @property
    def recording(self) -> bool:
        """An episode is being recorded (false again after a write error)."""
        with self._lock:
            return self._current is not None

    @property
    def status(self) -> RecorderStatus:
        """What the console shows."""
        with self._lock:
            ep = self._current
            return RecorderStatus(
                recording=ep is not None, episode=ep.path.name if ep else None,
                steps=ep.steps if ep else 0, episodes_written=self._written,
                action_counts={a: int(n) for a, n in
                               zip(self.contract.actions, self._counts, strict=True)},
                dropped_steps=self._dropped, error=self._error,
                takeover=ep.takeover if ep else False, leftover_partials=self._leftovers,
                last_step_s=self._last_step_s)

    def start(self, source: str, now_s: float) -> str:
        """Begin an episode driven by ``source`` (one of MODES); returns its file name."""
        if source not in MODES:
            raise ValueError(f"recording source must be one of {MODES}, got {source!r}")
        if self._thread is None:
            raise RecorderError("the recorder is not running (use it in 'async with')")
        with self._lock:
            if self._current is not None:
                raise RecorderError(f"already recording {self._current.path.name}")
            ep = _Episode(self._new_path(), source)
            self._current, self._error = ep, None
        log.info("recording %s (%s) from t=%.3f s", ep.path.name, source, now_s)
        self._jobs.put(ep)
        return ep.path.name

    def add_step(self, images: Mapping[str, np.ndarray], captured_s: Mapping[str, float],
                 action: Action | int, telemetry: Mapping[str, float] | None = None, *,
                 now_s: float) -> bool:
        """Queue one control step: every contract camera's latest frame [h, w, 3] uint8 (any
        size; fitted to the contract as the policy sees it), its capture time, the executed
        action and optional telemetry (names of ``zima.episodes.TELEMETRY_FIELDS``).

        True when queued; False when not recording or dropped (the writer is behind). The
        arrays are kept, not copied, until written: do not modify them afterwards."""
        c = self.contract
        if set(images) != set(c.cameras) or set(captured_s) != set(c.cameras):
            raise ValueError(f"a step needs images and captured_s of cameras {c.cameras}, got "
                             f"{sorted(images)} and {sorted(captured_s)}")
        for cam, img in images.items():
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"camera {cam!r}: expected an [h, w, 3] uint8 image, got "
                                 f"{img.dtype} {list(img.shape)}")
        if not 0 <= int(action) < c.n_actions:
            raise ValueError(f"action {action} is not in 0..{c.n_actions - 1}")
        telemetry = {k: float(v) for k, v in (telemetry or {}).items()}
        unknown = set(telemetry) - set(TELEMETRY_FIELDS)
        if unknown:
            raise ValueError(f"unknown telemetry {sorted(unknown)}; known: {TELEMETRY_FIELDS}")
        with self._lock:
            ep = self._current
            if ep is None:
                return False
            fields = tuple(sorted(telemetry))
            if ep.telemetry is not None and fields != ep.telemetry:
                raise ValueError(f"every step must carry the telemetry of the first, "
                                 f"{list(ep.telemetry)}; got {list(fields)}")
            if self._queued_steps >= self.config.max_queued_steps:
                self._dropped += 1
                return False
            ep.telemetry = fields
            ep.steps += 1
            self._last_step_s = now_s
            self._queued_steps += 1
            # The row's time: the oldest of its frames, so no camera's frame looks fresher.
            step = _Step(ep, dict(images), min(captured_s.values()), int(action), ep.takeover,
                         telemetry)
        self._jobs.put(step)
        return True

    def mark_event(self, kind: str, now_s: float) -> bool:
        """Note a take-over by the operator or a hand-back to the policy; True if recording.

        Steps added after a "takeover" and before the next "handback" are marked as the
        operator's (``operator_takeover``)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {EVENT_KINDS}, got {kind!r}")
        with self._lock:
            ep = self._current
            if ep is None:
                return False
            ep.takeover = kind == "takeover"
        self._jobs.put(_Event(ep, kind, now_s))
        return True

    async def stop(self, outcome: Outcome | str) -> Path:
        """End the episode with ``outcome`` and publish it; its final path.

        RecorderError when not recording or when it could not be written."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {[str(o) for o in OUTCOMES]}, "
                             f"got {outcome!r}")
        result = await self._finish(Outcome(outcome))
        assert result is not None
        return result

    async def discard(self) -> None:
        """Drop the episode being recorded (its partial file is removed)."""
        await self._finish(None)

    # --- internals --------------------------------------------------------------------------

    async def _finish(self, outcome: Outcome | None) -> Path | None:
        with self._lock:
            ep = self._current
            if ep is None:
                why = f" (the last episode failed: {self._error})" if self._error else ""
                raise RecorderError(f"not recording{why}")
            self._current = None  # a new start may follow at once; the worker finishes this
        done: concurrent.futures.Future[Path | None] = concurrent.futures.Future()
        self._jobs.put(_Finish(ep, outcome, done))
        # Shielded: a cancelled caller must not leave the episode half finished.
        return await asyncio.shield(asyncio.wrap_future(done))

    def _prepare_directory(self) -> tuple[str, ...]:
        directory = self.config.directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
            leftovers = tuple(sorted(p.name for p in directory.glob(f"*{PARTIAL_SUFFIX}")))
        except OSError as exc:
            raise RecorderError(f"episode folder {directory} is unusable: {exc}") from exc
        if leftovers:
            log.warning("%d unfinished episode(s) in %s from an earlier crash (left as they "
                        "are): %s", len(leftovers), directory, ", ".join(leftovers))
        return leftovers

    def _new_path(self) -> Path:
        """A fresh file name: UTC start time and this session's sequence number."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        while True:
            self._sequence += 1
            path = self.config.directory / f"{self.config.scene}_{stamp}_{self._sequence:03d}.h5"
            partial = path.with_name(path.name + PARTIAL_SUFFIX)
            if not path.exists() and not partial.exists():
                return path

    def _work(self) -> None:
        """The worker thread: runs the jobs in order until None."""
        while (job := self._jobs.get()) is not None:
            ep = job if isinstance(job, _Episode) else job.episode
            try:
                self._do(job)
            except (EpisodeWriteError, OSError) as exc:
                self._fail(ep, _describe(exc, ep.path))
            except Exception as exc:  # a bug here must not end all recording
                log.exception("recorder: unexpected error on %s", ep.path.name)
                self._fail(ep, f"recording {ep.path.name} failed: {exc!r}")
            if isinstance(job, _Finish) and not job.done.done():  # _do did not answer
                _resolve(job.done, RecorderError(ep.error or f"{ep.path.name} not written"))

    def _do(self, job: _Job) -> None:
        c = self.contract
        match job:
            case _Episode() as ep:
                info = EpisodeInfo(self.config.source, self.config.scene, outcome="unknown")
                ep.writer = EpisodeWriter(ep.path, info, c, flush_every=self.config.flush_every)
                ep.writer.set_attributes({**self.metadata, "mode": ep.mode})
                ep.counts = np.zeros(c.n_actions, np.int64)
            case _Step(episode=ep):
                with self._lock:
                    self._queued_steps -= 1
                if ep.error or ep.writer is None:
                    return
                images = {cam: fit_image(img, c.image_height, c.image_width)
                          for cam, img in job.images.items()}  # cam -> [H, W, 3]
                ep.writer.append(images, job.action, job.timestamp_s,
                                 operator_takeover=job.takeover, telemetry=job.telemetry)
                ep.written += 1
                assert ep.counts is not None
                ep.counts[job.action] += 1
            case _Event(episode=ep):
                ep.events.append({"kind": job.kind, "t_s": job.t_s, "step": ep.written})
            case _Finish(episode=ep, outcome=None):
                if ep.writer is not None:
                    ep.writer.abort()
                ep.writer = None
                with contextlib.suppress(FileNotFoundError):
                    _partial(ep.path).unlink()
                log.info("discarded %s (%d steps)", ep.path.name, ep.written)
                _resolve(job.done, None)
            case _Finish(episode=ep, outcome=outcome):
                if ep.error or ep.writer is None:
                    return  # the worker's loop answers with the error
                ep.writer.set_outcome(str(outcome))
                ep.writer.set_attributes({"events": json.dumps(ep.events)})
                path = ep.writer.close()  # fsynced, renamed, its folder fsynced
                assert ep.counts is not None
                with self._lock:
                    self._written += 1
                    self._counts += ep.counts
                log.info("recorded %s: %d steps, %s", path.name, ep.written, outcome)
                _resolve(job.done, path)

    def _fail(self, ep: _Episode, message: str) -> None:
        """End ``ep`` after a write error: no file under its name, the error in the status."""
        if ep.writer is not None:
            ep.writer.abort()
            ep.writer = None
        removed = False
        with contextlib.suppress(OSError):
            _partial(ep.path).unlink()
            removed = True
        message += "; its partial file was removed" if removed else ""
        ep.error = message
        log.error("%s; recording stopped, driving goes on", message)
        with self._lock:
            self._error = message
            if self._current is ep:
                self._current = None


_FULL: Final = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_RESERVED: Final = frozenset({"format", "format_version", METADATA_KEY, "n_steps", "mode",
                              "events", *EpisodeInfo.__dataclass_fields__})


def _partial(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _describe(exc: BaseException, path: Path) -> str:
    """``writing <path> failed: <errno text>``, from the OSError under ``exc``."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__
    text = " ".join(str(cause or exc).split())  # libhdf5's messages span lines
    # libhdf5 raises OSErrors without errno, naming it in the text ("errno = 28, ...").
    code = cause.errno if isinstance(cause, OSError) else None
    found = re.search(r"errno = (\d+)", text)
    code = int(found.group(1)) if code is None and found else code
    if code is None:
        return f"writing episode {path} failed: {text}"
    full = " (disk full or file too large)" if code in _FULL else ""
    return f"writing episode {path} failed: [Errno {code}] {os.strerror(code)}{full}"


def _resolve(future: concurrent.futures.Future[Path | None],
             result: Path | BaseException | None) -> None:
    """Answer a waiting stop/discard; it may have been cancelled meanwhile."""
    with contextlib.suppress(concurrent.futures.InvalidStateError):
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
