"""A Mosquitto broker as a child process: `zima sim run`'s local broker and the tests'.

The caller writes the broker's config (its listener on ``127.0.0.1:port`` first, then
:func:`run_lines`); :class:`Mosquitto` runs it::

    broker = Mosquitto(conf, port, log)     # conf: a file the caller wrote; log: appended to
    broker.start()                          # spawns `mosquitto -c conf` (on this thread)
    broker.wait_ready()                     # blocks until 127.0.0.1:port accepts (OSError)
    broker.stop()                           # and start() again: the config is read anew

Debian's ``mosquitto`` package installs the broker in /usr/sbin, which a user's PATH may
lack: :func:`find_mosquitto` looks there too.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from zima.processes import terminate

__all__ = ["Mosquitto", "find_mosquitto", "free_port", "run_lines"]


def find_mosquitto() -> str | None:
    """The ``mosquitto`` binary, or None."""
    return shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_lines() -> str:
    """The config lines every broker of ours ends with: run as this user (root: Mosquitto
    would drop to user mosquitto, who cannot read our files), log to stderr (the log)."""
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "mosquitto")
    return f"user {user}\nlog_dest stderr\n"


class Mosquitto:
    """``mosquitto -c conf``, listening on ``127.0.0.1:port``, its output appended to ``log``
    (see the module docstring)."""

    def __init__(self, conf: Path, port: int, log: Path) -> None:
        self.conf, self.port, self.log = conf, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, preexec_fn: Callable[[], object] | None = None) -> None:
        """Spawn the broker (``OSError`` if it cannot be). ``preexec_fn`` runs in the child
        before exec (e.g. a parent-death signal: it then follows this thread)."""
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError("no mosquitto (Debian package mosquitto)")
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 -- argv of our own making
                [binary, "-c", str(self.conf)], stderr=log,
                preexec_fn=preexec_fn)  # noqa: PLW1509 -- the caller's prctl, before exec

    def wait_ready(self, timeout_s: float = 5.0) -> None:
        """Block until the broker accepts connections; ``OSError`` with its log's end if it
        exits or does not within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.02)
            else:
                return
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        raise OSError(f"mosquitto did not start on port {self.port}: {tail.strip()}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Terminate the broker (killed after 5 s); nothing when it is not running."""
        process, self.process = self.process, None
        if process is not None:
            terminate(process, timeout_s=5.0)
