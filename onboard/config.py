"""The onboard runtime's configuration: one TOML file, validated on load.

``zima onboard run --config /etc/zima/onboard.toml`` reads it; ``onboard/onboard.example.toml``
is the annotated sample that ``zima onboard install`` puts in place. Every section maps onto
the frozen config dataclass of the part it configures, with that part's defaults and its
own validation::

    robot_id = "zima"             # MQTT topic level and the broker username
    loop_hz = 50.0                # the control loop (track commands to the MCU); was
                                  # control_hz, still read with a warning
    track_gauge_m = 0.21          # teleop: (m/s, rad/s) -> track speeds

    [link]      zima.onboard.link_config.LinkConfig        (port, timeouts)
    [[cameras]] zima.onboard.camera_config.CameraConfig    (one table per camera)
    [fusion]    zima.onboard.fusion.FusionConfig           (max_frame_age_s)
    [policy]    zima.onboard.policy_runner.PolicyConfig    (model_path, execute_k, ...;
                                                           backend = "remote": server,
                                                           key_file, fallback_model)
    [safety]    zima.onboard.safety.SafetyConfig           (timeouts, limits, derate)
    [mqtt]      zima.onboard.mqtt_config.MqttConfig        + enabled, password_file
                                                           (command_key_file: signed
                                                           commands)
    [recorder]  zima.onboard.recorder.RecorderConfig       (directory, ...)
    [web]       zima.onboard.web.WebConfig                 (the console: host, port,
                                                           token_file, tls_cert, tls_key)
    [realtime]  zima.onboard.realtime.RealtimeConfig       (switch interval, gc freeze,
                                                           SCHED_FIFO, cores)

Unknown keys, wrong types and out-of-range values are ``ConfigError``s naming the file
and the key; relative paths are taken from the file's folder. A missing file is a
``ConfigError`` too, so the service's journal says exactly what to fix. The file is
outside input like any other: whatever its bytes, ``load_config`` returns a config or
raises ``ConfigError`` (at most ``MAX_CONFIG_BYTES`` of UTF-8 TOML, nested at most
``MAX_CONFIG_DEPTH`` deep, checked before parsing: :mod:`zima.bounded`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zima.bounded import InputError, parse_toml_bounded
from zima.onboard.camera_config import CameraConfig, default_cameras
from zima.onboard.commands import TELEOP_LIMITS, CommandKey
from zima.onboard.fusion import FusionConfig
from zima.onboard.link_config import LinkConfig
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.policy_runner import PolicyConfig
from zima.onboard.realtime import RealtimeConfig
from zima.onboard.recorder import RecorderConfig
from zima.onboard.safety import SafetyConfig
from zima.onboard.web import WebConfig
from zima.tomlconfig import ConfigError, convert, from_table

__all__ = ["MAX_CONFIG_BYTES", "ConfigError", "MqttSection", "RuntimeConfig", "load_config"]

log = logging.getLogger(__name__)

MAX_CONFIG_BYTES = 256 * 1024  # the annotated sample is under 8 kB
MAX_CONFIG_DEPTH = 6  # [[cameras]] and [mqtt.rates_hz] are 2 deep


@dataclass(frozen=True, slots=True)
class MqttSection:
    """The ``[mqtt]`` table: the broker connection, and whether to use one at all."""

    enabled: bool = True  # False: no telemetry, no MQTT commands (the robot still drives)
    password_file: Path | None = None  # root-only file holding the broker password
    broker: MqttConfig = field(default_factory=MqttConfig)


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """Everything the runtime is configured with (see the module docstring)."""

    robot_id: str = "zima"
    # The control loop's rate: one DRIVE to the MCU per tick. (The contract's control_hz is
    # another rate: the policy's actions, 10 Hz. This key was control_hz until 0.1.)
    loop_hz: float = 50.0
    # Distance between the tracks' centre lines (the real base: 0.25 m wide, 4 cm tracks).
    track_gauge_m: float = 0.21
    link: LinkConfig = field(default_factory=LinkConfig)
    cameras: tuple[CameraConfig, ...] = field(default_factory=default_cameras)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    mqtt: MqttSection = field(default_factory=MqttSection)
    recorder: RecorderConfig = field(
        default_factory=lambda: RecorderConfig(directory=Path("/var/lib/zima/episodes")))
    web: WebConfig = field(default_factory=WebConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.loop_hz) and 5.0 <= self.loop_hz <= 500.0):
            raise ConfigError(f"loop_hz={self.loop_hz} must be in [5, 500]")
        if not (math.isfinite(self.track_gauge_m) and self.track_gauge_m > 0):
            raise ConfigError(f"track_gauge_m={self.track_gauge_m} must be positive")
        if not self.cameras:
            raise ConfigError("at least one [[cameras]] table is needed")
        if self.web.enabled and self.web.token_file is None:
            raise ConfigError("web.enabled needs web.token_file (the console drives the robot)")

    def broker_config(self) -> MqttConfig:
        """The broker connection with the password read from ``password_file`` and the
        command key from ``command_key_file``."""
        broker = self.mqtt.broker
        if self.mqtt.password_file is not None:
            try:
                password = self.mqtt.password_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"mqtt.password_file: cannot read "
                                  f"{self.mqtt.password_file}: {exc.strerror}") from exc
            broker = dataclasses.replace(broker, password=password)
        if broker.command_key_file is not None:
            try:
                key = CommandKey.from_file(broker.command_key_file)
            except OSError as exc:
                raise ConfigError(f"mqtt.command_key_file: cannot read "
                                  f"{broker.command_key_file}: {exc.strerror}") from exc
            except ValueError as exc:
                raise ConfigError(f"mqtt.command_key_file: {broker.command_key_file}: "
                                  f"{exc}") from exc
            broker = dataclasses.replace(broker, command_key=key)
        return broker


def load_config(path: Path) -> RuntimeConfig:
    """The configuration in ``path`` (``ConfigError`` naming the file and key, whatever
    the file holds)."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from exc
    try:
        table = parse_toml_bounded(raw, max_bytes=MAX_CONFIG_BYTES, max_depth=MAX_CONFIG_DEPTH,
                                   what="the config")
        return config_from_table(table, path.parent)
    except (InputError, ConfigError) as exc:
        raise ConfigError(f"{path}: {_clip(str(exc))}") from exc
    except (OverflowError, TypeError, ValueError) as exc:  # a value no check foresaw
        raise ConfigError(f"{path}: {type(exc).__name__}: {_clip(str(exc))}") from exc


