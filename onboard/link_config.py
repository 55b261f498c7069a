"""What the MCU link is configured with (what it raises: :mod:`zima.onboard.link_errors`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zima.protocol import PROTOCOL_VERSION, SCHEMA_HASH
from zima.tomlconfig import require_positive

__all__ = ["LinkConfig"]


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One MCU link. Times in seconds; defaults follow firmware/PROTOCOL.md."""

    port: Path = Path("/dev/zima-mcu")  # udev symlink: survives ttyACM0 -> ttyACM1 renames
    baud: int = 115200  # the contract's line rate (8N1)
    handshake_timeout_s: float = 5.0  # PROTOCOL.md 2: give up on HELLO after 5 s
    hello_retry_s: float = 0.25  # PROTOCOL.md 2: repeat HELLO every 250 ms until INFO
    heartbeat_period_s: float = 0.5  # keeps an idle session open (MCU closes it after 2 s)
    telemetry_timeout_s: float = 0.25  # PROTOCOL.md 2: this long without TELEMETRY = link lost
    request_timeout_s: float = 0.5  # wait for an ACK / PARAM_VALUE (50 Hz link: ~25 frames)
    reconnect_min_s: float = 0.05  # first pause before reopening a vanished port
    reconnect_max_s: float = 2.0  # backoff doubles up to this (a replugged USB takes ~1 s)
    health_window_s: float = 1.0  # frames/s and the longest gap are measured over this
    # The host's protocol identity sent in HELLO and checked against INFO. Injectable so a
    # test can play a host built from another tree; keep the defaults everywhere else.
    protocol_version: int = PROTOCOL_VERSION
    schema_hash: int = SCHEMA_HASH

    def __post_init__(self) -> None:
        require_positive(self, ("handshake_timeout_s", "hello_retry_s", "heartbeat_period_s",
                                "telemetry_timeout_s", "request_timeout_s", "reconnect_min_s",
                                "reconnect_max_s", "health_window_s"))
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("LinkConfig.reconnect_max_s must not be below reconnect_min_s")
        if self.heartbeat_period_s >= 2.0:
            raise ValueError("LinkConfig.heartbeat_period_s must be below the MCU's 2 s timeout")
        if self.baud <= 0:
            raise ValueError(f"LinkConfig.baud={self.baud} must be positive")
