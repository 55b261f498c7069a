"""``WebConsole``: the operator's web page, served from inside the onboard runtime.

An aiohttp server on the runtime's own event loop, so the runtime stays the only owner of
the motors: a browser drives through :class:`~zima.onboard.safety.Safety` (``teleop``,
``acquire_lease`` ...) and the control loop sends what ``Safety.decide`` returns, exactly as
for MQTT teleop. Used by the runtime (and by tests around a running one)::

    async with WebConsole(runtime, WebConfig(enabled=True, port=8080), token=token) as web:
        ...  # http://robot:8080/?token=...  (or the login form)

What a browser gets (every path but ``/static`` and ``/login`` needs the token: a login
form sets an HttpOnly cookie, ``?token=`` does the same and redirects; a wrong token is
403, none 401, and no control socket is opened without one)::

    GET  /                the console (static/index.html, app.js, style.css; no CDN)
    POST /login           form field ``token`` -> cookie, 303 to /
    GET  /camera/<name>   MJPEG (multipart/x-mixed-replace) of a camera at ``camera_fps``;
                          TCP back-pressure paces a slow link (a frame is skipped, not queued)
    GET  /ws              the control socket: JSON messages both ways (below)

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
    {"t": "arm", "targets": [6 x ddeg or null]}

and to it: ``{"t": "status", ...}`` at ``status_hz`` and after every command, and
``{"t": "refused", "what": kind, "message": why}`` for a refused command.

Safety rule: the socket closing releases its client's lease at once (the tracks stop on
the next tick); a network that vanishes without closing stops the heartbeats, so the
teleop timeout stops the tracks and the lease expires (``SafetyConfig.lease_timeout_s``),
and autonomy stops once no operator is heard (``SafetyConfig.operator_timeout_s``). Every
message a page sends counts as its operator's presence: those that go through
``Runtime.handle`` there, the others (``hb``, ``drive``, ``lease``, ``handback``, ``arm``)
through ``Runtime.operator_seen``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import itertools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import cv2
import numpy as np
from aiohttp import WSMsgType, web

from zima.bounded import InputError, parse_json_bounded
from zima.onboard.link_config import LinkError
from zima.onboard.mqtt_config import (
    EstopCommand,
    HeartbeatCommand,
    Mode,
    ModeCommand,
    RecordCommand,
)
from zima.onboard.recorder import RecorderError
from zima.onboard.safety import DriveMode, SafetyError

if TYPE_CHECKING:  # the runtime starts the console: a run-time import would be circular
    from zima.onboard.runtime import Runtime

__all__ = ["MAX_MESSAGE_BYTES", "WebConfig", "WebConsole", "WebConsoleError", "parse_message",
           "read_token"]

log = logging.getLogger("zima.onboard.web")

STATIC_DIR = Path(__file__).parent / "static"
COOKIE = "zima_session"
_BOUNDARY = "zimaframe"
# Safety itself refuses a watcher's drive; anyone may engage the e-stop (see _dispatch).
WATCHERS_MAY = frozenset({"hb", "drive", "heartbeat"})
# Kinds carried out through Runtime.handle, which counts them as operator presence itself.
VIA_HANDLE = frozenset({"estop", "mode", "record", "heartbeat"})
MAX_MESSAGE_BYTES = 4096  # the longest message the page sends is under 200 bytes
MAX_MESSAGE_DEPTH = 2  # {"t": "arm", "targets": [...]}
RECORDING_MODES = frozenset({DriveMode.TELEOP, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED})


class WebConsoleError(Exception):
    """The console cannot start: no usable token, or the port cannot be bound."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The ``[web]`` table. Rates in Hz, speeds of the page's drive keys in SI units."""

    enabled: bool = False  # off unless configured: the console can drive the robot
    host: str = "0.0.0.0"  # noqa: S104  # the operator's laptop is on the robot's network
    port: int = 8080  # 0 picks a free port (tests); ``WebConsole.port`` says which
    token_file: Path | None = None  # root-only file holding the console's token
    camera_fps: float = 10.0  # MJPEG rate per camera: 2 cameras x ~15 kB x 10/s over Wi-Fi
    jpeg_quality: int = 70  # cv2 JPEG quality, 1..100
    status_hz: float = 4.0  # status messages to every page
    max_linear_m_per_s: float = 0.6  # drive messages beyond these are clamped
    max_angular_rad_per_s: float = 3.0
    login_delay_s: float = 0.5  # a wrong token waits this long: slows guessing

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"WebConfig.port={self.port} must be in 0..65535")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"WebConfig.jpeg_quality={self.jpeg_quality} must be in 1..100")
        for name in ("camera_fps", "status_hz", "max_linear_m_per_s", "max_angular_rad_per_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"WebConfig.{name}={value} must be a positive number")
        if not (math.isfinite(self.login_delay_s) and self.login_delay_s >= 0):
            raise ValueError(f"WebConfig.login_delay_s={self.login_delay_s} must be >= 0")


def read_token(path: Path) -> str:
    """The console token in ``path`` (whitespace stripped); ``WebConsoleError`` if the file
    is missing or holds fewer than 8 characters."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise WebConsoleError(f"web.token_file: cannot read {path}: {exc.strerror}") from exc
    if len(token) < 8:
        raise WebConsoleError(f"web.token_file: {path} must hold a token of 8+ characters")
    return token


@dataclass(eq=False)
class _Client:
    """One open control socket."""

    id: str
    ws: web.WebSocketResponse
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            if not self.ws.closed:
                with contextlib.suppress(ConnectionError):
                    await self.ws.send_str(json.dumps(message))


class WebConsole:
    """The console's HTTP server on ``config.host:config.port`` (see the module doc)."""

    def __init__(self, runtime: Runtime, config: WebConfig, token: str) -> None:
        if not token:
            raise WebConsoleError("the web console needs a token")
        self.runtime, self.config = runtime, config
        self._token = token.encode()
        # The cookie holds a MAC of the token, not the token itself.
        self._session = hmac.new(self._token, b"zima-web-console", hashlib.sha256).hexdigest()
        self._clients: set[_Client] = set()
        self._ids = itertools.count(1)
        self._closing = False
        self._jpegs: dict[str, tuple[int, bytes]] = {}  # camera -> (seq, JPEG), shared
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._handlers: dict[str, Callable[[str, dict[str, Any]], Awaitable[str | None]]] = {
            "hb": self._on_hb, "heartbeat": self._on_heartbeat, "drive": self._on_drive,
            "estop": self._on_estop,
            "lease": self._on_lease, "mode": self._on_mode, "record": self._on_record,
            "handback": self._on_handback, "arm": self._on_arm}

    # ---- lifetime -----------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_post("/login", self._login)
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/camera/{name}", self._camera)
        app.router.add_static("/static", STATIC_DIR)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise WebConsoleError(f"web console on {self.config.host}:{self.config.port}: "
                                  f"{exc.strerror}") from exc
        address = self._runner.addresses[0]
        self.port = int(address[1])
        log.info("web console on http://%s:%d/", self.config.host, self.port)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._closing = True
        for client in list(self._clients):
            self._let_go(client)
            with contextlib.suppress(ConnectionError):
                await client.ws.close(code=1001, message=b"robot stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- auth -----------------------------------------------------------------------------
    def _token_ok(self, token: str) -> bool:
        return hmac.compare_digest(token.encode(), self._token)

    def _authorized(self, request: web.Request) -> bool:
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self._session.encode())

    def _require(self, request: web.Request) -> None:
        if "token" in request.query and self._token_ok(request.query["token"]):
            return
        if not self._authorized(request):
            raise web.HTTPUnauthorized(text="the console token is needed")
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            raise web.HTTPForbidden(text="cross-origin request refused")

    def _signed_in(self, location: str) -> web.HTTPSeeOther:
        """The redirect into the console that sets the session cookie (to be raised)."""
        redirect = web.HTTPSeeOther(location)
        redirect.set_cookie(COOKIE, self._session, httponly=True, samesite="Strict", path="/")
        return redirect

    async def _index(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token")
        if token is not None:
            if self._token_ok(token):
                raise self._signed_in("/")  # drop the token from the address bar
            await asyncio.sleep(self.config.login_delay_s)
            return _login_page(403, "wrong token")
        if not self._authorized(request):
            return _login_page(401, None)
        return web.FileResponse(STATIC_DIR / "index.html",
                                headers={"Cache-Control": "no-store"})

    async def _login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = form.get("token")
        if isinstance(token, str) and self._token_ok(token.strip()):
            raise self._signed_in("/")
        await asyncio.sleep(self.config.login_delay_s)
        return _login_page(403, "wrong token")

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
        try:
            while not self._closing:
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

    def _camera_names(self) -> list[str]:
        return [camera.name for camera in self.runtime.config.cameras]

    # ---- the control socket ---------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.StreamResponse:
        self._require(request)
        if self._closing:
            raise web.HTTPServiceUnavailable(text="the robot is stopping")
        # A frame far over our own bound closes the socket (aiohttp's limit, 16x ours); one
        # just over it is answered with a refusal by parse_message.
        ws = web.WebSocketResponse(heartbeat=2.0, max_msg_size=16 * MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        client = _Client(f"web-{next(self._ids)}", ws)
        self._clients.add(client)
        log.info("console client %s connected from %s", client.id, request.remote)
        reporter = asyncio.create_task(self._report(client), name=f"web-status-{client.id}")
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    break
                refusal = await self._command(client, message.data)
                if refusal is not None:
                    await client.send({"t": "refused", "what": refusal[0],
                                       "message": refusal[1]})
        finally:
            self._let_go(client)
            self._clients.discard(client)
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
            log.info("console client %s gone", client.id)
        return ws

    def _let_go(self, client: _Client) -> None:
        """The client's socket closed: its lease goes at once (the tracks stop)."""
        safety = self.runtime.safety
        lease = safety.lease
        if lease is not None and lease.client == client.id:
            with contextlib.suppress(SafetyError):
                safety.release_lease(client=client.id, now_s=self._now())

    async def _report(self, client: _Client) -> None:
        period_s = 1.0 / self.config.status_hz
        while not client.ws.closed and not self._closing:
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
        except (SafetyError, RecorderError, LinkError, ValueError) as exc:
            error = str(exc)
        except Exception as exc:  # a bug: logged with its traceback; the socket stays open
            log.error("console message %r from %s failed", kind, client.id, exc_info=exc)
            error = f"internal error: {type(exc).__name__}"
        if kind not in ("drive", "hb", "heartbeat"):
            await client.send(self.status(client.id))  # show the result at once
        return None if error is None else (kind, error)

    async def _dispatch(self, client: _Client, kind: str, m: dict[str, Any]) -> str | None:
        """Refusals come back as text (``Runtime.handle``'s) or as the exceptions that
        ``_command`` turns into text."""
        handler = self._handlers.get(kind)
        if handler is None:
            return f"unknown message kind {kind[:32]!r}"
        if kind not in VIA_HANDLE:
            self.runtime.operator_seen(client.id)
        lease = self.runtime.safety.lease
        if lease is not None and lease.client != client.id and kind not in WATCHERS_MAY \
                and not (kind == "estop" and m.get("engaged") is True):
            return f"watching: {lease.client} holds the lease"
        return await handler(client.id, m)

    async def _on_heartbeat(self, client: str, _m: dict[str, Any]) -> str | None:
        return await self.runtime.handle(HeartbeatCommand(), source=client)

    async def _on_hb(self, client: str, _m: dict[str, Any]) -> str | None:
        lease = self.runtime.safety.lease
        if lease is not None and lease.client == client:
            self.runtime.safety.renew_lease(client=client, now_s=self._now())
        return None

    async def _on_drive(self, client: str, m: dict[str, Any]) -> str | None:
        v = _clamped(m, "v", self.config.max_linear_m_per_s)
        w = _clamped(m, "w", self.config.max_angular_rad_per_s)
        lease = self.runtime.safety.lease
        if v == 0 and w == 0 and (lease is None or lease.client != client):
            return None  # a release from a client that does not drive: nothing to stop
        left, right = self.runtime.teleop_tracks(v, w)
        self.runtime.safety.teleop(left_mm_s=left, right_mm_s=right, client=client,
                                   now_s=self._now())
        return None

    async def _on_estop(self, client: str, m: dict[str, Any]) -> str | None:
        engaged = m.get("engaged")
        if not isinstance(engaged, bool):
            raise ValueError("engaged must be true or false")
        return await self.runtime.handle(EstopCommand(engaged), source=client)

    async def _on_lease(self, client: str, m: dict[str, Any]) -> str | None:
        safety = self.runtime.safety
        if m.get("take") is True:
            safety.acquire_lease(client=client, now_s=self._now())
        else:
            safety.release_lease(client=client, now_s=self._now())
        return None

    async def _on_mode(self, client: str, m: dict[str, Any]) -> str | None:
        modes = [x.value for x in Mode]
        if m.get("mode") not in modes:
            raise ValueError(f"mode must be one of {modes}")
        return await self.runtime.handle(ModeCommand(Mode(m["mode"])), source=client)

    async def _on_record(self, client: str, m: dict[str, Any]) -> str | None:
        action, outcome = m.get("action"), m.get("outcome")
        if action not in ("start", "stop", "discard"):
            raise ValueError("action must be start, stop or discard")
        if action == "stop" and outcome not in ("success", "failure"):
            raise ValueError("stop needs an outcome: success or failure")
        mode = self.runtime.safety.mode
        if action == "start" and mode not in RECORDING_MODES:
            raise ValueError(f"recording needs a driving mode, not {mode.value}")
        command = RecordCommand(action, outcome if action == "stop" else None)
        return await self.runtime.handle(command, source=client)

    async def _on_handback(self, client: str, _m: dict[str, Any]) -> str | None:
        self.runtime.safety.hand_back(client=client, now_s=self._now())
        return None

    async def _on_arm(self, client: str, m: dict[str, Any]) -> str | None:
        targets = m.get("targets")
        if not isinstance(targets, list) or not all(
                t is None or (isinstance(t, int | float) and not isinstance(t, bool)
                              and -1e9 <= t <= 1e9)
                for t in targets):
            raise ValueError("targets must be a list of finite numbers or nulls")
        await self.runtime.teleop_arm(targets, client)
        return None

    # ---- status ---------------------------------------------------------------------------
    def status(self, client_id: str) -> dict[str, Any]:
        """What the page shows, as ``client_id`` sees it (``lease``: you / other / none)."""
        rt, safety = self.runtime, self.runtime.safety
        lease = safety.lease
        decision = rt.last_decision
        link = rt.link_or_none  # None before the runtime started
        state = link.state if link is not None else None
        battery = None
        record = rt.telemetry_record("battery")  # the MQTT record: level, latch, freshness
        if record is not None:
            battery = {"mv": record["battery_mv"], "level": record["level"],
                       "latched": record["latched"], "advice": record["advice"],
                       "age_s": record["age_s"], "stale": record["stale"]}
        stale = record is None or bool(record["stale"])
        link_status = link.status if link is not None else None
        loop = rt.loop_stats()
        recorder = rt.recorder.status if rt.recorder is not None else None
        return {
            "t": "status", "client": client_id,
            "mode": safety.mode.value, "owner": safety.owner,
            "mode_reason": safety.mode_reason,
            "lease": "none" if lease is None else "you" if lease.client == client_id
            else "other",
            "lease_holder": lease.client if lease is not None else None,
            "takeover": safety.mode is DriveMode.SUPERVISED
            and safety.owner == f"teleop:{client_id}",
            "tracks": None if decision is None else {
                "left_mm_s": decision.left_mm_s, "right_mm_s": decision.right_mm_s,
                "reason": decision.reason},
            "velocity": None if state is None else {
                "left_mm_s": state.telemetry.vel_left_mm_s,
                "right_mm_s": state.telemetry.vel_right_mm_s,
                "stale": stale},  # the last the MCU said, from a lost link: not current
            "battery": battery,
            "link": None if link_status is None else {
                "connected": link_status.connected, "reason": link_status.reason,
                "telemetry_hz": state.health.telemetry_hz if state is not None else 0.0},
            "loop": {"rate_hz": loop.rate_hz, "period_p99_ms": loop.period_p99_ms,
                     "jitter_p99_ms": loop.jitter_p99_ms, "overruns": loop.overruns},
            "model_sha256": rt.model_sha256,
            "recorder": None if recorder is None else {
                "recording": recorder.recording, "episode": recorder.episode,
                "steps": recorder.steps, "episodes_written": recorder.episodes_written,
                "action_counts": recorder.action_counts, "error": recorder.error,
                "dropped_steps": recorder.dropped_steps},
            "cameras": self._camera_names(),
            "clients": len(self._clients),
        }


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


def _clamped(message: dict[str, Any], key: str, limit: float) -> float:
    value = message.get(key)
    # Compared, not converted: math.isfinite of a 400-digit int raises OverflowError.
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            -1e9 <= value <= 1e9):
        raise ValueError(f"{key} must be a finite number")
    return float(min(max(value, -limit), limit))


def _login_page(status: int, error: str | None) -> web.Response:
    note = f'<p class="error">{html.escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Zima console: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css"></head>
<body class="login"><form method="post" action="/login" id="login">
<h1>Zima console</h1>{note}
<label>Token <input type="password" name="token" id="token" autofocus></label>
<button type="submit" id="signin">Sign in</button></form></body></html>"""
    return web.Response(status=status, text=body, content_type="text/html")
