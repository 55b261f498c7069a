"""The MQTT side of issue 14's operator security, against a real Mosquitto running the
sample config (onboard/mosquitto.conf.example, its TLS listener opened with a CA made here
by openssl) and the real robot-side ``Telemetry``: TLS checked against the CA, client ids
that no other account can take, signed commands (HMAC, time window, no replays), the host
tools' ``--tls/--cafile/--command-key-file``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import ssl
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from tests.mqtt_broker import (
    ALICE_PASSWORD,
    OPERATOR_PASSWORD,
    ROBOT,
    ROBOT_PASSWORD,
    Broker,
    TestCa,
    make_test_ca,
)
from zima.host import mqtt
from zima.host.estop import send_estop
from zima.onboard.commands import (
    CommandError,
    CommandKey,
    EstopCommand,
    ModeCommand,
    TeleopCommand,
    parse_command,
)
from zima.onboard.config import ConfigError, config_from_table
from zima.onboard.mqtt_config import MqttConfig
from zima.onboard.safety import DriveMode
from zima.onboard.telemetry import Telemetry

from .helpers import run

KEY = "k" * 20 + "-the-robot-command-key"
NOW_S = 1_767_225_600.0  # the robots' wall clock in the pure tests


def signed_config(**changes: object) -> MqttConfig:
    return MqttConfig(robot_id="r1", command_key_file=Path("/etc/zima/command-key"),
                      command_key=CommandKey(KEY), **changes)  # type: ignore[arg-type]


def signed(name: str, body: dict[str, object], *, key: str = KEY, robot: str = "r1",
           ts: float = NOW_S) -> bytes:
    return json.dumps(CommandKey(key).sign(robot, name, body, ts)).encode()


# ---- signed commands: the codec --------------------------------------------------------
def test_a_signed_command_is_taken_once_within_its_window() -> None:
    config = signed_config()
    payload = signed("mode", {"mode": "idle", "request_id": "r-1"}, ts=NOW_S - 10)
    command = parse_command("mode", payload, config, now_s=NOW_S)
    assert command == ModeCommand(DriveMode.IDLE, request_id="r-1")
    with pytest.raises(CommandError, match="replayed"):
        parse_command("mode", payload, config, now_s=NOW_S + 1)
    # Whitespace and key order are not signed: the canonical JSON is.
    body = json.loads(signed("teleop", {"linear_m_per_s": 0.5, "angular_rad_per_s": 0}))
    reordered = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    assert parse_command("teleop", reordered, config, now_s=NOW_S) == TeleopCommand(0.5, 0.0)


@pytest.mark.parametrize(("name", "payload", "why"), [
    ("mode", signed("mode", {"mode": "idle"}, key="another-key-of-20-chars"), "bad signature"),
    ("mode", signed("mode", {"mode": "idle"}, robot="r2"), "bad signature"),  # other robot
    ("estop", signed("mode", {"engaged": False}), "bad signature"),  # other command
    ("mode", signed("mode", {"mode": "idle"}, ts=NOW_S - 31), "from the robot's clock"),
    ("mode", signed("mode", {"mode": "idle"}, ts=NOW_S + 31), "from the robot's clock"),
    ("mode", b'{"mode": "idle"}', "signed commands only"),
    ("estop", b'{"engaged": false}', "signed commands only"),  # a release is signed
    ("heartbeat", b"{}", "signed commands only"),  # presence cannot be faked either
    ("mode", json.dumps({"mode": "idle", "ts": NOW_S, "sig": "00" * 32}).encode(),
     "bad signature"),
    ("mode", json.dumps({"mode": "idle", "ts": "now", "sig": "00" * 32}).encode(),
     "ts must be a number"),
    ("mode", json.dumps({"mode": "idle", "ts": NOW_S, "sig": "short"}).encode(), "64 hex"),
])
def test_unsigned_altered_stale_and_foreign_commands_are_refused(
        name: str, payload: bytes, why: str) -> None:
    with pytest.raises(CommandError, match=why):
        parse_command(name, payload, signed_config(), now_s=NOW_S)


def test_an_altered_value_breaks_the_signature() -> None:
    body = json.loads(signed("teleop", {"linear_m_per_s": 0.1, "angular_rad_per_s": 0.0}))
    body["linear_m_per_s"] = 0.9
    with pytest.raises(CommandError, match="bad signature"):
        parse_command("teleop", json.dumps(body).encode(), signed_config(), now_s=NOW_S)


def test_an_engaging_estop_needs_no_signature_and_signing_is_off_by_default() -> None:
    config = signed_config()
    assert parse_command("estop", b'{"engaged": true, "request_id": "x"}', config,
                         now_s=NOW_S) == EstopCommand(engaged=True, request_id="x")
    plain = MqttConfig(robot_id="r1")
    assert parse_command("mode", b'{"mode": "idle"}', plain) == ModeCommand(DriveMode.IDLE)
    with pytest.raises(CommandError, match="checks no signatures"):
        parse_command("mode", signed("mode", {"mode": "idle"}), plain, now_s=NOW_S)
    # Configured but not loaded (a caller that skipped broker_config): refused, not skipped.
    unloaded = MqttConfig(robot_id="r1", command_key_file=Path("/nowhere"))
    with pytest.raises(CommandError, match="not loaded"):
        parse_command("mode", signed("mode", {"mode": "idle"}), unloaded, now_s=NOW_S)


def test_the_key_comes_from_its_file_and_never_shows(tmp_path: Path) -> None:
    key_file = tmp_path / "command-key"
    key_file.write_text(KEY + "\n")
    config = config_from_table({"mqtt": {"command_key_file": "command-key"}}, tmp_path)
    assert config.mqtt.broker.command_key_file == key_file
    broker = config.broker_config()
    assert broker.command_key is not None
    assert KEY not in repr(broker)
    assert KEY not in repr(broker.command_key)
    payload = signed("mode", {"mode": "idle"}, robot="zima")
    assert parse_command("mode", payload, broker, now_s=NOW_S) is not None
    with pytest.raises(ConfigError, match="command_key_file"):
        config_from_table({"mqtt": {"command_key": KEY}})
    key_file.write_text("short\n")
    with pytest.raises(ConfigError, match="16"):
        config.broker_config()


# ---- the real broker with the sample config ---------------------------------------------
@pytest.fixture
def ca(tmp_path: Path) -> TestCa:
    return make_test_ca(tmp_path / "tls")


@pytest.fixture
def sample_broker(tmp_path: Path, ca: TestCa) -> Iterator[Broker]:
    running = Broker(tmp_path, sample_conf=True, tls=ca)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def tool_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    mqtt.add_connection_arguments(parser)
    return parser.parse_args(argv)


def alice_flags(broker: Broker, tmp_path: Path, ca: TestCa) -> list[str]:
    password = tmp_path / "alice-password"
    password.write_text(ALICE_PASSWORD + "\n")
    return ["--robot", ROBOT, "--broker", f"localhost:{broker.tls_port}", "--cafile",
            str(ca.ca), "--username", "alice", "--password-file", str(password)]


@pytest.mark.broker  # Mosquitto with the sample config (not the broker fixture)
def test_host_tools_reach_the_tls_listener_only_with_its_ca(
        sample_broker: Broker, ca: TestCa, tmp_path: Path) -> None:
    flags = alice_flags(sample_broker, tmp_path, ca)
    config = mqtt.config_from_args(tool_args(flags))
    assert config.tls
    assert config.port == sample_broker.tls_port

    async def reach(config: mqtt.HostMqttConfig) -> None:
        async with mqtt.connect(config, "probe") as client:
            await client.subscribe(config.topic("status"))

    run(lambda: reach(config))
    plain_port = tool_args(["--broker", "localhost", "--tls"])
    assert mqtt.config_from_args(plain_port).port == 8883  # TLS's default port
    system_cas = mqtt.config_from_args(tool_args([*flags[:4], "--tls", *flags[6:]]))
    assert system_cas.cafile is None
    assert "certificate verify failed" in refusal(lambda: reach(system_cas))  # not a system CA
    no_tls = mqtt.HostMqttConfig(ROBOT, "localhost", sample_broker.tls_port or 0, "alice",
                                 ALICE_PASSWORD, connect_timeout_s=1.0)
    assert refusal(lambda: reach(no_tls))  # plain MQTT on the TLS port: nothing answers


def refusal(connecting: Callable[[], Coroutine[Any, Any, None]]) -> str:
    """The HostMqttError a connection attempt ends in. paho leaves the socket of a failed
    TLS handshake unclosed (its ``reconnect``): it is collected here, where its
    ResourceWarning is expected, not in a later test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            run(connecting)
        except mqtt.HostMqttError as exc:
            message = str(exc)
        else:
            message = ""
        gc.collect()
    assert message, "the connection was not refused"
    return message


