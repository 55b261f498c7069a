"""`zima status`: what the robot says about itself, in one screen.

Reads the retained ``zima/<r>/status`` and the next message of every telemetry topic
(``mode``, ``link``, ``battery``, ``faults``, ``loop``, ``policy``, ``odometry``) within
``--timeout`` seconds, then prints mode and owner, the MCU link and firmware, battery,
model hash, loop timing and faults. A topic not heard in that time is shown as "no data"::

    zima status --robot zima --username operator --password-file ~/.zima-mqtt
    zima status --watch            redraw every second until Ctrl-C (or --duration)

``StatusBoard`` holds the latest payload per topic and renders it; the lead's end-to-end
tests can feed it from the real runtime the same way (``collect_status``).

Exit status: 0 online and every topic heard; 1 an error (broker, flags); 3 the robot is
offline (or its status unknown) or some topic sent nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from zima.host.mqtt import (
    HostMqttConfig,
    HostMqttError,
    add_connection_arguments,
    config_from_args,
    connect,
    json_object,
    next_message,
)

__all__ = ["STREAMS", "StatusBoard", "collect_status"]

EXIT_OK, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 3
STREAMS = ("mode", "link", "battery", "faults", "loop", "policy", "odometry")


def _get(body: dict[str, object], key: str, unit: str = "", digits: int | None = None) -> str:
    value = body.get(key)
    if value is None:
        return "-"
    if digits is not None and isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


@dataclass
class StatusBoard:
    """The latest status and telemetry of one robot, and when each arrived (host clock)."""

    robot_id: str
    status: str | None = None  # "online" / "offline" / None (never heard)
    latest: dict[str, dict[str, object]] = field(default_factory=dict)
    received_s: dict[str, float] = field(default_factory=dict)

    def take(self, topic: str, payload: object, now_s: float) -> None:
        """One message of ``zima/<r>/status`` or ``zima/<r>/telemetry/<stream>``."""
        if topic.endswith("/status"):
            self.status = payload.decode(errors="replace") if isinstance(payload, bytes) else None
            return
        stream = topic.rsplit("/", 1)[-1]
        body = json_object(payload)
        if stream in STREAMS and body is not None:
            self.latest[stream] = body
            self.received_s[stream] = now_s

    @property
    def missing(self) -> list[str]:
        return [s for s in STREAMS if s not in self.latest]

    @property
    def complete(self) -> bool:
        return self.status is not None and not self.missing

    @property
    def exit_status(self) -> int:
        return EXIT_OK if self.status == "online" and not self.missing else EXIT_INCOMPLETE

    def render(self, now_s: float | None = None) -> list[str]:
        """Lines to print; ``now_s`` adds each topic's age (for ``--watch``)."""
        status = {None: "status unknown (never published)", "online": "online",
                  "offline": "OFFLINE"}.get(self.status, f"status {self.status!r}")
        lines = [f"robot {self.robot_id}: {status}"]
        for stream in STREAMS:
            body = self.latest.get(stream)
            text = "no data" if body is None else self._describe(stream, body)
            if body is not None and now_s is not None:
                text += f"  ({now_s - self.received_s[stream]:.1f} s ago)"
            lines.append(f"  {stream:<9}{text}")
        return lines

    @staticmethod
    def _describe(  # noqa: PLR0911 - one branch per stream, read top to bottom
        stream: str, body: dict[str, object]
    ) -> str:
        g = body.get
        if stream == "mode":
            reason = f", reason: {g('reason')}" if g("reason") else ""
            return f"{_get(body, 'mode')} (owner {_get(body, 'owner')}{reason})"
        if stream == "link":
            state = "connected" if g("connected") else f"DOWN ({_get(body, 'reason')})"
            return (f"MCU {state}, firmware {_get(body, 'firmware')}, telemetry "
                    f"{_get(body, 'telemetry_hz', ' Hz', 1)}, rejected {_get(body, 'rx_rejected')},"
                    f" dropped {_get(body, 'rx_dropped')}, connects {_get(body, 'connects')}")
        if stream == "battery":
            mv = g("battery_mv")
            volts = f"{mv / 1000:.2f} V" if isinstance(mv, int | float) else "-"
            level = str(g("level") or "-")
            return f"{volts} {level if level == 'ok' else level.upper()}"
        if stream == "faults":
            active = g("active")
            names = ", ".join(map(str, active)) if isinstance(active, list) and active else "none"
            return f"{names} (MCU {_get(body, 'mcu_state')})"
        if stream == "loop":
            return (f"{_get(body, 'rate_hz', ' Hz', 1)}, period p50 "
                    f"{_get(body, 'period_p50_ms', ' ms', 1)} p99 "
                    f"{_get(body, 'period_p99_ms', ' ms', 1)}, jitter p99 "
                    f"{_get(body, 'jitter_p99_ms', ' ms', 1)}, overruns {_get(body, 'overruns')}")
        if stream == "policy":
            digest = g("model_hash")
            model = f"model sha256 {str(digest)[:16]}" if digest else "no model"
            error = f", reload error: {g('reload_error')}" if g("reload_error") else ""
            return (f"{model}, latency {_get(body, 'latency_ms', ' ms', 1)} (max "
                    f"{_get(body, 'latency_max_ms', ' ms', 1)}), plans {_get(body, 'plans')}"
                    f"{error}")
        return (f"ticks {_get(body, 'left_ticks')}/{_get(body, 'right_ticks')}, speed "
                f"{_get(body, 'vel_left_mm_s')}/{_get(body, 'vel_right_mm_s')} mm/s")


