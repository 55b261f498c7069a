"""Hostile and oversized operator input, on MQTT and on the web console's WebSocket, while
the policy drives: each message must be refused (a small answer, nothing echoed back in
bulk) and must leave the robot commandable: the e-stop that follows is confirmed by the
operator's own tool (``zima estop``: the command's result and telemetry/mode), by the MCU
(telemetry/faults' ``mcu_state``) and by the board (no PWM on the motors). And the robot's
``status`` says ``online`` only while its MQTT session really works.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
from collections.abc import Awaitable, Callable, Iterable

import aiohttp

from tests.onboard.helpers import run
from zima.onboard.web.client import console_session

from .stack import Message, Operator, Stack, board_until, driving_forward, heartbeats, motors_off

MAX_ANSWER_BYTES = 4096  # a refusal says why in a few words; nothing echoed in bulk
NESTED = b"[" * 3000  # json.loads: RecursionError (not a ValueError)


def mqtt_payloads() -> list[tuple[str, str, bytes]]:
    """(what, command topic, payload), the least destructive first, so that one run
    reports on as many as the robot survives."""
    rng = random.Random(13)
    return [
        ("random bytes", "mode", bytes(rng.randrange(256) for _ in range(4096))),
        ("a 4 MB payload", "teleop", json.dumps(
            {"linear_m_per_s": 0.0, "angular_rad_per_s": 0.0, "pad": "a" * 4_000_000},
        ).encode()),
        ("a 1 MB request_id", "mode",
         json.dumps({"mode": "idle", "request_id": "r" * 1_000_000}).encode()),
        ("3 kB of nested [ on cmd/mode", "mode", NESTED),
        ("nested [ inside an e-stop", "estop", b'{"engaged": ' + NESTED + b"}"),
        # Heartbeats are answered by nothing when right (no noise at 1 Hz per operator);
        # a bad one may be refused on cmd/result, and must not break anything.
        ("nested [ as a heartbeat", "heartbeat", NESTED),
    ]


async def drive(stack: Stack, op: Operator) -> None:
    """The policy (FORWARD) drives: asked on MQTT, seen on the motors."""
    await op.request_mode("autonomous")
    await board_until(stack.board, driving_forward, 10.0, "driving forward")


async def estop_confirmed(stack: Stack, op: Operator) -> None:
    """E-stop over MQTT, confirmed end to end; then released (confirmed too)."""
    start = op.mark()
    engaged = await op.estop(engaged=True, timeout_s=5.0)
    assert engaged.confirmed, engaged.describe()
    await op.wait("telemetry/faults", lambda m: m.get("mcu_state") == "ESTOP", after=start,
                  timeout_s=5.0, what="with mcu_state ESTOP")
    await board_until(stack.board, motors_off, 5.0, "with the motors off")
    released = await op.estop(engaged=False, timeout_s=5.0)
    assert released.confirmed, released.describe()


async def status_is_true(op: Operator) -> None:
    """``online`` is said only by a robot whose session works: a fresh record follows."""
    said = op.received("status")
    if said and said[-1].body == "online":
        start = op.mark()
        await op.wait("telemetry/mode", after=start, timeout_s=3.0,
                      what="(status says online: telemetry must keep coming)")


async def one_by_one(stack: Stack, op: Operator, failures: list[str],
                     cases: Iterable[tuple[str, Callable[[], Awaitable[None]]]]) -> bool:
    """Each case in turn: the robot drives, the case sends its hostile input (and notes in
    ``failures`` what was wrong with the answer), then, whatever the answer was, the robot
    must still stop on an MQTT e-stop and its status still tell the truth. A robot that no
    longer drives or stops ends the run (the rest would say the same): False."""
    for what, send in cases:
        try:
            await drive(stack, op)
        except AssertionError as exc:
            failures.append(f"before {what}: {exc}")
            return False
        await send()
        try:
            await estop_confirmed(stack, op)
            await status_is_true(op)
        except AssertionError as exc:
            failures.append(f"{what}, then the e-stop on MQTT: {exc}")
            return False
    return True


def test_hostile_mqtt_commands_are_refused_and_the_estop_still_works(stack: Stack) -> None:
    failures: list[str] = []

    async def main() -> None:
        async with stack.operator() as op, heartbeats(op):
            stack.start_runtime()
            await stack.ready(op)

            async def send(what: str, command: str, payload: bytes) -> None:
                start = op.mark()
                await op.publish(command, payload)
                if command != "heartbeat":
                    try:
                        await refused(op, command, after=start)
                    except AssertionError as exc:
                        failures.append(f"{what}: {exc}")
                sizes = [len(m.raw) for m in op.received("cmd/result", start)]
                if max(sizes, default=0) > MAX_ANSWER_BYTES:
                    failures.append(f"{what}: answers of {sizes} bytes")

            await one_by_one(stack, op, failures, [
                (what, functools.partial(send, what, command, payload))
                for what, command, payload in mqtt_payloads()])

    run(main, guard_s=120)
    assert not failures, "\n".join(failures) + f"\n--- runtime log:\n{stack.log_tail()}"


async def refused(op: Operator, command: str, after: int) -> None:
    """The answer to a hostile command: a small refusal that echoes no bad request_id."""

    def ours(m: Message) -> bool:  # not the answer to a mode request of drive()
        return m.get("command") == command and not str(m.get("request_id")).startswith("mode-")

    answer = await op.wait("cmd/result", ours, after=after, timeout_s=5.0,
                           what=f"answer to the {command} command")
    assert len(answer.raw) <= MAX_ANSWER_BYTES, (
        f"an answer of {len(answer.raw)} bytes: {answer.raw[:120]!r}...")
    assert answer.get("accepted") is False, f"accepted: {answer.raw[:200]!r}"
    assert answer.get("request_id") is None, "a bad request_id was echoed"
    assert isinstance(answer.get("error"), str), answer.body


def ws_messages() -> list[tuple[str, str, bool]]:
    """(what, text, oversized): an oversized message may also be answered by closing the
    socket with 1009 (message too big, RFC 6455); any other must be refused on an open
    socket."""
    rng = random.Random(14)
    return [
        ("random text", "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(4096)), False),
        ("3 kB of nested [", NESTED.decode(), False),
        ("nested { in a message", '{"t": "mode", "mode": ' + '{"a": ' * 2000 + "1"
         + "}" * 2000 + "}", False),
        ("a 1 MB mode", json.dumps({"t": "mode", "mode": "m" * 1_000_000}), True),
        ("a 1 MB message kind", json.dumps({"t": "k" * 1_000_000}), True),
        ("an 8 MB message", json.dumps({"t": "mode", "mode": "x" * 8_000_000}), True),
    ]


class SocketClosedError(AssertionError):
    """The console closed the socket instead of answering."""


async def refused_on(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> str:
    """The next ``refused`` answer on the socket (status messages are skipped)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await ws.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                raise SocketClosedError(f"the console closed the socket ({message.type.name}, "
                                        f"{message.data!r}) instead of refusing")
            assert len(message.data) <= MAX_ANSWER_BYTES, (
                f"an answer of {len(message.data)} characters: {message.data[:120]}...")
            body = json.loads(message.data)
            if body.get("t") == "refused":
                return str(body.get("message"))


