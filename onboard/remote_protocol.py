"""The remote policy's wire format: a pure codec (bytes in, frozen messages out; no I/O).

``zima serve`` (:mod:`zima.host.serve`) and the robot's remote backend
(:mod:`zima.onboard.remote_policy`) talk over one WebSocket (``/policy``, binary frames
only). Every frame is::

    u16 LE  header_len          <= MAX_HEADER_BYTES
    bytes   header              UTF-8 JSON object {"t": type, ...}, nested at most 3 deep
    bytes   payload             raw arrays, little-endian, sized by the contract

The conversation (``S`` the server, ``C`` the robot)::

    S -> C  challenge  {"t": "challenge", "v": 1, "nonce": hex 32 bytes}
    C -> S  auth       {"t": "auth", "nonce": hex 32 bytes, "mac": client_mac(...)}
    S -> C  welcome    {"t": "welcome", "mac": server_mac(...), "sha256", "output",
                        "provider"}  + payload: the model's Contract.to_json(), UTF-8
    C -> S  infer      {"t": "infer", "id": n}  + payload: images uint8 [N, H, W, 3]
                        then action_history int64 [A]   (the contract's shapes)
    S -> C  out        {"t": "out", "id": n}    + payload: float32 output_shape(contract)
    S -> C  fail       {"t": "fail", "id": n, "reason": text}   inference raised
    either  refused    {"t": "refused", "reason": text}   then the sender closes

Both ends prove they hold the shared key without sending it: each MAC is HMAC-SHA256 of
both nonces (and, the server's, of what it claims to serve), so a replayed or forwarded
handshake fails. The key authenticates the ends at connect time; on a network you do not
trust, TLS (``zima serve --tls-cert``) also protects what follows. Both ends and the tests'
raw client make and check these messages through one set of functions:
:func:`new_challenge` and :func:`answer_challenge`, :func:`auth_holds_key`,
:func:`make_welcome` and :func:`welcome_holds_key`.

:func:`decode` takes any bytes and returns a message or raises :class:`ProtocolError`
(a ``ValueError``) with the reason; nothing else escapes. Array payloads must have
exactly the contract's size: images are ``N * H * W * 3`` bytes, nothing is compressed
(raw uint8 costs about 0.1 ms on loopback for the demo contract's 147 kB; JPEG would
cost more CPU on the robot than it saves on a LAN).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import struct
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from zima.bounded import InputError, parse_json_bounded
from zima.contract import Contract

__all__ = ["MAX_HEADER_BYTES", "MAX_REASON_CHARS", "NONCE_BYTES", "PATH", "VERSION", "Auth",
           "Challenge", "Fail", "Infer", "Message", "Out", "ProtocolError", "Refused", "Shapes",
           "Welcome", "answer_challenge", "auth_holds_key", "client_mac", "decode", "encode",
           "make_welcome", "max_frame_bytes", "new_challenge", "parse_server", "read_key",
           "server_mac", "welcome_holds_key"]

VERSION: Final = 1
PATH: Final = "/policy"  # the WebSocket's path on the server
NONCE_BYTES: Final = 32
MAX_HEADER_BYTES: Final = 1024
MAX_REASON_CHARS: Final = 400  # a refusal's or failure's text, clipped by the sender
MAX_CONTRACT_BYTES: Final = 8192  # a welcome's payload (the default contract: ~260 bytes)
MIN_KEY_BYTES: Final = 16
_PREFIX: Final = struct.Struct("<H")
_HEX64: Final = re.compile(r"[0-9a-f]{64}")


class ProtocolError(ValueError):
    """A frame that is not a message of this protocol; the text says why."""


@dataclass(frozen=True, slots=True)
class Shapes:
    """The array payloads' shapes, from the contract both ends agreed on."""

    images: tuple[int, ...]  # [N, H, W, 3] uint8
    history: int  # A int64 entries
    output: tuple[int, ...]  # [chunk_len, n_actions] float32

    @classmethod
    def of(cls, contract: Contract, output: tuple[int, ...]) -> Shapes:
        return cls(tuple(contract.image_shape), contract.action_history, output)

    @property
    def infer_bytes(self) -> int:
        return int(np.prod(self.images)) + 8 * self.history

    @property
    def out_bytes(self) -> int:
        return 4 * int(np.prod(self.output))


@dataclass(frozen=True, slots=True)
class Challenge:
    nonce: bytes
    version: int = VERSION


@dataclass(frozen=True, slots=True)
class Auth:
    nonce: bytes
    mac: str


@dataclass(frozen=True, slots=True)
class Welcome:
    mac: str
    contract_json: str
    sha256: str
    output: str
    provider: str


