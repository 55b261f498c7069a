"""Who may use the web console: sign-in attempts and the sessions they open.

Pure state with an injected clock, as :class:`~zima.onboard.safety.Safety`: the server
asks and these answer; nothing here does I/O or reads a clock.

``LoginGuard`` slows and then stops token guessing, per client (an IPv4 address, or the
/64 network of an IPv6 one: one host holds a whole /64)::

    refusal = guard.check(client, now_s)    # not None: refused without looking at the
                                            # token (too soon, or locked out)
    ...compare the token in constant time...
    refusal = guard.failed(client, now_s)   # wrong: the next attempt waits, the delay
                                            # doubling from first_delay_s; max_failures in
                                            # window_s lock the client out for lockout_s
    guard.succeeded(client)                 # right: its failures are forgotten

An attempt made while a client must wait counts as a failure too, so a flood of wrong
logins from one address is locked out after ``max_failures`` requests, however fast they
come; none of those is compared with the token. A client that is locked out is
refused even with the right token.

``ConnectionLimiter`` admits new connections at a bounded rate, per client and in all
(token buckets): refused requests are answered ``Connection: close``, so a client that
keeps guessing must open a connection per guess, and past its rate those connections are
closed unanswered before any TLS or HTTP work. A flood then costs the event loop (which
the control loop shares) an accept and a close per attempt, at most ``total_per_s`` times
a second; sockets already open (a signed-in page, its e-stop button) are not affected.

``Sessions`` holds the random session ids that a sign-in hands out (``secrets``, 256
bits; only their SHA-256 is kept, so a lookup's timing says nothing about a stored id).
A session ends ``max_s`` after it began, or ``idle_s`` after its last use, or on sign-out;
at most ``max_sessions`` live at once (a new one ends the least recently used).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "ConnectionLimiter",
    "GuardConfig",
    "LoginGuard",
    "RateConfig",
    "Refusal",
    "Sessions",
    "client_key",
]

SESSION_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits, 43 characters


def client_key(address: str | None) -> str:
    """Whose attempts count together: the IPv4 address, an IPv6 address's /64, or the
    peer's text as given (a Unix socket's, or "?" when aiohttp knows none)."""
    if not address:
        return "?"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d from a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """How guessing is slowed. Times in seconds."""

    first_delay_s: float = 0.5  # after one wrong token; doubles with each further one
    max_delay_s: float = 30.0
    max_failures: int = 10  # this many in window_s lock the client out
    window_s: float = 300.0
    lockout_s: float = 300.0
    max_clients: int = 4096  # clients remembered; the quietest are forgotten first

    def __post_init__(self) -> None:
        for name in ("first_delay_s", "max_delay_s", "window_s", "lockout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value} must be a number >= 0")
        if self.max_failures < 1 or self.max_clients < 1:
            raise ValueError("max_failures and max_clients must be >= 1")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A sign-in attempt refused before its token was looked at."""

    wait_s: float  # when the client may try again
    locked_out: bool  # True: max_failures reached; False: only too soon after a failure
    newly_locked: bool = False  # this attempt is the one that locked the client out


@dataclass(slots=True)
class _Client:
    failures: deque[float] = field(default_factory=deque)
    not_before_s: float = -math.inf
    locked: bool = False


class LoginGuard:
    """Failed sign-ins per client (see the module doc)."""

    def __init__(self, config: GuardConfig | None = None) -> None:
        self.config = config or GuardConfig()
        self._clients: dict[str, _Client] = {}
        self.failures = 0  # wrong tokens and attempts made too soon, all clients
        self.lockouts = 0

    def check(self, client: str, now_s: float) -> Refusal | None:
        """None: compare the token. Else the attempt is refused, and counted as a failure."""
        state = self._clients.get(client)
        if state is None or now_s >= state.not_before_s:
            return None
        if state.locked:
            self.failures += 1
            return Refusal(state.not_before_s - now_s, locked_out=True)
        return self._failure(state, now_s)

    def failed(self, client: str, now_s: float) -> Refusal:
        """A wrong token from ``client``: when it may try again."""
        state = self._clients.pop(client, None) or _Client()
        self._clients[client] = state  # most recently active last
        self._forget_some(now_s)
        return self._failure(state, now_s)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _failure(self, state: _Client, now_s: float) -> Refusal:
        cfg = self.config
        self.failures += 1
        while state.failures and state.failures[0] <= now_s - cfg.window_s:
            state.failures.popleft()
        state.failures.append(now_s)
        if len(state.failures) >= cfg.max_failures:
            state.failures.clear()
            state.locked, state.not_before_s = True, now_s + cfg.lockout_s
            self.lockouts += 1
            return Refusal(cfg.lockout_s, locked_out=True, newly_locked=True)
        state.locked = False
        delay_s = min(cfg.first_delay_s * 2.0 ** (len(state.failures) - 1), cfg.max_delay_s)
        state.not_before_s = now_s + delay_s
        return Refusal(delay_s, locked_out=False)

    def _forget_some(self, now_s: float) -> None:
        """Keep at most ``max_clients``: first those with nothing left to hold against
        them, then the least recently failed."""
        if len(self._clients) <= self.config.max_clients:
            return
        horizon_s = now_s - self.config.window_s
        for key in [k for k, s in self._clients.items()
                    if s.not_before_s <= now_s and all(t <= horizon_s for t in s.failures)]:
            del self._clients[key]
        while len(self._clients) > self.config.max_clients:
            del self._clients[next(iter(self._clients))]

    def locked_out(self, client: str, now_s: float) -> bool:
        state = self._clients.get(client)
        return state is not None and state.locked and now_s < state.not_before_s