async def collect_status(
    config: HostMqttConfig,
    timeout_s: float,
    *,
    watch: Callable[[StatusBoard], None] | None = None,
    duration_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> StatusBoard:
    """Listen until every topic was heard or ``timeout_s`` passed; with ``watch``, keep
    listening (calling it every second) until ``duration_s`` or cancelled."""
    board = StatusBoard(config.robot_id)
    async with connect(config, "status") as client:
        await client.subscribe([(config.topic("status"), 1), (config.topic("telemetry/+"), 0)])
        start_s = clock()
        end_s = start_s + (timeout_s if watch is None else (duration_s or math.inf))
        next_draw_s = start_s + 1.0
        while (now_s := clock()) < end_s:
            message = await next_message(client, min(end_s, next_draw_s) - now_s)
            if message is not None:
                board.take(str(message.topic), message.payload, clock())
            if watch is None and board.complete:
                break
            if watch is not None and clock() >= next_draw_s:
                watch(board)
                next_draw_s = clock() + 1.0
    return board


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(parser)
    parser.add_argument("--timeout", type=float, default=3.0, metavar="S",
                        help="wait this long for each topic's next message (default: 3)")
    parser.add_argument("--watch", action="store_true", help="redraw every second")
    parser.add_argument("--duration", type=float, metavar="S", help="with --watch: stop after S")


def _draw(out: TextIO, tty: bool) -> Callable[[StatusBoard], None]:
    drawn = 0

    def draw(board: StatusBoard) -> None:
        nonlocal drawn
        lines = board.render(time.monotonic())
        prefix = f"\x1b[{drawn}F\x1b[J" if tty and drawn else ("" if tty else "\n")
        out.write(prefix + "\n".join(lines) + "\n")
        out.flush()
        drawn = len(lines)

    return draw


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--timeout", args.timeout), ("--duration", args.duration)):
        if value is not None and not (math.isfinite(value) and value > 0):
            sys.stderr.write(f"zima status: {flag} {value} must be a positive number\n")
            return EXIT_ERROR
    try:
        config = config_from_args(args)
        watch = _draw(sys.stdout, sys.stdout.isatty()) if args.watch else None
        try:
            board = asyncio.run(
                collect_status(config, args.timeout, watch=watch, duration_s=args.duration)
            )
        except KeyboardInterrupt:
            return 130
    except HostMqttError as exc:
        sys.stderr.write(f"zima status: {exc}\n")
        return EXIT_ERROR
    if watch is None:
        sys.stdout.write("\n".join(board.render()) + "\n")
    missing = board.missing
    if missing:
        sys.stdout.write(f"no data within {args.timeout:g} s on: {', '.join(missing)}\n")
    return board.exit_status
