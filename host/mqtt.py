"""The operator tools' side of the robot's MQTT broker: connection flags, topics, JSON.

Every host tool (``zima battery``, ``zima status``, ``zima estop``) connects the same way::

    def add_arguments(parser):
        add_connection_arguments(parser)      # --robot --broker --username --password-file

    def run(args):
        config = config_from_args(args)       # HostMqttError on bad flags / unreadable file
        async with connect(config, "battery") as client:
            await client.subscribe(config.topic("telemetry/battery"))

Passwords never appear on the command line (where ``ps`` shows them): ``--password-file``
or the environment variable ``ZIMA_MQTT_PASSWORD``. The topics are those of
``zima.onboard.telemetry`` (``zima/<robot>/...``).

Over a network, use the broker's TLS listener (onboard/mosquitto.conf.example, port 8883):
``--tls`` checks the broker's certificate against the system's CAs, ``--cafile FILE``
against the robot's own CA (and implies ``--tls``); the host name in ``--broker`` must be
one the certificate names. A robot that takes signed commands only needs
``--command-key-file FILE`` (its ``[mqtt] command_key_file``): ``command_payload`` then
adds ``ts`` and ``sig`` to every command a tool sends (``zima.onboard.commands``).

What arrives on the broker is outside input (anyone with write access to a topic can send
any bytes): ``payload_object`` parses a payload with ``zima.bounded``'s limits
(``MAX_PAYLOAD_BYTES``, ``MAX_PAYLOAD_DEPTH``) and raises ``InputError`` (a ``ValueError``)
saying why; the tools skip such a message, count it and say so, and never crash on one.
``printable`` is how a received string reaches the operator's terminal: control
characters (escape sequences) shown escaped, and cut to a length.

Exceptions::

    HostMqttError          a bad flag, an unreadable password file, or the broker could not
     |                     be reached / dropped us (aiomqtt's MqttError never leaks)
     +-- BrokerRefusedError the broker refused the username or password
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import ssl
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from zima.bounded import InputError, parse_json_bounded
from zima.onboard.commands import CommandKey

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "MAX_PAYLOAD_DEPTH",
    "PASSWORD_ENV",
    "BrokerRefusedError",
    "HostMqttConfig",
    "HostMqttError",
    "InputError",
    "add_connection_arguments",
    "command_payload",
    "config_from_args",
    "connect",
    "json_object",
    "next_message",
    "parse_broker",
    "payload_object",
    "printable",
    "seconds_problem",
]

PASSWORD_ENV = "ZIMA_MQTT_PASSWORD"  # noqa: S105 - a variable's name, not a password
DEFAULT_PORT = 1883  # MQTT's registered port
DEFAULT_TLS_PORT = 8883  # MQTT over TLS
# CONNACK codes meaning "bad credentials / not authorised" (MQTT 3.1.1 and 5).
_REFUSED_CODES = (4, 5, 134, 135)
# The robot's records are a few hundred bytes, two levels deep (telemetry/cameras); these
# leave room for growth and still bound what one message can cost a tool.
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PAYLOAD_DEPTH = 8


class HostMqttError(Exception):
    """A host tool could not talk to the broker (or was configured wrongly)."""


class BrokerRefusedError(HostMqttError):
    """The broker refused our username or password."""


@dataclass(frozen=True, slots=True)
class HostMqttConfig:
    """Where the robot's broker is and who we are there. Times in seconds."""

    robot_id: str = "zima"  # the robot's topics are zima/<robot_id>/...
    host: str = "localhost"
    port: int = DEFAULT_PORT
    username: str | None = None  # the operator's own account in the sample ACL
    password: str | None = field(default=None, repr=False)
    connect_timeout_s: float = 3.0  # one connect attempt; a tool reports and exits after it
    tls: bool = False  # TLS to the broker, its certificate checked (cafile, else system CAs)
    cafile: Path | None = None  # PEM of the CA that signed the broker's certificate
    command_key: CommandKey | None = field(default=None, repr=False)  # sign commands

    def __post_init__(self) -> None:
        if not self.robot_id or any(c in self.robot_id for c in "/+#"):
            raise HostMqttError(f"robot id {self.robot_id!r} must be one MQTT topic level")
        if not 0 < self.port < 65536:
            raise HostMqttError(f"broker port {self.port} is not in 1..65535")

    def topic(self, suffix: str) -> str:
        """``zima/<robot_id>/<suffix>``."""
        return f"zima/{self.robot_id}/{suffix}"


def parse_broker(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6addr]:PORT`` for IPv6) as (host, port)."""
    host, port_text = text, ""
    if text.startswith("["):  # [::1]:1883
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise HostMqttError(f"--broker {text!r}: no host name")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise HostMqttError(f"--broker {text!r}: port {port_text!r} is not in 1..65535")
    return host, int(port_text)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every host tool shares."""
    group = parser.add_argument_group("MQTT connection")
    group.add_argument("--robot", default="zima", metavar="ID",
                       help="robot id: its topics are zima/ID/... (default: zima)")
    group.add_argument("--broker", default="localhost", metavar="HOST[:PORT]",
                       help=f"MQTT broker (default: localhost:{DEFAULT_PORT})")
    group.add_argument("--username", help="MQTT username (the sample ACL's is 'operator')")
    group.add_argument("--password-file", type=Path, metavar="FILE",
                       help=f"file holding the MQTT password (else ${PASSWORD_ENV}; "
                            "never on the command line)")
    group.add_argument("--tls", action="store_true",
                       help=f"TLS to the broker (default port then {DEFAULT_TLS_PORT}), its "
                            "certificate checked against the system's CAs or --cafile")
    group.add_argument("--cafile", type=Path, metavar="FILE",
                       help="PEM file of the CA that signed the broker's certificate "
                            "(implies --tls)")
    group.add_argument("--command-key-file", type=Path, metavar="FILE",
                       help="sign every command with this key (the robot's "
                            "[mqtt] command_key_file)")


