"""``Requests``: what the host has asked the MCU and still awaits (pure, for ``HostSession``).

A command the MCU ACKs (ARM, ESTOP, CLEAR) is found again by the message id and sequence
number its ACK names. A parameter request (PARAM_SET: ACK, then PARAM_VALUE; PARAM_GET:
PARAM_VALUE, or a refusing ACK) is answered by a PARAM_VALUE that carries no sequence
number, so parameter requests queue and go out one at a time: ``exchange`` is the one on
the wire. A request sent has a deadline; ``due`` lists those past it. ``forget`` ends a
request once: the session reports each request's end exactly once.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from zima.protocol import Ack, Message, ParamGet, ParamSet

__all__ = ["Request", "Requests"]


@dataclass(slots=True, eq=False)
class Request:
    """One request: its id (what the driver awaits), its message, when it times out."""

    id: int
    msg: Message
    restore: bool = False  # set again while reconnecting, not a caller's request
    seq: int = -1  # the sequence number it went out with (-1: not sent yet)
    deadline_s: float = math.inf

    @property
    def param(self) -> int | None:
        """The parameter id that PARAM_VALUE answers with (None: a command)."""
        return self.msg.param_id if isinstance(self.msg, ParamSet | ParamGet) else None

    @property
    def name(self) -> str:
        """What was asked, for messages: ``ARM``, ``PARAM_SET 8``."""
        return self.msg.NAME if self.param is None else f"{self.msg.NAME} {self.param}"


class Requests:
    """The requests in flight and waiting; see the module docstring."""

    def __init__(self) -> None:
        self._last_id = 0
        self._commands: dict[tuple[int, int], Request] = {}  # (msg id, seq) -> command
        self._queue: deque[Request] = deque()  # parameter requests waiting their turn
        self.exchange: Request | None = None  # the parameter request on the wire

    def new(self, msg: Message, *, restore: bool = False) -> Request:
        """A request with a fresh id; a parameter request joins the queue."""
        self._last_id += 1
        request = Request(self._last_id, msg, restore)
        if request.param is not None:
            self._queue.append(request)
        return request

    def sent(self, request: Request, seq: int, deadline_s: float) -> None:
        """``request`` went out with ``seq``; it times out at ``deadline_s``."""
        request.seq, request.deadline_s = seq, deadline_s
        if request.param is None:
            self._commands[(request.msg.MSG_ID, seq)] = request

    def next_exchange(self) -> Request | None:
        """The parameter request to send now (it becomes ``exchange``), if the wire is free."""
        if self.exchange is not None or not self._queue:
            return None
        self.exchange = self._queue.popleft()
        return self.exchange

    def answered_by(self, ack: Ack) -> Request | None:
        """The request ``ack`` names: a command, or the parameter exchange."""
        key = (ack.ref_msg_id, ack.ref_seq)
        exchange = self.exchange
        if exchange is not None and key == (exchange.msg.MSG_ID, exchange.seq):
            return exchange
        return self._commands.get(key)

    def due(self, now_s: float) -> list[Request]:
        """The requests sent whose deadline has come (commands first)."""
        due = [r for r in self._commands.values() if now_s >= r.deadline_s]
        if self.exchange is not None and now_s >= self.exchange.deadline_s:
            due.append(self.exchange)
        return due

    def next_deadline_s(self) -> float | None:
        times = [r.deadline_s for r in self._commands.values()]
        if self.exchange is not None:
            times.append(self.exchange.deadline_s)
        return min(times, default=None)

    @property
    def idle(self) -> bool:
        """No parameter request on the wire or waiting."""
        return self.exchange is None and not self._queue

    def forget(self, request: Request) -> bool:
        """End ``request``; False if it had ended already (or was never made here)."""
        if request is self.exchange:
            self.exchange = None
            return True
        if self._commands.get((request.msg.MSG_ID, request.seq)) is request:
            del self._commands[(request.msg.MSG_ID, request.seq)]
            return True
        if request in self._queue:
            self._queue.remove(request)
            return True
        return False

    def forget_all(self) -> list[Request]:
        """End every request (the link is lost or closed); returns them."""
        waiting = [*self._commands.values(), *self._queue]
        if self.exchange is not None:
            waiting.append(self.exchange)
        self._commands.clear()
        self._queue.clear()
        self.exchange = None
        return waiting

    def cancel(self, request_id: int) -> None:
        """Forget a request nobody waits for, unless it is the exchange on the wire (its
        answer must still be taken to keep the exchanges in order)."""
        for request in [*self._commands.values(), *self._queue]:
            if request.id == request_id:
                self.forget(request)
