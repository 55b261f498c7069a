"""`zima battery`: the robot's battery, live, from its MQTT telemetry.

Subscribes to ``zima/<r>/telemetry/battery`` and ``zima/<r>/status`` and shows pack and
cell voltage, state of charge (``zima.host.battery_model``: the ``--chemistry`` curve, for
``--cells`` in series), the trend in mV/min (least squares over ``--window`` seconds), the
time to empty at the present draw, the robot's level (ok / low / critical), the battery's
state and what to do (``battery_state``: a critical battery latched by the MCU, and when
the pack is back above the MCU's clear threshold, that asking for idle clears it) and how
old the data is. A robot that says nothing is itself an alarm: after ``--stale-after``
seconds without a reading the view shows ``NO DATA for N s``; a reading the robot marks
stale (its MCU link is lost) shows ``STALE``, never as current; the robot's ``offline``
status (its last will) shows ``OFFLINE``. A payload that is not a battery reading (any
bytes: too big, too deep, not JSON, a bad field) is skipped, counted and said.

On a terminal the view is redrawn in place; otherwise one line per reading (and one per
alarm change), for logs and pipes::

    zima battery --robot zima --username operator --password-file ~/.zima-mqtt
    zima battery --once                              one reading, then exit
    zima battery --duration 600 --csv run.csv --plot run.png
    zima battery --plot-csv run.csv --plot run.png   plot a logged run, no broker
    zima battery --home-assistant                    also announce the sensors to HA

``--home-assistant`` publishes retained MQTT discovery configs
(``homeassistant/sensor/zima_<r>_battery_{voltage,soc,level}/config``) that point Home
Assistant at the robot's own battery topic, so the battery shows up there with no
configuration; the SoC sensor computes the same curve in its Jinja template. The broker
must let this user write ``homeassistant/#`` (the sample ACL lets ``operator`` do it).

Exit status: 0 the last reading was ok; 1 an error (broker, flags, files); 2 the battery
was low or critical at the end; 3 no data at the end (stale, never heard, or offline).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

import aiomqtt

from zima.host import mqtt
from zima.host.battery_model import (
    CHEMISTRIES,
    CURVES,
    BatteryReading,
    BatteryTracker,
    BatteryView,
    Pack,
    battery_state,
)

__all__ = [
    "CSV_FIELDS",
    "BatteryMonitor",
    "BatteryToolError",
    "MonitorOptions",
    "discovery_messages",
    "format_line",
    "format_view",
    "plot_rows",
    "read_csv",
]

EXIT_OK, EXIT_ERROR, EXIT_LOW, EXIT_NO_DATA = 0, 1, 2, 3

CSV_FIELDS = (
    "host_unix_s", "stamp_unix_s", "battery_mv", "cell_mv", "soc_pct", "level",
    "low_mv", "critical_mv", "trend_mv_per_min", "time_to_empty_s",
    "state", "clear_mv", "data_age_s", "stale",
)
BAD_LINES_SHOWN = 10  # bad payloads each said on a line; after that one line per 1000

log = logging.getLogger(__name__)


class BatteryToolError(Exception):
    """A bad flag, an unreadable CSV, a missing plotting library."""


@dataclass(frozen=True, slots=True)
class MonitorOptions:
    """What one ``zima battery`` run does (the flags, parsed)."""

    pack: Pack = Pack("liion", 3)  # noqa: RUF009 - frozen, so one shared default is safe
    window_s: float = 120.0  # trend window
    stale_after_s: float = 5.0  # a silent robot is an alarm after this long
    duration_s: float | None = None  # None: until interrupted
    once: bool = False
    tty: bool = False  # redraw in place (else one line per reading)
    redraw_s: float = 1.0  # the age and NO DATA count tick even without messages
    csv_path: Path | None = None
    home_assistant: bool = False


# ---- text -------------------------------------------------------------------------------
def _duration(seconds: float) -> str:
    minutes = round(seconds / 60.0)
    if minutes < 1:
        return f"{seconds:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _alarm_text(view: BatteryView) -> str | None:
    alarm = view.alarm
    if alarm == "offline":
        return "ALARM: robot OFFLINE"
    if alarm == "stale" and view.robot_stale:
        return f"ALARM: STALE data, {view.age_s or 0.0:.0f} s old (the robot marks it stale)"
    if alarm == "stale":
        age = "ever" if view.age_s is None else f"{view.age_s:.0f} s"
        return f"ALARM: NO DATA for {age}"
    if alarm is not None:
        return f"ALARM: battery {alarm.upper()}"
    return None


def format_view(view: BatteryView, robot_id: str, pack: Pack) -> list[str]:
    """The terminal view: a few lines, redrawn in place."""
    lines = [f"zima battery: robot {robot_id}, {pack.cells}-cell {pack.chemistry}"]
    reading = view.reading
    if reading is None:
        lines.append("no reading yet")
    else:
        assert view.cell_mv is not None
        assert view.soc_pct is not None
        trend = "-" if view.trend_mv_per_min is None else f"{view.trend_mv_per_min:+.1f} mV/min"
        tte = "unknown" if view.time_to_empty_s is None else _duration(view.time_to_empty_s)
        state = battery_state(reading, robot_id)
        clear = ("" if reading.clear_mv is None
                 else f", latch clears above {reading.clear_mv / 1000:.2f} V")
        lines += [
            (f"pack   {reading.battery_mv / 1000:6.2f} V    cell {view.cell_mv / 1000:.3f} V"
             f"    SoC {view.soc_pct:3.0f} %"),
            f"trend  {trend}    time to empty {tte}",
            (f"level  {view.level} (robot says {reading.level}; "
             f"low {reading.low_mv / 1000:.2f} V, critical {reading.critical_mv / 1000:.2f} V"
             f"{clear})"),
            f"state  {state.name}" + ("" if state.advice is None else f": {state.advice}"),
            (f"last reading: data {view.age_s or 0.0:.1f} s old"
             + (", STALE (not current)" if view.stale else "")),
        ]
    alarm = _alarm_text(view)
    if alarm is not None:
        lines.append(alarm)
    return lines


def format_line(view: BatteryView, wall_s: float, robot_id: str = "zima") -> str:
    """One log line: a reading, or the alarm when there is no fresh reading."""
    stamp = dt.datetime.fromtimestamp(wall_s).isoformat(timespec="seconds")
    reading = view.reading
    if reading is not None and view.robot_stale and not view.offline:
        return (f"{stamp} {_alarm_text(view)}; last known pack "
                f"{reading.battery_mv / 1000:.2f} V, level {view.level}")
    if reading is None or view.stale or view.offline:
        return f"{stamp} {_alarm_text(view)}"
    assert view.cell_mv is not None
    assert view.soc_pct is not None
    trend = "-" if view.trend_mv_per_min is None else f"{view.trend_mv_per_min:+.1f}"
    tte = "unknown" if view.time_to_empty_s is None else _duration(view.time_to_empty_s)
    line = (
        f"{stamp} pack {reading.battery_mv / 1000:.2f} V cell {view.cell_mv / 1000:.3f} V"
        f" SoC {view.soc_pct:.0f} % trend {trend} mV/min time-to-empty {tte}"
        f" level {view.level} (robot {reading.level})"
    )
    state = battery_state(reading, robot_id)
    if state.name != view.level:  # the latch, and what clears it
        line += f" state {state.name}"
    if state.advice is not None:
        line += f": {state.advice}"
    alarm = _alarm_text(view)
    return line if alarm is None else f"{line} {alarm}"


# ---- CSV and plot -----------------------------------------------------------------------
def _csv_row(view: BatteryView, wall_s: float) -> dict[str, str]:
    reading = view.reading
    assert reading is not None

    def num(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    return {
        "host_unix_s": f"{wall_s:.3f}",
        "stamp_unix_s": num(reading.stamp_unix_s, 3),
        "battery_mv": str(reading.battery_mv),
        "cell_mv": num(view.cell_mv, 1),
        "soc_pct": num(view.soc_pct, 2),
        "level": str(view.level),
        "low_mv": str(reading.low_mv),
        "critical_mv": str(reading.critical_mv),
        "trend_mv_per_min": num(view.trend_mv_per_min, 2),
        "time_to_empty_s": num(view.time_to_empty_s, 0),
        "state": battery_state(reading, "-").name,
        "clear_mv": "" if reading.clear_mv is None else str(reading.clear_mv),
        "data_age_s": num(view.age_s, 3),
        "stale": "1" if view.stale else "0",
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a ``--csv`` log; ``BatteryToolError`` if it is not one."""
    try:
        with path.open(newline="") as file:
            reader = csv.DictReader(file)
            missing = {"host_unix_s", "battery_mv", "soc_pct"} - set(reader.fieldnames or [])
            if missing:
                raise BatteryToolError(f"{path}: not a zima battery CSV (no {sorted(missing)})")
            return list(reader)
    except OSError as exc:
        raise BatteryToolError(f"{path}: {exc.strerror}") from None


