"""The operator's side of the fault-injection tests: an MQTT client that keeps every
message it receives with its arrival time, asks for modes as an operator would (again when
the refusal is a passing one), sends heartbeats, and runs the host tools' own e-stop
exchange (``zima estop``: ``zima.host.estop.send_estop``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import aiomqtt

from tests.mqtt_broker import OPERATOR_PASSWORD, ROBOT
from zima.host.estop import EstopOutcome, send_estop
from zima.host.mqtt import HostMqttConfig

__all__ = ["Message", "Operator", "heartbeats"]


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as the operator received it."""

    topic: str  # below zima/<robot>/, e.g. "telemetry/mode"
    raw: bytes
    body: Any  # the JSON payload; the text when it is not JSON ("online", "offline")
    received_s: float  # time.monotonic() at arrival
    received_unix_s: float  # time.time() at arrival (compare with stamp_unix_s)

    def get(self, key: str) -> Any:
        return self.body.get(key) if isinstance(self.body, dict) else None


@dataclass
class Operator:
    """An operator's MQTT client: subscribed to the robot's telemetry, status and command
    results; keeps every message (``messages``) in arrival order.

    ``check`` is called on every wait's wake-up (e.g. "the runtime is still running")."""

    port: int
    client_id: str | None = None  # fixed id + clean_session=False: a persistent session
    clean_session: bool = True
    check: Callable[[], None] = lambda: None
    messages: list[Message] = field(default_factory=list)
    _client: aiomqtt.Client | None = None
    _reader: asyncio.Task[None] | None = None
    _new: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def host_config(self) -> HostMqttConfig:
        """What a host tool (``zima estop``, ``zima status``) connects with."""
        return HostMqttConfig(ROBOT, "127.0.0.1", self.port, "operator", OPERATOR_PASSWORD)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.disconnect()

    async def connect(self, *, subscribe: bool = True) -> None:
        self._client = aiomqtt.Client("127.0.0.1", self.port, username="operator",
                                      password=OPERATOR_PASSWORD, identifier=self.client_id,
                                      clean_session=self.clean_session)
        await self._client.__aenter__()
        if subscribe:
            await self._client.subscribe([(f"zima/{ROBOT}/{suffix}", 1) for suffix in
                                          ("telemetry/#", "status", "cmd/result")])
        self._reader = asyncio.create_task(self._read(self._client))

    async def disconnect(self) -> None:
        """Leave (quietly also when the broker is already gone)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
            self._reader = None
        if self._client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                await self._client.__aexit__(None, None, None)
            self._client = None

    async def _read(self, client: aiomqtt.Client) -> None:
        prefix = f"zima/{ROBOT}/"
        with contextlib.suppress(aiomqtt.MqttError):  # the broker went away
            async for m in client.messages:
                raw = m.payload if isinstance(m.payload, bytes) else b""
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")  # "online" / "offline"
                self.messages.append(Message(str(m.topic).removeprefix(prefix), raw, body,
                                             time.monotonic(), time.time()))
                self._new.set()

    def mark(self) -> int:
        """The index of the next message to arrive (for ``after=``)."""
        return len(self.messages)

    def after(self, message: Message) -> int:
        """The index just past ``message`` (for ``after=``: what came later)."""
        for i in range(len(self.messages) - 1, -1, -1):
            if self.messages[i] is message:
                return i + 1
        raise ValueError("not a message of this operator")

    def received(self, topic: str, after: int = 0) -> list[Message]:
        return [m for m in self.messages[after:] if m.topic == topic]

    async def wait(self, topic: str, predicate: Callable[[Message], bool] = lambda _m: True,
                   *, after: int = 0, timeout_s: float = 10.0, what: str = "") -> Message:
        """The first message on ``topic`` (from index ``after``) for which ``predicate``
        holds; AssertionError naming ``what`` and the last such message after ``timeout_s``."""

        def failure() -> str:
            last = self.received(topic, after)
            if not last:
                return f"no {topic} message at all within {timeout_s} s"
            return f"no {topic} {what} within {timeout_s} s; last: {last[-1].raw[:300]!r}"

        return await self.first(lambda m: m.topic == topic and predicate(m), after=after,
                                timeout_s=timeout_s, failure=failure)

    async def first(self, predicate: Callable[[Message], bool], *, after: int,
                    timeout_s: float, failure: Callable[[], str] = lambda: "") -> Message:
        """The first message (from index ``after``, any topic) for which ``predicate``
        holds; AssertionError with ``failure()`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen = after
        while True:
            for m in self.messages[seen:]:
                if predicate(m):
                    return m
            seen = len(self.messages)
            self.check()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(failure() or f"nothing within {timeout_s} s")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), min(left, 0.2))

    async def publish(self, command: str, payload: bytes | Mapping[str, object],
                      qos: int = 1) -> None:
        """Publish on ``zima/<robot>/cmd/<command>``."""
        assert self._client is not None
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self._client.publish(f"zima/{ROBOT}/cmd/{command}", raw, qos=qos)

    async def request_mode(self, mode: str, timeout_s: float = 15.0) -> Message:
        """Ask for ``mode`` until telemetry/mode shows it; a passing refusal (cameras not
        streaming yet, link re-handshaking) is asked again, any other fails the test."""
        transient = ("no frame yet", "stale camera", "link down", "link lost")
        deadline = time.monotonic() + timeout_s
        n = 0
        while True:
            n += 1
            rid = f"mode-{mode}-{n}"
            start = self.mark()
            await self.publish("mode", {"mode": mode, "request_id": rid})

            def answered(m: Message, rid: str = rid) -> bool:
                if m.topic == "cmd/result":
                    return m.get("request_id") == rid and m.get("accepted") is False
                return m.topic == "telemetry/mode" and (
                    m.get("refused") is not None or m.get("mode") == mode)

            m = await self.first(answered, after=start,
                                 timeout_s=max(0.5, deadline - time.monotonic()),
                                 failure=lambda: f"no answer to the {mode} request")
            refusal = m.get("error") if m.topic == "cmd/result" else m.get("refused")
            if refusal is None:
                return m
            if time.monotonic() > deadline or not any(t in str(refusal) for t in transient):
                raise AssertionError(f"mode {mode!r} refused: {refusal}")
            await asyncio.sleep(0.2)

    async def estop(self, engaged: bool = True, timeout_s: float = 5.0) -> EstopOutcome:
        """``zima estop`` (or ``--release``): the host tool's own exchange."""
        return await send_estop(self.host_config, engaged=engaged, timeout_s=timeout_s)


@contextlib.asynccontextmanager
async def heartbeats(operator: Operator, period_s: float = 0.25) -> AsyncIterator[None]:
    """An operator who is there: ``cmd/heartbeat`` every ``period_s`` while inside."""

    async def beat() -> None:
        while True:
            with contextlib.suppress(aiomqtt.MqttError):
                await operator.publish("heartbeat", {}, qos=0)
            await asyncio.sleep(period_s)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
