"""What a camera is configured with, what it reports, and what it raises (the frames it
delivers: :mod:`zima.onboard.frame`).

The exception tree of :mod:`zima.onboard.camera` (OpenCV's own errors never leak)::

    CameraError             anything a camera raises
     +-- CameraOpenError    the source cannot be opened (at start-up: raised; later: retried)
     +-- CameraReadError    the source stopped delivering frames (always retried)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from zima.tomlconfig import require_positive

__all__ = [
    "CameraConfig",
    "CameraError",
    "CameraOpenError",
    "CameraReadError",
    "CameraState",
    "CameraStatus",
    "default_cameras",
]


class CameraError(Exception):
    """Base of everything a camera raises."""


class CameraOpenError(CameraError):
    """The source could not be opened (no such device, path or stream)."""


class CameraReadError(CameraError):
    """The source stopped delivering frames (unplugged, stream ended, driver error)."""


@dataclass(frozen=True, slots=True)
class CameraConfig:
    """One camera. Times in seconds; the capture properties are requests to the driver."""

    name: str = "forward"  # the contract's camera name this source feeds
    source: int | str = 0  # V4L2 device index or path, or a file / URL (tests, recorded runs)
    width_px: int = 640  # requested capture size: the driver may pick the nearest it has
    height_px: int = 480
    fps: float = 30.0  # requested frame rate; well above control_hz so frames are fresh
    exposure: float | None = None  # None keeps auto exposure; else CAP_PROP_EXPOSURE units
    crop: float = 1.0  # keep this central fraction of width and height (cuts a fisheye rim)
    stale_after_s: float = 0.25  # a newest frame older than this is reported stale
    open_timeout_s: float = 5.0  # entering waits this long for the first open attempt
    retry_min_s: float = 0.1  # first pause before reopening a failed source
    retry_max_s: float = 2.0  # backoff doubles up to this (a replugged USB camera takes ~1 s)

    def __post_init__(self) -> None:
        require_positive(self, ("width_px", "height_px", "fps", "stale_after_s",
                                "open_timeout_s", "retry_min_s", "retry_max_s"))
        if not 0 < self.crop <= 1:
            raise ValueError(f"CameraConfig.crop={self.crop} must be in (0, 1]")
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("CameraConfig.retry_max_s must not be below retry_min_s")


class CameraState(StrEnum):
    OPENING = "opening"  # not yet delivered a frame since the last (re)open
    STREAMING = "streaming"  # frames arriving
    FAILED = "failed"  # open or read failed; the thread waits, then retries
    STOPPED = "stopped"  # the context was left


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """What a camera is doing; ``stale`` and ``age_s`` as of the time asked about."""

    name: str
    state: CameraState
    error: str | None  # the last failure, kept until the next frame arrives
    frames: int  # frames delivered over the camera's life (all reopens)
    failures: int  # open and read failures over its life
    age_s: float | None  # age of the newest frame; None before the first
    stale: bool  # no frame yet, or the newest is older than stale_after_s


def default_cameras() -> tuple[CameraConfig, ...]:
    """The robot's two cameras, at udev symlinks (``/dev/video*`` numbers change on replug)."""
    return (
        CameraConfig(name="forward", source="/dev/zima-cam-forward"),
        CameraConfig(name="wrist", source="/dev/zima-cam-wrist"),
    )
