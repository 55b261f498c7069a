"""``WebConsole``: the operator's web page, served from inside the onboard runtime.

An aiohttp server on the runtime's own event loop, so the runtime stays the only owner of
the motors: a browser's messages become the operator API's commands, carried out by
``Runtime.handle``, and the control loop sends what ``Safety.decide`` returns, exactly as
for MQTT teleop. Used by the runtime (and by tests around a running one)::

    async with WebConsole(runtime, WebConfig(enabled=True, port=8080), token=token) as web:
        ...  # https://robot:8080/ : the login form, then the console

Who gets in (:mod:`zima.onboard.web.auth`): the console listens on 127.0.0.1 unless
``[web] host`` names an address, and speaks HTTPS when ``tls_cert``/``tls_key`` are set
(``zima onboard install`` makes a self-signed pair). The token is typed into one login
form (POST) and never travels in a URL (``?token=`` is refused, 400). A right token opens
a session: a random id in a cookie (``HttpOnly``, ``SameSite=Strict``, ``Path=/``; under
HTTPS ``Secure`` and named ``__Host-zima_session``) that ends ``session_max_s`` after the
login, ``session_idle_s`` after its last use, or on sign-out; an open socket or camera
stream ends with its session. Every path but ``/static`` and the login form needs one
(401 without, 403 for a cross-origin request). Wrong tokens are compared in constant
time, logged, and slow the next attempt from that client (doubling from
``login_delay_s``); ``max_login_failures`` within ``login_window_s`` lock the client out
for ``lockout_s`` (429, ``Retry-After``), answered without comparing the token. A refused
request's connection is closed after its answer, and new connections beyond 10 a second
per client (100 in all; bursts of 40 and 200) are closed right after ``accept()``
(``ConnectionLimiter``), so a flood of wrong logins costs the event loop, which the
control loop shares, little; open sockets (a signed-in page's) are not affected::

    GET  /                the console (static/index.html, app.js, style.css; no CDN),
                          or the login form (401)
    POST /login           form field ``token`` -> session cookie, 303 to /; 403 wrong
                          token, 429 too soon or locked out
    POST /logout          ends the session, 303 to /
    GET  /session         204 while the session lives, else 401 (the page asks after its
                          socket closed: sign in again, or reconnect)
    GET  /camera/<name>   MJPEG (multipart/x-mixed-replace) of a camera at ``camera_fps``;
                          TCP back-pressure paces a slow link (a frame is skipped, not queued)
    GET  /ws              the control socket: JSON messages both ways (below); closed with
                          4001 when its session ends

Messages from the page (``t`` names the kind; at most ``MAX_MESSAGE_BYTES`` of JSON, one
object with flat values or one list, parsed by :func:`parse_message`: anything else is
refused with its reason, never an error of the server)::

    {"t": "drive", "v": m/s, "w": rad/s}   ~20 Hz while a key or stick is held; one zero
                                           when released (hold-to-drive). Takes the lease.
    {"t": "hb"}                            heartbeat (~10 Hz): renews the lease if held
    {"t": "heartbeat"}                     operator presence (1 Hz while the page is open):
                                           the runtime's ``HeartbeatCommand``, as MQTT's
                                           ``cmd/heartbeat``; autonomy stops without one
    {"t": "lease", "take": bool}           take / give up the teleop lease
    {"t": "mode", "mode": "idle"|"teleop"|"autonomous"|"supervised"}
    {"t": "estop", "engaged": bool}        anyone may engage; the rest need the lease when
                                           another client holds it ("others watch")
    {"t": "record", "action": "start"|"stop"|"discard", "outcome": "success"|"failure"}
    {"t": "handback"}                      end a supervised take-over
    {"t": "arm", ...}                      any form of MQTT's cmd/arm: {"targets": [6 x ddeg
                                           or null]}, a tool pose {"x_m", "y_m", "z_m",
                                           "pitch_rad", "roll_rad"} and/or {"gripper_m"},
                                           {"pose": "stowed"|"ready"|"look_down"}
    {"t": "jog", "vx_m_s": .., "vy_m_s": .., "vz_m_s": .., "vpitch_rad_s": ..,
     "vroll_rad_s": .., "vgripper_m_s": ..}
                                           ~20 Hz while an arm key or stick is held; one
                                           zero when released. The arm moves only while
                                           they keep coming (Safety.arm_jog)

and to it: ``{"t": "status", ...}`` (the arm: its ``telemetry/arm`` record) at ``status_hz``
and after every command, and ``{"t": "refused", "what": kind, "message": why}`` for a
refused command.

Safety rule: the socket closing releases its client's lease at once (the tracks stop on
the next tick); a network that vanishes without closing stops the heartbeats, so the
teleop timeout stops the tracks and the lease expires (``SafetyConfig.lease_timeout_s``),
and autonomy stops once no operator is heard (``SafetyConfig.operator_timeout_s``).

Every message is translated into its command (:mod:`zima.onboard.api`: ``drive`` is a
``TeleopCommand``, ``hb`` a ``LeaseCommand("renew")``, ...) and carried out by
``Runtime.handle``, as MQTT's are: the same bounds, the same refusals, and each counts as
its operator's presence. The console adds one rule of its own: while another page holds
the lease this one watches (it may still engage the e-stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import itertools
import json
import logging
import math
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from zima.bounded import InputError, parse_json_bounded
from zima.onboard.api import (
    REQUESTABLE_MODES,
    Command,
    CommandError,
    DriveMode,
    EstopCommand,
    HandBackCommand,
    HeartbeatCommand,
    LeaseCommand,
    ModeCommand,
    Operated,
    RecordCommand,
)
from zima.onboard.commands import JOG_KEYS, ArmJogCommand, arm_command, teleop_command
from zima.onboard.web.auth import (
    ConnectionLimiter,
    GuardConfig,
    LoginGuard,
    Refusal,
    Sessions,
    client_key,
)
from zima.tls import server_tls_context

__all__ = ["MAX_MESSAGE_BYTES", "WebConfig", "WebConsole", "WebConsoleError", "parse_message",
           "read_token"]

log = logging.getLogger("zima.onboard.web")

STATIC_DIR = Path(__file__).parent / "static"
COOKIE = "zima_session"  # under HTTPS: "__Host-zima_session" (Secure, Path=/, no Domain)
SESSION_CLOSED = 4001  # the socket's close code when its session ends (4000-4999: ours)
MAX_REQUEST_BYTES = 16 * 1024  # a login form is under 200 bytes; nothing is uploaded
ACCEPT_BACKLOG = 64  # connections the kernel holds until accepted; more are refused there
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
TLS_HANDSHAKE_S = 10.0  # a client that has not finished its TLS handshake by then is dropped
DROP_LOG_EVERY_S = 10.0  # connections closed over the rate: logged at most this often
# Sent with every response: no framing, no sniffing, nothing from elsewhere, no referrer
# to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send Origin: null
}
_BOUNDARY = "zimaframe"
# Safety itself refuses a watcher's drive and jog; anyone may engage the e-stop (_dispatch).
WATCHERS_MAY = frozenset({"hb", "drive", "jog", "heartbeat"})
MAX_MESSAGE_BYTES = 4096  # the longest message the page sends is under 200 bytes
MAX_MESSAGE_DEPTH = 2  # {"t": "arm", "targets": [...]}


class WebConsoleError(Exception):
    """The console cannot start: no usable token or TLS pair, or the port cannot be bound."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The ``[web]`` table. Rates in Hz, speeds of the page's drive keys in SI units, times
    in seconds."""

    enabled: bool = False  # off unless configured: the console can drive the robot
    host: str = "127.0.0.1"  # loopback unless an address is named (e.g. the robot's Wi-Fi)
    port: int = 8080  # 0 picks a free port (tests); ``WebConsole.port`` says which
    token_file: Path | None = None  # owner-only file holding the console's token
    tls_cert: Path | None = None  # PEM certificate (chain): HTTPS when set, with tls_key
    tls_key: Path | None = None  # its owner-only PEM private key
    session_max_s: float = 12 * 3600.0  # a login lasts at most this long
    session_idle_s: float = 1800.0  # ...and ends after this long unused (an open page
    #                                 sends a heartbeat every second)
    login_delay_s: float = 0.5  # after a wrong token the client waits this long, doubling
    max_login_failures: int = 10  # wrong tokens (and too-early tries) within login_window_s
    login_window_s: float = 300.0  # ...that lock the client out for lockout_s
    lockout_s: float = 300.0
    camera_fps: float = 10.0  # MJPEG rate per camera: 2 cameras x ~15 kB x 10/s over Wi-Fi
    jpeg_quality: int = 70  # cv2 JPEG quality, 1..100
    status_hz: float = 4.0  # status messages to every page

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"WebConfig.port={self.port} must be in 0..65535")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"WebConfig.jpeg_quality={self.jpeg_quality} must be in 1..100")
        for name in ("camera_fps", "status_hz",
                     "session_max_s", "session_idle_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"WebConfig.{name}={value} must be a positive number")
        for name in ("login_delay_s", "login_window_s", "lockout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"WebConfig.{name}={value} must be >= 0")
        if self.max_login_failures < 1:
            raise ValueError(f"WebConfig.max_login_failures={self.max_login_failures} "
                             "must be >= 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("WebConfig.tls_cert and tls_key go together (HTTPS needs both)")

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def read_token(path: Path) -> str:
    """The console token in ``path`` (whitespace stripped); ``WebConsoleError`` if the file
    is missing or holds fewer than 8 characters. A file others may read is used, with a
    warning in the log (``zima onboard install`` makes it 0600)."""
    try:
        token = path.read_text().strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise WebConsoleError(f"web.token_file: cannot read {path}: {exc.strerror}") from exc
    if len(token) < 8:
        raise WebConsoleError(f"web.token_file: {path} must hold a token of 8+ characters")
    if mode & 0o077:
        log.warning("web.token_file %s is readable by others (mode %04o): chmod 600 it",
                    path, mode & 0o777)
    return token


@dataclass(eq=False)
class _Client:
    """One open control socket."""

    id: str
    ws: web.WebSocketResponse
    session: str | None  # the session id it was opened with; it closes when that ends
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            if not self.ws.closed:
                with contextlib.suppress(ConnectionError):
                    await self.ws.send_str(json.dumps(message))


class WebConsole:
    """The console's HTTP(S) server on ``config.host:config.port`` (see the module doc).

    ``clock`` times sessions and sign-in attempts (``time.monotonic`` unless a test
    injects one); Safety keeps the runtime's own clock."""

    def __init__(self, runtime: Operated, config: WebConfig, token: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not token:
            raise WebConsoleError("the web console needs a token")
        self.runtime, self.config, self.clock = runtime, config, clock
        self._token = token.encode()
        self._cookie = f"__Host-{COOKIE}" if config.tls else COOKIE
        self.sessions = Sessions(max_s=config.session_max_s, idle_s=config.session_idle_s)
        self.guard = LoginGuard(GuardConfig(
            first_delay_s=config.login_delay_s, max_failures=config.max_login_failures,
            window_s=config.login_window_s, lockout_s=config.lockout_s))
        self._clients: set[_Client] = set()
        self._ids = itertools.count(1)
        self._closing = False
        self._jpegs: dict[str, tuple[int, bytes]] = {}  # camera -> (seq, JPEG), shared
        self._runner: web.AppRunner | None = None
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._starting: set[asyncio.Task[Any]] = set()  # accepted, TLS handshake under way
        self.limiter = ConnectionLimiter()
        self._dropped_logged_s = -math.inf
        self.port = 0
        # Each kind of message -> the command it is (zima.onboard.api); CommandError for
        # one whose values are out of range (the same bounds as MQTT's).
        self._translators: dict[str, Callable[[str, dict[str, Any]], Command | None]] = {
            "hb": lambda _c, _m: LeaseCommand("renew"),
            "heartbeat": lambda _c, _m: HeartbeatCommand(),
            "drive": self._drive, "estop": _estop, "lease": _lease, "mode": _mode,
            "record": _record, "handback": lambda _c, _m: HandBackCommand(),
            "arm": lambda _c, m: arm_command({k: v for k, v in m.items() if k != "t"}),
            "jog": self._jog}

    # ---- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        tls = self._tls_context()
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.on_response_prepare.append(_secure_headers)
        app.router.add_get("/", self._index)
        app.router.add_post("/login", self._login)
        app.router.add_post("/logout", self._logout)
        app.router.add_get("/session", self._session_state)
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/camera/{name}", self._camera)
        app.router.add_static("/static", STATIC_DIR)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        handlers = self._runner.server
        assert handlers is not None  # set up just above
        try:
            self._listener = _listen(self.config.host, self.config.port)
        except OSError as exc:
            await self._runner.cleanup()
            raise WebConsoleError(
                f"web console on {self.config.host}:{self.config.port}: {exc.strerror}"
            ) from exc
        # Our own accept loop instead of aiohttp's TCPSite, in a thread: a connection over
        # the rate is closed right after accept(), before any transport, TLS or HTTP work,
        # and none of those system calls runs on the event loop's thread (each one hands
        # the GIL to another thread, which can keep it for the 5 ms switch interval: a
        # flood of them on the loop's thread stalls the control loop for tens of ms).
        self._acceptor = threading.Thread(
            target=self._accept_forever, args=(asyncio.get_running_loop(), handlers, tls),
            name="web-accept", daemon=True)
        self._acceptor.start()
        self.port = int(self._listener.getsockname()[1])
        log.info(
            "web console on %s://%s:%d/", "https" if tls else "http", self.config.host, self.port
        )
        return self

    def _accept_forever(self, loop: asyncio.AbstractEventLoop, handlers: web.Server,
                        tls: ssl.SSLContext | None) -> None:
        """The acceptor thread: close what is over the rate, pass the rest to the loop."""
        listener = self._listener
        assert listener is not None
        while True:
            try:
                conn, peer = listener.accept()
            except OSError as exc:
                if self._closing:
                    return  # the listener was shut down
                log.warning("console: accept failed: %s", exc)  # EMFILE and the like
                time.sleep(0.1)
                continue
            if self._closing:
                conn.close()
                return
            if self._turned_away(peer):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                conn.close()  # an RST: no TIME_WAIT kept for the flooder
                continue
            try:
                loop.call_soon_threadsafe(self._serve, conn, handlers, tls)
            except RuntimeError:  # the loop is closed
                conn.close()
                return

    def _serve(self, conn: socket.socket, handlers: web.Server,
               tls: ssl.SSLContext | None) -> None:
        """On the loop: aiohttp's handler for an accepted connection (after TLS)."""
        if self._closing:
            conn.close()
            return
        conn.settimeout(0.0)  # non-blocking, as asyncio wants it
        loop = asyncio.get_running_loop()
        serving = loop.create_task(loop.connect_accepted_socket(
            handlers, conn, ssl=tls, ssl_handshake_timeout=TLS_HANDSHAKE_S if tls else None))
        self._starting.add(serving)
        serving.add_done_callback(self._started_serving)

    def _started_serving(self, task: asyncio.Task[Any]) -> None:
        self._starting.discard(task)
        if not task.cancelled():
            task.exception()  # a failed TLS handshake or a vanished client: nothing to say

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Where the console listens: (address, port) of each listening socket."""
        names = [self._listener.getsockname()] if self._listener is not None else []
        return [(str(name[0]), int(name[1])) for name in names]

    def _turned_away(self, peer: object) -> bool:
        """Whether a new connection from ``peer`` is closed unanswered: over its client's
        or the console's connection rate (``ConnectionLimiter``)."""
        address = peer[0] if isinstance(peer, tuple) and peer else None
        client, now_s = client_key(address), self.clock()
        if self.limiter.admit(client, now_s):
            return False
        if now_s - self._dropped_logged_s >= DROP_LOG_EVERY_S:  # a flood: one line a while
            self._dropped_logged_s = now_s
            log.warning(
                "console: closing new connections from %s and others over the "
                "connection rate (%d so far)",
                client,
                self.limiter.refused,
            )
        return True

    def _tls_context(self) -> ssl.SSLContext | None:
        cert, key = self.config.tls_cert, self.config.tls_key
        if cert is None or key is None:
            return None
        try:
            return server_tls_context(cert, key)
        except ValueError as exc:
            raise WebConsoleError(f"web.tls_cert / tls_key: {exc}") from exc

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        for client in list(self._clients):
            await self._let_go(client)
            with contextlib.suppress(ConnectionError):
                await client.ws.close(code=1001, message=b"robot stopping")
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes the acceptor's accept() (Linux)
                self._listener.shutdown(socket.SHUT_RDWR)
            if self._acceptor is not None:
                await asyncio.to_thread(self._acceptor.join, 2.0)
            self._listener.close()
            self._listener = None
        for starting in list(self._starting):
            starting.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- auth -----------------------------------------------------------------------------
    def _session_id(self, request: web.Request) -> str | None:
        return request.cookies.get(self._cookie)

    def _signed_in(self, request: web.Request, *, touch: bool = True) -> bool:
        return self.sessions.valid(self._session_id(request), self.clock(), touch=touch)

    def _require(self, request: web.Request) -> None:
        """A live session from this origin, else 401 / 403 (raised)."""
        _same_origin(request)
        if not self._signed_in(request):
            raise web.HTTPUnauthorized(text="sign in at / first")

    async def _index(self, request: web.Request) -> web.StreamResponse:
        if "token" in request.query:
            log.warning("console: a token in the URL from %s refused (use the login form)",
                        request.remote)
            return _login_page(400, "the token is not taken from the address: type it "
                                    "below (and clear it from your browser's history)")
        if not self._signed_in(request):
            return _login_page(401, None)
        return web.FileResponse(STATIC_DIR / "index.html",
                                headers={"Cache-Control": "no-store"})

    async def _login(self, request: web.Request) -> web.StreamResponse:
        _same_origin(request)
        client = client_key(request.remote)
        # The form is read first (at most MAX_REQUEST_BYTES): from here to the guard's
        # verdict nothing awaits, so concurrent attempts cannot all pass one check.
        form = await request.post()
        now_s = self.clock()
        refusal = self.guard.check(client, now_s)
        if refusal is not None:  # too soon, or locked out: the token is not looked at
            return self._refused_login(client, refusal, "")
        token = form.get("token")
        if isinstance(token, str) and hmac.compare_digest(
                token.strip().encode("utf-8", "replace"), self._token):
            self.guard.succeeded(client)
            return self._open_session(client, now_s)
        refusal = self.guard.failed(client, now_s)
        log.warning("console: wrong token from %s", client)
        return self._refused_login(client, refusal, "wrong token")

    def _refused_login(self, client: str, refusal: Refusal, why: str) -> web.Response:
        """403 for a wrong token; 429 with ``Retry-After`` while the client must wait."""
        wait_s = max(1, math.ceil(refusal.wait_s))
        if refusal.newly_locked:
            log.warning(
                "console: %s locked out for %d s after %d failed sign-ins",
                client,
                wait_s,
                self.config.max_login_failures,
            )
        if why and not refusal.locked_out:
            page = _login_page(403, why)
        else:
            note = (
                f"too many failed sign-ins: locked out for {wait_s} s"
                if refusal.locked_out
                else f"too soon after a failed sign-in: wait {wait_s} s"
            )
            page = _login_page(429, f"{why}; {note}" if why else note)
            page.headers["Retry-After"] = str(wait_s)
        return page  # closed after sending (_secure_headers): one connection per try

    def _open_session(self, client: str, now_s: float) -> web.Response:
        session_id = self.sessions.start(now_s)
        log.info("console: %s signed in (%d sessions)", client, len(self.sessions))
        response = web.Response(status=303, headers={"Location": "/"})
        response.set_cookie(self._cookie, session_id, httponly=True, samesite="Strict",
                            path="/", secure=self.config.tls,
                            max_age=int(self.config.session_max_s))
        return response

    async def _logout(self, request: web.Request) -> web.StreamResponse:
        _same_origin(request)
        self.sessions.end(self._session_id(request))
        response = web.Response(status=303, headers={"Location": "/"})
        response.del_cookie(self._cookie, path="/", secure=self.config.tls,
                            samesite="Strict")
        return response

    async def _session_state(self, request: web.Request) -> web.StreamResponse:
        _same_origin(request)
        if not self._signed_in(request, touch=False):
            raise web.HTTPUnauthorized(text="signed out")
        return web.Response(status=204, headers={"Cache-Control": "no-store"})

    # ---- cameras ----------------------------------------------------------------------------
    def _jpeg(self, camera: str, seq: int, image_rgb: np.ndarray) -> bytes:
        cached = self._jpegs.get(camera)
        if cached is not None and cached[0] == seq:
            return cached[1]
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise ValueError(f"camera {camera!r}: JPEG encoding failed")
        jpeg = buf.tobytes()
        self._jpegs[camera] = (seq, jpeg)
        return jpeg

    async def _camera(self, request: web.Request) -> web.StreamResponse:
        self._require(request)
        name = request.match_info["name"]
        if name not in self._camera_names():
            raise web.HTTPNotFound(text=f"no camera {name!r}")
        response = web.StreamResponse(headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
            "Cache-Control": "no-store"})
        await response.prepare(request)
        period_s, last_seq = 1.0 / self.config.camera_fps, -1
        loop = asyncio.get_running_loop()
        session = self._session_id(request)
        try:
            # Watching is no use of the session: the page's own heartbeats keep it alive.
            while not self._closing and self.sessions.valid(session, self.clock(),
                                                            touch=False):
                due = loop.time() + period_s
                frame = self.runtime.frames().get(name)
                if frame is not None and frame.seq != last_seq:
                    jpeg = await asyncio.to_thread(self._jpeg, name, frame.seq, frame.image_rgb)
                    last_seq = frame.seq
                    # write() waits for the socket to drain: a slow link lowers the rate.
                    await response.write(
                        f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                await asyncio.sleep(max(due - loop.time(), 0.0))
        except ConnectionError:
            pass  # the page went away
        return response

    def _camera_names(self) -> tuple[str, ...]:
        return self.runtime.status().camera_names

    # ---- the control socket ---------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.StreamResponse:
        self._require(request)
        if self._closing:
            raise web.HTTPServiceUnavailable(text="the robot is stopping")
        # A frame far over our own bound closes the socket (aiohttp's limit, 16x ours); one
        # just over it is answered with a refusal by parse_message.
        ws = web.WebSocketResponse(heartbeat=2.0, max_msg_size=16 * MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        client = _Client(f"web-{next(self._ids)}", ws, self._session_id(request))
        self._clients.add(client)
        log.info("console client %s connected from %s", client.id, request.remote)
        reporter = asyncio.create_task(self._report(client), name=f"web-status-{client.id}")
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    break
                if not self.sessions.valid(client.session, self.clock()):  # used: touched
                    await ws.close(code=SESSION_CLOSED, message=b"session ended")
                    break
                refusal = await self._command(client, message.data)
                if refusal is not None:
                    await client.send({"t": "refused", "what": refusal[0],
                                       "message": refusal[1]})
        finally:
            await self._let_go(client)
            self._clients.discard(client)
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            log.info("console client %s gone", client.id)
        return ws

    async def _let_go(self, client: _Client) -> None:
        """The client's socket closed: its lease goes at once (the tracks stop)."""
        if self.runtime.status().lease_holder == client.id:
            await self.runtime.handle(LeaseCommand("give"), source=client.id)

    async def _report(self, client: _Client) -> None:
        period_s = 1.0 / self.config.status_hz
        while not client.ws.closed and not self._closing:
            if not self.sessions.valid(client.session, self.clock(), touch=False):
                log.info("console client %s: session ended, socket closed", client.id)
                await client.ws.close(code=SESSION_CLOSED, message=b"session ended")
                return
            await client.send(self.status(client.id))
            await asyncio.sleep(period_s)

    def _now(self) -> float:
        return self.runtime.clock()  # the runtime's clock drives Safety

    async def _command(self, client: _Client, text: str) -> tuple[str, str] | None:
        """Carry out one message; (kind, why) if refused. Never raises."""
        try:
            message = parse_message(text)
        except InputError as exc:
            return ("message", str(exc))
        kind = message["t"]
        try:
            error = await self._dispatch(client, kind, message)
        except CommandError as exc:
            error = str(exc)
        except Exception as exc:  # a bug: logged with its traceback; the socket stays open
            log.error("console message %r from %s failed", kind, client.id, exc_info=exc)
            error = f"internal error: {type(exc).__name__}"
        if kind not in ("drive", "jog", "hb", "heartbeat"):
            await client.send(self.status(client.id))  # show the result at once
        return None if error is None else (kind, error)

    async def _dispatch(self, client: _Client, kind: str, m: dict[str, Any]) -> str | None:
        """The message as its command, through ``Runtime.handle`` like every front end's;
        its refusal as text (``CommandError`` for values out of range)."""
        translate = self._translators.get(kind)
        if translate is None:
            return f"unknown message kind {kind[:32]!r}"
        holder = self.runtime.status().lease_holder
        if holder is not None and holder != client.id and kind not in WATCHERS_MAY \
                and not (kind == "estop" and m.get("engaged") is True):
            return f"watching: {holder} holds the lease"
        command = translate(client.id, m)
        if command is None:
            return None
        return await self.runtime.handle(command, source=client.id)

    def _drive(self, client: str, m: dict[str, Any]) -> Command | None:
        # Beyond TELEOP_LIMITS a drive is refused (CommandError), as on MQTT.
        drive = teleop_command(m.get("v"), m.get("w"))
        if drive.linear_m_per_s == 0 and drive.angular_rad_per_s == 0 \
                and self.runtime.status().lease_holder != client:
            return None  # a release from a client that does not drive: nothing to stop
        return drive

    def _jog(self, client: str, m: dict[str, Any]) -> Command | None:
        body = {k: v for k, v in m.items() if k != "t"}
        if not set(body) <= set(JOG_KEYS):
            raise CommandError(f"a jog takes velocities {list(JOG_KEYS)}")
        jog = arm_command(body) if body else ArmJogCommand()
        assert isinstance(jog, ArmJogCommand)  # its keys are a jog's
        if not jog.moving and self.runtime.status().lease_holder != client:
            return None  # a release from a client that does not drive: nothing to stop
        return jog

    # ---- status ---------------------------------------------------------------------------
    def status(self, client_id: str) -> dict[str, Any]:
        """What the page shows, as ``client_id`` sees it (``lease``: you / other / none):
        the runtime's ``status()`` (zima.onboard.api.RobotStatus), arranged for the page."""
        st = self.runtime.status()
        holder = st.lease_holder
        battery = st.battery
        odometry, link = st.odometry, st.link
        stale = battery is None or bool(battery.stale)
        return {
            "t": "status", "client": client_id,
            "mode": st.mode.mode.value, "owner": st.mode.owner,
            "mode_reason": st.mode.reason,
            "lease": "none" if holder is None else "you" if holder == client_id else "other",
            "lease_holder": holder,
            "takeover": st.mode.mode is DriveMode.SUPERVISED
            and st.mode.owner == f"teleop:{client_id}",
            "tracks": None if st.tracks is None else st.tracks.to_json(),
            "velocity": None if odometry is None else {
                "left_mm_s": odometry.vel_left_mm_s, "right_mm_s": odometry.vel_right_mm_s,
                "stale": stale},  # the last the MCU said, from a lost link: not current
            "battery": None if battery is None else {
                "mv": battery.battery_mv, "level": battery.level.value,
                "latched": battery.latched, "advice": battery.advice,
                "age_s": battery.age_s, "stale": battery.stale},
            "link": None if link is None else {
                "connected": link.connected, "reason": link.reason,
                "telemetry_hz": link.telemetry_hz},
            "loop": {"rate_hz": st.loop.rate_hz, "period_p99_ms": st.loop.period_p99_ms,
                     "jitter_p99_ms": st.loop.jitter_p99_ms, "overruns": st.loop.overruns},
            "model_sha256": st.model_sha256,
            "recorder": None if st.recorder is None else st.recorder.to_json(),
            "cameras": list(st.camera_names),
            "arm": None if st.arm is None else st.arm.to_json(),
            "clients": len(self._clients),
        }


def _estop(_client: str, m: dict[str, Any]) -> Command:
    engaged = m.get("engaged")
    if not isinstance(engaged, bool):
        raise CommandError("engaged must be true or false")
    return EstopCommand(engaged)


def _lease(_client: str, m: dict[str, Any]) -> Command:
    return LeaseCommand("take" if m.get("take") is True else "give")


def _mode(_client: str, m: dict[str, Any]) -> Command:
    modes = [x.value for x in REQUESTABLE_MODES]
    if m.get("mode") not in modes:
        raise CommandError(f"mode must be one of {modes}")
    return ModeCommand(DriveMode(m["mode"]))


def _record(_client: str, m: dict[str, Any]) -> Command:
    action, outcome = m.get("action"), m.get("outcome")
    if not isinstance(action, str) or not (outcome is None or isinstance(outcome, str)):
        raise CommandError("action (and outcome) must be strings")
    return RecordCommand(action, outcome if action == "stop" else None)


def parse_message(raw: str | bytes) -> dict[str, Any]:
    """One message from a page: a JSON object with a string ``t`` (its kind), at most
    ``MAX_MESSAGE_BYTES`` long and ``MAX_MESSAGE_DEPTH`` deep (checked before parsing);
    ``InputError`` saying why for anything else, whatever the text."""
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError:  # lone surrogates: aiohttp never sends them, but be sure
            raise InputError("message is not valid Unicode") from None
    message = parse_json_bounded(raw, max_bytes=MAX_MESSAGE_BYTES,
                                 max_depth=MAX_MESSAGE_DEPTH, what="message")
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise InputError('a message is a JSON object with a "t" kind')
    return message


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(ACCEPT_BACKLOG)
        listener.settimeout(None)  # the acceptor thread waits in accept()
    except OSError:
        listener.close()
        raise
    return listener


def _same_origin(request: web.Request) -> None:
    """403 for a request a page of another origin made (a browser says so in ``Origin``);
    SameSite=Strict keeps the cookie out of those already, this refuses them outright."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        raise web.HTTPForbidden(text="cross-origin request refused")


async def _secure_headers(_request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.status in (400, 401, 403, 429):
        # A refused client gets no kept-alive connection: its next try is a new one, which
        # the connection rate can close before any work (ConnectionLimiter).
        response.force_close()


def _login_page(status: int, error: str | None) -> web.Response:
    note = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Zima console: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="login"><form method="post" action="/login" id="login">
<h1>Zima console</h1>{note}
<label>Token <input type="password" name="token" id="token" autocomplete="current-password"
autofocus></label>
<button type="submit" id="signin">Sign in</button></form></body></html>"""
    return web.Response(status=status, text=body, content_type="text/html",
                        headers={"Cache-Control": "no-store"})