def _clip(message: str, max_chars: int = 500) -> str:
    """An error message fit for a journal line (a message may quote a huge value)."""
    return message if len(message) <= max_chars else message[:max_chars] + "..."


def config_from_table(table: dict[str, Any], base: Path = Path()) -> RuntimeConfig:
    """A ``RuntimeConfig`` from a parsed TOML table; relative paths from ``base``."""
    table = dict(table)
    if "control_hz" in table:  # the key's old name: users' onboard.toml files have it
        if "loop_hz" in table:
            raise ConfigError("control_hz is the old name of loop_hz: give loop_hz only")
        log.warning("config: control_hz is now loop_hz (the control loop's rate); rename "
                    "the key, the old name will stop working")
        table["loop_hz"] = table.pop("control_hz")
    robot_id = table.get("robot_id", "zima")
    if not isinstance(robot_id, str):
        raise ConfigError(f"robot_id must be a string, got {robot_id!r}")
    mqtt = table.pop("mqtt", {})
    if not isinstance(mqtt, dict):
        raise ConfigError("mqtt must be a table")
    mqtt = dict(mqtt)
    section = {k: mqtt.pop(k) for k in ("enabled", "password_file") if k in mqtt}
    if "robot_id" in mqtt:
        raise ConfigError("mqtt.robot_id is set from the top-level robot_id")
    for gone in ("max_linear_m_per_s", "max_angular_rad_per_s"):  # never loosened silently
        if gone in mqtt:
            raise ConfigError(f"mqtt.{gone} is no longer a setting: every front end refuses "
                              f"teleop beyond {TELEOP_LIMITS} (zima.onboard.commands), and "
                              "[safety] max_track_mm_s limits the tracks")
    for secret in ("password", "command_key"):  # only ever from their files
        if secret in mqtt:
            raise ConfigError(f"mqtt.{secret} is never written in the config: "
                              f"give mqtt.{secret}_file")
    mqtt.setdefault("username", robot_id)  # the sample ACL's %u: username = robot id
    broker = from_table(MqttConfig, {**mqtt, "robot_id": robot_id}, "mqtt.")
    enabled = convert(section.get("enabled", True), bool, "mqtt.enabled")
    password_file = section.get("password_file")
    mqtt_section = MqttSection(
        enabled, None if password_file is None else convert(password_file, Path,
                                                            "mqtt.password_file"), broker)
    config = from_table(RuntimeConfig, table, "")
    config = dataclasses.replace(config, mqtt=mqtt_section)
    return _resolve_paths(config, base)


def _resolve_paths(config: RuntimeConfig, base: Path) -> RuntimeConfig:
    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    def opt(p: Path | None) -> Path | None:
        return None if p is None else rel(p)

    mqtt, web = config.mqtt, config.web
    web = dataclasses.replace(
        web, token_file=None if web.token_file is None else rel(web.token_file),
        tls_cert=None if web.tls_cert is None else rel(web.tls_cert),
        tls_key=None if web.tls_key is None else rel(web.tls_key))
    if mqtt.password_file is not None:
        mqtt = dataclasses.replace(mqtt, password_file=rel(mqtt.password_file))
    if mqtt.broker.command_key_file is not None:
        mqtt = dataclasses.replace(mqtt, broker=dataclasses.replace(
            mqtt.broker, command_key_file=rel(mqtt.broker.command_key_file)))
    cameras = tuple(
        dataclasses.replace(c, source=str(rel(Path(c.source))))
        if isinstance(c.source, str) and "://" not in c.source else c
        for c in config.cameras)
    return dataclasses.replace(
        config,
        link=dataclasses.replace(config.link, port=rel(config.link.port)),
        cameras=cameras,
        policy=dataclasses.replace(
            config.policy, model_path=rel(config.policy.model_path),
            key_file=opt(config.policy.key_file), ca_file=opt(config.policy.ca_file),
            fallback_model=opt(config.policy.fallback_model)),
        recorder=dataclasses.replace(config.recorder,
                                     directory=rel(config.recorder.directory)),
        mqtt=mqtt, web=web)