async def answered(ws: aiohttp.ClientWebSocketResponse, text: str, oversized: bool) -> None:
    """Send ``text``: refused on an open socket, or (oversized only) closed with 1009."""
    try:
        await ws.send_str(text)
        await refused_on(ws)
    except (SocketClosedError, ConnectionError) as exc:
        if not oversized:
            raise AssertionError(f"closed instead of refused: {exc!r}") from exc
        # Closed while still sending (ConnectionError), or with a close frame: only
        # "message too big" is a right one.
        assert ws.close_code in (None, aiohttp.WSCloseCode.MESSAGE_TOO_BIG), (
            f"closed with {ws.close_code}")


async def console_up(base: str, timeout_s: float = 20.0) -> None:
    """Wait until the console answers HTTP at all (whatever it answers)."""
    async with asyncio.timeout(timeout_s), aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(base):
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.2)


def test_hostile_websocket_messages_are_refused_and_the_estop_still_works(
        stack: Stack) -> None:
    failures: list[str] = []
    base = f"http://127.0.0.1:{stack.web_port}/"
    url = base + "ws"  # signed in through the form: the token is never in a URL

    async def hostile(http: aiohttp.ClientSession, op: Operator) -> None:
        async def send(what: str, text: str, oversized: bool) -> None:
            async with http.ws_connect(url, max_msg_size=0) as ws:
                await asyncio.wait_for(ws.receive_json(), 5.0)  # the first status
                try:
                    await answered(ws, text, oversized)
                except (AssertionError, TimeoutError) as exc:
                    failures.append(f"{what}: {exc!r}")

        if not await one_by_one(stack, op, failures, [
                (what, functools.partial(send, what, text, oversized))
                for what, text, oversized in ws_messages()]):
            return
        async with http.ws_connect(url) as ws:  # the console still serves
            first = await asyncio.wait_for(ws.receive_json(), 5.0)
            assert first.get("t") == "status", first

    async def main() -> None:
        async with stack.operator() as op, heartbeats(op):
            stack.start_runtime(web=True)
            await stack.ready(op)
            await console_up(base)  # it starts after telemetry
            async with console_session(base, stack.web_token) as http:
                await hostile(http, op)

    run(main, guard_s=120)
    assert not failures, "\n".join(failures) + f"\n--- runtime log:\n{stack.log_tail()}"
