"""What a hardware-in-the-loop run (`zima sim run`) is configured with, and what it raises::

    HilError            a part of the loop failed (the message names it)
     +-- HilStartError  a part could not start (the message says what to do)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from zima.emulator import EmulatorConfig, find_binary, find_firmware
from zima.tomlconfig import require_positive

__all__ = ["HilConfig", "HilError", "HilStartError"]


class HilError(Exception):
    """A part of the loop failed (the message names it)."""


class HilStartError(HilError):
    """A part of the loop could not start (the message names it and what to do)."""


@dataclass(frozen=True, slots=True)
class HilConfig:
    """One hardware-in-the-loop run."""

    scene: str = "arena"  # a registered scene
    episodes: int = 5  # episode i uses seed + i
    seed: int = 100_000  # evaluation seeds: the demo policy trained on seeds below this
    model_path: Path = Path("models/zima-demo.onnx")  # the policy the runtime loads
    out_dir: Path = Path("build/demo")  # video, plot, recorder folder
    mqtt: Literal["auto", "off"] = "auto"  # auto: a local Mosquitto when one can start
    realtime_factor: float = 1.0  # emulated seconds per wall second (the emulator's pace)
    time_limit_s: float = 40.0  # per episode, emulated seconds (the env's default)
    state_hz: float = 100.0  # emulator state lines = physics ticks per emulated second
    camera_fps: float = 12.0  # renders per camera and emulated second (> policy's 10 Hz)
    battery_start_mv: float = 12_300.0  # a fresh 3S pack under light load
    # Pack drain at full duty on both tracks, mV per second: visible in the plot, and a
    # few-minute demo stays far above the firmware's 10.5 V low threshold. The emulator's
    # battery model drains it (board_config()); 0 keeps the voltage where it starts.
    battery_drain_mv_s: float = 15.0
    battery_floor_mv: float = 11_200.0  # never drained below this (the demo is not about it)
    videos: int = 1  # film the first K episodes (forward camera)
    temperature: float = 1.0  # policy sampling, the runtime's default (0 = argmax)
    # "policy": episodes in AUTONOMOUS; "operator": a person drives (the web console or MQTT
    # teleop) and records demonstrations; the scene resets when an episode ends.
    drive: Literal["policy", "operator"] = "policy"
    web_port: int | None = None  # serve the web console on 127.0.0.1:<port> (0: any free)
    web_token_file: Path | None = None  # None: a fresh token in out_dir/web-token
    firmware: Path = field(default_factory=find_firmware)  # zima.emulator says where from
    emulator: Path = field(default_factory=find_binary)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes={self.episodes} must be at least 1")
        require_positive(self, ("realtime_factor", "time_limit_s", "state_hz", "camera_fps"))
        if not 0 < self.battery_floor_mv < self.battery_start_mv:
            raise ValueError(f"battery_floor_mv={self.battery_floor_mv} must be above 0 and "
                             f"below battery_start_mv={self.battery_start_mv}")
        if not (math.isfinite(self.battery_drain_mv_s) and self.battery_drain_mv_s >= 0):
            raise ValueError(f"battery_drain_mv_s={self.battery_drain_mv_s} must be >= 0")

    def board_config(self) -> EmulatorConfig:
        """The emulated board: this firmware, paced, a state line per physics tick, and a
        pack that the emulator's own battery model drains by ``battery_drain_mv_s`` at full
        duty on both tracks, linearly, down to ``battery_floor_mv`` (no sag, no idle draw).

        The model's open-circuit voltage falls by ``(start - empty) / capacity_mah`` per mAh
        drawn, and full duty on both tracks draws ``2 * motor_ma``; so the capacity that
        gives the drain is ``2 * (start - floor) * motor_ma / (3600 * drain)``.
        """
        motor_ma = EmulatorConfig.motor_ma
        drain = self.battery_drain_mv_s
        capacity = (2 * (self.battery_start_mv - self.battery_floor_mv) * motor_ma
                    / (3600 * drain) if drain > 0 else EmulatorConfig.capacity_mah)
        return EmulatorConfig(
            firmware=self.firmware, binary=self.emulator, speed=self.realtime_factor,
            state_hz=self.state_hz, battery_mv=self.battery_start_mv,
            battery_empty_mv=self.battery_floor_mv, capacity_mah=max(capacity, 1.0),
            internal_mohm=0.0, motor_ma=motor_ma, discharge=drain > 0)
