"""Frame fusion: camera frames and executed actions in, the contract's observation out.

Pure and deterministic: no clock, no I/O; every time is passed in, so the simulator can
run the same code in lock-step and a recorded run replays exactly. For a contract ``c``:

- ``push(camera, image_rgb, captured_s)`` centre-crops a frame to the contract's aspect,
  resizes it to ``c.image_height x c.image_width`` (area interpolation) and keeps it in
  that camera's ring buffer, which spans the image history plus one interval;
- ``record_action(action)`` appends an executed action (STOP fills the history at start);
- ``observe(now_s)`` builds::

      images          uint8 [1, len(c.cameras) * c.image_history, H, W, 3]  RGB
                      camera-major, oldest to newest; for history slot t (newest
                      t = image_history - 1) the buffered frame captured nearest to
                      newest_s - (image_history - 1 - t) * c.frame_interval_s; before
                      the buffer reaches that far back, its oldest frame repeats
                      (as the simulator repeats its first frame after reset)
      action_history  int64 [1, c.action_history]  oldest first, then ``pending``

  and raises ``StaleObservationError`` (naming every stale camera and why) when a
  camera has no frame or its newest is older than ``max_frame_age_s`` at ``now_s``.

``pending`` lets a planner that starts early pass the actions still queued ahead of
the chunk it plans: the history then reads as it will be when that chunk starts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from zima.contract import Action, Contract

__all__ = ["FrameFusion", "FusionConfig", "Observation", "StaleObservationError", "fit_image"]


class StaleObservationError(Exception):
    """No observation now: a camera has no frame, or its newest is too old (``reasons``)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("stale observation: " + "; ".join(reasons))
        self.reasons = tuple(reasons)


@dataclass(frozen=True, slots=True)
class FusionConfig:
    """How fresh the policy's input must be. Times in seconds."""

    # The newest frame of every camera must be at most this old when the policy plans:
    # at 0.3 m/s a quarter second is 7.5 cm driven blind. Cameras run at ~30 frames/s.
    max_frame_age_s: float = 0.25

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_frame_age_s) and self.max_frame_age_s > 0):
            raise ValueError(f"FusionConfig.max_frame_age_s={self.max_frame_age_s} "
                             "must be a positive number")


@dataclass(frozen=True, slots=True)
class Observation:
    """One policy input, exactly as the contract declares it."""

    images: np.ndarray  # [1, N, H, W, 3] uint8 RGB, N = cameras * image_history
    action_history: np.ndarray  # [1, action_history] int64
    newest_s: tuple[float, ...]  # capture time of each camera's newest frame, contract order


def fit_image(image_rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop an [h, w, 3] image to the aspect ``width / height`` and resize it to
    [height, width, 3] (area interpolation when shrinking, linear when enlarging)."""
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an [h, w, 3] uint8 image, got {image_rgb.shape} "
                         f"{image_rgb.dtype}")
    h, w = image_rgb.shape[:2]
    if w * height > h * width:  # too wide: trim the sides
        cw, ch = max(1, round(h * width / height)), h
    else:  # too tall: trim top and bottom
        cw, ch = w, max(1, round(w * height / width))
    top, left = (h - ch) // 2, (w - cw) // 2
    cropped = image_rgb[top : top + ch, left : left + cw]  # [ch, cw, 3]
    if (ch, cw) == (height, width):
        return np.ascontiguousarray(cropped)
    shrink = ch >= height and cw >= width
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(cropped, (width, height), interpolation=interpolation)


class FrameFusion:
    """Ring buffers of fitted frames per camera and the executed actions; pure."""

    def __init__(self, contract: Contract, config: FusionConfig | None = None) -> None:
        self.contract = contract
        self.config = config or FusionConfig()
        # Frames kept per camera: the history's span plus one interval, as (time, image).
        self._span_s = contract.image_history * contract.frame_interval_s
        self._frames: dict[str, deque[tuple[float, np.ndarray]]] = {
            cam: deque() for cam in contract.cameras}
        self._actions: deque[int] = deque(maxlen=contract.action_history)
        self.reset()

    def reset(self) -> None:
        """Start an episode: no frames, a history of STOP."""
        for frames in self._frames.values():
            frames.clear()
        self._actions.clear()
        self._actions.extend([int(Action.STOP)] * self.contract.action_history)

    def push(self, camera: str, image_rgb: np.ndarray, captured_s: float) -> None:
        """Add one frame ([h, w, 3] uint8 RGB, any size) of ``camera``, captured at
        ``captured_s``; a frame not newer than the camera's newest is ignored."""
        if camera not in self._frames:
            raise ValueError(f"camera {camera!r} is not in the contract {self.contract.cameras}")
        frames = self._frames[camera]
        if frames and captured_s <= frames[-1][0]:
            return
        c = self.contract
        frames.append((captured_s, fit_image(image_rgb, c.image_height, c.image_width)))
        while len(frames) > 1 and frames[1][0] <= captured_s - self._span_s:
            frames.popleft()  # keep one frame at or before the span's start

    def record_action(self, action: Action | int) -> None:
        """An action was executed (what the robot did, STOP included)."""
        self._actions.append(int(Action(action)))

    def stale_reasons(self, now_s: float) -> list[str]:
        """Why no observation can be made at ``now_s``; empty when every camera is fresh."""
        reasons = []
        for cam, frames in self._frames.items():
            if not frames:
                reasons.append(f"camera {cam!r}: no frame yet")
            elif (age_s := now_s - frames[-1][0]) > self.config.max_frame_age_s:
                reasons.append(f"camera {cam!r}: newest frame {age_s:.3f} s old "
                               f"(limit {self.config.max_frame_age_s} s)")
        return reasons

    def observe(self, now_s: float, pending: Sequence[int] = ()) -> Observation:
        """The observation at ``now_s`` (see the module docstring)."""
        reasons = self.stale_reasons(now_s)
        if reasons:
            raise StaleObservationError(reasons)
        c = self.contract
        images = []
        for frames in self._frames.values():
            newest_s = frames[-1][0]
            for t in range(c.image_history):
                target_s = newest_s - (c.image_history - 1 - t) * c.frame_interval_s
                images.append(min(frames, key=lambda f: abs(f[0] - target_s))[1])
        history = ([*self._actions, *map(int, pending)][-c.action_history :]
                   if c.action_history else [])
        return Observation(
            images=np.stack(images)[np.newaxis],  # [1, N, H, W, 3] uint8
            action_history=np.array([history], np.int64).reshape(1, c.action_history),
            newest_s=tuple(frames[-1][0] for frames in self._frames.values()),
        )