@dataclass(frozen=True, slots=True)
class RateConfig:
    """New connections admitted per second (sustained) and in a burst."""

    per_client_per_s: float = 10.0  # a reconnecting page opens 1 a second
    per_client_burst: float = 40.0  # a page load opens ~8
    total_per_s: float = 100.0  # every client together: bounds the loop's share
    total_burst: float = 200.0
    max_clients: int = 4096

    def __post_init__(self) -> None:
        for name in ("per_client_per_s", "per_client_burst", "total_per_s", "total_burst"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be a positive number")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_s: float

    def refill(self, now_s: float, rate: float, burst: float) -> float:
        self.tokens = min(burst, self.tokens + max(now_s - self.at_s, 0.0) * rate)
        self.at_s = now_s
        return self.tokens


class ConnectionLimiter:
    """Token buckets of new connections (see the module doc)."""

    def __init__(self, config: RateConfig | None = None) -> None:
        self.config = cfg = config or RateConfig()
        self._total = _Bucket(cfg.total_burst, -math.inf)
        self._clients: dict[str, _Bucket] = {}
        self.refused = 0

    def admit(self, client: str, now_s: float) -> bool:
        """True: take the connection (one token of ``client``'s and of the total)."""
        cfg = self.config
        bucket = self._clients.pop(client, None) or _Bucket(cfg.per_client_burst, now_s)
        self._clients[client] = bucket  # most recently seen last
        if len(self._clients) > cfg.max_clients:
            del self._clients[next(iter(self._clients))]
        mine = bucket.refill(now_s, cfg.per_client_per_s, cfg.per_client_burst)
        total = self._total.refill(now_s, cfg.total_per_s, cfg.total_burst)
        if mine < 1.0 or total < 1.0:
            self.refused += 1
            return False
        bucket.tokens -= 1.0
        self._total.tokens -= 1.0
        return True


@dataclass(slots=True)
class _Session:
    started_s: float
    seen_s: float


class Sessions:
    """Live console sessions (see the module doc). Times on the caller's clock."""

    def __init__(self, *, max_s: float, idle_s: float, max_sessions: int = 32) -> None:
        if not (max_s > 0 and idle_s > 0 and max_sessions >= 1):
            raise ValueError("session lifetimes must be > 0 and max_sessions >= 1")
        self.max_s, self.idle_s, self.max_sessions = max_s, idle_s, max_sessions
        self._live: dict[bytes, _Session] = {}

    def __len__(self) -> int:
        return len(self._live)

    def start(self, now_s: float) -> str:
        """A new session; its id (to go into the cookie, and nowhere else)."""
        for key in [k for k, s in self._live.items() if not self._alive(s, now_s)]:
            del self._live[key]
        while len(self._live) >= self.max_sessions:
            oldest = min(self._live, key=lambda k: self._live[k].seen_s)
            del self._live[oldest]
        session_id = secrets.token_urlsafe(SESSION_BYTES)
        self._live[_digest(session_id)] = _Session(now_s, now_s)
        return session_id

    def valid(self, session_id: str | None, now_s: float, *, touch: bool = True) -> bool:
        """Whether ``session_id`` is live; ``touch`` counts this as a use (idle timer)."""
        if not session_id:
            return False
        key = _digest(session_id)
        session = self._live.get(key)
        if session is None:
            return False
        if not self._alive(session, now_s):
            del self._live[key]
            return False
        if touch:
            session.seen_s = max(session.seen_s, now_s)
        return True

    def end(self, session_id: str | None) -> None:
        if session_id:
            self._live.pop(_digest(session_id), None)

    def _alive(self, session: _Session, now_s: float) -> bool:
        return now_s - session.started_s < self.max_s and now_s - session.seen_s < self.idle_s


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).digest()
