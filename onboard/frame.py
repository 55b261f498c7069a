"""``Frame``: what a camera delivers (:mod:`zima.onboard.camera`), one image and when it
was captured; the runtime keeps each camera's newest for the policy and the web console."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Frame"]


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured image and when it was captured."""

    camera: str
    image_rgb: np.ndarray  # [H, W, 3] uint8 RGB, centre-cropped, native resolution
    captured_s: float  # camera clock when the frame was grabbed
    seq: int  # frames delivered by this camera so far (a consumer can tell what it skipped)
    # [h, w, 3] uint8 RGB at the policy's input size (``CameraOptions(fit_to=...)``), made
    # on the capture thread so the control loop never resizes; None when not asked for.
    fitted: np.ndarray | None = None
