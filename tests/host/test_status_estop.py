"""`zima status` and `zima estop` against the real robot side (emulated board, McuLink, the
onboard Telemetry publisher) over a real Mosquitto with the sample ACL."""

from pathlib import Path

import pytest

from tests.host.robot import robot_side
from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, Broker
from tests.onboard.helpers import run
from zima.cli import main
from zima.emulator import EmulatedBoard
from zima.host.estop import EstopOutcome, send_estop
from zima.host.mqtt import HostMqttConfig
from zima.host.status import STREAMS, StatusBoard, collect_status
from zima.onboard.link_config import LinkConfig
from zima.protocol import State


def operator_config(broker: Broker) -> HostMqttConfig:
    return HostMqttConfig(ROBOT, "127.0.0.1", broker.port, "operator", OPERATOR_PASSWORD)


def test_status_shows_every_topic_and_names_the_silent_one(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> tuple[StatusBoard, StatusBoard]:
        async with robot_side(broker, link_config, silent=frozenset({"policy"})) as robot:
            partial = await collect_status(operator_config(broker), timeout_s=2.0)
            robot.silent.clear()
            full = await collect_status(operator_config(broker), timeout_s=10.0)
            return partial, full

    partial, full = run(main_, guard_s=30.0)
    assert partial.missing == ["policy"]
    assert partial.exit_status == 3
    text = "\n".join(partial.render())
    assert "policy   no data" in text
    assert full.missing == []
    assert full.exit_status == 0
    lines = full.render()
    assert lines[0] == f"robot {ROBOT}: online"
    text = "\n".join(lines)
    assert "mode     idle (owner none)" in text
    assert "MCU connected, firmware 0." in text
    assert "battery  12.0" in text or "battery  11.9" in text
    assert "ok" in text
    assert "model sha256 abababababababab" in text
    assert "faults   none (MCU IDLE)" in text
    assert "overruns 0" in text
    assert all(any(line.strip().startswith(s) for line in lines) for s in STREAMS)


def test_status_of_a_robot_that_never_spoke(
    broker: Broker, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    password = tmp_path / "password"
    password.write_text(OPERATOR_PASSWORD + "\n")
    argv = ["status", "--robot", ROBOT, "--broker", f"127.0.0.1:{broker.port}",
            "--username", "operator", "--password-file", str(password), "--timeout", "0.5"]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "status unknown" in out
    assert "no data within 0.5 s on: mode, link, battery" in out


def test_wrong_password_is_a_clear_error(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIMA_MQTT_PASSWORD", "wrong")
    argv = ["status", "--broker", f"127.0.0.1:{broker.port}", "--username", "operator"]
    assert main(argv) == 1
    assert "refused user 'operator'" in capsys.readouterr().err


def test_estop_engages_and_releases_with_confirmation(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig
) -> None:
    async def main_() -> None:
        async with robot_side(broker, link_config) as robot:
            robot.link.drive(200, 200)  # moving when the stop comes
            engaged = await send_estop(operator_config(broker), engaged=True, timeout_s=10.0)
            assert engaged.confirmed, engaged.describe()
            assert engaged.mode == "estop"
            assert "CONFIRMED" in engaged.describe()
            state = await robot.link.wait_for(lambda s: s.state == State.ESTOP, 5.0)
            assert state.state == State.ESTOP  # the MCU itself latched it
            assert robot.estops[-1].request_id == engaged.request_id
            released = await send_estop(operator_config(broker), engaged=False, timeout_s=10.0)
            assert released.confirmed, released.describe()
            assert released.mode == "idle"
            await robot.link.wait_for(lambda s: s.state != State.ESTOP, 5.0)

    run(main_, guard_s=40.0)


def test_estop_without_a_robot_is_not_confirmed(
    broker: Broker, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZIMA_MQTT_PASSWORD", OPERATOR_PASSWORD)
    argv = ["estop", "--robot", ROBOT, "--broker", f"127.0.0.1:{broker.port}",
            "--username", "operator", "--timeout", "0.5"]
    assert main(argv) == 2
    out = capsys.readouterr().out
    assert "no result for e-stop request" in out
    assert "NOT CONFIRMED" in out


def test_a_refused_estop_says_why() -> None:
    refused = EstopOutcome(engaged=True, request_id="r1", mode="teleop", mode_confirmed=False,
                           result={"accepted": False, "error": "busy"})
    assert not refused.confirmed
    assert "REFUSED the e-stop: busy" in refused.describe()
