"""What the link knows about the MCU: typed, frozen snapshots with capture timestamps.

``McuState`` is one TELEMETRY message as received (its sequence number, the host time at
which its bytes were read) plus the link's health at that moment. ``LinkStatus`` says
whether the link is up, since when and why it changed. Times are seconds of the clock
injected into the link (``time.monotonic`` on the robot); the MCU's own clock is
``telemetry.mcu_time_ms``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from zima.protocol import Fault, Info, State, Telemetry

__all__ = ["HealthMeter", "LinkHealth", "LinkStatus", "McuState"]


@dataclass(frozen=True, slots=True)
class LinkHealth:
    """The host side's view of the line, over the link's whole life (all reconnects)."""

    telemetry_hz: float  # TELEMETRY frames per second over the health window (host clock)
    max_gap_s: float  # longest interval between two TELEMETRY frames in the window
    telemetry_frames: int  # TELEMETRY frames received (a consumer can tell what it skipped)
    rx_frames: int  # frames the host decoded
    rx_rejected: int  # frames the host's decoder dropped (noise, truncation, bad CRC)
    rx_dropped: int  # frames lost according to the MCU's sequence numbers


@dataclass(frozen=True, slots=True)
class McuState:
    """The latest TELEMETRY and when it arrived."""

    telemetry: Telemetry
    seq: int  # the frame's sequence number (MCU counter)
    received_s: float  # host clock when its bytes were read from the port
    health: LinkHealth

    @property
    def state(self) -> State | int:
        """``TELEMETRY.state`` as a ``State`` (a plain int if this host does not know it)."""
        try:
            return State(self.telemetry.state)
        except ValueError:
            return self.telemetry.state

    @property
    def faults(self) -> Fault:
        return Fault(self.telemetry.faults)

    @property
    def mcu_time_ms(self) -> int:
        return self.telemetry.mcu_time_ms


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """Whether commands reach the MCU now. While ``connected`` is False the MCU's own
    250 ms command watchdog has stopped (or will stop) the tracks."""

    connected: bool
    reason: str  # why the status last changed, for logs and operators
    since_s: float  # host clock of that change
    info: Info | None = None  # the INFO of the last successful handshake
    connects: int = 0  # successful handshakes so far
    disconnects: int = 0  # times the link was lost after a successful handshake


class HealthMeter:
    """Counts what the decoder reports and measures TELEMETRY timing over a window."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()  # receive times of TELEMETRY in the window
        self.rx_frames = 0
        self.rx_rejected = 0
        self.rx_dropped = 0
        self.telemetry_frames = 0

    def count(self, frames: int, rejected: int, dropped: int) -> None:
        self.rx_frames += frames
        self.rx_rejected += rejected
        self.rx_dropped += dropped

    def telemetry_at(self, t_s: float) -> LinkHealth:
        """Record one TELEMETRY received at ``t_s``; return the health after it."""
        self.telemetry_frames += 1
        times = self._times
        times.append(t_s)
        while times and times[0] < t_s - self.window_s:
            times.popleft()
        hz = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and t_s > times[0] else 0.0
        gap = max((b - a for a, b in zip(times, list(times)[1:], strict=False)), default=0.0)
        return LinkHealth(
            hz, gap, self.telemetry_frames, self.rx_frames, self.rx_rejected, self.rx_dropped
        )

    def restart(self) -> None:
        """Forget the timing window (after a reconnect the gap is the outage, not jitter)."""
        self._times.clear()
