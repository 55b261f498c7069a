"""`zima battery` against a real robot side: the emulated board's battery through McuLink and
the onboard Telemetry publisher, over a real Mosquitto with the sample ACL.

Waits are on events (a line appearing, the MCU's state); wall-clock limits are hang guards.
"""

import asyncio
import io
import json
from pathlib import Path

import aiomqtt
import jinja2
import pytest

from tests.host.hostile import HOSTILE, publish_as_robot
from tests.host.robot import CLEAR_MV, CRITICAL_MV, LOW_MV, robot_side
from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, Broker
from tests.onboard.helpers import run
from zima.cli import main
from zima.emulator import EmulatedBoard
from zima.host.battery import (
    BatteryMonitor,
    MonitorOptions,
    discovery_messages,
    format_view,
    read_csv,
)
from zima.host.battery_model import Pack
from zima.host.mqtt import HostMqttConfig
from zima.onboard.link_config import LinkConfig
from zima.protocol import Fault, ParamId

# What an operator's ACL needs for --home-assistant (the sample ACL lacks it).
HA_ACL = "user operator\ntopic readwrite homeassistant/#\n"


def options(**changes: object) -> MonitorOptions:
    fields: dict[str, object] = {"stale_after_s": 3.0, "redraw_s": 0.1, "duration_s": 30.0}
    fields.update(changes)
    return MonitorOptions(**fields)  # type: ignore[arg-type]


async def until_output(out: io.StringIO, text: str, guard_s: float = 10.0) -> None:
    async with asyncio.timeout(guard_s):
        while text not in out.getvalue():
            await asyncio.sleep(0.05)


