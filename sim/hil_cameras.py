"""The runtime's cameras in the sim: renders handed from the physics thread to the runtime's
camera threads through the same ``Capture`` interface a real camera has.

- :class:`FrameHub` keeps the newest render of each camera (the physics thread publishes);
- :class:`SimCapture` is a ``Capture`` (what the runtime's camera thread uses of
  ``cv2.VideoCapture``) over one camera of the hub: ``grab()`` blocks until a newer frame
  exists;
- :func:`sim_opener` is the runtime's ``camera_opener`` for ``sim:<camera>`` sources.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from zima.onboard.camera import Capture
from zima.onboard.camera_config import CameraConfig, CameraOpenError

__all__ = ["SOURCE_PREFIX", "FrameHub", "SimCapture", "sim_opener"]

SOURCE_PREFIX = "sim:"  # CameraConfig.source of a rendered camera: "sim:forward"


class FrameHub:
    """The newest render of each camera, handed from the physics thread to camera threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frames: dict[str, tuple[int, np.ndarray]] = {}  # name -> (seq, [H, W, 3] BGR)
        self._closed = False

    def publish(self, camera: str, image_rgb: np.ndarray) -> None:
        bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])  # what OpenCV delivers
        with self._cond:
            seq = self._frames.get(camera, (0, bgr))[0] + 1
            self._frames[camera] = (seq, bgr)
            self._cond.notify_all()

    def wait_newer(self, camera: str, seen: int, timeout_s: float) -> tuple[int, np.ndarray] | None:
        """The camera's newest frame once its seq is above ``seen``; None on timeout or close."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._frames.get(camera, (0, None))[0] > seen, timeout_s)
            frame = self._frames.get(camera)
            if self._closed or frame is None or frame[0] <= seen:
                return None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class SimCapture:
    """A ``Capture`` over one rendered camera (see the module docstring)."""

    def __init__(self, hub: FrameHub, camera: str, timeout_s: float = 1.0) -> None:
        self._hub, self._camera, self._timeout_s = hub, camera, timeout_s
        self._seen = 0
        self._image: np.ndarray | None = None

    def grab(self) -> bool:
        frame = self._hub.wait_newer(self._camera, self._seen, self._timeout_s)
        if frame is None:
            return False  # the sim stalled or stopped: the camera reports it and retries
        self._seen, self._image = frame
        return True

    def retrieve(self) -> tuple[bool, np.ndarray | None]:
        return self._image is not None, self._image

    def release(self) -> None:
        self._image = None


def sim_opener(hub: FrameHub) -> Callable[[CameraConfig], Capture]:
    """The runtime's ``camera_opener`` for ``sim:<camera>`` sources."""

    def open_sim(config: CameraConfig) -> Capture:
        source = config.source
        if not (isinstance(source, str) and source.startswith(SOURCE_PREFIX)):
            raise CameraOpenError(f"camera {config.name!r}: {source!r} is no sim camera")
        return SimCapture(hub, source.removeprefix(SOURCE_PREFIX))

    return open_sim
