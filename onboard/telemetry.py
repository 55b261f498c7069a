"""``Telemetry``: the robot's state to an MQTT broker, operator commands back.

An async context manager around one aiomqtt ``Client`` (its single seam to the broker).
Values come from providers the caller hands in (a callable returning a JSON object, or
``None`` when there is nothing to send); nothing here knows the runtime. Topics, with
``<r>`` the robot id (JSON payloads, units in key names, QoS 0 unless said)::

    topic                          dir  payload
    zima/<r>/status                out  "online" / "offline", retained, QoS 1; "offline"
                                        is also our MQTT last will (broker sends it when
                                        the connection dies without a DISCONNECT)
    zima/<r>/telemetry/<stream>    out  a provider's object + stamp_unix_s
    zima/<r>/cmd/<name>            in   a command (COMMAND_NAMES), parsed by
                                        zima.onboard.commands.parse_command
    zima/<r>/cmd/result            out  {"command", "request_id", "accepted", "error"}

What the runtime puts in each stream is its record in zima.onboard.api (onboard/MQTT.md
lists them, generated from the records). Every command may carry
a ``request_id`` (at most 64 printable characters), echoed in its result. ``accepted``
means valid and queued for the caller (``Telemetry.commands``), not yet carried out. A
valid heartbeat gets no result (one a second would be noise); a refused one does.

``stamp_unix_s`` is when the record was made (``post``), never changed while it waits in
the queue; ``age_s`` fields, where a provider gives them, say how old the data in it is.

Failure rule: the broker is optional. Publishing (``post`` and the samplers) only appends
to a bounded queue and never blocks or raises. While the broker is away the queue keeps
only the newest message of each topic (every ``cmd/result``, up to ``queue_len``); when it
is back the newest go first, and a message not published within ``max_backlog_age_s`` of
its ``post`` is dropped: a reconnect sends the current state, not a backlog. Every message
not sent is counted (``counters.dropped``; ``counters.expired`` of those for age). The
connection is retried with doubling backoff, and telemetry resumes when the broker
returns. Nothing here dies silently: any exception in the connection, sending, receiving
or a command's handling is logged with its traceback, counted (``counters.failures``,
``counters.last_failure``) and the session restarted with backoff; a bad command is
answered, never raised. ``wait_connected`` is the one call that raises
(``AuthRefusedError`` for bad credentials).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiomqtt

from zima.onboard.commands import (
    COMMAND_NAMES,
    Command,
    CommandError,
    HeartbeatCommand,
    command_name,
    parse_command,
    request_id_of,
)
from zima.onboard.mqtt_config import (
    AuthRefusedError,
    BrokerUnreachableError,
    MqttConfig,
    TelemetryError,
)
from zima.onboard.watch import Watch

__all__ = ["BrokerState", "Provider", "Telemetry", "TelemetryCounters"]

log = logging.getLogger(__name__)

Provider = Callable[[], Mapping[str, object] | None]

# CONNACK codes no retry will fix: bad client id, bad credentials, not authorized (MQTT 3.1.1
# codes, and the MQTT 5 reason codes paho reports them as).
_REFUSED_CODES = (2, 4, 5, 133, 134, 135)


@dataclass(frozen=True, slots=True)
class BrokerState:
    connected: bool = False
    error: TelemetryError | None = None  # why the last attempt failed or the link dropped


@dataclass(slots=True)
class TelemetryCounters:
    published: int = 0
    # Messages never sent: pushed out of the full queue, replaced by a newer message of
    # their topic while the broker was away, or expired (below).
    dropped: int = 0
    expired: int = 0  # of ``dropped``: older than max_backlog_age_s when their turn came
    provider_errors: int = 0  # a provider raised, or gave values that are not JSON
    commands_refused: int = 0  # malformed, out of range, or the command queue was full
    connects: int = 0
    failures: int = 0  # exceptions in the adapter itself (a bug): logged, session restarted
    last_failure: str | None = None  # the last such exception, one line


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    posted_s: float  # monotonic time of ``post``: its age decides whether it still goes


class Telemetry:
    """Publishes the providers' values at ``config.rates_hz``; collects commands."""

    def __init__(
        self,
        config: MqttConfig,
        providers: Mapping[str, Provider],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        caller_answers: bool = False,
    ) -> None:
        """``clock`` stamps records (``stamp_unix_s``); ``monotonic`` ages the queue.

        ``caller_answers``: the caller answers every command it takes from ``commands``
        with its outcome (``answer``), so ``cmd/result`` says what happened (a reload
        refused, say), not only that it was parsed; refusals at parsing are answered here
        either way. False: a parsed command is answered ``accepted`` when queued.
        """
        unknown = set(providers) - set(config.rates_hz)
        if unknown:
            raise ValueError(f"no rate configured for streams {sorted(unknown)}")
        self.config = config
        self._providers = dict(providers)
        self._clock, self._monotonic = clock, monotonic
        self._result_topic = config.topic("cmd/result")
        self.commands: asyncio.Queue[Command] = asyncio.Queue(config.command_queue_len)
        self.broker: Watch[BrokerState] = Watch(BrokerState())
        self.counters = TelemetryCounters()
        self._outbox: deque[_Message] = deque(maxlen=config.queue_len)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._caller_answers = caller_answers

    async def __aenter__(self) -> Telemetry:
        self._tasks.append(asyncio.create_task(self._connection(), name="telemetry-mqtt"))
        for stream, provider in self._providers.items():
            period_s = 1.0 / self.config.rates_hz[stream]
            task = self._sample(stream, provider, period_s)
            self._tasks.append(asyncio.create_task(task, name=f"telemetry-{stream}"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Cancelling the connection task leaves the client's context: a clean DISCONNECT
        # after "offline" (published in _session's finally), so the will is not sent.
        self._closing = True
        self._wake.set()  # _send leaves on its own even if a cancel gets lost (see _send)
        for task in self._tasks:
            task.cancel()
        # A cancelled aiomqtt client still waits (bounded) for the broker's answer to its
        # DISCONNECT; past that, cancel again rather than hang the runtime's shutdown.
        _, pending = await asyncio.wait(self._tasks, timeout=self.config.connect_timeout_s + 1)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.broker.close()

    def post(self, stream: str, values: Mapping[str, object]) -> None:
        """Queue ``values`` for ``zima/<r>/telemetry/<stream>`` now, stamped now
        (``stamp_unix_s``); never blocks or raises (values that are not JSON are logged,
        counted in ``provider_errors`` and not sent)."""
        try:
            payload = json.dumps({**values, "stamp_unix_s": self._clock()}).encode()
        except (TypeError, ValueError, RecursionError):
            self.counters.provider_errors += 1
            log.exception("telemetry: %r values are not JSON; not sent", stream)
            return
        self._enqueue(self.config.topic(f"telemetry/{stream}"), payload)

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Return once connected; ``AuthRefusedError`` if the broker refuses us."""
        state = await self.broker.wait_for(
            lambda s: s.connected or isinstance(s.error, AuthRefusedError), timeout_s
        )
        if state.error is not None and not state.connected:
            raise state.error

    def _enqueue(self, topic: str, payload: bytes) -> None:
        if not self.broker.value.connected and topic != self._result_topic:
            self._forget(topic)  # the broker is away: only the newest state is worth keeping
        if len(self._outbox) == self._outbox.maxlen:
            self.counters.dropped += 1  # deque(maxlen) drops the oldest on append
        self._outbox.append(_Message(topic, payload, self._monotonic()))
        self._wake.set()

    def _forget(self, topic: str) -> None:
        """Drop the queued messages of ``topic`` (a newer one replaces them)."""
        kept = [m for m in self._outbox if m.topic != topic]
        if len(kept) != len(self._outbox):
            self.counters.dropped += len(self._outbox) - len(kept)
            self._outbox = deque(kept, maxlen=self._outbox.maxlen)

    def _newest_first(self) -> None:
        """On (re)connecting: the newest message of each topic (and every result), the
        newest first; what is too old to matter is dropped."""
        now_s, kept, topics = self._monotonic(), [], set()
        for message in reversed(self._outbox):
            if now_s - message.posted_s > self.config.max_backlog_age_s:
                self.counters.dropped += 1
                self.counters.expired += 1
            elif message.topic in topics:
                self.counters.dropped += 1
            else:
                if message.topic != self._result_topic:
                    topics.add(message.topic)
                kept.append(message)
        self._outbox = deque(kept, maxlen=self._outbox.maxlen)

    def _failed(self, where: str, exc: BaseException) -> None:
        """An exception the adapter did not expect (a bug, ours or a library's): log it
        with its traceback and count it; the caller recovers."""
        self.counters.failures += 1
        self.counters.last_failure = f"{where}: {type(exc).__name__}: {exc}"[:200]
        log.error("telemetry: %s failed", where, exc_info=exc)

    async def _sample(self, stream: str, provider: Provider, period_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            try:
                values = provider()
            except Exception:  # a broken provider must not stop the other streams
                self.counters.provider_errors += 1
                log.exception("telemetry provider %r failed", stream)
                values = None
            if values is not None:
                self.post(stream, values)
            deadline = max(deadline + period_s, loop.time())  # late: skip, don't burst
            await asyncio.sleep(deadline - loop.time())

    async def _connection(self) -> None:
        backoff_s = self.config.reconnect_min_s
        while True:
            error: TelemetryError = BrokerUnreachableError("the session ended")
            failed = False
            try:
                await self._session()
            except* aiomqtt.MqttError as group:  # the TaskGroup wraps what the tasks raise
                error = _error_of(group.exceptions[0])
            except* Exception as group:  # noqa: BLE001 -- a bug: logged, counted, restarted
                if not self._closing:
                    for exc in group.exceptions:
                        self._failed("the MQTT session", exc)
                failed = True
                error = BrokerUnreachableError(
                    f"telemetry failed: {self.counters.last_failure}; restarting")
            if self._closing:  # a cancelled session can surface as an MqttError: leave
                return
            was_connected = self.broker.value.connected
            self.broker.set(BrokerState(connected=False, error=error))
            if was_connected and not failed:  # a failing session backs off like an outage
                backoff_s = self.config.reconnect_min_s
                log.warning("telemetry: broker connection lost (%s)", error)
            else:
                log.warning("telemetry: cannot connect (%s); retry in %.1f s", error, backoff_s)
            await asyncio.sleep(backoff_s)
            backoff_s = min(2 * backoff_s, self.config.reconnect_max_s)

    async def _session(self) -> None:
        status = self.config.topic("status")
        client = aiomqtt.Client(
            self.config.host,
            self.config.port,
            username=self.config.username,
            password=self.config.password,
            identifier=f"zima-{self.config.robot_id}",
            keepalive=self.config.keepalive_s,
            timeout=self.config.connect_timeout_s,
            will=aiomqtt.Will(status, b"offline", qos=1, retain=True),
        )
        async with client:
            # Subscribed before saying "online": an operator who waits for "online" can
            # command at once.
            await client.subscribe([(self.config.topic(f"cmd/{n}"), 1) for n in COMMAND_NAMES])
            await client.publish(status, b"online", qos=1, retain=True)
            self.counters.connects += 1
            self.broker.set(BrokerState(connected=True))
            log.info("telemetry: connected to %s:%d", self.config.host, self.config.port)
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._send(client))
                    tasks.create_task(self._receive(client))
            finally:
                if self._closing:  # leaving on purpose: say so before going
                    await _quietly(client.publish(status, b"offline", qos=1, retain=True))

    async def _send(self, client: aiomqtt.Client) -> None:
        # Python 3.11's asyncio.wait_for (inside aiomqtt's publish) can swallow a cancel
        # that lands as the publish completes, and a TaskGroup cancels its tasks only once:
        # so the loop also checks _closing rather than trust the cancel alone.
        self._newest_first()
        while not self._closing:
            await self._wake.wait()
            while self._outbox:
                message = self._outbox.popleft()
                if self._monotonic() - message.posted_s > self.config.max_backlog_age_s:
                    self.counters.dropped += 1
                    self.counters.expired += 1
                    continue
                try:
                    await client.publish(message.topic, message.payload)
                except aiomqtt.MqttError:
                    self._outbox.appendleft(message)  # resent after reconnecting, if fresh
                    raise
                # Any other exception ends the session with this message not put back: it
                # would fail again after every restart.
                self.counters.published += 1
            self._wake.clear()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            name = str(message.topic).rsplit("/", 1)[-1]
            raw = message.payload if isinstance(message.payload, bytes) else b""
            self._command(name, raw)

    def _command(self, name: str, raw: bytes) -> None:
        """Queue one command and answer it; never raises."""
        try:
            command = parse_command(name, raw, self.config)
            self.commands.put_nowait(command)
        except (CommandError, asyncio.QueueFull) as exc:
            error = str(exc) if isinstance(exc, CommandError) else "busy: command queue full"
            self._refused(name, request_id_of(raw), error)
        except Exception as exc:  # noqa: BLE001 -- a bug in parsing: logged, answered
            self._failed(f"the {name} command", exc)
            self._refused(name, None, f"internal error: {type(exc).__name__}")
        else:
            if not self._caller_answers and not isinstance(command, HeartbeatCommand):
                self._result(name, command.request_id, None)  # heartbeats: no noise

    def answer(self, command: Command, error: str | None) -> None:
        """Publish the outcome of a command taken from ``commands`` on ``cmd/result``
        (``accepted``: carried out; else ``error`` says why not). A heartbeat carried out
        is not answered (one a second would be noise). Never blocks or raises."""
        name = command_name(command)
        if error is not None:
            self.counters.commands_refused += 1
        elif isinstance(command, HeartbeatCommand):
            return
        self._result(name, command.request_id, error)

    def _refused(self, name: str, request_id: str | None, error: str) -> None:
        self.counters.commands_refused += 1
        log.warning("telemetry: refused %s command: %s", name, error)
        self._result(name, request_id, error)

    def _result(self, name: str, request_id: str | None, error: str | None) -> None:
        body: dict[str, Any] = {"command": name, "request_id": request_id,
                                "accepted": error is None, "error": error}
        self._enqueue(self._result_topic, json.dumps(body).encode())


def _error_of(exc: BaseException) -> TelemetryError:
    """aiomqtt's error as ours: refused credentials apart from plain outages."""
    # aiomqtt does not export its MqttConnectError; its rc is an int or a paho ReasonCode.
    rc = getattr(exc, "rc", None)
    code = getattr(rc, "value", rc)
    if type(exc).__name__ == "MqttConnectError" and code in _REFUSED_CODES:
        return AuthRefusedError(f"the broker refused the connection: {exc}")
    return BrokerUnreachableError(str(exc) or type(exc).__name__)


async def _quietly(publishing: Awaitable[None]) -> None:
    with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
        await asyncio.wait_for(publishing, 1.0)