def test_once_prints_one_reading_of_a_healthy_pack(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> tuple[int, str]:
        async with robot_side(broker, link_config):
            out = io.StringIO()
            monitor = BatteryMonitor(broker.operator_config(), options(once=True), out)
            status = await monitor.run()
            assert len(monitor.rows) == 1
            return status, out.getvalue()

    status, text = run(main_)
    assert status == 0, text
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "pack 12.0" in lines[0] or "pack 11.9" in lines[0], text  # the board's 12 000 mV
    assert "SoC" in lines[0]
    assert "level ok" in lines[0]
    assert "ALARM" not in lines[0]


def test_a_low_pack_raises_the_alarm_and_is_logged_and_plotted(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    csv_path, png = tmp_path / "run.csv", tmp_path / "run.png"

    async def main_() -> tuple[int, str, list[dict[str, str]]]:
        async with robot_side(broker, link_config) as robot:
            # The MCU judges "low" after batt_low_debounce_ms (10 s by default): at once here.
            await robot.link.set_param(ParamId.batt_low_debounce_ms, 0)
            await asyncio.to_thread(board.set_battery, 10_200)  # between critical and low
            await robot.link.wait_for(lambda s: 0 < s.telemetry.battery_mv < LOW_MV - 100, 10.0)
            out = io.StringIO()
            monitor = BatteryMonitor(broker.operator_config(), options(csv_path=csv_path), out)
            task = asyncio.create_task(monitor.run())
            await until_output(out, "(robot low)")  # not only below the threshold
            async with asyncio.timeout(10.0):
                while len(monitor.rows) < 3:
                    await asyncio.sleep(0.05)
            monitor.stop()
            return await task, out.getvalue(), monitor.rows

    status, text, rows = run(main_)
    assert status == 2, text  # low at the end
    assert "ALARM: battery LOW" in text
    logged = read_csv(csv_path)
    assert logged == rows
    assert len(logged) >= 3
    assert all(int(r["battery_mv"]) < LOW_MV for r in logged), [r["battery_mv"] for r in logged]
    assert logged[-1]["level"] == "low"
    assert int(logged[-1]["critical_mv"]) == CRITICAL_MV
    # Offline plot of that CSV through the command line.
    assert main(["battery", "--plot-csv", str(csv_path), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000


def test_silence_is_an_alarm_and_offline_too(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> tuple[int, str]:
        out = io.StringIO()
        monitor = BatteryMonitor(broker.operator_config(), options(stale_after_s=1.0), out)
        async with robot_side(broker, link_config) as robot:
            task = asyncio.create_task(monitor.run())
            await until_output(out, "level ok")
            robot.silent.add("battery")  # the publisher stops; the robot is still "online"
            await until_output(out, "ALARM: NO DATA for")
        # Leaving the robot side publishes the retained "offline" (as the last will would).
        await until_output(out, "ALARM: robot OFFLINE")
        monitor.stop()
        return await task, out.getvalue()

    status, text = run(main_, guard_s=40.0)
    assert status == 3, text
    assert text.index("level ok") < text.index("NO DATA") < text.index("OFFLINE")


def test_home_assistant_discovery_is_retained_and_well_formed(
    tmp_path: Path, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    broker = Broker(tmp_path, extra_acl=HA_ACL)
    broker.start()
    pack = Pack("liion", 3)

    async def main_() -> tuple[dict[str, dict[str, object]], dict[str, object]]:
        async with robot_side(broker, link_config):
            out = io.StringIO()
            monitor = BatteryMonitor(
                broker.operator_config(), options(once=True, home_assistant=True), out
            )
            assert await monitor.run() == 0
        # A later subscriber (Home Assistant starting up) gets them: retained.
        configs: dict[str, dict[str, object]] = {}
        battery: dict[str, object] = {}
        async with aiomqtt.Client("127.0.0.1", broker.port, username="operator",
                                  password=OPERATOR_PASSWORD, identifier="ha") as ha:
            await ha.subscribe("homeassistant/sensor/+/config", qos=1)
            async with asyncio.timeout(5.0):
                async for message in ha.messages:
                    assert message.retain
                    assert isinstance(message.payload, bytes)
                    configs[str(message.topic)] = json.loads(message.payload)
                    if len(configs) == 3:
                        break
        battery = {"battery_mv": 11_400, "level": "low", "low_mv": LOW_MV,
                   "critical_mv": CRITICAL_MV, "stamp_unix_s": 1.0}
        return configs, battery

    try:
        configs, battery = run(main_)
    finally:
        broker.stop()
    prefix = "homeassistant/sensor/zima_zima-test_battery_"
    assert set(configs) == {f"{prefix}{k}/config" for k in ("voltage", "soc", "level")}
    env = jinja2.Environment(autoescape=False)
    values = {}
    for topic, body in configs.items():
        key = topic.removeprefix(prefix).removesuffix("/config")
        assert body["state_topic"] == f"zima/{ROBOT}/telemetry/battery"
        assert body["availability_topic"] == f"zima/{ROBOT}/status"
        assert (body["payload_available"], body["payload_not_available"]) == ("online", "offline")
        assert body["unique_id"] == f"zima_zima-test_battery_{key}"
        device = body["device"]
        assert isinstance(device, dict)
        assert device["identifiers"] == ["zima_zima-test"]
        template = body["value_template"]
        assert isinstance(template, str)
        values[key] = env.from_string(template).render(value_json=battery).strip()
    assert float(values["voltage"]) == pytest.approx(11.4)
    assert float(values["soc"]) == pytest.approx(round(pack.soc_percent(11_400)))
    assert values["level"] == "low"
    assert configs[f"{prefix}soc/config"]["unit_of_measurement"] == "%"
    assert configs[f"{prefix}soc/config"]["device_class"] == "battery"


@pytest.mark.parametrize("mv", [13_000, 12_600, 11_400, 10_000, 9_000, 8_000])
def test_the_home_assistant_soc_template_matches_the_model(mv: int) -> None:
    pack = Pack("liion", 3)
    config = HostMqttConfig(robot_id="r1")
    soc = next(json.loads(p) for t, p in discovery_messages(config, pack) if "soc" in t)
    rendered = jinja2.Environment(autoescape=False).from_string(
        soc["value_template"]
    ).render(value_json={"battery_mv": mv})
    assert float(rendered) == round(pack.soc_percent(mv))


def test_the_terminal_view_redraws_in_place(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> str:
        async with robot_side(broker, link_config):
            out = io.StringIO()
            monitor = BatteryMonitor(broker.operator_config(), options(tty=True), out)
            task = asyncio.create_task(monitor.run())
            await until_output(out, "last reading")
            await until_output(out, "\x1b[")  # a second drawing moves the cursor back up
            monitor.stop()
            await task
            return out.getvalue()

    text = run(main_)
    first = text.split("\x1b[", 1)[0]
    lines = first.splitlines()
    assert lines[0].startswith(f"zima battery: robot {ROBOT}, 3-cell liion")
    assert f"\x1b[{len(lines)}F\x1b[J" in text  # up to the first line, clear below


def test_bad_flags_and_files_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["battery", "--cells", "0"]) == 1
    assert "cells=0" in capsys.readouterr().err
    assert main(["battery", "--plot-csv", str(tmp_path / "none.csv"), "--plot", "x.png"]) == 1
    assert "none.csv" in capsys.readouterr().err
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    assert main(["battery", "--plot-csv", str(tmp_path / "other.csv"), "--plot", "x.png"]) == 1
    assert "not a zima battery CSV" in capsys.readouterr().err
    assert main(["battery", "--plot-csv", str(tmp_path / "other.csv")]) == 1
    assert "needs --plot" in capsys.readouterr().err
    assert main(["battery", "--broker", "localhost:99999"]) == 1
    assert "port" in capsys.readouterr().err
    assert main(["battery", "--username", "operator", "--password-file",
                 str(tmp_path / "missing")]) == 1
    assert "missing" in capsys.readouterr().err


def test_format_view_before_any_reading() -> None:
    from zima.host.battery_model import BatteryTracker  # noqa: PLC0415

    tracker = BatteryTracker(Pack("lipo", 4), stale_after_s=5.0)
    tracker.start(0.0)
    lines = format_view(tracker.view(7.0), "r1", Pack("lipo", 4))
    assert lines == ["zima battery: robot r1, 4-cell lipo", "no reading yet",
                     "ALARM: NO DATA for 7 s"]


def test_a_critical_latch_says_what_to_do_until_it_is_cleared(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> tuple[int, str]:
        async with robot_side(broker, link_config) as robot:
            await robot.link.set_param(ParamId.batt_crit_debounce_ms, 0)
            await asyncio.to_thread(board.set_battery, 9_500)
            await robot.link.wait_for(lambda s: Fault.BATT_CRITICAL in s.faults, 10.0)
            out = io.StringIO()
            monitor = BatteryMonitor(broker.operator_config(), options(), out)
            task = asyncio.create_task(monitor.run())
            await until_output(out, "state critical, latched: the MCU stopped the tracks")
            # Back to 12 V: the MCU keeps its latch; the operator is told how to clear it.
            await asyncio.to_thread(board.set_battery, 12_000)
            await robot.link.wait_for(lambda s: s.telemetry.battery_mv > CLEAR_MV + 500, 10.0)
            await until_output(out, "state critical, latch can clear: the pack is back at")
            state = robot.link.state
            assert state is not None
            assert Fault.BATT_CRITICAL in state.faults  # the MCU keeps its latch
            await robot.link.clear(Fault.BATT_CRITICAL)  # what the runtime does on idle
            mark = len(out.getvalue())
            async with asyncio.timeout(10.0):
                while "level ok (robot ok)" not in out.getvalue()[mark:]:
                    await asyncio.sleep(0.05)
            monitor.stop()
            return await task, out.getvalue()

    status, text = run(main_, guard_s=60.0)
    assert status == 0, text
    latched = next(line for line in text.splitlines() if "critical, latched" in line)
    assert f"once the pack is above {CLEAR_MV / 1000:.2f} V" in latched
    assert f"zima/{ROBOT}/cmd/mode" in latched
    assert "Idle button" in latched
    clearable = next(line for line in text.splitlines() if "latch can clear" in line)
    assert "ask for idle" in clearable
    assert "ALARM: battery CRITICAL" in clearable  # still critical until it is cleared


def test_hostile_battery_payloads_are_skipped_counted_and_said(broker: Broker) -> None:
    topic = f"zima/{ROBOT}/telemetry/battery"
    good = json.dumps({"battery_mv": 11_900, "level": "ok", "low_mv": LOW_MV,
                       "critical_mv": CRITICAL_MV, "stamp_unix_s": 1.0}).encode()

    async def main_() -> tuple[int, BatteryMonitor, str]:
        out = io.StringIO()
        monitor = BatteryMonitor(broker.operator_config(), options(duration_s=20.0), out)
        task = asyncio.create_task(monitor.run())
        async with asyncio.timeout(10.0):  # until subscribed: a reading gets through
            while not monitor.rows:
                await publish_as_robot(broker, [(topic, good)])
                await asyncio.sleep(0.1)
        await publish_as_robot(broker, [(topic, p) for p in HOSTILE] + [(topic, good)])
        async with asyncio.timeout(10.0):
            while monitor.bad_payloads < len(HOSTILE) or len(monitor.rows) < 2:
                await asyncio.sleep(0.05)
        monitor.stop()
        return await task, monitor, out.getvalue()

    status, monitor, text = run(main_, guard_s=40.0)
    assert status == 0, text  # the last reading was a good one: the monitor lived on
    assert monitor.bad_payloads == len(HOSTILE)
    ignored = [line for line in text.splitlines() if line.startswith("ignored: ")]
    assert len(ignored) == 10  # BAD_LINES_SHOWN: a flood does not flood the log
    assert "nested deeper than" in ignored[1]
    assert "over the limit" in text
    assert "not UTF-8" in text
    assert "level='\\x1b[2J'" in text  # shown escaped, never sent to the terminal raw
    assert "\x1b" not in text
    assert "(10 bad so far)" in ignored[-1]
