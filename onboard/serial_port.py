"""The MCU link's one hardware seam: a serial port opened with pyserial, used non-blocking.

pyserial opens the device and sets 115200 8N1 raw mode (termios); after that the link
reads and writes the file descriptor itself with ``os.read`` / ``os.write`` in
non-blocking mode, driven by the event loop (``loop.add_reader`` / ``add_writer``).
No reader thread: the loop wakes when bytes are there, and the receive timestamp is
taken in the same callback (timestamps at capture). This needs a selector event loop on
a POSIX system, which the robot computer (Linux) is.

Every library error becomes :class:`PortError`: pyserial's ``SerialException`` and
``OSError`` (a vanished USB device reads as EIO or end of file, a closed pty as EIO).
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import serial

from zima.onboard.link_errors import PortError

__all__ = ["SerialPort"]

_READ_CHUNK = 4096  # a whole tty buffer; 115200 baud delivers ~11.5 bytes per ms


class SerialPort:
    """One open serial device: non-blocking ``read`` / ``write`` on its descriptor."""

    def __init__(self, device: serial.Serial, path: Path) -> None:
        self._device = device
        self.path = path
        self.fd: int = device.fileno()
        os.set_blocking(self.fd, False)

    @classmethod
    def open(cls, path: Path, baud: int) -> SerialPort:
        """Open ``path`` (a udev symlink is followed anew on every open)."""
        try:
            device = serial.Serial(str(path), baud, timeout=0, write_timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortError(f"cannot open {path}: {exc}") from exc
        try:
            device.reset_input_buffer()  # bytes from before this open belong to nobody
            return cls(device, path)
        except (serial.SerialException, OSError) as exc:
            device.close()
            raise PortError(f"cannot set up {path}: {exc}") from exc

    def read(self) -> bytes:
        """What has arrived (b"" when nothing has); ``PortError`` when the device is gone."""
        try:
            data = os.read(self.fd, _READ_CHUNK)
        except BlockingIOError:
            return b""
        except OSError as exc:
            reason = "the device vanished" if exc.errno == errno.EIO else str(exc)
            raise PortError(f"reading {self.path}: {reason}") from exc
        if not data:  # readable and empty: end of file, the device went away
            raise PortError(f"reading {self.path}: end of file (the device vanished)")
        return data

    def write(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes now; returns how many bytes that was (maybe 0)."""
        try:
            return os.write(self.fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise PortError(f"writing {self.path}: {exc}") from exc

    def close(self) -> None:
        """Close the device; errors while closing a vanished device are of no interest."""
        with contextlib.suppress(serial.SerialException, OSError):
            self._device.close()
