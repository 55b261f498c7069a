"""Cameras: one capture thread per camera, each keeping only its newest frame.

A ``Camera`` is an async context manager. Entering starts its thread and waits for the
first open of the source: a wrong device or path is found at start-up and raised as
``CameraOpenError``, not later. From then on the thread reads frames as fast as the source
delivers them, stamps each at capture (after ``grab``, before the decode) with the
injected monotonic clock, centre-crops it, converts it to RGB and keeps only the newest.
When the source fails (a read fails, the device is unplugged, a file ends) the camera
reports it (``status``, a log line, ``on_status``) and reopens the source with
exponential backoff until it is back. ``on_frame`` (optional) is called on the event loop
with the camera's name as each new frame is kept, so a consumer can act on a frame between
its own ticks (the runtime plans on the driving camera's frames). A consumer never waits::

    async with Camera(CameraConfig(name="forward", source=0)) as cam:
        frame = cam.latest()              # Frame | None; frame.image_rgb [H, W, 3] uint8
        cam.status(clock()).stale         # no frame yet, or older than stale_after_s

``CameraRig`` holds several cameras (forward and wrist by default) under one ``async
with``. The one hardware seam is :func:`open_capture` (``cv2.VideoCapture`` on a device
index, a device path, a file or a URL); configuration and exceptions are in
:mod:`zima.onboard.camera_config`, the ``Frame`` in :mod:`zima.onboard.frame`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import cv2
import numpy as np

from zima.onboard.camera_config import (
    CameraConfig,
    CameraError,
    CameraOpenError,
    CameraReadError,
    CameraState,
    CameraStatus,
    default_cameras,
)
from zima.onboard.frame import Frame
from zima.onboard.fusion import fit_image

__all__ = ["Camera", "CameraOptions", "CameraRig", "Capture", "centre_crop", "open_capture"]

log = logging.getLogger("zima.onboard.camera")

JOIN_TIMEOUT_S = 2.0  # a driver stuck in a read cannot be interrupted: give up waiting


class Capture(Protocol):
    """What a camera uses of ``cv2.VideoCapture``."""

    def grab(self) -> bool: ...
    def retrieve(self) -> tuple[bool, np.ndarray | None]: ...
    def release(self) -> None: ...


def open_capture(config: CameraConfig) -> Capture:
    """The hardware seam: open ``config.source`` with OpenCV and request its properties."""
    source = config.source
    v4l2_path = isinstance(source, str) and source.startswith("/dev/")
    cap = cv2.VideoCapture(source, cv2.CAP_V4L2) if v4l2_path else cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise CameraOpenError(f"camera {config.name!r}: cannot open source {source!r}")
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, config.width_px)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, config.height_px)
    cap.set(cv2.CAP_PROP_FPS, config.fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2: do not queue old frames behind the newest
    if config.exposure is not None:
        cap.set(cv2.CAP_PROP_AUTO_EXPOSURE, 1)  # V4L2's "manual" (the value is per backend)
        cap.set(cv2.CAP_PROP_EXPOSURE, config.exposure)
    return cap


def centre_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    """The central ``fraction`` of an [H, W, ...] image's height and width (a view)."""
    if fraction >= 1:
        return image
    h, w = image.shape[:2]
    ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[top : top + ch, left : left + cw]


@dataclass(frozen=True, slots=True)
class CameraOptions:
    """What a camera (or each camera of a rig) is handed besides its config."""

    clock: Callable[[], float] = time.monotonic  # monotonic seconds: frames stamped by it
    opener: Callable[[CameraConfig], Capture] = open_capture  # the hardware seam
    on_status: Callable[[CameraStatus], None] | None = None  # on the loop, per state change
    fit_to: tuple[int, int] | None = None  # (height, width): also deliver Frame.fitted
    on_frame: Callable[[str], None] | None = None  # on the loop with the name, per frame


