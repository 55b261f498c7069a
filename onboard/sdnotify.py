"""sd_notify: tell systemd that the runtime is ready, alive, reloading or stopping.

The service runs as ``Type=notify`` with ``WatchdogSec=`` (``onboard/service/``): systemd
passes the address of its notification socket in ``$NOTIFY_SOCKET`` (a path, or an
abstract-namespace name starting with ``@``) and the watchdog interval in
``$WATCHDOG_USEC``; we send newline-separated ``KEY=value`` datagrams to it, the protocol of
``sd_notify(3)``, without libsystemd::

    notifier = Notifier()                       # reads the environment once
    ...                                         # MCU handshake, model loaded
    notifier.ready("driving")                   # READY=1, STATUS=driving
    async with asyncio.TaskGroup() as tg:
        tg.create_task(watchdog_loop(notifier, lambda: loop_age_s() < 0.5))
    notifier.stopping()

Outside systemd (no ``$NOTIFY_SOCKET``: a terminal, the tests) every call is a no-op that
returns False. A failed send is logged and never raised: the robot must not stop driving
because the service manager went away.

The watchdog is the point: ``watchdog_loop`` pings only while ``healthy()`` says the
control loop ticked recently, so a wedged loop (a hung await, a blocking call) stops the
pings and systemd kills and restarts the service after ``WatchdogSec``; the MCU's own
watchdog has stopped the motors long before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

__all__ = ["Notifier", "watchdog_loop"]

_log = logging.getLogger(__name__)


class Notifier:
    """A client of systemd's notification socket; every method is a no-op without one.

    ``environ`` defaults to ``os.environ``, read once here (tests pass their own mapping).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env)
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether there is a notification socket to talk to (we run under systemd)."""
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"KEY=value"`` each) in one datagram; True when it was sent."""
        if self._address is None:
            return False
        for f in fields:
            if "=" not in f or "\n" in f:
                raise ValueError(f"sd_notify field must be one KEY=value line: {f!r}")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            # Warn once: a gone service manager would otherwise flood the log at ping rate.
            if not self._warned:
                _log.warning("sd_notify to %r failed: %s", self._address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``READY=1``): systemd now counts the service as started."""
        return self.notify("READY=1", *(() if status is None else (_status(status),)))

    def watchdog(self) -> bool:
        """One keep-alive ping (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """A one-line status that ``systemctl status zima-onboard`` shows."""
        return self.notify(_status(text))

    def stopping(self) -> bool:
        """Shutdown has begun (``STOPPING=1``)."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """A reload has begun; send ``ready()`` when it is done.

        ``MONOTONIC_USEC`` is what ``Type=notify-reload`` (systemd >= 253) requires and
        older managers ignore.
        """
        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={now_us}")

    def watchdog_period_s(self) -> float | None:
        """How often to ping: half of ``$WATCHDOG_USEC`` (as sd_watchdog_enabled(3) advises).

        None when no watchdog is configured or ``$WATCHDOG_PID`` names another process
        (the variables were inherited from a parent that systemd watches).
        """
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2e6

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def watchdog_loop(
    notifier: Notifier, healthy: Callable[[], bool], *, period_s: float | None = None
) -> None:
    """Ping systemd's watchdog every ``period_s`` while ``healthy()`` is true; run until cancelled.

    ``period_s`` defaults to ``notifier.watchdog_period_s()``; without a watchdog this
    returns at once. While ``healthy()`` is false no ping is sent (systemd restarts the
    service once ``WatchdogSec`` passes without one); pings resume if it recovers first.
    A plain ``sleep`` loop, no ``wait_for``, so a cancel is never swallowed.
    """
    period = notifier.watchdog_period_s() if period_s is None else period_s
    if period is None:
        return
    if not period > 0:
        raise ValueError(f"watchdog period must be > 0 s, got {period}")
    was_healthy = True
    while True:
        ok = healthy()
        if ok:
            notifier.watchdog()
        if ok != was_healthy:
            if ok:
                _log.info("control loop ticking again: watchdog pings resumed")
                notifier.status("control loop ticking again")
            else:
                _log.error("control loop not ticking: withholding watchdog pings")
                notifier.status("control loop stalled: watchdog pings withheld")
            was_healthy = ok
        await asyncio.sleep(period)


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract namespace: leading NUL byte
    if value.startswith("/"):
        return value
    if value:
        # e.g. "vsock:..." (systemd >= 254 in VMs): not a unix socket, not ours to speak.
        _log.warning("NOTIFY_SOCKET=%r is not a unix socket address; not notifying", value)
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec:
        return None
    try:
        interval = int(usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        _log.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, pid)
        return None
    return interval if interval > 0 else None


def _status(text: str) -> str:
    # A newline would start another field (a STATUS could forge READY=1 or STOPPING=1).
    return "STATUS=" + " ".join(text.splitlines())
