"""`zima status`: what the robot says about itself, in one screen.

Reads the retained ``zima/<r>/status`` and the next message of every telemetry topic
(``mode``, ``link``, ``battery``, ``faults``, ``loop``, ``policy``, ``odometry``) within
``--timeout`` seconds, then prints mode and owner, the MCU link and firmware, battery,
model hash, loop timing and faults. A topic not heard in that time is shown as "no data"::

    zima status --robot zima --username operator --password-file ~/.zima-mqtt
    zima status --watch            redraw every second until Ctrl-C (or --duration)
    zima status --watch --duration 60 --plot
                                   then histograms of the latency readings received: the
                                   observation's age when its chunk starts, loop jitter

``StatusBoard`` holds the latest payload per topic and renders it; the lead's end-to-end
tests can feed it from the real runtime the same way (``collect_status``).

What it reads is outside input: a payload that is not a bounded JSON object is skipped and
counted (the last line says how many, and why the last one was), every value is shown only
as what it should be (a number, or text with control characters escaped and cut short), and
a record the robot marks ``stale`` (data from a lost link) is shown as STALE with its age,
never as current. The battery line says the battery's state and what to do
(``zima.host.battery_model.battery_state``: a critical latch, and when asking for idle
clears it).

Exit status: 0 online, every topic heard and none stale; 1 an error (broker, flags); 3 the
robot is offline (or its status unknown), some topic sent nothing or only stale data.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import numpy as np

from zima.host import mqtt
from zima.host.battery_model import BatteryReading, battery_state
from zima.onboard.api import (
    RECORDS,
    BatteryRecord,
    FaultsRecord,
    LinkRecord,
    LoopRecord,
    ModeRecord,
    OdometryRecord,
    PolicyRecord,
    Record,
)

__all__ = ["STREAMS", "StatusBoard", "collect_status"]

EXIT_OK, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 3
STREAMS = ("mode", "link", "battery", "faults", "loop", "policy", "odometry")
MAX_NUMBER = 1e12  # larger is no reading of this robot: shown as "?"
MAX_TEXT = 80  # characters of one received string shown (a reason: more)
MAX_NAMES = 16  # fault names shown
# --plot: the latency figures whose readings a run collects (the newest observation age
# at each telemetry/policy message, the loop's recent jitter p99 at each telemetry/loop).
PLOTTED = {"policy": ("obs_age_ms",), "loop": ("jitter_p99_ms",)}
MAX_SAMPLES = 100_000  # readings kept per figure (a day at 2 Hz)

log = logging.getLogger(__name__)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if abs(value) <= MAX_NUMBER else None  # NaN never parses


def _get(body: dict[str, object], key: str, unit: str = "", digits: int | None = None,
         max_chars: int = MAX_TEXT) -> str:
    """One field as text: numbers (``digits`` after the point), else short printable text."""
    value = body.get(key)
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = _number(value)
        if number is None:
            return "?"
        return f"{number:.{digits}f}{unit}" if digits is not None else f"{value}{unit}"
    return mqtt.printable(value, max_chars) + unit


def histogram(values: list[float], title: str, bins: int = 10, width: int = 40) -> list[str]:
    """A text histogram of ``values`` (ms): one line per bin, bars scaled to ``width``."""
    if not values:
        return [f"{title}: no readings"]
    data = np.asarray(values, float)  # [n]
    p50, p99 = np.percentile(data, [50, 99])
    lines = [(f"{title}: {len(data)} readings, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
              f"max {data.max():.1f} ms")]
    counts, edges = np.histogram(data, bins=bins)
    top = max(int(counts.max()), 1)
    for count, low, high in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "#" * round(width * int(count) / top)
        lines.append(f"  {low:7.1f} - {high:7.1f} ms |{bar:<{width}}| {int(count)}")
    return lines


@dataclass
class StatusBoard:
    """The latest status and telemetry of one robot, and when each arrived (host clock)."""

    robot_id: str
    status: str | None = None  # "online" / "offline" / None (never heard)
    latest: dict[str, Record] = field(default_factory=dict)  # stream -> its latest record
    stamps: dict[str, object] = field(default_factory=dict)  # stream -> its stamp_unix_s
    received_s: dict[str, float] = field(default_factory=dict)
    bad_payloads: int = 0  # messages skipped: not a bounded JSON object
    last_bad_payload: str | None = None  # why the latest was skipped
    # Every reading of the latency figures (PLOTTED) received, for --plot.
    samples: dict[str, list[float]] = field(default_factory=dict)

    def take(self, topic: str, payload: object, now_s: float) -> None:
        """One message of ``zima/<r>/status`` or ``zima/<r>/telemetry/<stream>``; any
        bytes: a bad payload is counted and skipped."""
        if topic.endswith("/status"):
            raw = payload if isinstance(payload, bytes | bytearray) else b""
            self.status = mqtt.printable(bytes(raw[:4 * MAX_TEXT]).decode(errors="replace"),
                                         MAX_TEXT)
            return
        stream = topic.rsplit("/", 1)[-1]
        if stream not in STREAMS:
            return
        try:
            body = mqtt.payload_object(payload, f"{stream} payload")
            record = RECORDS[stream].from_json(body)
        except ValueError as exc:  # InputError: too big, too deep, not JSON, not an object;
            self.bad_payloads += 1  # RecordError: not the record (zima.onboard.api)
            self.last_bad_payload = mqtt.printable(str(exc), 160)
            if self.bad_payloads == 1:
                log.warning("ignored a bad payload on telemetry/%s: %s", stream,
                            self.last_bad_payload)
            return
        self.latest[stream] = record
        self.stamps[stream] = body.get("stamp_unix_s")
        self.received_s[stream] = now_s
        for key in PLOTTED.get(stream, ()):
            value = getattr(record, key)
            kept = self.samples.setdefault(f"{stream}.{key}", [])
            if isinstance(value, float) and len(kept) < MAX_SAMPLES:
                kept.append(value)

    @property
    def missing(self) -> list[str]:
        return [s for s in STREAMS if s not in self.latest]

    @property
    def stale(self) -> list[str]:
        """Streams whose latest record the robot marks stale (data from a lost link)."""
        return [s for s in STREAMS if getattr(self.latest.get(s), "stale", None) is True]

    @property
    def complete(self) -> bool:
        return self.status is not None and not self.missing

    @property
    def exit_status(self) -> int:
        current = not self.missing and not self.stale
        return EXIT_OK if self.status == "online" and current else EXIT_INCOMPLETE

    def plot(self) -> list[str]:
        """--plot: the distribution of each latency figure over the readings received."""
        titles = {"policy.obs_age_ms": "observation age at its chunk's first action",
                  "loop.jitter_p99_ms": "control loop jitter p99 (recent window)"}
        return [line for key, title in titles.items()
                for line in histogram(self.samples.get(key, []), title)]

    def render(self, now_s: float | None = None) -> list[str]:
        """Lines to print; ``now_s`` adds each topic's age (for ``--watch``)."""
        status = {None: "status unknown (never published)", "online": "online",
                  "offline": "OFFLINE"}.get(self.status, f"status {self.status!r}")
        lines = [f"robot {self.robot_id}: {status}"]
        for stream in STREAMS:
            record = self.latest.get(stream)
            text = "no data" if record is None else _describe(record, self.robot_id)
            if getattr(record, "stale", None) is True:
                age = getattr(record, "age_s", None)
                old = "" if age is None else f", data {age:.1f} s old"
                text = f"STALE (not current{old}): {text}"
            if record is not None and now_s is not None:
                text += f"  ({now_s - self.received_s[stream]:.1f} s ago)"
            lines.append(f"  {stream:<9}{text}")
        if self.bad_payloads:
            lines.append(f"  ignored {self.bad_payloads} bad payloads "
                         f"(last: {self.last_bad_payload})")
        return lines


