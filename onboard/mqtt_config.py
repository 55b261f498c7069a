"""What telemetry over MQTT is configured with, and what it raises.

The exception tree of :mod:`zima.onboard.telemetry` (aiomqtt's ``MqttError`` never leaks;
publishing never raises into the caller at all, whatever the broker does)::

    TelemetryError              anything the telemetry adapter raises
     +-- BrokerUnreachableError the broker cannot be reached or dropped the connection
     |                          (kept in ``Telemetry.broker``; the adapter keeps retrying)
     +-- AuthRefusedError       the broker refused the username/password or the client id;
                                raised by ``Telemetry.wait_connected``

The commands that arrive on ``cmd/<name>``, their parser and their signatures are
:mod:`zima.onboard.commands` (a bad one is a ``CommandError``, answered on
``.../cmd/result``, never raised into the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from zima.onboard.commands import CommandKey
from zima.tomlconfig import require_positive

__all__ = [
    "AuthRefusedError",
    "BrokerUnreachableError",
    "MqttConfig",
    "TelemetryError",
]


class TelemetryError(Exception):
    """Base of everything the telemetry adapter raises."""


class BrokerUnreachableError(TelemetryError):
    """The broker could not be reached, or the connection to it was lost."""


class AuthRefusedError(TelemetryError):
    """The broker refused our credentials (a configuration error, not an outage)."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """One robot's connection to the fleet broker. Times in seconds, rates in Hz."""

    robot_id: str = "zima"  # topic prefix zima/<robot_id>/...; the sample ACL wants = username
    host: str = "localhost"  # Mosquitto runs on the robot computer (ARCHITECTURE decision 7)
    port: int = 1883  # MQTT's registered port
    username: str | None = None  # None: anonymous (the sample config refuses it)
    password: str | None = None  # read from a root-only file on the robot, never from git
    keepalive_s: int = 5  # the broker sends our last will ~1.5x this after we vanish
    connect_timeout_s: float = 2.0  # one connect attempt; the runtime keeps driving meanwhile
    reconnect_min_s: float = 0.1  # first pause before reconnecting
    reconnect_max_s: float = 5.0  # backoff doubles up to this
    queue_len: int = 256  # messages held while the broker is away; the oldest go first
    # A message not published within this long of being posted is dropped (after a broker
    # outage the newest state goes first and what is too old to matter never goes).
    max_backlog_age_s: float = 2.0
    command_queue_len: int = 32  # commands not yet taken by the caller; more are refused
    # Publishing rate of each stream; a stream missing here is not published.
    rates_hz: dict[str, float] = field(
        default_factory=lambda: {
            "battery": 1.0,  # slow: a pack drains over hours
            "odometry": 10.0,  # enough to draw the path on a map
            "mode": 2.0,  # also sent at once when it changes, by the caller's provider
            "link": 1.0,  # connected, frame rate, firmware
            "faults": 1.0,
            "loop": 2.0,  # control-loop rate and jitter
            "policy": 2.0,  # latency and model hash
            "cameras": 1.0,  # each camera's state, frame age, failures and last error
            "arm": 5.0,  # joint angles and the tool pose (the MCU's ARM_STATE comes at 10 Hz)
        }
    )
    # Signed commands (module doc): the key file turns them on; owner-only, like password.
    command_key_file: Path | None = None
    command_window_s: float = 30.0  # a signed command's ts must be this close to our clock
    # The key itself, read from command_key_file by RuntimeConfig.broker_config().
    command_key: CommandKey | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.robot_id or any(c in self.robot_id for c in "/+#"):
            raise ValueError(f"MqttConfig.robot_id={self.robot_id!r} must be one topic level")
        require_positive(self, ("connect_timeout_s", "reconnect_min_s", "reconnect_max_s",
                                "max_backlog_age_s", "command_window_s"),
                         {f"rates_hz[{k!r}]": v for k, v in self.rates_hz.items()})
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("MqttConfig.reconnect_max_s must not be below reconnect_min_s")
        if self.keepalive_s < 1 or self.queue_len < 1 or self.command_queue_len < 1:
            raise ValueError("MqttConfig.keepalive_s, queue_len, command_queue_len must be >= 1")

    def topic(self, suffix: str) -> str:
        """``zima/<robot_id>/<suffix>``."""
        return f"zima/{self.robot_id}/{suffix}"