def plot_rows(rows: Sequence[dict[str, str]], out: Path, title: str) -> None:
    """Pack voltage and SoC over the run, with the thresholds, as a PNG."""
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415 - an optional, heavy import
    except ImportError:
        raise BatteryToolError(
            "--plot needs matplotlib: pip install matplotlib (or the zima[train] extra)"
        ) from None
    if not rows:
        raise BatteryToolError(f"nothing to plot into {out}: no battery readings")
    try:
        t0 = float(rows[0]["host_unix_s"])
        minutes = [(float(r["host_unix_s"]) - t0) / 60.0 for r in rows]
        volts = [int(r["battery_mv"]) / 1000.0 for r in rows]
        soc = [float(r["soc_pct"]) for r in rows]
        low_v = int(rows[-1]["low_mv"]) / 1000.0 if rows[-1].get("low_mv") else None
        crit_v = int(rows[-1]["critical_mv"]) / 1000.0 if rows[-1].get("critical_mv") else None
    except (KeyError, ValueError) as exc:
        raise BatteryToolError(f"a battery row is malformed: {exc}") from None
    fig = Figure(figsize=(8, 5), layout="constrained")  # no pyplot: no GUI backend needed
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(minutes, volts, color="tab:blue", label="pack")
    for level_v, name, colour in ((low_v, "low", "tab:orange"), (crit_v, "critical", "tab:red")):
        if level_v is not None:
            top.axhline(level_v, linestyle="--", color=colour, label=name)
    top.set_ylabel("pack voltage (V)")
    top.legend(loc="best")
    top.set_title(title)
    bottom.plot(minutes, soc, color="tab:green")
    bottom.set_ylabel("state of charge (%)")
    bottom.set_ylim(0, 100)
    bottom.set_xlabel("time (min)")
    try:
        fig.savefig(out, dpi=100)
    except OSError as exc:
        raise BatteryToolError(f"{out}: {exc.strerror}") from None


