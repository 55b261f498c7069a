"""The remote backend: the policy runs on another computer (``zima serve``), the robot keeps
everything else.

``RemotePolicy`` stands where a local :class:`~zima.onboard.policy.PolicyModel` stands in
the :class:`~zima.onboard.policy_runner.PolicyRunner`: its ``infer`` takes one
observation and returns the model's raw output, which the runner checks
(:func:`~zima.onboard.policy.check_output`) and turns into its chunk as for a local
model. The runner's latency, from submission to result, is therefore the round trip, and
plans start that much earlier. An async context manager with one seam, the WebSocket
(:mod:`zima.onboard.remote_protocol` is its wire format)::

    async with RemotePolicy("gpu-box:8765", key, contract, timeout_s=0.25) as remote:
        out = remote.infer(images, action_history)   # from the runner's worker thread

**Verified like a local file.** On each connection both ends prove they hold the key,
then the server's contract must be the robot's (``ContractMismatchError`` naming each
field), its output the I/O contract's ``logits``, and two warm-up inferences on one random
observation must pass ``check_output`` and agree: the same refusals as ``load_model``.
A refusal at start-up (or in ``reload``) raises that ``ModelError``; a later
connection that is refused is not used, and the client keeps trying.

**Failure rule.** A request that gets no answer within ``timeout_s``, or a connection
that breaks, raises a :class:`RemotePolicyError` and drops the connection (a late answer
can never be taken for a new one); ``losses`` counts them, the runner empties its queue
and STOPs with the reason (or asks its fallback model). The client reconnects by itself,
waiting ``reconnect_min_s`` doubled after each failed attempt up to ``reconnect_max_s``.
A server that is unreachable when the robot starts is not an error: the robot starts,
the policy STOPs with the reason until the server answers. Exceptions::

    PolicyError
     +-- ModelError
     |    +-- RemoteAuthError        the key is wrong at either end, or the server refused
     |    (and ContractMismatchError, NoContractError, ModelIOError as for a file)
     +-- RemotePolicyError           no answer from the server for this request
          +-- RemoteUnavailableError   not connected (reconnecting)
          +-- RemoteTimeoutError       no answer within timeout_s
          +-- RemoteLostError          the connection broke, or the server's inference failed
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from zima.contract import Contract
from zima.onboard.chunking import RecentTimes
from zima.onboard.policy import (
    LOGITS_OUTPUT,
    REMOVED_HEAD,
    REMOVED_TRACKS_OUTPUT,
    ContractMismatchError,
    ModelError,
    ModelIOError,
    NoContractError,
    PolicyError,
    check_warmup,
    output_shape,
    warmup_observation,
)
from zima.onboard.remote_protocol import (
    PATH,
    Challenge,
    Fail,
    Infer,
    Message,
    Out,
    ProtocolError,
    Refused,
    Shapes,
    Welcome,
    answer_challenge,
    decode,
    encode,
    max_frame_bytes,
    parse_server,
    welcome_holds_key,
)

if TYPE_CHECKING:
    import aiohttp

__all__ = ["HEARTBEAT_S", "RemoteAuthError", "RemoteLostError", "RemotePolicy",
           "RemotePolicyError", "RemoteTimeoutError", "RemoteUnavailableError"]

log = logging.getLogger("zima.onboard.remote_policy")

HEARTBEAT_S = 2.0  # WebSocket pings: a silent server is dropped after ~1.5x this


class RemoteAuthError(ModelError):
    """The key is wrong (at either end), or the server refused the connection."""


class RemotePolicyError(PolicyError):
    """This request got no answer from the server."""


class RemoteUnavailableError(RemotePolicyError):
    """Not connected to the server (the client is reconnecting)."""


class RemoteTimeoutError(RemotePolicyError):
    """No answer within the request timeout (the connection is dropped)."""


class RemoteLostError(RemotePolicyError):
    """The connection broke during the request, or the server's inference failed."""


