"""Films of the sim's cameras: the one video writer of `zima sim expert --video`,
`zima sim eval`/`suite` and `zima sim run`.

    with VideoWriter(path, fps=10.0, size_wh=(128, 96), scale=4) as video:
        video.add(image_rgb, ["seed 7  t 1.2 s", "FORWARD"])   # [H, W, 3] uint8 RGB

Each frame is enlarged ``scale`` times (nearest neighbour: contract images are small, and
the overlaid text must be legible) and gets its lines of text in the top left corner,
white on a black outline. The codec follows the file's suffix (:data:`CODECS`). OpenCV is
imported when a video is opened, so that a command line can name the suffixes cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

__all__ = ["CODECS", "VideoWriter"]

# Video codecs by file suffix: both are in opencv-python-headless's own FFmpeg (avc1/H.264
# is not, so no .mp4 with H.264).
CODECS = {".mp4": "mp4v", ".avi": "MJPG"}
LINE_PX = 24  # text line pitch in the enlarged frame


class VideoWriter:
    """A video file being written (see the module docstring); ``frames`` counts them."""

    def __init__(self, path: Path, fps: float, size_wh: tuple[int, int], scale: int = 1) -> None:
        import cv2  # noqa: PLC0415 -- see the module docstring

        if path.suffix not in CODECS:
            raise ValueError(f"{path}: a video must end in one of {', '.join(CODECS)}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.scale = path, scale
        self.size = (size_wh[0] * scale, size_wh[1] * scale)
        codec = CODECS[path.suffix]
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps,
                                       self.size)
        if not self._writer.isOpened():
            raise RuntimeError(f"OpenCV cannot write {path} (codec {codec})")
        self.frames = 0

    def add(self, image_rgb: np.ndarray, lines: Sequence[str] = ()) -> None:
        """Append ``image_rgb`` [H, W, 3] uint8 with ``lines`` of text on it."""
        import cv2  # noqa: PLC0415

        frame = np.ascontiguousarray(image_rgb[:, :, ::-1])  # OpenCV wants BGR
        if self.scale != 1:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_NEAREST)
        for i, text in enumerate(lines):
            origin = (8, LINE_PX * (i + 1))
            for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, width,
                            cv2.LINE_AA)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        self._writer.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