@dataclass(frozen=True, slots=True)
class Infer:
    id: int
    images: np.ndarray  # [N, H, W, 3] uint8
    history: np.ndarray  # [A] int64


@dataclass(frozen=True, slots=True)
class Out:
    id: int
    output: np.ndarray  # [chunk_len, n_actions] float32


@dataclass(frozen=True, slots=True)
class Fail:
    id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str


Message = Challenge | Auth | Welcome | Infer | Out | Fail | Refused


def client_mac(key: bytes, server_nonce: bytes, client_nonce: bytes) -> str:
    """hex HMAC-SHA256 the robot answers the challenge with."""
    return hmac.new(key, b"zima-policy/1 client\n" + server_nonce + client_nonce,
                    hashlib.sha256).hexdigest()


def server_mac(key: bytes, server_nonce: bytes, client_nonce: bytes, sha256: str,
               contract_json: str) -> str:
    """hex HMAC-SHA256 the server proves itself with, over what it says it serves."""
    text = b"\n".join((sha256.encode(), contract_json.encode("utf-8", "surrogatepass")))
    return hmac.new(key, b"zima-policy/1 server\n" + client_nonce + server_nonce + text,
                    hashlib.sha256).hexdigest()


def new_challenge() -> Challenge:
    """The server's challenge to a new connection: a fresh random nonce."""
    return Challenge(secrets.token_bytes(NONCE_BYTES))


