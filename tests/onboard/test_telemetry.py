"""Telemetry against a real Mosquitto on loopback, with the sample ACL and real passwords.

Rates are judged by counts over generous windows, not by tight timing.
"""

import asyncio
import json
import signal
import subprocess
import sys

import aiomqtt
import pytest

from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, ROBOT_PASSWORD, Broker
from zima.onboard.mqtt_config import (
    AuthRefusedError,
    CommandError,
    EstopCommand,
    Mode,
    ModeCommand,
    MqttConfig,
    TeleopCommand,
    parse_command,
)
from zima.onboard.telemetry import Provider, Telemetry


def robot_config(broker: Broker, **changes: object) -> MqttConfig:
    fields: dict[str, object] = {
        "robot_id": ROBOT,
        "port": broker.port,
        "host": "127.0.0.1",
        "username": ROBOT,
        "password": ROBOT_PASSWORD,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "rates_hz": {"battery": 5.0, "odometry": 20.0, "mode": 2.0, "policy": 2.0},
    }
    fields.update(changes)
    return MqttConfig(**fields)  # type: ignore[arg-type]


def operator(broker: Broker, identifier: str = "operator") -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username="operator",
        password=OPERATOR_PASSWORD,
        identifier=identifier,
        timeout=2.0,
    )


async def collect(client: aiomqtt.Client, window_s: float) -> list[tuple[str, bytes]]:
    seen: list[tuple[str, bytes]] = []

    async def gather() -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            seen.append((str(message.topic), message.payload))

    try:
        async with asyncio.timeout(window_s):
            await gather()
    except TimeoutError:
        pass
    return seen


PROVIDERS: dict[str, Provider] = {
    "battery": lambda: {"battery_mv": 12600, "current_ma": 850},
    "odometry": lambda: {"x_m": 1.5, "y_m": -0.25, "heading_rad": 0.1},
    "mode": lambda: {"mode": "teleop"},
    "policy": lambda: {"latency_ms": 12.5, "model_hash": "abc123"},
}


def test_telemetry_arrives_on_documented_topics_at_roughly_the_configured_rate(
    broker: Broker,
) -> None:
    async def main() -> list[tuple[str, bytes]]:
        async with operator(broker) as op:
            await op.subscribe("zima/+/telemetry/#")
            async with Telemetry(robot_config(broker), PROVIDERS) as telemetry:
                await telemetry.wait_connected(5.0)
                seen = await collect(op, 2.0)
            assert telemetry.counters.dropped == 0
            return seen

    seen = asyncio.run(main())
    counts = dict.fromkeys(PROVIDERS, 0)
    for topic, payload in seen:
        stream = topic.removeprefix(f"zima/{ROBOT}/telemetry/")
        counts[stream] += 1
        body = json.loads(payload)
        assert "stamp_unix_s" in body
    # 2 s at 20, 5, 2, 2 Hz: 40, 10, 4, 4 messages; accept a wide band around that.
    assert 25 <= counts["odometry"] <= 50, counts
    assert 6 <= counts["battery"] <= 14, counts
    assert 2 <= counts["mode"] <= 6, counts
    assert 2 <= counts["policy"] <= 6, counts
    battery = next(json.loads(p) for t, p in seen if t.endswith("/battery"))
    assert battery["battery_mv"] == 12600


def test_commands_reach_the_queue_and_bad_ones_are_answered(broker: Broker) -> None:
    async def main() -> None:
        async with operator(broker) as op:
            await op.subscribe(f"zima/{ROBOT}/cmd/result")
            async with Telemetry(robot_config(broker, rates_hz={}), {}) as telemetry:
                await telemetry.wait_connected(5.0)
                base = f"zima/{ROBOT}/cmd/"
                await op.publish(base + "mode", b'{"mode": "autonomous", "request_id": "a"}', 1)
                too_fast = b'{"linear_m_per_s": 9.0, "angular_rad_per_s": 0}'
                await op.publish(base + "teleop", too_fast, 1)
                await op.publish(base + "estop", b"{not json", 1)
                await op.publish(base + "estop", b'{"engaged": true, "request_id": "e"}', 1)
                first = await asyncio.wait_for(telemetry.commands.get(), 5.0)
                second = await asyncio.wait_for(telemetry.commands.get(), 5.0)
                assert first == ModeCommand(Mode.AUTONOMOUS, "a")
                assert second == EstopCommand(engaged=True, request_id="e")
                results = []
                async with asyncio.timeout(5.0):
                    async for message in op.messages:
                        assert isinstance(message.payload, bytes)
                        results.append(json.loads(message.payload))
                        if len(results) == 4:
                            break
                assert telemetry.commands.empty()
                assert telemetry.counters.commands_refused == 2
        by_command = {(r["command"], r["accepted"]): r for r in results}
        assert by_command[("mode", True)]["request_id"] == "a"
        assert "outside" in by_command[("teleop", False)]["error"]
        assert "not JSON" in by_command[("estop", False)]["error"]
        assert by_command[("estop", True)]["request_id"] == "e"

    asyncio.run(main())


