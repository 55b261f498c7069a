"""The session half of ``McuLink``: handshake, requests, and keeping the link up.

``LinkSession`` adds to the frame plumbing of ``LinkIO`` what section 2 of the contract
asks of a host: the handshake (HELLO every ``hello_retry_s`` until INFO, INFO checked
against this host's protocol identity, then ACK(HELLO)), requests that await their ACK or
PARAM_VALUE, and the supervisor: heartbeats, the TELEMETRY silence check, and the
reconnect loop with exponential backoff that re-applies the parameters set before.

Failure rule: an incompatible MCU (``IncompatibleMcuError``) ends the supervisor for good
(reflashing is a person's job; every later command raises it); any other ``LinkError``
while reconnecting closes the port and tries again after the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from zima.onboard.link_config import (
    IncompatibleMcuError,
    LinkConfig,
    LinkDownError,
    LinkError,
    NoAnswerError,
    PortError,
    RefusedError,
    result_name,
)
from zima.onboard.link_io import LinkIO
from zima.onboard.mcu_state import LinkStatus
from zima.protocol import (
    PARAMS,
    Ack,
    HandshakeError,
    Heartbeat,
    Hello,
    Info,
    Message,
    ParamGet,
    ParamId,
    ParamSet,
    Result,
    check_info,
    describe_info,
)

__all__ = ["LinkSession"]

log = logging.getLogger("zima.onboard.link")


class LinkSession(LinkIO):
    """Handshake, requests and supervision of the MCU link (the base of ``McuLink``)."""

    def __init__(
        self,
        config: LinkConfig,
        clock: Callable[[], float],
        on_status: Callable[[LinkStatus], None] | None,
    ) -> None:
        super().__init__(config, clock)
        self._on_status = on_status  # called at every status change, from the event loop
        self._params: dict[ParamId, float] = {}  # set through this link: re-applied on connect
        self._param_lock = asyncio.Lock()  # PARAM_VALUE carries no seq: one request at a time
        self._failure: IncompatibleMcuError | None = None  # fatal: no more reconnects

    @property
    def connected(self) -> bool:
        return self._status.value.connected

    @property
    def status(self) -> LinkStatus:
        return self._status.value

    # ---- requests -------------------------------------------------------------------------
    def _require_connected(self) -> None:
        if self._failure is not None:
            raise self._failure
        if not self.connected:
            raise LinkDownError(f"the link to the MCU is down ({self.status.reason})")

    async def _request(self, msg: Message) -> Ack:
        """Send ``msg`` and await its ACK; ``RefusedError`` unless OK."""
        seq, ack = self._send_expecting_ack(msg)
        try:
            async with asyncio.timeout(self.config.request_timeout_s):
                answer = await ack
        except TimeoutError:
            timeout_s = self.config.request_timeout_s
            raise NoAnswerError(f"no ACK to {msg.NAME} in {timeout_s} s") from None
        finally:
            self._acks.pop((msg.MSG_ID, seq), None)
        if answer.result != Result.OK:
            raise RefusedError(f"the MCU refused {msg.NAME}: {result_name(answer.result)}", answer)
        return answer

    async def _param_exchange(self, msg: ParamSet | ParamGet, param: ParamId | int) -> float:
        """PARAM_SET (ACK, then PARAM_VALUE) or PARAM_GET (PARAM_VALUE, or a refusing ACK)."""
        async with self._param_lock:
            value: asyncio.Future[float] = self._loop.create_future()
            self._values[int(param)] = value
            seq, ack = self._send_expecting_ack(msg)
            try:
                async with asyncio.timeout(self.config.request_timeout_s):
                    done, _ = await asyncio.wait((value, ack), return_when="FIRST_COMPLETED")
                    if ack in done and ack.result().result != Result.OK:
                        answer = ack.result()
                        name = result_name(answer.result)
                        raise RefusedError(f"the MCU refused {msg.NAME} {param}: {name}", answer)
                    held: float = await value
                    return held
            except TimeoutError:
                raise NoAnswerError(f"no answer to {msg.NAME} {param}") from None
            finally:
                self._values.pop(int(param), None)
                self._acks.pop((msg.MSG_ID, seq), None)
                for future in (value, ack):
                    if future.done() and not future.cancelled():
                        future.exception()  # retrieved: asyncio would log it as forgotten
                    future.cancel()

    # ---- connecting -----------------------------------------------------------------------
    async def _connect(self) -> None:
        """Handshake on the open port, re-apply the parameters, report the link up."""
        info = await self._handshake()
        for param, value in self._params.items():
            await self._param_exchange(ParamSet(int(param), value), param)
        self._lost.clear()
        self._lost_reason = ""
        self._refusals.clear()
        self._last_telemetry_s = self._clock()
        self._last_mcu_time_ms = None
        again = ""
        if self.status.connects:
            down_s = self._clock() - self.status.since_s
            again = f", back after {down_s:.2f} s, {len(self._params)} parameters re-applied"
        log.info("MCU link up on %s: %s%s", self.config.port, describe_info(info), again)
        self._set_status(connected=True, reason="handshake done", info=info)

    async def _handshake(self) -> Info:
        """HELLO every ``hello_retry_s`` until INFO and its ACK(HELLO); INFO is checked at
        once, so a mismatch is reported with what the MCU said it speaks."""
        cfg = self.config
        answers: asyncio.Queue[Info | Ack | LinkError] = asyncio.Queue()
        self._hello_answers = answers
        info: Info | None = None
        try:
            async with asyncio.timeout(cfg.handshake_timeout_s):
                while True:
                    self._send(Hello(cfg.protocol_version, cfg.schema_hash))
                    with contextlib.suppress(TimeoutError):  # no answer yet: HELLO again
                        async with asyncio.timeout(cfg.hello_retry_s):
                            while True:
                                answer = await answers.get()
                                if isinstance(answer, LinkError):
                                    raise answer
                                if isinstance(answer, Info):
                                    info = self._check_info(answer)
                                elif info is not None:  # the ACK(HELLO) that follows INFO
                                    return self._accept_hello(info, answer)
        except TimeoutError:
            raise NoAnswerError(
                f"no answer from the MCU on {cfg.port} in {cfg.handshake_timeout_s} s"
            ) from None
        finally:
            self._hello_answers = None

    def _check_info(self, info: Info) -> Info:
        try:
            check_info(info, self.config.protocol_version, self.config.schema_hash)
        except HandshakeError as exc:
            raise IncompatibleMcuError(str(exc), info) from None
        return info

    @staticmethod
    def _accept_hello(info: Info, ack: Ack) -> Info:
        if ack.result != Result.OK:
            raise IncompatibleMcuError(
                f"the MCU refused HELLO ({result_name(ack.result)}) although its INFO "
                f"matches this host: {describe_info(info)}",
                info,
            )
        return info

    async def _supervise(self) -> None:
        try:
            while True:
                await self._keep_up()
                self._report_lost()
                await self._reconnect()
        except IncompatibleMcuError as exc:
            self._failure = exc
            log.error("MCU link given up: %s", exc)
            self._close_port(exc)
            self._set_status(connected=False, reason=f"incompatible firmware: {exc}")

    async def _keep_up(self) -> None:
        """Heartbeats and the TELEMETRY silence check, until the link is lost."""
        cfg = self.config
        tick_s = min(cfg.heartbeat_period_s, cfg.telemetry_timeout_s) / 5
        next_heartbeat_s = self._clock()
        while not self._lost.is_set():
            now = self._clock()
            if now >= next_heartbeat_s:
                next_heartbeat_s = now + cfg.heartbeat_period_s
                with contextlib.suppress(PortError):  # _send has reported the loss
                    self._send(Heartbeat(int(now * 1000) & 0xFFFFFFFF))
            silent_s = now - self._last_telemetry_s
            if silent_s > self._telemetry_timeout_s():
                self._lose(f"no TELEMETRY for {silent_s * 1000:.0f} ms")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick_s):
                    await self._lost.wait()

    def _telemetry_timeout_s(self) -> float:
        """The configured timeout, or three periods if ``telemetry_hz`` was set lower."""
        hz = self._params.get(ParamId.telemetry_hz, PARAMS[ParamId.telemetry_hz].default)
        return max(self.config.telemetry_timeout_s, 3.0 / hz)

    def _report_lost(self) -> None:
        watchdog_ms = self._params.get(ParamId.watchdog_ms, PARAMS[ParamId.watchdog_ms].default)
        log.warning(
            "MCU link lost on %s: %s; the MCU's %.0f ms command watchdog stops the tracks "
            "until it is back",
            self.config.port,
            self._lost_reason,
            watchdog_ms,
        )
        self._set_status(connected=False, reason=self._lost_reason)

    async def _reconnect(self) -> None:
        """Handshake again (on the open port first, else a reopened one) until it works."""
        cfg = self.config
        delay_s = cfg.reconnect_min_s
        attempts = 0
        while True:
            try:
                if self._port is not None and self._port_failed:
                    self._close_port(LinkDownError(self._lost_reason))
                if self._port is None:
                    self._open_port()
                await self._connect()
                return
            except IncompatibleMcuError:
                raise
            except LinkError as exc:
                attempts += 1
                level = logging.INFO if attempts == 1 else logging.DEBUG  # no log flood
                log.log(level, "reconnecting to %s (attempt %d): %s", cfg.port, attempts, exc)
                self._close_port(LinkDownError(f"reconnecting: {exc}"))
            await asyncio.sleep(delay_s)
            delay_s = min(2 * delay_s, cfg.reconnect_max_s)

    def _set_status(self, *, connected: bool, reason: str, info: Info | None = None) -> None:
        old = self._status.value
        status = LinkStatus(
            connected=connected,
            reason=reason,
            since_s=self._clock(),
            info=info if info is not None else old.info,
            connects=old.connects + (connected and not old.connected),
            disconnects=old.disconnects + (old.connected and not connected),
        )
        self._status.set(status)
        if self._on_status is not None:
            self._on_status(status)