def answer_challenge(key: bytes, challenge: Challenge) -> Auth:
    """The robot's answer: a fresh nonce of its own and its proof that it holds ``key``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return Auth(nonce, client_mac(key, challenge.nonce, nonce))


def auth_holds_key(key: bytes, challenge: Challenge, auth: Auth) -> bool:
    """Whether ``auth`` answers ``challenge`` with ``key`` (compared in constant time)."""
    return hmac.compare_digest(auth.mac, client_mac(key, challenge.nonce, auth.nonce))


def make_welcome(key: bytes, challenge: Challenge, auth: Auth, *, contract_json: str,
                 sha256: str, output: str, provider: str) -> Welcome:
    """The server's welcome after a good ``auth``: what it serves, and its proof of ``key``
    over that and both nonces."""
    mac = server_mac(key, challenge.nonce, auth.nonce, sha256, contract_json)
    return Welcome(mac, contract_json, sha256, output, provider)


def welcome_holds_key(key: bytes, challenge: Challenge, auth: Auth, welcome: Welcome) -> bool:
    """Whether ``welcome`` proves ``key`` for this handshake and what it says it serves."""
    expected = server_mac(key, challenge.nonce, auth.nonce, welcome.sha256,
                          welcome.contract_json)
    return hmac.compare_digest(welcome.mac, expected)


def read_key(text: str) -> bytes:
    """The shared key from a key file's text (whitespace stripped); ``ValueError`` when
    shorter than MIN_KEY_BYTES."""
    key = text.strip().encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the key is {len(key)} bytes; at least {MIN_KEY_BYTES} are needed "
                         "(e.g. `openssl rand -hex 32`)")
    return key


def parse_server(text: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:port"`` for IPv6) -> (host, port); ``ValueError``."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"server {text!r} must be host:port (port 1..65535)")
    if any(c.isspace() or c in "/[]@?#" for c in host):
        raise ValueError(f"server {text!r}: not a host name or address")
    return host, int(port)


def max_frame_bytes(shapes: Shapes | None) -> int:
    """The largest frame either end accepts: ``max_msg_size`` of the WebSocket."""
    payload = MAX_CONTRACT_BYTES if shapes is None else max(
        MAX_CONTRACT_BYTES, shapes.infer_bytes, shapes.out_bytes)
    return _PREFIX.size + MAX_HEADER_BYTES + payload


def encode(message: Message) -> bytes:
    """The frame of ``message``."""
    payload = b""
    match message:
        case Challenge(nonce, version):
            header: dict[str, Any] = {"t": "challenge", "v": version, "nonce": nonce.hex()}
        case Auth(nonce, mac):
            header = {"t": "auth", "nonce": nonce.hex(), "mac": mac}
        case Welcome(mac, contract_json, sha256, output, provider):
            header = {"t": "welcome", "mac": mac, "sha256": sha256, "output": output,
                      "provider": provider}
            payload = contract_json.encode("utf-8")
        case Infer(id_, images, history):
            header = {"t": "infer", "id": id_}
            payload = (np.ascontiguousarray(images, np.uint8).tobytes()
                       + np.ascontiguousarray(history, "<i8").tobytes())
        case Out(id_, output):
            header = {"t": "out", "id": id_}
            payload = np.ascontiguousarray(output, "<f4").tobytes()
        case Fail(id_, reason):
            header = {"t": "fail", "id": id_, "reason": reason[:MAX_REASON_CHARS]}
        case Refused(reason):
            header = {"t": "refused", "reason": reason[:MAX_REASON_CHARS]}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"header of {len(text)} bytes is over {MAX_HEADER_BYTES}")
    return _PREFIX.pack(len(text)) + text + payload


def decode(frame: bytes, shapes: Shapes | None = None) -> Message:
    """The message in ``frame`` (any bytes): ``ProtocolError`` saying why not. ``infer``
    and ``out`` frames need the agreed ``shapes`` (before the welcome, they are refused)."""
    try:
        return _decode(bytes(frame), shapes)
    except ProtocolError:
        raise
    except (InputError, ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ProtocolError(f"malformed frame: {exc}"[:MAX_REASON_CHARS]) from None


def _decode(frame: bytes, shapes: Shapes | None) -> Message:  # noqa: PLR0911, PLR0912 (a case a type)
    if len(frame) < _PREFIX.size:
        raise ProtocolError(f"frame of {len(frame)} bytes is shorter than its prefix")
    (size,) = _PREFIX.unpack_from(frame)
    if size > MAX_HEADER_BYTES or _PREFIX.size + size > len(frame):
        raise ProtocolError(f"header length {size} is over the limit or the frame")
    header = parse_json_bounded(frame[_PREFIX.size:_PREFIX.size + size],
                                max_bytes=MAX_HEADER_BYTES, max_depth=3, what="header")
    if not isinstance(header, dict):
        raise ProtocolError("the header is not a JSON object")
    payload = frame[_PREFIX.size + size:]
    kind = header.get("t")
    expected = _FIELDS.get(kind) if isinstance(kind, str) else None
    if expected is None:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}")
    if set(header) != {"t", *expected}:
        raise ProtocolError(f"{kind}: fields {sorted(header)}, expected "
                            f"{sorted(['t', *expected])}")
    if kind not in ("welcome", "infer", "out") and payload:
        raise ProtocolError(f"{kind}: unexpected payload of {len(payload)} bytes")
    match kind:
        case "challenge":
            if _int(header, "v") != VERSION:
                raise ProtocolError(f"protocol version {header['v']}, this end speaks {VERSION}")
            return Challenge(_nonce(header), VERSION)
        case "auth":
            return Auth(_nonce(header), _hex64(header, "mac"))
        case "welcome":
            if len(payload) > MAX_CONTRACT_BYTES:
                raise ProtocolError(f"welcome: contract of {len(payload)} bytes")
            return Welcome(_hex64(header, "mac"), payload.decode("utf-8"),
                           _hex64(header, "sha256"), _text(header, "output", 16),
                           _text(header, "provider", 64))
        case "fail":
            return Fail(_int(header, "id"), _text(header, "reason", MAX_REASON_CHARS))
        case "refused":
            return Refused(_text(header, "reason", MAX_REASON_CHARS))
    if shapes is None:
        raise ProtocolError(f"{kind} before the handshake agreed on the shapes")
    id_ = _int(header, "id")
    if kind == "infer":
        if len(payload) != shapes.infer_bytes:
            raise ProtocolError(f"infer: payload of {len(payload)} bytes, expected "
                                f"{shapes.infer_bytes}")
        n_image = shapes.infer_bytes - 8 * shapes.history
        images = np.frombuffer(payload, np.uint8, n_image).reshape(shapes.images)
        history = np.frombuffer(payload, "<i8", shapes.history, n_image).astype(np.int64)
        return Infer(id_, images, history)
    if len(payload) != shapes.out_bytes:
        raise ProtocolError(f"out: payload of {len(payload)} bytes, expected {shapes.out_bytes}")
    return Out(id_, np.frombuffer(payload, "<f4").astype(np.float32).reshape(shapes.output))


_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "challenge": ("v", "nonce"), "auth": ("nonce", "mac"),
    "welcome": ("mac", "sha256", "output", "provider"), "infer": ("id",), "out": ("id",),
    "fail": ("id", "reason"), "refused": ("reason",)}


def _int(header: dict[str, Any], name: str) -> int:
    value = header[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**53:
        raise ProtocolError(f"{name} must be an integer in [0, 2**53)")
    return value


def _text(header: dict[str, Any], name: str, max_chars: int) -> str:
    value = header[name]
    if not isinstance(value, str) or len(value) > max_chars:
        raise ProtocolError(f"{name} must be a string of at most {max_chars} characters")
    return value


def _hex64(header: dict[str, Any], name: str) -> str:
    value = header[name]
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ProtocolError(f"{name} must be 64 lower-case hex digits")
    return value


def _nonce(header: dict[str, Any]) -> bytes:
    return bytes.fromhex(_hex64(header, "nonce"))