def seconds_problem(*flags: tuple[str, float | None]) -> str | None:
    """What is wrong with the first of the host tools' time flags, ``(flag, seconds)``, that
    is given and is no positive, finite number of seconds; None when all are fine."""
    for flag, value in flags:
        if value is not None and not (math.isfinite(value) and value > 0):
            return f"{flag} {value} must be a positive number of seconds"
    return None


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> HostMqttConfig:
    """The connection the flags of :func:`add_connection_arguments` describe."""
    environ = os.environ if environ is None else environ
    tls = bool(getattr(args, "tls", False)) or getattr(args, "cafile", None) is not None
    host, port = parse_broker(args.broker, DEFAULT_TLS_PORT if tls else DEFAULT_PORT)
    password: str | None = environ.get(PASSWORD_ENV)
    if args.password_file is not None:
        try:
            # One line; the trailing newline an editor adds is not part of the password.
            password = args.password_file.read_text().rstrip("\r\n")
        except OSError as exc:
            raise HostMqttError(f"--password-file {args.password_file}: {exc.strerror}") from None
    if password is not None and args.username is None:
        raise HostMqttError("a password was given without --username")
    cafile: Path | None = getattr(args, "cafile", None)
    if cafile is not None and not cafile.is_file():
        raise HostMqttError(f"--cafile {cafile}: no such file")
    key: CommandKey | None = None
    key_file: Path | None = getattr(args, "command_key_file", None)
    if key_file is not None:
        try:
            key = CommandKey.from_file(key_file)
        except OSError as exc:
            raise HostMqttError(f"--command-key-file {key_file}: {exc.strerror}") from None
        except ValueError as exc:
            raise HostMqttError(f"--command-key-file {key_file}: {exc}") from None
    return HostMqttConfig(args.robot, host, port, args.username, password, tls=tls,
                          cafile=cafile, command_key=key)


def tls_context(config: HostMqttConfig) -> ssl.SSLContext | None:
    """The TLS settings of ``config``'s connection (None: plain TCP)."""
    if not config.tls:
        return None
    try:
        context = ssl.create_default_context(
            cafile=None if config.cafile is None else str(config.cafile))
    except (OSError, ssl.SSLError) as exc:
        raise HostMqttError(f"--cafile {config.cafile}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def command_payload(config: HostMqttConfig, name: str, body: Mapping[str, object]) -> bytes:
    """The payload of command ``name`` (``cmd/<name>``): ``body`` as JSON, signed
    (``ts``, ``sig``) when the config has a command key."""
    message = dict(body)
    if config.command_key is not None:
        message = config.command_key.sign(config.robot_id, name, message)
    return json.dumps(message).encode()


@contextlib.asynccontextmanager
async def connect(config: HostMqttConfig, tool: str) -> AsyncIterator[aiomqtt.Client]:
    """A connected aiomqtt client; its errors (here or in the body) as ``HostMqttError``."""
    client = aiomqtt.Client(
        config.host,
        config.port,
        username=config.username,
        password=config.password,
        # Unique: a second operator's tool with the same id would kick this one off.
        # (A broker with use_username_as_clientid, as the sample's TLS listener, replaces
        # it with the username: one connection per account there.)
        identifier=f"zima-{tool}-{uuid.uuid4().hex[:8]}",
        timeout=config.connect_timeout_s,
        tls_context=tls_context(config),
    )
    where = f"{config.host}:{config.port}"
    try:
        async with client:
            yield client
    except aiomqtt.MqttError as exc:
        rc = getattr(exc, "rc", None)
        if getattr(rc, "value", rc) in _REFUSED_CODES:
            raise BrokerRefusedError(
                f"the broker at {where} refused user {config.username!r}: {exc} "
                "(check --username and --password-file)"
            ) from None
        raise HostMqttError(f"MQTT broker at {where}: {exc}") from None


def payload_object(payload: object, what: str = "payload") -> dict[str, object]:
    """A message payload as a JSON object, bounded; ``InputError`` saying why not."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8", errors="replace")
    if not isinstance(payload, bytes | bytearray):
        raise InputError(f"{what} is {type(payload).__name__}, not bytes")
    body = parse_json_bounded(bytes(payload), max_bytes=MAX_PAYLOAD_BYTES,
                              max_depth=MAX_PAYLOAD_DEPTH, what=what)
    if not isinstance(body, dict):
        raise InputError(f"{what} is a JSON {type(body).__name__}, not an object")
    return body


def json_object(payload: object) -> dict[str, object] | None:
    """A message payload as a JSON object, or None when it is not one (any bytes)."""
    try:
        return payload_object(payload)
    except InputError:
        return None


def printable(value: object, max_chars: int = 120) -> str:
    """``value`` as text safe for a terminal: control characters escaped, at most
    ``max_chars`` characters (cut ones end in "...")."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > 4 * max_chars:  # escaping below is linear; do not escape megabytes
        text = text[: 4 * max_chars]
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


async def next_message(client: aiomqtt.Client, timeout_s: float) -> aiomqtt.Message | None:
    """The next message, or None after ``timeout_s`` (aiomqtt's iterator survives that
    cancel: it cancels its own queue read)."""
    try:
        return await asyncio.wait_for(anext(aiter(client.messages)), max(timeout_s, 0.0))
    except TimeoutError:
        return None
