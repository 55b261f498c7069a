"""Camera streams for the runtime's tests, through OpenCV's own capture path.

``write_video`` writes an MJPG .avi with ``cv2.VideoWriter``; ``PacedVideo`` reads it back
with ``cv2.VideoCapture`` like the runtime reads a USB camera, but delivers frames at the
camera's configured rate and starts over at the end, as a live camera would (a file read
flat out would hand the capture thread hundreds of frames a second and end after a blink).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from zima.onboard.camera_config import CameraConfig, CameraOpenError

__all__ = ["PacedVideo", "write_video"]


def write_video(path: Path, n_frames: int, size_wh: tuple[int, int] = (160, 120),
                bgr: tuple[int, int, int] = (0, 160, 0)) -> Path:
    """An MJPG .avi of ``n_frames`` frames of one colour with a moving grey bar."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, size_wh)
    assert writer.isOpened()
    w, h = size_wh
    for i in range(n_frames):
        image = np.zeros((h, w, 3), np.uint8)  # [H, W, 3] BGR
        image[:] = bgr
        x = (i * 4) % w
        image[:, x : x + 4] = 128
        writer.write(image)
    writer.release()
    return path


class PacedVideo:
    """A ``Capture`` (see zima.onboard.camera) over a video file, paced to ``config.fps``.

    ``closed`` set from outside makes ``grab`` fail, as an unplugged camera does.
    """

    unplugged = threading.Event()  # class-wide: a test pulls every camera's cable at once

    def __init__(self, config: CameraConfig) -> None:
        self._capture = cv2.VideoCapture(str(config.source))
        if not self._capture.isOpened():
            raise CameraOpenError(f"cannot open {config.source}")
        self._period_s = 1.0 / config.fps
        self._next_s = time.monotonic()

    def grab(self) -> bool:
        if PacedVideo.unplugged.is_set():
            return False
        delay = self._next_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_s = max(self._next_s + self._period_s, time.monotonic())
        if self._capture.grab():
            return True
        self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # loop, like a live stream
        return bool(self._capture.grab())

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        ok, image = self._capture.retrieve()
        return bool(ok), image if ok else None

    def release(self) -> None:
        self._capture.release()