class _Connection:
    """One verified WebSocket: requests out, answers matched to them by id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, shapes: Shapes, welcome: Welcome,
                 on_lost: Any) -> None:
        self.ws, self.shapes = ws, shapes
        self.sha256, self.provider = welcome.sha256, welcome.provider
        self._on_lost = on_lost
        self._pending: dict[int, asyncio.Future[np.ndarray]] = {}
        self._next_id = 0
        self.lost: str | None = None  # why the connection ended
        self._reader = asyncio.create_task(self._read(), name="zima-remote-policy-reader")

    async def request(self, images: np.ndarray, history: np.ndarray) -> np.ndarray:
        """images [N, H, W, 3] uint8, history [A] int64 -> the output (unchecked)."""
        if self.lost is not None:
            raise RemoteLostError(self.lost)
        id_ = self._next_id
        self._next_id += 1
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending[id_] = future
        try:
            await self.ws.send_bytes(encode(Infer(id_, images, history)))
            return await future
        finally:
            self._pending.pop(id_, None)

    async def _read(self) -> None:
        from aiohttp import WSMsgType  # noqa: PLC0415

        reason = "the server closed the connection"
        try:
            async for msg in self.ws:
                if msg.type != WSMsgType.BINARY:
                    reason = f"the server sent a {msg.type.name} frame"
                    break
                try:
                    message = decode(msg.data, self.shapes)
                except ProtocolError as exc:
                    reason = f"the server broke the protocol: {exc}"
                    break
                if isinstance(message, Out | Fail):
                    future = self._pending.pop(message.id, None)
                    if future is not None and not future.done():
                        if isinstance(message, Out):
                            future.set_result(message.output)
                        else:
                            future.set_exception(RemoteLostError(
                                f"the server's inference failed: {message.reason}"))
                    continue
                reason = (f"the server refused: {message.reason}" if isinstance(message, Refused)
                          else f"unexpected {type(message).__name__} from the server")
                break
            else:
                if self.ws.exception() is not None:
                    reason = f"connection error: {self.ws.exception()}"
        except Exception as exc:  # noqa: BLE001 -- aiohttp's and the socket's: it is gone
            reason = f"connection error: {type(exc).__name__}: {exc}"
        finally:
            await self.close(reason)

    async def close(self, reason: str) -> None:
        """End the connection (idempotent); pending requests fail with ``reason``."""
        if self.lost is None:
            self.lost = reason
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(RemoteLostError(reason))
            self._on_lost(self, reason)
        if asyncio.current_task() is not self._reader:
            self._reader.cancel()
        await self.ws.close()


class RemotePolicy:
    """See the module docstring. Used from the event loop it was entered on; ``infer``
    from any other thread."""

    def __init__(self, server: str, key: bytes, contract: Contract, *, timeout_s: float = 0.25,
                 connect_timeout_s: float = 3.0, tls: ssl.SSLContext | None = None,
                 reconnect_min_s: float = 0.1, reconnect_max_s: float = 5.0) -> None:
        host, port = parse_server(server)  # ValueError for a malformed address
        scheme = "wss" if tls is not None else "ws"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}{PATH}"
        self.server, self._key, self.contract = server, key, contract
        self.timeout_s, self.connect_timeout_s = timeout_s, connect_timeout_s
        self.reconnect_min_s, self.reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._tls = tls
        self.name = f"{scheme}://{server}"  # what log lines call the model
        self.path = Path(self.name)
        self.sha256 = ""  # the served model's, once connected (kept while reconnecting)
        self.provider = ""
        self.warmup_latency_s = 0.0  # the second warm-up round trip of the last connection
        self.reconnects = 0  # connections made after the first
        self.losses = 0  # connections lost (a request timed out, the link broke)
        self.last_error: str | None = None  # why the last connection ended or was refused
        self.round_trip = RecentTimes()  # wall clock, request sent to answer decoded
        self._attempts = 0  # failed connection attempts since the last success
        self._connected_once = False
        self._conn: _Connection | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._lost: asyncio.Event | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._max_frame = max_frame_bytes(Shapes.of(contract, output_shape(contract)))

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def unavailable(self) -> str:
        """Why no request can be sent now (a STOP's reason)."""
        why = self.last_error or "not connected yet"
        return f"remote policy {self.server} not connected ({why}); reconnecting"

    # ---- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.start(require=False)
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def start(self, *, require: bool) -> None:
        """Connect and verify. A refusal raises its ``ModelError``; an unreachable server
        too when ``require`` (a reload), else the client keeps trying in the background."""
        import aiohttp  # noqa: PLC0415 -- the onboard extra's; only for a remote backend

        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._lost = asyncio.Event()
        self._session = aiohttp.ClientSession()
        try:
            await self._connect()
        except ModelError:
            await self.close()
            raise
        except RemotePolicyError as exc:
            if require:
                await self.close()
                raise ModelError(f"remote policy {self.server}: {exc}") from exc
            log.warning("remote policy %s: %s; reconnecting in the background", self.server, exc)
            self.last_error = str(exc)
            self._attempts = 1
            self._lost.set()
        self._keeper = asyncio.create_task(self._keep_connected(), name="zima-remote-policy")

    async def close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        conn, self._conn = self._conn, None  # closed on purpose: not a loss
        if conn is not None:
            await conn.close("closed")
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- requests -----------------------------------------------------------------------
    def infer(self, images: np.ndarray, action_history: np.ndarray) -> np.ndarray:
        """images [1, N, H, W, 3] uint8, action_history [1, A] int64 -> the model's output
        [chunk_len, n_actions | 2], unchecked. From a thread other than the event loop's
        (the runner's worker); blocks at most ``timeout_s``. ``RemotePolicyError``."""
        loop = self._loop
        if loop is None:
            raise RemoteUnavailableError("the remote policy was never started")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("RemotePolicy.infer blocks: call it off the event loop")
        request = self.infer_async(images[0], action_history[0])
        return asyncio.run_coroutine_threadsafe(request, loop).result()

    async def infer_async(self, images: np.ndarray, history: np.ndarray) -> np.ndarray:
        """images [N, H, W, 3] uint8, history [A] int64 -> the output, on the event loop."""
        conn = self._conn
        if conn is None:
            raise RemoteUnavailableError(self.unavailable)
        start_s = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                out = await conn.request(images, history)
        except TimeoutError:
            reason = f"no answer from {self.server} within {self.timeout_s:g} s"
            await conn.close(reason)
            raise RemoteTimeoutError(reason) from None
        except RemotePolicyError:
            raise
        except Exception as exc:  # aiohttp's and the socket's: the connection is gone
            reason = f"connection error: {type(exc).__name__}: {exc}"
            await conn.close(reason)
            raise RemoteLostError(reason) from exc
        self.round_trip.add(time.perf_counter() - start_s)
        return out

    # ---- connecting ---------------------------------------------------------------------
    def _on_lost(self, conn: _Connection, reason: str) -> None:
        if conn is not self._conn:
            return  # one being verified, or an old one
        self._conn = None
        self.losses += 1
        self.last_error = reason
        log.warning("remote policy %s lost: %s", self.server, reason)
        if self._lost is not None:
            self._lost.set()

    async def _keep_connected(self) -> None:
        assert self._lost is not None
        while True:
            await self._lost.wait()
            delay = min(self.reconnect_max_s, self.reconnect_min_s * 2 ** min(self._attempts, 30))
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except (ModelError, RemotePolicyError) as exc:
                self._attempts += 1
                if str(exc) != self.last_error:
                    log.warning("remote policy %s: %s", self.server, exc)
                self.last_error = str(exc)

    async def _connect(self) -> None:
        """One connection, verified (module doc), swapped in; its errors raised."""
        import aiohttp  # noqa: PLC0415

        assert self._session is not None
        assert self._lost is not None
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                ws = await self._session.ws_connect(
                    self.url, ssl=self._tls if self._tls is not None else True,
                    max_msg_size=self._max_frame, compress=0, heartbeat=HEARTBEAT_S,
                    autoping=True)
                try:
                    welcome, shapes = await self._handshake(ws)
                except BaseException:
                    await ws.close()
                    raise
        except TimeoutError:
            raise RemoteUnavailableError(f"no connection to {self.server} within "
                                         f"{self.connect_timeout_s:g} s") from None
        except aiohttp.WSServerHandshakeError as exc:
            raise RemoteUnavailableError(f"{self.server} refused the WebSocket: "
                                         f"{exc.status} {exc.message}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise RemoteUnavailableError(f"cannot connect to {self.server}: {exc}") from None
        conn = _Connection(ws, shapes, welcome, self._on_lost)
        try:
            await self._warm_up(conn)
        except BaseException:
            await conn.close("refused by the robot")
            raise
        old, self._conn = self._conn, conn
        if old is not None:
            await old.close("replaced")
        if self.sha256 and welcome.sha256 != self.sha256:
            log.warning("remote policy %s now serves another model: %s -> %s", self.server,
                        self.sha256[:12], welcome.sha256[:12])
        self.sha256, self.provider = welcome.sha256, welcome.provider
        self.reconnects += self._connected_once
        self._connected_once = True
        self._attempts = 0
        self.last_error = None
        self._lost.clear()
        log.info("remote policy %s: connected, model %s (%s), round trip %.1f ms",
                 self.server, welcome.sha256[:12], welcome.provider,
                 self.warmup_latency_s * 1e3)

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[Welcome, Shapes]:
        challenge = await self._receive(ws, None)
        if not isinstance(challenge, Challenge):
            raise RemoteAuthError(f"remote policy {self.server}: expected a challenge, got "
                                  f"{challenge}")
        auth = answer_challenge(self._key, challenge)
        await ws.send_bytes(encode(auth))
        welcome = await self._receive(ws, None)
        if not isinstance(welcome, Welcome):
            raise RemoteAuthError(f"remote policy {self.server}: expected the welcome, got "
                                  f"{welcome}")
        if not welcome_holds_key(self._key, challenge, auth, welcome):
            raise RemoteAuthError(f"remote policy {self.server}: the server does not hold the "
                                  "key (its proof is wrong)")
        where = f"remote policy {self.server} (model {welcome.sha256[:12]})"
        try:
            served = Contract.from_json(welcome.contract_json)
        except ValueError as exc:
            raise NoContractError(f"{where}: unreadable contract: {exc}") from None
        mismatches = self.contract.mismatches(served)
        if mismatches:
            raise ContractMismatchError(
                f"{where} was made for another contract: {'; '.join(mismatches)}", mismatches)
        if welcome.output == REMOVED_TRACKS_OUTPUT:
            raise ModelIOError(f"{where}: {REMOVED_HEAD}")
        if welcome.output != LOGITS_OUTPUT:
            raise ModelIOError(f"{where}: output {welcome.output!r}, expected {LOGITS_OUTPUT!r}")
        return welcome, Shapes.of(self.contract, output_shape(self.contract))

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse,
                       shapes: Shapes | None) -> Message:
        from aiohttp import WSMsgType  # noqa: PLC0415

        msg = await ws.receive()
        if msg.type != WSMsgType.BINARY:
            raise RemoteUnavailableError(f"{self.server} closed during the handshake "
                                         f"({msg.type.name})")
        try:
            message = decode(msg.data, shapes)
        except ProtocolError as exc:
            raise RemoteAuthError(f"remote policy {self.server}: {exc}") from None
        if isinstance(message, Refused):
            raise RemoteAuthError(f"remote policy {self.server} refused: {message.reason}")
        return message

    async def _warm_up(self, conn: _Connection) -> None:
        """Two requests on one random observation: the checks ``load_model`` makes of a
        file (:func:`~zima.onboard.policy.check_warmup`)."""
        images, history = warmup_observation(self.contract)
        where = f"remote policy {self.server} (model {conn.sha256[:12]})"
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                first = await conn.request(images, history)
                start_s = time.perf_counter()
                second = await conn.request(images, history)
                self.warmup_latency_s = time.perf_counter() - start_s
        except TimeoutError:
            raise RemoteUnavailableError(f"{where}: no warm-up answer within "
                                         f"{self.connect_timeout_s:g} s") from None
        check_warmup(first, second, self.contract, where)