# ---- Home Assistant ---------------------------------------------------------------------
def _soc_template(pack: Pack) -> str:
    """A Jinja template computing ``soc_percent`` in Home Assistant from battery_mv."""
    points = ",".join(f"[{v},{s}]" for v, s in CURVES[pack.chemistry])
    return (
        f"{{% set v = value_json.battery_mv / 1000 / {pack.cells} %}}"
        f"{{% set p = [{points}] %}}"
        "{% set ns = namespace(soc=p[0][1]) %}"
        "{% for i in range(p | length - 1) %}"
        "{% if v >= p[i][0] and v < p[i + 1][0] %}"
        "{% set ns.soc = p[i][1] + (v - p[i][0]) * (p[i + 1][1] - p[i][1])"
        " / (p[i + 1][0] - p[i][0]) %}"
        "{% endif %}{% endfor %}"
        "{% if v >= p[-1][0] %}{% set ns.soc = p[-1][1] %}{% endif %}"
        "{{ ns.soc | round(0) }}"
    )


def discovery_messages(config: mqtt.HostMqttConfig, pack: Pack) -> list[tuple[str, bytes]]:
    """(topic, payload) of the retained HA discovery configs of the robot's battery."""
    node = "".join(c if c.isalnum() or c in "_-" else "_" for c in config.robot_id)
    device = {
        "identifiers": [f"zima_{node}"],
        "name": f"Zima {config.robot_id}",
        "manufacturer": "Zima",
        "model": f"tracked robot, {pack.cells}-cell {pack.chemistry}",
    }
    common = {
        "state_topic": config.topic("telemetry/battery"),
        "availability_topic": config.topic("status"),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    sensors: dict[str, dict[str, object]] = {
        "voltage": {
            "name": "Battery voltage",
            "device_class": "voltage",
            "unit_of_measurement": "V",
            "state_class": "measurement",
            "value_template": "{{ (value_json.battery_mv / 1000) | round(2) }}",
        },
        "soc": {
            "name": "Battery",
            "device_class": "battery",
            "unit_of_measurement": "%",
            "state_class": "measurement",
            "value_template": _soc_template(pack),
        },
        "level": {
            "name": "Battery level",
            "device_class": "enum",
            "options": ["ok", "low", "critical"],
            "value_template": "{{ value_json.level }}",
        },
    }
    messages = []
    for key, fields in sensors.items():
        object_id = f"zima_{node}_battery_{key}"
        body = {**fields, **common, "unique_id": object_id, "object_id": object_id}
        topic = f"homeassistant/sensor/{object_id}/config"
        messages.append((topic, json.dumps(body).encode()))
    return messages


# ---- the monitor ------------------------------------------------------------------------
class BatteryMonitor:
    """One run of ``zima battery``: MQTT in, view/lines/CSV out. ``rows`` holds every
    reading (the same columns as the CSV) for ``--plot`` at exit, even after Ctrl-C."""

    def __init__(
        self,
        config: mqtt.HostMqttConfig,
        options: MonitorOptions,
        out: TextIO,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.options = options
        self.out = out
        self.clock = clock
        self.wall_clock = wall_clock
        self.tracker = BatteryTracker(
            options.pack,
            window_s=options.window_s,
            stale_after_s=options.stale_after_s,
            min_span_s=min(10.0, options.window_s),
        )
        self.rows: list[dict[str, str]] = []
        self.bad_payloads = 0  # skipped messages on the battery topic
        self.last_bad_payload: str | None = None  # why the latest was skipped
        self._drawn_lines = 0
        self._last_alarm: str | None = None
        self._last_alarm_line_s = -math.inf
        self._stopping = False

    def stop(self) -> None:
        """Make ``run`` return at its next tick (within ``redraw_s``), as at the duration's end."""
        self._stopping = True

    async def run(self) -> int:
        """Monitor until ``duration_s`` (or one reading with ``once``); the exit status."""
        csv_file: IO[str] | None = None
        try:
            if self.options.csv_path is not None:
                try:
                    csv_file = self.options.csv_path.open("w", newline="")
                except OSError as exc:
                    where = self.options.csv_path
                    raise BatteryToolError(f"--csv {where}: {exc.strerror}") from None
            writer = csv.DictWriter(csv_file, CSV_FIELDS) if csv_file is not None else None
            if writer is not None:
                writer.writeheader()
            async with mqtt.connect(self.config, "battery") as client:
                return await self._loop(client, writer, csv_file)
        finally:
            if csv_file is not None:
                csv_file.close()

    async def _loop(
        self, client: aiomqtt.Client, writer: csv.DictWriter[str] | None, csv_file: IO[str] | None
    ) -> int:
        if self.options.home_assistant:
            for topic, payload in discovery_messages(self.config, self.options.pack):
                await client.publish(topic, payload, qos=1, retain=True)
        battery_topic = self.config.topic("telemetry/battery")
        await client.subscribe([(battery_topic, 0), (self.config.topic("status"), 1)])
        start_s = self.clock()
        self.tracker.start(start_s)
        end_s = math.inf if self.options.duration_s is None else start_s + self.options.duration_s
        while True:
            now_s = self.clock()
            if now_s >= end_s or self._stopping:
                break
            wait_s = min(self.options.redraw_s, end_s - now_s)
            if self.options.once:
                wait_s = min(wait_s, max(0.0, start_s + self.options.stale_after_s - now_s))
            message = await mqtt.next_message(client, wait_s)
            got_reading = False
            if message is not None:
                got_reading = self._take(message, battery_topic)
            view = self.tracker.view(self.clock())
            if got_reading and writer is not None and csv_file is not None:
                writer.writerow(self.rows[-1])
                csv_file.flush()  # a crash or Ctrl-C loses nothing already shown
            self._show(view, got_reading)
            if self.options.once and (got_reading or view.alarm in ("stale", "offline")):
                if not self.options.tty and not got_reading:
                    self._line(format_line(view, self.wall_clock(), self.config.robot_id))
                return _exit_status(view)
        return _exit_status(self.tracker.view(self.clock()))

    def _take(self, message: aiomqtt.Message, battery_topic: str) -> bool:
        """Feed one message to the tracker; True if it was a battery reading."""
        if str(message.topic) != battery_topic:  # status: "online" / "offline"
            self.tracker.offline = message.payload == b"offline"
            return False
        try:
            reading = BatteryReading.from_json(mqtt.payload_object(message.payload,
                                                                   "battery payload"))
        except ValueError as exc:  # InputError too: any bytes end here, never a crash
            self.bad_payloads += 1
            self.last_bad_payload = mqtt.printable(str(exc), 160)
            log.debug("battery payload ignored: %s", self.last_bad_payload)
            count = self.bad_payloads
            if not self.options.tty and (count <= BAD_LINES_SHOWN or count % 1000 == 0):
                self._line(f"ignored: {self.last_bad_payload} ({count} bad so far)")
            return False
        self.tracker.offline = False  # it speaks: it is online, whatever was retained
        self.tracker.add(reading, self.clock())
        self.rows.append(_csv_row(self.tracker.view(self.clock()), self.wall_clock()))
        return True

    def _show(self, view: BatteryView, got_reading: bool) -> None:
        if self.options.tty:
            lines = format_view(view, self.config.robot_id, self.options.pack)
            if self.bad_payloads:
                lines.append(f"ignored {self.bad_payloads} bad payloads "
                             f"(last: {self.last_bad_payload})")
            # Up to the first line of the last drawing, clear to the end of the screen.
            prefix = f"\x1b[{self._drawn_lines}F\x1b[J" if self._drawn_lines else ""
            self.out.write(prefix + "\n".join(lines) + "\n")
            self.out.flush()
            self._drawn_lines = len(lines)
            return
        alarm = view.alarm
        now_s = self.clock()
        if got_reading:
            self._line(format_line(view, self.wall_clock(), self.config.robot_id))
        elif alarm in ("stale", "offline") and (
            alarm != self._last_alarm
            or now_s - self._last_alarm_line_s >= self.options.stale_after_s
        ):  # say it when it starts, then now and then: a log shows how long it lasted
            self._line(format_line(view, self.wall_clock(), self.config.robot_id))
            self._last_alarm_line_s = now_s
        self._last_alarm = alarm

    def _line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _exit_status(view: BatteryView) -> int:
    alarm = view.alarm
    if alarm in ("stale", "offline"):
        return EXIT_NO_DATA
    return EXIT_LOW if alarm in ("low", "critical") else EXIT_OK


# ---- command line -----------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    mqtt.add_connection_arguments(parser)
    pack = parser.add_argument_group("battery pack")
    pack.add_argument("--chemistry", choices=CHEMISTRIES, default="liion",
                      help="cell chemistry, picks the discharge curve (default: liion)")
    pack.add_argument("--cells", type=int, default=3, help="cells in series (default: 3)")
    view = parser.add_argument_group("view")
    view.add_argument("--once", action="store_true", help="print one reading and exit")
    view.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    view.add_argument("--stale-after", type=float, default=5.0, metavar="S",
                      help="alarm after S seconds without a reading (default: 5)")
    view.add_argument("--window", type=float, default=120.0, metavar="S",
                      help="trend and time-to-empty fitted over S seconds (default: 120)")
    files = parser.add_argument_group("files")
    files.add_argument("--csv", type=Path, metavar="FILE", help="log every reading to FILE")
    files.add_argument("--plot", type=Path, metavar="PNG",
                       help="draw the run into PNG at exit (needs matplotlib)")
    files.add_argument("--plot-csv", type=Path, metavar="CSV",
                       help="plot a logged CSV into --plot and exit (no broker)")
    parser.add_argument("--home-assistant", action="store_true",
                        help="publish retained Home Assistant discovery configs first")


def options_from_args(args: argparse.Namespace, tty: bool) -> MonitorOptions:
    """The monitor's options from the flags; ``BatteryToolError`` names a bad one."""
    try:
        pack = Pack(args.chemistry, args.cells)
    except ValueError as exc:
        raise BatteryToolError(f"--cells/--chemistry: {exc}") from None
    problem = mqtt.seconds_problem(("--stale-after", args.stale_after), ("--window", args.window),
                                   ("--duration", args.duration))
    if problem is not None:
        raise BatteryToolError(problem)
    return MonitorOptions(
        pack=pack,
        window_s=args.window,
        stale_after_s=args.stale_after,
        duration_s=args.duration,
        once=args.once,
        tty=tty and not args.once,
        csv_path=args.csv,
        home_assistant=args.home_assistant,
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args, tty=sys.stdout.isatty())
        pack = options.pack
        title = f"zima battery: robot {args.robot}, {pack.cells}-cell {pack.chemistry}"
        if args.plot_csv is not None:
            if args.plot is None:
                raise BatteryToolError("--plot-csv needs --plot OUT.png")
            plot_rows(read_csv(args.plot_csv), args.plot, title)
            sys.stdout.write(f"plotted {args.plot_csv} into {args.plot}\n")
            return EXIT_OK
        monitor = BatteryMonitor(mqtt.config_from_args(args), options, sys.stdout)
        try:
            status = asyncio.run(monitor.run())
        except KeyboardInterrupt:
            status = 130
        if args.plot is not None:
            plot_rows(monitor.rows, args.plot, title)
            sys.stdout.write(f"plotted {len(monitor.rows)} readings into {args.plot}\n")
    except (BatteryToolError, mqtt.HostMqttError) as exc:
        sys.stderr.write(f"zima battery: {exc}\n")
        return EXIT_ERROR
    return status
