"""Telemetry against a real Mosquitto on loopback, with the sample ACL and real passwords.

Rates are judged by counts over generous windows, not by tight timing.
"""

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import aiomqtt
import pytest

from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT, ROBOT_PASSWORD, Broker
from zima.onboard.commands import (
    EstopCommand,
    HeartbeatCommand,
    ModeCommand,
)
from zima.onboard.mqtt_config import AuthRefusedError, MqttConfig
from zima.onboard.safety import DriveMode
from zima.onboard.telemetry import Provider, Telemetry

from .helpers import ManualClock


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


@contextlib.asynccontextmanager
async def command_channel(broker: Broker) -> AsyncIterator[tuple[aiomqtt.Client, Telemetry]]:
    """An operator that hears ``cmd/result`` and a connected robot-side ``Telemetry``
    publishing nothing: the commands' own way, in and back."""
    async with operator(broker) as op:
        await op.subscribe(f"zima/{ROBOT}/cmd/result", qos=1)
        async with Telemetry(robot_config(broker, rates_hz={}), {}) as telemetry:
            await telemetry.wait_connected(5.0)
            yield op, telemetry


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
        async with command_channel(broker) as (op, telemetry):
            base = f"zima/{ROBOT}/cmd/"
            await op.publish(base + "mode", b'{"mode": "autonomous", "request_id": "a"}', 1)
            too_fast = b'{"linear_m_per_s": 9.0, "angular_rad_per_s": 0}'
            await op.publish(base + "teleop", too_fast, 1)
            await op.publish(base + "estop", b"{not json", 1)
            await op.publish(base + "estop", b'{"engaged": true, "request_id": "e"}', 1)
            first = await asyncio.wait_for(telemetry.commands.get(), 5.0)
            second = await asyncio.wait_for(telemetry.commands.get(), 5.0)
            assert first == ModeCommand(DriveMode.AUTONOMOUS, "a")
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
    with subprocess.Popen(
        [sys.executable, "-c", ROBOT_SCRIPT, ROBOT, str(broker.port), ROBOT_PASSWORD],
        stdout=subprocess.PIPE,
    ) as robot:
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
            robot.kill()  # leaving the with: waits for it, closes its stdout


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


def test_a_deeply_nested_command_is_refused_and_the_estop_after_it_arrives(
    broker: Broker,
) -> None:
    """Issue 13: 3 kB of ``[`` on cmd/mode made json.loads raise RecursionError, which
    killed the MQTT part without a word; the e-stop after it was never heard."""

    async def main() -> None:
        async with command_channel(broker) as (op, telemetry):
            base = f"zima/{ROBOT}/cmd/"
            await op.publish(base + "mode", b"[" * 3000, 1)
            huge_id = b'{"mode": "idle", "request_id": "' + b"x" * 1_000_000 + b'"}'
            await op.publish(base + "mode", huge_id, 1)
            await op.publish(base + "estop", b'{"engaged": true, "request_id": "e"}', 1)
            command = await asyncio.wait_for(telemetry.commands.get(), 5.0)
            assert command == EstopCommand(engaged=True, request_id="e")
            results: list[tuple[int, dict[str, object]]] = []
            async with asyncio.timeout(5.0):
                async for message in op.messages:
                    assert isinstance(message.payload, bytes)
                    results.append((len(message.payload), json.loads(message.payload)))
                    if len(results) == 3:
                        break
            # Still the same session, nothing failed, and "online" is the truth.
            assert telemetry.broker.value.connected
            assert telemetry.counters.connects == 1
            assert telemetry.counters.failures == 0
            assert telemetry.counters.commands_refused == 2
            async with operator(broker, "late-operator") as late:
                await late.subscribe(f"zima/{ROBOT}/status", qos=1)
                async with asyncio.timeout(5.0):
                    status = await anext(aiter(late.messages))
                assert status.payload == b"online"
        nested, huge, estop = (body for _, body in results)
        assert nested["accepted"] is False
        assert "nested deeper" in str(nested["error"])
        assert huge["accepted"] is False
        assert huge["request_id"] is None  # a 1 MB request_id is not echoed
        assert "over the limit" in str(huge["error"])
        assert max(size for size, _ in results) < 300
        assert estop == {"command": "estop", "request_id": "e", "accepted": True, "error": None}

    asyncio.run(main())


