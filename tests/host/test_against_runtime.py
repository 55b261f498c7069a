"""The operator's tools against the real onboard runtime (not a stand-in robot): the
emulated board's firmware, the runtime with its MQTT telemetry, a real Mosquitto."""

import asyncio
import json
from pathlib import Path

import aiohttp
import aiomqtt

from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, Broker
from tests.onboard.browser import TOKEN, console
from tests.onboard.helpers import run, until_mcu
from tests.onboard.test_runtime import (
    FORWARD,
    ask_mode,
    constant_policy,
    running,
    runtime_config,
    targets,
)
from zima.contract import Action
from zima.emulator import EmulatedBoard
from zima.host.estop import send_estop
from zima.host.status import collect_status
from zima.onboard.link_config import LinkConfig
from zima.onboard.safety import DriveMode
from zima.onboard.web.client import console_session
from zima.protocol import State


def test_status_and_estop_against_the_running_runtime(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    constant_policy(tmp_path / "policy.onnx", Action.FORWARD)
    mqtt = broker.robot_mqtt(tmp_path, rates_hz={"battery": 5.0, "faults": 5.0, "link": 5.0})
    operator = broker.operator_config()

    async def main() -> None:
        async with running(runtime_config(tmp_path, link_config, robot_id=ROBOT,
                                          mqtt=mqtt)) as runtime:
            await ask_mode(runtime, DriveMode.AUTONOMOUS)
            await until_mcu(runtime.link, targets(FORWARD.left_mm_s, FORWARD.right_mm_s), 3000)
            board_status = await collect_status(operator, timeout_s=10.0)
            assert board_status.missing == []
            text = "\n".join(board_status.render())
            assert "autonomous" in text
            assert runtime.model_sha256 is not None
            assert runtime.model_sha256[:16] in text
            outcome = await send_estop(operator, engaged=True, timeout_s=10.0)
            assert outcome.confirmed, outcome.describe()
            await until_mcu(runtime.link, lambda s: s.state == State.ESTOP, 1000)
            assert runtime.safety.mode == DriveMode.ESTOP
            released = await send_estop(operator, engaged=False, timeout_s=10.0)
            assert released.confirmed, released.describe()

    run(main, guard_s=60)


def test_the_console_and_mqtt_refuse_the_same_command_with_the_same_words(
    broker: Broker, board: EmulatedBoard, link_config: LinkConfig, tmp_path: Path
) -> None:
    """Issue 14: one operator API behind every front end. The same out-of-range commands,
    sent as MQTT payloads and as console socket messages to the same running runtime, come
    back refused with the same reason; the robot does not move."""
    constant_policy(tmp_path / "policy.onnx", Action.STOP)
    mqtt = broker.robot_mqtt(tmp_path)
    cases: list[tuple[str, dict[str, object], dict[str, object]]] = [
        # (MQTT topic, its payload, the console's message)
        ("teleop", {"linear_m_per_s": 5.0, "angular_rad_per_s": 0.0},
         {"t": "drive", "v": 5.0, "w": 0.0}),
        ("teleop", {"linear_m_per_s": 0.2, "angular_rad_per_s": -9},
         {"t": "drive", "v": 0.2, "w": -9}),
        ("arm", {"targets": [2000, None, None, None, None, None]},
         {"t": "arm", "targets": [2000, None, None, None, None, None]}),
        ("arm", {"targets": [900]}, {"t": "arm", "targets": [900]}),
        ("mode", {"mode": "estop"}, {"t": "mode", "mode": "estop"}),
    ]

    async def over_mqtt(operator: aiomqtt.Client, topic: str, body: dict[str, object],
                        rid: str) -> str:
        await operator.publish(f"zima/{ROBOT}/cmd/{topic}",
                               json.dumps({**body, "request_id": rid}), qos=1)
        async with asyncio.timeout(10):
            async for message in operator.messages:
                answer = json.loads(bytes(message.payload))
                if answer.get("request_id") == rid:
                    assert answer["accepted"] is False, answer
                    return str(answer["error"])
        raise AssertionError("no cmd/result")

    async def over_console(ws: aiohttp.ClientWebSocketResponse,
                           message: dict[str, object]) -> str:
        await ws.send_str(json.dumps(message))
        async with asyncio.timeout(10):
            while True:
                answer = await ws.receive_json()
                if answer.get("t") == "refused":
                    return str(answer["message"])

    async def main() -> None:
        config = runtime_config(tmp_path, link_config, robot_id=ROBOT, mqtt=mqtt)
        async with running(config) as runtime, console(runtime) as (url, _web), \
                console_session(url, TOKEN) as http, http.ws_connect(url + "/ws") as ws, \
                aiomqtt.Client("127.0.0.1", broker.port, username="operator",
                               password=OPERATOR_PASSWORD, identifier="operator") as operator:
            await operator.subscribe(f"zima/{ROBOT}/cmd/result", qos=1)
            for i, (topic, body, message) in enumerate(cases):
                by_mqtt = await over_mqtt(operator, topic, body, f"r{i}")
                by_console = await over_console(ws, message)
                assert by_mqtt == by_console, (topic, body)
            assert runtime.safety.mode is DriveMode.IDLE  # nothing was carried out

    run(main, guard_s=60)