def _n(value: float | None, unit: str = "", digits: int = 1) -> str:
    """A number of a record as text: "-" when not known, "?" when no reading of this robot."""
    if value is None:
        return "-"
    if abs(value) > MAX_NUMBER:
        return "?"
    return f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _t(value: str | None, max_chars: int = MAX_TEXT) -> str:
    return "-" if value is None else mqtt.printable(value, max_chars)


def _describe(record: Record, robot_id: str) -> str:  # noqa: PLR0911 - a branch a stream
    """One stream's line, from its record (zima.onboard.api)."""
    match record:
        case ModeRecord():
            # Safety's reasons say what to do (a battery latch): room for a sentence.
            reason = f", reason: {_t(record.reason, 300)}" if record.reason else ""
            return f"{record.mode.value} (owner {_t(record.owner)}{reason})"
        case LinkRecord():
            state = "connected" if record.connected else f"DOWN ({_t(record.reason)})"
            return (f"MCU {state}, firmware {_t(record.firmware)}, telemetry "
                    f"{_n(record.telemetry_hz, ' Hz')}, rejected {_n(record.rx_rejected)},"
                    f" dropped {_n(record.rx_dropped)}, connects {_n(record.connects)}")
        case BatteryRecord():
            return _battery(record, robot_id)
        case FaultsRecord():
            names = ", ".join(mqtt.printable(name, 24) for name in record.active[:MAX_NAMES])
            more = len(record.active) - MAX_NAMES
            names = (names or "none") + (f" and {more} more" if more > 0 else "")
            return f"{names} (MCU {_t(record.mcu_state)})"
        case LoopRecord():
            return (f"{_n(record.rate_hz, ' Hz')}, period p50 {_n(record.period_p50_ms, ' ms')}"
                    f" p99 {_n(record.period_p99_ms, ' ms')}, jitter p50/p99/max "
                    f"{_n(record.jitter_p50_ms)}/{_n(record.jitter_p99_ms)}/"
                    f"{_n(record.jitter_max_ms, ' ms')}, overruns {_n(record.overruns)}")
        case PolicyRecord():
            digest = record.model_hash
            model = f"model sha256 {mqtt.printable(digest, 80)[:16]}" if digest else "no model"
            error = f", reload error: {_t(record.reload_error)}" if record.reload_error else ""
            # How old the robot's view is when it acts: the observation's age at each
            # chunk's first action (onboard/MQTT.md), and the ticks that found no plan.
            age = (f", obs age p50/p99 {_n(record.obs_age_p50_ms)}/"
                   f"{_n(record.obs_age_p99_ms, ' ms')} (last {_n(record.obs_age_ms, ' ms')}),"
                   f" lead {_n(record.lead_ms, ' ms', 0)}, dry ticks {_n(record.dry_ticks)}"
                   ) if record.dry_ticks is not None else ""
            return (f"{model}, latency {_n(record.latency_ms, ' ms')} (max "
                    f"{_n(record.latency_max_ms, ' ms')}), plans {_n(record.plans)}"
                    f"{age}{error}")
        case OdometryRecord():
            return (f"ticks {record.left_ticks}/{record.right_ticks}, speed "
                    f"{record.vel_left_mm_s}/{record.vel_right_mm_s} mm/s")
    return type(record).__name__  # a stream without a line of its own