def test_heartbeats_are_queued_without_a_result_and_a_bad_one_is_answered(
    broker: Broker,
) -> None:
    async def main() -> None:
        async with command_channel(broker) as (op, telemetry):
            base = f"zima/{ROBOT}/cmd/"
            await op.publish(base + "heartbeat", b"{}", 1)
            await op.publish(base + "heartbeat", b'{"request_id": "h2"}', 1)
            await op.publish(base + "heartbeat", b'{"alive": true, "request_id": "h3"}', 1)
            first = await asyncio.wait_for(telemetry.commands.get(), 5.0)
            second = await asyncio.wait_for(telemetry.commands.get(), 5.0)
            assert (first, second) == (HeartbeatCommand(), HeartbeatCommand("h2"))
            async with asyncio.timeout(5.0):
                message = await anext(aiter(op.messages))
            seen = await collect(op, 0.5)  # nothing more: valid heartbeats are silent
            assert telemetry.counters.commands_refused == 1
        assert isinstance(message.payload, bytes)
        result = json.loads(message.payload)
        assert result["command"] == "heartbeat"
        assert result["request_id"] == "h3"
        assert result["accepted"] is False
        assert "heartbeat takes exactly []" in result["error"]
        assert seen == []

    asyncio.run(main())


def test_an_unexpected_error_is_logged_counted_and_the_session_restarted(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller's stream name with a wildcard makes paho raise ValueError (not an
    MqttError) inside the send task: logged with its traceback, counted, the message
    dropped, and telemetry goes on in a new session."""

    async def main() -> None:
        config = robot_config(broker, rates_hz={"odometry": 20.0})
        async with operator(broker) as op:
            await op.subscribe(f"zima/{ROBOT}/telemetry/#")
            async with Telemetry(config, {"odometry": PROVIDERS["odometry"]}) as telemetry:
                await telemetry.wait_connected(5.0)
                telemetry.post("bad/#", {"x": 1})
                await telemetry.broker.wait_for(lambda s: not s.connected, 5.0)
                await telemetry.wait_connected(5.0)
                assert telemetry.counters.failures == 1
                assert telemetry.counters.connects == 2
                assert "ValueError" in str(telemetry.counters.last_failure)
                seen = await collect(op, 0.5)
        assert any(topic.endswith("/odometry") for topic, _ in seen)

    asyncio.run(main())
    failures = [r for r in caplog.records if "failed" in r.getMessage() and r.exc_info]
    assert failures, caplog.text
    assert failures[0].exc_info is not None
    assert failures[0].exc_info[0] is ValueError


def test_after_a_broker_outage_the_newest_state_goes_first_and_old_messages_never(
    broker: Broker,
) -> None:
    """Issue 13: after an outage, 232 queued messages up to 12.8 s old arrived before any
    fresh one. Now each topic's newest message goes, newest first, and nothing older than
    max_backlog_age_s. The broker really stops; when it is back the robot is kept out
    (its password removed, then restored with a SIGHUP) until the operator listens."""
    clock = ManualClock()  # the queue's clock
    passwd = broker.conf.parent / "passwd"
    tool = shutil.which("mosquitto_passwd")
    assert tool is not None

    async def main() -> list[tuple[str, dict[str, float]]]:
        config = robot_config(broker, rates_hz={}, max_backlog_age_s=1.0)
        async with Telemetry(config, {}, monotonic=clock) as telemetry:
            await telemetry.wait_connected(5.0)
            await asyncio.to_thread(broker.stop)
            await telemetry.broker.wait_for(lambda s: not s.connected, 5.0)
            telemetry.post("battery", {"n": 0, "posted_s": clock.now_s})  # will be too old
            telemetry.post("mode", {"n": 0, "posted_s": clock.now_s})  # superseded
            for n in range(20):  # odometry at 10 Hz for 2 s: only the last may go
                clock.now_s = 0.1 * n
                telemetry.post("odometry", {"n": n, "posted_s": clock.now_s})
            clock.now_s = 2.0
            telemetry.post("mode", {"n": 1, "posted_s": clock.now_s})
            clock.now_s = 2.5  # battery is 2.5 s old, mode 0.5 s, odometry 0.6 s
            subprocess.run([tool, "-D", str(passwd), ROBOT], check=True)
            await asyncio.to_thread(broker.start)
            async with operator(broker) as op:
                await op.subscribe(f"zima/{ROBOT}/telemetry/#")
                subprocess.run([tool, "-b", str(passwd), ROBOT, ROBOT_PASSWORD], check=True)
                assert broker.process is not None
                broker.process.send_signal(signal.SIGHUP)  # let the robot in
                await telemetry.broker.wait_for(lambda s: s.connected, 10.0)
                seen = await collect(op, 1.0)
            assert telemetry.counters.expired == 1  # battery
            assert telemetry.counters.dropped == 1 + 1 + 19  # battery, mode 0, odometry 0..18
            assert telemetry.counters.failures == 0
        return [(topic.rsplit("/", 1)[-1], json.loads(payload)) for topic, payload in seen]

    seen = asyncio.run(main())
    assert all(clock.now_s - body["posted_s"] <= 1.0 for _, body in seen), seen
    assert [(stream, body["n"]) for stream, body in seen] == [("mode", 1), ("odometry", 19)]