@contextlib.asynccontextmanager
async def robot(broker: Broker, **changes: object) -> AsyncIterator[Telemetry]:
    """The runtime's Telemetry, as the runtime connects (loopback, id zima-<robot>)."""
    config = MqttConfig(robot_id=ROBOT, host="127.0.0.1", port=broker.port, username=ROBOT,
                        password=ROBOT_PASSWORD, reconnect_min_s=0.05, rates_hz={"mode": 5.0},
                        **changes)  # type: ignore[arg-type]
    async with Telemetry(config, {"mode": lambda: {"mode": "idle"}}) as telemetry:
        await telemetry.wait_connected(5.0)
        yield telemetry


async def try_to_take_the_robots_id(port: int, *, tls: TestCa | None, times: int) -> int:
    """Another account connects ``times`` with the runtime's own client id; how many of
    those connections got in and published."""
    got_in = 0
    for _ in range(times):
        context = None if tls is None else ssl.create_default_context(cafile=str(tls.ca))
        # Where the id is taken over, the robot reconnects and takes it back: the intruder
        # may be thrown out in turn, mid-connect. Trying is what counts here.
        with contextlib.suppress(aiomqtt.MqttError):
            async with aiomqtt.Client("localhost", port, username="operator",
                                      password=OPERATOR_PASSWORD, identifier=f"zima-{ROBOT}",
                                      tls_context=context, timeout=2) as intruder:
                await intruder.publish(f"zima/{ROBOT}/cmd/heartbeat", b"{}")
                got_in += 1
        await asyncio.sleep(0.05)
    return got_in


