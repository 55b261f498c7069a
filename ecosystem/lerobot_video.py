"""MP4 streams of a LeRobot dataset through PyAV: one camera's episodes written end to end,
and read back in order one episode at a time.

Frames are H.264 (libx264), yuv420p: what every LeRobot decoder (torchcodec, PyAV) and
every browser plays, which AV1 is not everywhere. The frame ``k`` of a file is shown at
``k / fps`` exactly (time base 1/fps), so an episode's ``from_timestamp`` is its first
frame's index over fps. ``crf`` 18 with a key frame every 2 frames (LeRobot's ``g=2``:
random access to any frame decodes at most one other) keeps the policy's small frames
close to the originals; the tests hold the round trip's error to a stated bound.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import av
import numpy as np

from zima.ecosystem.lerobot_layout import LeRobotFormatError

CODEC: Final = "libx264"
PIX_FMT: Final = "yuv420p"
CRF: Final = 18
GOP: Final = 2
# Decoding errors of a damaged file: PyAV's own (av.error.FFmpegError is an OSError and
# a ValueError) and what a truncated container raises.
_DAMAGE: Final = (av.error.FFmpegError, OSError, ValueError, EOFError, IndexError)


class VideoWriter:
    """One camera's MP4: ``write(frames)`` per episode, ``frames`` counts what was written."""

    def __init__(self, path: Path, fps: int, height: int, width: int, crf: int = CRF) -> None:
        if height % 2 or width % 2:
            raise ValueError(f"yuv420p needs even frame sizes, got {width}x{height}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.frames = 0
        self.bytes = 0
        self._rate = Fraction(fps)
        self._container: av.container.OutputContainer | None = av.open(str(path), "w",
                                                                       format="mp4")
        self._stream = self._container.add_stream(
            CODEC, rate=fps, options={"crf": str(crf), "g": str(GOP)})
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, PIX_FMT
        self._stream.codec_context.time_base = 1 / self._rate

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def write(self, frames: np.ndarray) -> None:
        """Append ``frames`` [T, H, W, 3] uint8 RGB."""
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = self.frames, 1 / self._rate
            self._mux(self._stream.encode(frame))
            self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._container is None:
            return
        try:
            self._mux(self._stream.encode(None))
        finally:
            self._container.close()
            self._container = None

    def _mux(self, packets: list[Any]) -> None:
        assert self._container is not None
        for packet in packets:
            self.bytes += packet.size
            self._container.mux(packet)


def count_frames(path: Path) -> int:
    """Video frames in ``path``, by demuxing (no decoding): the integrity check's count."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise LeRobotFormatError(f"{path}: no video stream")
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.size)
    except _DAMAGE as exc:
        raise LeRobotFormatError(f"{path}: not a readable video: {exc}") from exc


class VideoReader:
    """Reads episodes from a camera's MP4 files in order, decoding each frame once.

    ``take(path, from_s, n)`` returns the ``n`` frames [n, H, W, 3] starting at ``from_s``
    (its nearest frame, as LeRobot finds frames by timestamp); going back in a file or to
    another file reopens it.
    """

    def __init__(self, fps: float, height: int, width: int) -> None:
        self.fps, self.height, self.width = fps, height, width
        self._path: Path | None = None
        self._frames: Iterator[tuple[int, np.ndarray]] | None = None
        self._next = 0  # index of the next frame the iterator yields
        self._container: av.container.InputContainer | None = None

    def close(self) -> None:
        """Close the open file."""
        if self._container is not None:
            self._container.close()
        self._container, self._frames, self._path = None, None, None

    def take(self, path: Path, from_s: float, n: int) -> np.ndarray:
        """``n`` frames of ``path`` from time ``from_s``; LeRobotFormatError if it has fewer."""
        first = round(from_s * self.fps)
        if path != self._path or first < self._next:
            self._open(path)
        out = np.empty((n, self.height, self.width, 3), np.uint8)
        got = 0
        assert self._frames is not None
        try:
            while got < n:
                index, image = next(self._frames)
                self._next = index + 1
                if index < first:
                    continue
                if index != first + got:
                    raise LeRobotFormatError(f"{path}: frame {first + got} (t = "
                                             f"{(first + got) / self.fps:.3f} s) is missing")
                out[got] = image
                got += 1
        except StopIteration:
            raise LeRobotFormatError(
                f"{path}: {got} video frames from t = {from_s:.3f} s, the data has {n} rows "
                "for that episode") from None
        except _DAMAGE as exc:
            raise LeRobotFormatError(f"{path}: decoding failed: {exc}") from exc
        return out

    def _open(self, path: Path) -> None:
        self.close()
        try:
            self._container = av.open(str(path))
            if not self._container.streams.video:
                raise LeRobotFormatError(f"{path}: no video stream")
        except _DAMAGE as exc:
            raise LeRobotFormatError(f"{path}: not a readable video: {exc}") from exc
        self._path, self._next = path, 0
        self._frames = self._decode(self._container, path)

    def _decode(self, container: av.container.InputContainer,
                path: Path) -> Iterator[tuple[int, np.ndarray]]:
        for frame in container.decode(video=0):
            if frame.width != self.width or frame.height != self.height:
                raise LeRobotFormatError(f"{path}: frames are {frame.width}x{frame.height}, "
                                         f"the contract's {self.width}x{self.height}")
            time_s = frame.time if frame.time is not None else 0.0
            yield round(time_s * self.fps), frame.to_ndarray(format="rgb24")
