"""The robot side of the host tools' tests: real parts, publishing the documented topics.

The emulated board (real firmware on simavr) behind a real ``McuLink``, and the onboard
``Telemetry`` publisher on a real Mosquitto, with providers that build the payloads of
the MQTT topic spec (``zima/<r>/telemetry/...``) from ``link.state``. What the runtime will
own (mode, loop timing, policy) is played by plain values here, and an e-stop responder
takes ``Telemetry.commands``: ``link.estop()`` / ``link.clear(ESTOP)`` then posts the mode,
as the runtime does::

    async with robot_side(broker, link_config) as robot:
        robot.silent.add("battery")        # that stream stops publishing
        robot.link                         # the McuLink, for waits on the MCU's state
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from tests.mqtt_broker import ROBOT, ROBOT_PASSWORD, Broker
from zima.onboard.commands import EstopCommand
from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.telemetry import Provider, Telemetry
from zima.protocol import Fault, State

__all__ = ["CLEAR_MV", "CRITICAL_MV", "LOW_MV", "RobotSide", "robot_side"]

LOW_MV, CRITICAL_MV = 10_500, 9_900  # PROTOCOL.md's defaults of batt_low_mv, batt_crit_mv
CLEAR_MV = CRITICAL_MV + 200  # BATT_CRITICAL clears above batt_crit_mv + batt_hyst_mv
RATES_HZ = {  # faster than the robot's defaults: tests wait less
    "battery": 5.0, "odometry": 10.0, "mode": 2.0, "link": 2.0, "faults": 2.0, "loop": 2.0,
    "policy": 2.0,
}


@dataclass
class RobotSide:
    link: McuLink
    mode: str = "idle"
    silent: set[str] = field(default_factory=set)  # streams whose providers say nothing
    estops: list[EstopCommand] = field(default_factory=list)

    def providers(self) -> dict[str, Provider]:
        makers: dict[str, Callable[[], Mapping[str, object] | None]] = {
            "battery": self.battery, "odometry": self.odometry, "mode": self.mode_payload,
            "link": self.link_payload, "faults": self.faults, "loop": self.loop,
            "policy": self.policy,
        }
        return {name: self._unless_silent(name, make) for name, make in makers.items()}

    def _unless_silent(self, name: str, make: Provider) -> Provider:
        return lambda: None if name in self.silent else make()

    def battery(self) -> dict[str, object] | None:
        state = self.link.state
        if state is None:
            return None
        level = "ok"
        if Fault.BATT_CRITICAL in state.faults:
            level = "critical"
        elif Fault.BATT_LOW in state.faults:
            level = "low"
        return {"battery_mv": state.telemetry.battery_mv, "level": level,
                "low_mv": LOW_MV, "critical_mv": CRITICAL_MV,
                "latched": Fault.BATT_CRITICAL in state.faults, "clear_mv": CLEAR_MV}

    def odometry(self) -> dict[str, object] | None:
        state = self.link.state
        if state is None:
            return None
        t = state.telemetry
        return {"left_ticks": t.enc_left_ticks, "right_ticks": t.enc_right_ticks,
                "vel_left_mm_s": t.vel_left_mm_s, "vel_right_mm_s": t.vel_right_mm_s,
                "target_left_mm_s": t.target_left_mm_s, "target_right_mm_s": t.target_right_mm_s,
                "out_left_permille": t.out_left_permille,
                "out_right_permille": t.out_right_permille}

    def mode_payload(self) -> dict[str, object]:
        return {"mode": self.mode, "owner": "none", "reason": None}

    def link_payload(self) -> dict[str, object]:
        status, state, info = self.link.status, self.link.state, self.link.info
        firmware = None
        if info is not None:
            firmware = f"{info.fw_major}.{info.fw_minor}.{info.fw_patch}+{info.build_id:08x}"
        return {"connected": status.connected, "reason": status.reason,
                "telemetry_hz": state.health.telemetry_hz if state else 0.0,
                "rx_rejected": state.health.rx_rejected if state else 0,
                "rx_dropped": state.health.rx_dropped if state else 0,
                "connects": status.connects, "firmware": firmware}

    def faults(self) -> dict[str, object] | None:
        state = self.link.state
        if state is None:
            return None
        names = [f.name for f in Fault if f in state.faults]
        mcu = state.state
        return {"active": names, "mcu_state": mcu.name if isinstance(mcu, State) else str(mcu)}

    def loop(self) -> dict[str, object]:  # the runtime's control loop is not part of this
        return {"rate_hz": 20.0, "period_p50_ms": 50.0, "period_p99_ms": 52.5,
                "jitter_p99_ms": 2.5, "overruns": 0}

    def policy(self) -> dict[str, object]:
        return {"model_hash": "ab" * 32, "model_path": "/var/lib/zima/model.onnx",
                "latency_ms": 12.0, "latency_max_ms": 20.0, "plans": 42, "reloads": 0,
                "reload_error": None}


async def _respond(robot: RobotSide, telemetry: Telemetry) -> None:
    """The runtime's part for e-stop commands: act on the MCU, then say so on mode."""
    while True:
        command = await telemetry.commands.get()
        if not isinstance(command, EstopCommand):
            continue
        robot.estops.append(command)
        if command.engaged:
            await robot.link.estop()
            robot.mode = "estop"
        else:
            await robot.link.clear(Fault.ESTOP)
            robot.mode = "idle"
        telemetry.post("mode", robot.mode_payload())  # at once on every change


@contextlib.asynccontextmanager
async def robot_side(
    broker: Broker, link_config: LinkConfig, silent: frozenset[str] = frozenset()
) -> AsyncIterator[RobotSide]:
    """The robot, publishing; ``silent`` streams say nothing from the start."""
    config = MqttConfig(
        robot_id=ROBOT, host="127.0.0.1", port=broker.port, username=ROBOT,
        password=ROBOT_PASSWORD, reconnect_min_s=0.05, reconnect_max_s=0.5, rates_hz=RATES_HZ,
    )
    async with McuLink(link_config) as link:
        # The first TELEMETRY frames after a handshake carry battery_mv 0 (no ADC sample
        # filtered yet): a reading of 0 would be "critical". Start publishing after them.
        await link.wait_for(lambda s: s.telemetry.battery_mv > 0, 5.0)
        robot = RobotSide(link, silent=set(silent))
        async with Telemetry(config, robot.providers()) as telemetry:
            await telemetry.wait_connected(5.0)
            responder = asyncio.create_task(_respond(robot, telemetry))
            try:
                yield robot
            finally:
                responder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await responder