def test_parse_command_is_strict() -> None:
    config = MqttConfig()
    ok = parse_command("teleop", b'{"linear_m_per_s": 0.5, "angular_rad_per_s": -1}', config)
    assert ok == TeleopCommand(0.5, -1.0)
    for name, payload in [
        ("teleop", b'{"linear_m_per_s": 0.5}'),
        ("teleop", b'{"linear_m_per_s": true, "angular_rad_per_s": 0}'),
        ("teleop", b'{"linear_m_per_s": NaN, "angular_rad_per_s": 0}'),
        ("mode", b'{"mode": "fly"}'),
        ("estop", b'{"engaged": 1}'),
        ("reload", b'{"target": "firmware"}'),
        ("reload", b"[]"),
        ("dance", b"{}"),
        ("mode", b'{"mode": "idle", "request_id": 7}'),
    ]:
        with pytest.raises(CommandError):
            parse_command(name, payload, config)


ROBOT_SCRIPT = """
import asyncio, sys
from zima.onboard.mqtt_config import MqttConfig
from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, ROBOT_PASSWORD, Broker
from zima.onboard.telemetry import Provider, Telemetry

async def main() -> None:
    config = MqttConfig(robot_id=sys.argv[1], host="127.0.0.1", port=int(sys.argv[2]),
                        username=sys.argv[1], password=sys.argv[3])
    async with Telemetry(config, {}) as telemetry:
        await telemetry.wait_connected(5.0)
        print("connected", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


def test_status_is_retained_and_the_last_will_says_offline(broker: Broker) -> None:
    robot = subprocess.Popen(
        [sys.executable, "-c", ROBOT_SCRIPT, ROBOT, str(broker.port), ROBOT_PASSWORD],
        stdout=subprocess.PIPE,
    )
    try:
        assert robot.stdout is not None
        assert robot.stdout.readline().strip() == b"connected"

        async def main() -> None:
            async with operator(broker) as op:
                await op.subscribe(f"zima/{ROBOT}/status", qos=1)
                statuses = op.messages
                async with asyncio.timeout(5.0):
                    retained = await anext(aiter(statuses))
                assert retained.retain
                assert retained.payload == b"online"
                robot.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
                async with asyncio.timeout(5.0):
                    will = await anext(aiter(statuses))
                assert will.payload == b"offline"

            async with operator(broker, "late-operator") as late:
                await late.subscribe(f"zima/{ROBOT}/status", qos=1)
                async with asyncio.timeout(5.0):
                    retained = await anext(aiter(late.messages))
                assert retained.retain
                assert retained.payload == b"offline"

        asyncio.run(main())
    finally:
        robot.kill()
        robot.wait()
        if robot.stdout is not None:
            robot.stdout.close()


def test_broker_outage_never_blocks_the_caller_and_telemetry_resumes(broker: Broker) -> None:
    period_s, ticks = 0.01, 100

    async def tick_loop(telemetry: Telemetry) -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(ticks):
            telemetry.post("loop", {"tick": i, "rate_hz": 1 / period_s})
            await asyncio.sleep(period_s)
        return loop.time() - start

    async def main() -> None:
        config = robot_config(broker, queue_len=16, rates_hz={"loop": 50.0, "odometry": 20.0})
        providers = {"odometry": PROVIDERS["odometry"]}
        async with Telemetry(config, providers) as telemetry:
            await telemetry.wait_connected(5.0)
            await asyncio.to_thread(broker.stop)
            await telemetry.broker.wait_for(lambda s: not s.connected, 5.0)
            elapsed_s = await tick_loop(telemetry)  # the broker is down all along
            assert not telemetry.broker.value.connected
            assert elapsed_s < 3 * ticks * period_s
            assert telemetry.counters.dropped > 0  # more than 16 queued: the oldest went
            await asyncio.to_thread(broker.start)
            await telemetry.wait_connected(10.0)
            assert telemetry.counters.connects == 2
            async with operator(broker) as op:
                await op.subscribe(f"zima/{ROBOT}/telemetry/#")
                seen = await collect(op, 1.0)
            assert any(topic.endswith("/odometry") for topic, _ in seen)

    asyncio.run(main())


def test_wrong_password_is_refused_with_a_clear_error(broker: Broker) -> None:
    async def main() -> None:
        config = robot_config(broker, password="wrong")
        async with Telemetry(config, {"battery": PROVIDERS["battery"]}) as telemetry:
            with pytest.raises(AuthRefusedError, match="refused"):
                await telemetry.wait_connected(5.0)
            telemetry.post("battery", {"battery_mv": 1})  # still never raises

    asyncio.run(main())
