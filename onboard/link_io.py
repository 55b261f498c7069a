"""``PortIO``: an open ``SerialPort`` on the running event loop, for ``McuLink``.

Bytes in: the loop's reader callback reads what has arrived and hands it on at once
(``on_data``; the driver takes the receive timestamp there, before any decoding). Bytes
out: ``write`` gives the kernel what it takes now and keeps the rest, up to
``MAX_TX_BACKLOG``, for the loop's writer callback. It knows nothing of frames.

Failure rule: the first read or write error (a vanished device reads as EIO or end of
file), or a backlog the port does not take, marks the port ``failed``, stops watching its
descriptor (an EIO descriptor stays readable) and is reported once through ``on_error``;
``write`` raises nothing. Only ``close`` is left to do then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from zima.onboard.link_errors import PortError
from zima.onboard.serial_port import SerialPort

__all__ = ["MAX_TX_BACKLOG", "PortIO"]

log = logging.getLogger("zima.onboard.link")

MAX_TX_BACKLOG = 4096  # bytes the kernel would not take: ~0.35 s of line time at 115200


class PortIO:
    """Reads and writes one open serial port from the event loop; see the module docstring."""

    def __init__(
        self,
        port: SerialPort,
        on_data: Callable[[bytes], None],
        on_error: Callable[[PortError], None],
    ) -> None:
        self.port = port
        self.failed = False
        self._on_data = on_data
        self._on_error = on_error
        self._tx = bytearray()  # bytes the kernel has not taken yet
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(port.fd, self._readable)

    @classmethod
    def open(
        cls,
        path: Path,
        baud: int,
        on_data: Callable[[bytes], None],
        on_error: Callable[[PortError], None],
    ) -> PortIO:
        """Open ``path`` and start reading it (``PortError`` when it cannot be opened)."""
        port = SerialPort.open(path, baud)
        log.debug("opened %s", path)
        return cls(port, on_data, on_error)

    @property
    def backlog(self) -> int:
        """Bytes written but not taken by the port yet."""
        return len(self._tx)

    def write(self, data: bytes) -> None:
        """Send ``data`` after whatever is still waiting; a failure goes to ``on_error``."""
        if self.failed or not data:
            return
        if not self._tx:  # the usual case: the kernel takes a whole frame at once
            try:
                written = self.port.write(data)
            except PortError as exc:
                self._fail(exc)
                return
            if written == len(data):
                return
            self._loop.add_writer(self.port.fd, self._writable)
            data = data[written:]
        if len(self._tx) + len(data) > MAX_TX_BACKLOG:
            self._fail(PortError(f"{self.port.path} takes no bytes ({len(self._tx)} waiting)"))
            return
        self._tx += data

    def close(self) -> None:
        """Stop watching the port and close it."""
        if not self.failed:
            self._unwatch()
        self.failed = True
        self.port.close()

    def _readable(self) -> None:
        try:
            data = self.port.read()
        except PortError as exc:
            self._fail(exc)
            return
        if data:
            self._on_data(data)

    def _writable(self) -> None:
        try:
            written = self.port.write(bytes(self._tx))
        except PortError as exc:
            self._fail(exc)
            return
        del self._tx[:written]
        if not self._tx:
            self._loop.remove_writer(self.port.fd)

    def _fail(self, error: PortError) -> None:
        if self.failed:
            return
        self.failed = True
        self._unwatch()
        self._tx.clear()
        self._on_error(error)

    def _unwatch(self) -> None:
        self._loop.remove_reader(self.port.fd)
        self._loop.remove_writer(self.port.fd)
