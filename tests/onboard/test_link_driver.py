"""``McuLink``, the asyncio driver of ``HostSession``, against a scripted MCU on a pty.

No emulator: ``PtyMcu`` answers HELLO and parameter requests on a pseudo-terminal and sends
TELEMETRY every 20 ms, and it records what it heard. These tests cover what only the driver
does (the emulated-board tests in test_link.py and test_reconnect.py cover the rest): a
caller that stops waiting, a failing status callback, the goodbye DRIVE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from zima.onboard.link import McuLink
from zima.onboard.link_config import LinkConfig
from zima.onboard.link_errors import NoAnswerError
from zima.onboard.mcu_state import LinkStatus
from zima.protocol import (
    Ack,
    Drive,
    Frame,
    FrameDecoder,
    FrameEncoder,
    Hello,
    Message,
    ParamGet,
    ParamId,
    ParamSet,
    ParamValue,
    Result,
    State,
)

from .helpers import run
from .test_link_session import INFO, telemetry


class PtyMcu:
    """A scripted MCU behind a pty: the link opens ``path``; ``heard`` is what it sent."""

    def __init__(self, tmp_path: Path) -> None:
        self.master, self._slave = os.openpty()  # the slave stays open: no EIO when idle
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = tmp_path / "zima-mcu"
        self.path.symlink_to(os.ttyname(self._slave))
        self.heard: list[Message] = []
        self.answer_params = True  # False: PARAM_SET / PARAM_GET go unanswered
        self._encoder = FrameEncoder()
        self._session = False

    async def serve(self) -> None:
        """Answer until cancelled; TELEMETRY every 20 ms of silence from the host."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.master, readable.set)
        decoder, mcu_time_ms = FrameDecoder(), 0
        try:
            while True:
                try:
                    async with asyncio.timeout(0.02):
                        await readable.wait()
                except TimeoutError:
                    mcu_time_ms += 20
                    state = State.IDLE if self._session else State.WAIT_HOST
                    self._send(telemetry(mcu_time_ms, state))
                    continue
                readable.clear()
                with contextlib.suppress(BlockingIOError):
                    for event in decoder.feed(os.read(self.master, 4096)):
                        if isinstance(event, Frame):
                            self._answer(event)
        finally:
            loop.remove_reader(self.master)

    def _answer(self, frame: Frame) -> None:
        msg = frame.message
        self.heard.append(msg)
        if isinstance(msg, Hello):
            self._session = True
            self._send(INFO, Ack(Hello.MSG_ID, frame.seq, Result.OK))
        elif isinstance(msg, ParamSet | ParamGet) and self.answer_params:
            value = msg.value if isinstance(msg, ParamSet) else 1.0
            if isinstance(msg, ParamSet):
                self._send(Ack(msg.MSG_ID, frame.seq, Result.OK))
            self._send(ParamValue(msg.param_id, value))

    def _send(self, *messages: Message) -> None:
        os.write(self.master, b"".join(self._encoder.encode(m) for m in messages))

    def close(self) -> None:
        os.close(self.master)
        os.close(self._slave)


@pytest.fixture
def pty_mcu(tmp_path: Path) -> Iterator[PtyMcu]:  # not "mcu": that name marks the emulator tier
    mcu = PtyMcu(tmp_path)
    yield mcu
    mcu.close()


async def serving(mcu: PtyMcu) -> asyncio.Task[None]:
    return asyncio.create_task(mcu.serve(), name="pty-mcu")


def test_a_parameter_request_given_up_while_queued_never_goes_out(pty_mcu: PtyMcu) -> None:
    mcu = pty_mcu

    async def main() -> None:
        server = await serving(mcu)
        try:
            async with McuLink(LinkConfig(port=mcu.path)) as link:
                mcu.answer_params = False
                first = asyncio.create_task(link.set_param(ParamId.pid_kp, 0.8))
                second = asyncio.create_task(link.set_param(ParamId.pid_ki, 5.0))
                await asyncio.sleep(0.05)  # PARAM_SET pid_kp is on the wire, pid_ki waits
                second.cancel()
                with pytest.raises(NoAnswerError, match="no answer to PARAM_SET"):
                    await first  # after request_timeout_s: the wire is free again
                await asyncio.sleep(0.1)
                assert link.connected
                mcu.answer_params = True
                assert await link.get_param(ParamId.pid_kd) == 1.0
            await asyncio.sleep(0.05)  # the MCU reads the goodbye DRIVE
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server

    run(main)
    params = [m for m in mcu.heard if isinstance(m, ParamSet | ParamGet)]
    assert params == [ParamSet(ParamId.pid_kp, 0.8), ParamGet(ParamId.pid_kd)]
    assert mcu.heard[-1] == Drive(0, 0)  # the link leaves the tracks stopped


def test_a_failing_status_callback_is_logged_and_the_link_works_on(
    pty_mcu: PtyMcu, caplog: pytest.LogCaptureFixture
) -> None:
    mcu = pty_mcu

    def broken(status: LinkStatus) -> None:
        raise RuntimeError(f"broken callback: {status.reason}")

    async def main() -> None:
        server = await serving(mcu)
        try:
            async with McuLink(LinkConfig(port=mcu.path), on_status=broken) as link:
                assert link.connected
                assert await link.set_param(ParamId.pid_kp, 0.5) == 0.5
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server

    with caplog.at_level(logging.ERROR, logger="zima.onboard.link"):
        run(main)
    failures = [r for r in caplog.records if "on_status callback failed" in r.getMessage()]
    assert len(failures) == 2  # up, then closed
    assert failures[0].exc_info is not None