class Camera:
    """One camera and its capture thread; see the module docstring."""

    def __init__(self, config: CameraConfig, options: CameraOptions = CameraOptions()) -> None:
        self.config = config
        self._options = options
        self._lock = threading.Lock()  # guards everything below that the thread writes
        self._frame: Frame | None = None
        self._state = CameraState.OPENING
        self._error: str | None = None
        self._frames = self._failures = 0
        self._frames_since_open = 0  # written by the thread only
        self._first_attempt = threading.Event()
        self._first_open_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._run, name=f"camera-{self.config.name}", daemon=True)
        self._thread.start()
        attempted = await asyncio.to_thread(self._first_attempt.wait, self.config.open_timeout_s)
        error = self._first_open_error if attempted else (
            f"camera {self.config.name!r}: {self.config.source!r} did not open within "
            f"{self.config.open_timeout_s} s")
        if error is not None:
            await self.aclose()
            raise CameraOpenError(error)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the thread (waiting at most ``JOIN_TIMEOUT_S`` for a read in progress)."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                log.warning("camera %r: capture thread stuck in a read", self.config.name)
        self._set(CameraState.STOPPED, self._error)

    # ---- what consumers see -------------------------------------------------------------
    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""
        with self._lock:
            return self._frame

    def status(self, now_s: float) -> CameraStatus:
        """State, counters and staleness of the newest frame as of ``now_s``."""
        with self._lock:
            age_s = None if self._frame is None else now_s - self._frame.captured_s
            return CameraStatus(
                name=self.config.name, state=self._state, error=self._error,
                frames=self._frames, failures=self._failures, age_s=age_s,
                stale=age_s is None or age_s > self.config.stale_after_s)

    # ---- the capture thread -------------------------------------------------------------
    def _run(self) -> None:
        cfg = self.config
        backoff_s = cfg.retry_min_s
        while not self._stop.is_set():  # the state stays FAILED while it retries
            try:
                cap = self._options.opener(cfg)
            except (CameraError, cv2.error) as exc:
                self._fail(f"{exc}", first_attempt=True)
            else:
                self._first_attempt.set()
                try:
                    self._stream(cap)
                    backoff_s = cfg.retry_min_s  # ended cleanly (stop): not a failure
                except (CameraError, cv2.error) as exc:
                    if self._frames_since_open > 0:
                        backoff_s = cfg.retry_min_s  # it worked for a while: retry soon
                    self._fail(f"{exc}")
                finally:
                    cap.release()
            if self._stop.wait(backoff_s):
                break
            backoff_s = min(2 * backoff_s, cfg.retry_max_s)

    def _stream(self, cap: Capture) -> None:
        cfg = self.config
        self._frames_since_open = 0
        while not self._stop.is_set():
            if not cap.grab():
                raise CameraReadError(
                    f"camera {cfg.name!r}: no frame from {cfg.source!r} "
                    "(unplugged, stream ended or driver error)")
            captured_s = self._options.clock()  # at capture: before the decode's few milliseconds
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                raise CameraReadError(f"camera {cfg.name!r}: cannot decode a frame")
            rgb = cv2.cvtColor(centre_crop(bgr, cfg.crop), cv2.COLOR_BGR2RGB)  # [h, w, 3] uint8
            fitted = None if self._options.fit_to is None else fit_image(rgb, *self._options.fit_to)
            self._frames_since_open += 1
            with self._lock:
                self._frames += 1
                self._frame = Frame(cfg.name, rgb, captured_s, self._frames, fitted)
            if self._options.on_frame is not None and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # the loop closed under the thread
                    self._loop.call_soon_threadsafe(self._options.on_frame, cfg.name)
            if self._state is not CameraState.STREAMING:
                self._set(CameraState.STREAMING, None)
                log.info("camera %r: streaming from %r", cfg.name, cfg.source)

    def _fail(self, error: str, *, first_attempt: bool = False) -> None:
        with self._lock:
            self._failures += 1
            streak = self._state is CameraState.FAILED
        if first_attempt and not self._first_attempt.is_set():
            self._first_open_error = error
            self._first_attempt.set()
        log.log(logging.DEBUG if streak else logging.WARNING, "%s; retrying", error)
        self._set(CameraState.FAILED, error)

    def _set(self, state: CameraState, error: str | None) -> None:
        with self._lock:
            changed = (state, error) != (self._state, self._error)
            self._state, self._error = state, error
        if changed and self._options.on_status is not None and self._loop is not None:
            status = self.status(self._options.clock())
            with contextlib.suppress(RuntimeError):  # the loop closed under a stuck thread
                self._loop.call_soon_threadsafe(self._options.on_status, status)


class CameraRig:
    """Several cameras under one ``async with`` (the contract's, forward and wrist)."""

    def __init__(self, configs: Sequence[CameraConfig] | None = None,
                 options: CameraOptions = CameraOptions()) -> None:
        configs = default_cameras() if configs is None else tuple(configs)
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"CameraRig: camera names must be distinct: {names}")
        self.cameras = {c.name: Camera(c, options) for c in configs}
        self._stack = contextlib.AsyncExitStack()
        self._seen: dict[str, int] = dict.fromkeys(names, 0)

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            for camera in self.cameras.values():
                await stack.enter_async_context(camera)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stack.aclose()

    def status(self, now_s: float) -> dict[str, CameraStatus]:
        return {name: cam.status(now_s) for name, cam in self.cameras.items()}

    def new_frames(self) -> list[Frame]:
        """Each camera's newest frame if it arrived since the last call (to feed fusion)."""
        fresh = []
        for name, cam in self.cameras.items():
            frame = cam.latest()
            if frame is not None and frame.seq != self._seen[name]:
                self._seen[name] = frame.seq
                fresh.append(frame)
        return fresh
