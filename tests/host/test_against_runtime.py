"""The operator's tools against the real onboard runtime (not a stand-in robot): the
emulated board's firmware, the runtime with its MQTT telemetry, a real Mosquitto."""

from pathlib import Path

from tests.mqtt_broker import ROBOT, Broker
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