@pytest.mark.broker  # Mosquitto with the sample config (not the broker fixture)
def test_another_account_cannot_take_the_robots_client_id(
        sample_broker: Broker, ca: TestCa) -> None:
    async def main() -> int:
        async with robot(sample_broker) as telemetry:
            assert await try_to_take_the_robots_id(sample_broker.port, tls=None, times=5) == 5
            assert sample_broker.tls_port is not None
            assert await try_to_take_the_robots_id(sample_broker.tls_port, tls=ca, times=5) == 5
            await asyncio.sleep(0.5)
            assert telemetry.broker.value.connected
            return telemetry.counters.connects

    assert run(main) == 1  # never knocked off, so never reconnected


def test_without_the_setting_the_robot_is_knocked_off(broker: Broker) -> None:
    """The control: the plain test broker keeps client ids, and the same intruder kicks
    the robot off (the runtime reconnects each time)."""

    async def main() -> int:
        async with robot(broker) as telemetry:
            await try_to_take_the_robots_id(broker.port, tls=None, times=3)
            await telemetry.wait_connected(5.0)
            return telemetry.counters.connects

    assert run(main) > 1


async def results(client: aiomqtt.Client, count: int) -> list[dict[str, object]]:
    got: list[dict[str, object]] = []
    while len(got) < count:
        message = await mqtt.next_message(client, 5.0)
        assert message is not None, f"only {got}"
        assert isinstance(message.payload, bytes)
        got.append(json.loads(message.payload))
    return got


@pytest.mark.broker  # Mosquitto with the sample config (not the broker fixture)
def test_signed_commands_through_tls_and_the_host_tools(
        sample_broker: Broker, ca: TestCa, tmp_path: Path) -> None:
    key_file = tmp_path / "command-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    flags = alice_flags(sample_broker, tmp_path, ca)
    alice = mqtt.config_from_args(tool_args([*flags, "--command-key-file", str(key_file)]))
    unsigned = mqtt.config_from_args(tool_args(flags))
    watcher = mqtt.HostMqttConfig(ROBOT, "127.0.0.1", sample_broker.port, "operator",
                                  OPERATOR_PASSWORD)

    async def main() -> tuple[list[dict[str, object]], list[object]]:
        taken: list[object] = []
        async with robot(sample_broker, command_key_file=key_file,
                         command_key=CommandKey.from_file(key_file)) as telemetry, \
                mqtt.connect(watcher, "watch") as watch:
            await watch.subscribe(watcher.topic("cmd/result"), qos=1)
            # zima estop's own path: engage unsigned (always taken), release signed ...
            await send_estop(unsigned, engaged=True, timeout_s=0.5, request_id="engage")
            await send_estop(alice, engaged=False, timeout_s=0.5, request_id="signed")
            # ... a release without the key, and one replayed verbatim, are refused.
            await send_estop(unsigned, engaged=False, timeout_s=0.5, request_id="unsigned")
            payload = mqtt.command_payload(alice, "estop", {"engaged": False, "request_id": "re"})
            async with mqtt.connect(alice, "replay") as client:
                for _ in range(2):
                    await client.publish(alice.topic("cmd/estop"), payload, qos=1)
            answers = await results(watch, 5)
            while not telemetry.commands.empty():
                taken.append(telemetry.commands.get_nowait())
        return answers, taken

    answers, taken = run(main, guard_s=30)
    by_id = [(a["request_id"], a["accepted"], a["error"]) for a in answers]
    assert by_id[:2] == [("engage", True, None), ("signed", True, None)]
    assert by_id[2][:2] == ("unsigned", False)
    assert "signed commands only" in str(by_id[2][2])
    assert by_id[3] == ("re", True, None)
    assert by_id[4][:2] == ("re", False)
    assert "replayed" in str(by_id[4][2])
    assert taken == [EstopCommand(engaged=True, request_id="engage"),
                     EstopCommand(engaged=False, request_id="signed"),
                     EstopCommand(engaged=False, request_id="re")]