def _battery(record: BatteryRecord, robot_id: str) -> str:
    """The battery line: volts, level, and the state with what to do."""
    reading = BatteryReading.from_record(record)
    level = reading.level
    text = f"{reading.battery_mv / 1000:.2f} V {level if level == 'ok' else level.upper()}"
    state = battery_state(reading, robot_id)
    if state.name != level:
        text += f", {state.name}"
    return text if state.advice is None else f"{text}: {state.advice}"


async def collect_status(
    config: mqtt.HostMqttConfig,
    timeout_s: float,
    *,
    watch: Callable[[StatusBoard], None] | None = None,
    duration_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> StatusBoard:
    """Listen until every topic was heard or ``timeout_s`` passed; with ``watch``, keep
    listening (calling it every second) until ``duration_s`` or cancelled."""
    board = StatusBoard(config.robot_id)
    async with mqtt.connect(config, "status") as client:
        await client.subscribe([(config.topic("status"), 1), (config.topic("telemetry/+"), 0)])
        start_s = clock()
        end_s = start_s + (timeout_s if watch is None else (duration_s or math.inf))
        next_draw_s = start_s + 1.0
        while (now_s := clock()) < end_s:
            message = await mqtt.next_message(client, min(end_s, next_draw_s) - now_s)
            if message is not None:
                board.take(str(message.topic), message.payload, clock())
            if watch is None and board.complete:
                break
            if watch is not None and clock() >= next_draw_s:
                watch(board)
                next_draw_s = clock() + 1.0
    return board


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mqtt.add_connection_arguments(parser)
    parser.add_argument("--timeout", type=float, default=3.0, metavar="S",
                        help="wait this long for each topic's next message (default: 3)")
    parser.add_argument("--watch", action="store_true", help="redraw every second")
    parser.add_argument("--duration", type=float, metavar="S", help="with --watch: stop after S")
    parser.add_argument("--plot", action="store_true",
                        help="at the end, histograms of the latency readings received "
                             "(observation age, loop jitter): run with --watch --duration S")


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
    problem = mqtt.seconds_problem(("--timeout", args.timeout), ("--duration", args.duration))
    if problem is not None:
        sys.stderr.write(f"zima status: {problem}\n")
        return EXIT_ERROR
    try:
        config = mqtt.config_from_args(args)
        watch = _draw(sys.stdout, sys.stdout.isatty()) if args.watch else None
        try:
            board = asyncio.run(
                collect_status(config, args.timeout, watch=watch, duration_s=args.duration)
            )
        except KeyboardInterrupt:
            return 130
    except mqtt.HostMqttError as exc:
        sys.stderr.write(f"zima status: {exc}\n")
        return EXIT_ERROR
    if watch is None:
        sys.stdout.write("\n".join(board.render()) + "\n")
    if args.plot:
        sys.stdout.write("\n".join(board.plot()) + "\n")
    missing = board.missing
    if missing:
        sys.stdout.write(f"no data within {args.timeout:g} s on: {', '.join(missing)}\n")
    if board.stale:
        sys.stdout.write(f"stale data (not current) on: {', '.join(board.stale)}\n")
    return board.exit_status
