"""`zima view`: an episode file, or a live robot, in rerun (the viewer people already use).

``zima view EPISODE.h5`` spawns the rerun viewer (``--save FILE.rrd`` writes a recording
instead) with the whole episode on one timeline, the episode's own ``timestamp_s``
(``time``, a duration; ``step`` counts rows)::

    entity                          what (units)
    cameras/<camera>                every contract camera's frame, as the policy saw it
    action/executed                 the executed action's index (contract.actions order)
    action/expert                   the demonstrator's label, where the file has one that
                                    differs from ``action`` (an operator's correction)
    tracks/target_{left,right}_mm_s the executed action's track targets, mm/s
    tracks/{left,right}_mm_s        the measured track speeds, mm/s (when recorded)
    battery/battery_mv              battery voltage, mV (when recorded)
    takeover                        1 where an operator, not the policy, chose the action
    events                          text: take-overs starting and ending, the outcome
    episode                         static text: source, scene, seed, outcome, extras

``zima view --robot NAME`` subscribes to the telemetry the robot already publishes
(``zima/NAME/telemetry/#`` and ``zima/NAME/status``, onboard/MQTT.md) with the operator's
account: the robot does no extra work. Each record becomes scalars at
``telemetry/<stream>/<field>`` (numbers; booleans as 0/1; nested objects such as
``cameras`` one level per key) and one text line at ``telemetry/<stream>`` with its other
fields, on the timeline ``robot_time`` (the record's ``stamp_unix_s``, the robot's clock)
beside rerun's own receive time. ``--duration S`` stops after S seconds (otherwise Ctrl-C).

Payloads are outside input: parsed bounded (:func:`zima.host.mqtt.payload_object`), a bad
one skipped and counted; field names are escaped into entity paths and their number is
capped (:data:`MAX_ENTITIES`), so no robot can make the viewer grow without bound.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

from zima.host import mqtt

if TYPE_CHECKING:  # rerun and the episode reader load inside run(): `zima --help` stays fast
    import numpy as np
    import rerun as rr
    import rerun.blueprint as rrb

    from zima.episodes import Episode

APPLICATION_ID: Final = "zima"
EXIT_OK, EXIT_ERROR = 0, 1
MAX_ENTITIES: Final = 2000  # distinct live entity paths; more from a robot are dropped
MAX_FIELDS_PER_RECORD: Final = 128  # numbers of one record beyond this are dropped
MAX_DEPTH: Final = 3  # levels of nested objects turned into entity paths


# --- an episode file -------------------------------------------------------------------------


def episode_blueprint(cameras: tuple[str, ...]) -> rrb.Blueprint:
    """Cameras on the left; actions, track speeds, battery and events on the right."""
    import rerun.blueprint as rrb  # noqa: PLC0415

    return rrb.Blueprint(rrb.Horizontal(
        rrb.Vertical(*(rrb.Spatial2DView(origin=f"cameras/{c}", name=c) for c in cameras)),
        rrb.Vertical(rrb.TimeSeriesView(origin="action", name="action"),
                     rrb.TimeSeriesView(origin="tracks", name="tracks (mm/s)"),
                     rrb.TimeSeriesView(origin="battery", name="battery (mV)"),
                     rrb.TextLogView(origin="events", name="events")),
        column_shares=[2, 3]))


def log_episode(rec: rr.RecordingStream, episode: Episode, extras: Mapping[str, object],
                name: str = "") -> None:
    """Send the whole episode as columns (one call per entity, not one per step)."""
    import rerun as rr  # noqa: PLC0415
    import rerun.components as rrc  # noqa: PLC0415

    c, n = episode.contract, len(episode)
    stamps = episode.timestamp_s.astype("float64")  # [T] s
    index = [rr.TimeColumn("time", duration=stamps), rr.TimeColumn("step", sequence=range(n))]

    def scalars(entity: str, values: Sequence[float] | np.ndarray, label: str) -> None:
        rec.log(entity, rr.SeriesLines(names=label), static=True)
        rec.send_columns(entity, index, rr.Scalars.columns(scalars=values))

    for cam in c.cameras:
        frames = episode.images[cam]  # [T, H, W, 3] uint8
        rec.log(f"cameras/{cam}", rr.Image.from_fields(format=rrc.ImageFormat(
            width=c.image_width, height=c.image_height, color_model="RGB",
            channel_datatype="U8")), static=True)
        rec.send_columns(f"cameras/{cam}", index,
                         rr.Image.columns(buffer=frames.reshape(n, -1)))
    scalars("action/executed", episode.action.astype("float64"), "executed")
    if (episode.expert_action != episode.action).any():
        scalars("action/expert", episode.expert_action.astype("float64"), "expert")
    targets = [c.track_command(int(a)) for a in episode.action]
    scalars("tracks/target_left_mm_s", [float(t.left_mm_s) for t in targets], "target left")
    scalars("tracks/target_right_mm_s", [float(t.right_mm_s) for t in targets], "target right")
    for key, entity, label in (("track_left_mm_s", "tracks/left_mm_s", "left"),
                               ("track_right_mm_s", "tracks/right_mm_s", "right"),
                               ("battery_mv", "battery/battery_mv", "battery")):
        if key in episode.telemetry:
            scalars(entity, episode.telemetry[key].astype("float64"), label)
    takeover = episode.operator_takeover.astype(bool)  # [T]
    scalars("takeover", takeover.astype("float64"), "operator take-over")
    # Events: where a take-over starts and ends, and the outcome at the last step.
    events: list[tuple[int, str, str]] = []
    changes = [0, *(t for t in range(1, n) if takeover[t] != takeover[t - 1])] if n else []
    for t in changes:
        if takeover[t]:
            events.append((t, "operator took over", "WARN"))
        elif t:
            events.append((t, "policy drives again", "INFO"))
    if n:
        outcome = episode.info.outcome
        events.append((n - 1, f"outcome: {outcome}", "INFO" if outcome == "success" else "ERROR"))
    if events:
        steps = [t for t, _, _ in events]
        rec.send_columns("events", [rr.TimeColumn("time", duration=stamps[steps]),
                                    rr.TimeColumn("step", sequence=steps)],
                         rr.TextLog.columns(text=[e[1] for e in events],
                                            level=[e[2] for e in events]))
    info = episode.info
    lines = [f"# {name or 'episode'}", "",
             f"- source: {info.source}", f"- scene: {info.scene}", f"- seed: {info.seed}",
             f"- outcome: {info.outcome}", f"- steps: {n} (recorded {info.steps_recorded})",
             f"- actions: {', '.join(f'{i} {a}' for i, a in enumerate(c.actions))}",
             f"- take-over steps: {int(takeover.sum())}",
             f"- zima {info.zima_version}, created {info.created_utc}"]
    lines += [f"- {k}: {mqtt.printable(v)}" for k, v in sorted(extras.items())]
    rec.log("episode", rr.TextDocument("\n".join(lines), media_type="text/markdown"),
            static=True)


def view_episode(path: Path, save: Path | None) -> int:
    """Load ``path`` and show it (spawned viewer) or write it to ``save``."""
    import rerun as rr  # noqa: PLC0415

    from zima.episodes import EpisodeError, EpisodeReader  # noqa: PLC0415

    try:
        with EpisodeReader(path, contract=None) as reader:
            episode, extras = reader.load(), reader.extras()
    except (EpisodeError, OSError) as exc:
        sys.stderr.write(f"zima view: {exc}\n")
        return EXIT_ERROR
    rec = rr.RecordingStream(APPLICATION_ID, recording_id=f"episode:{path.name}")
    blueprint = episode_blueprint(episode.contract.cameras)
    try:
        _open(rec, save, blueprint)
        rec.send_recording_name(path.name)
        log_episode(rec, episode, extras, path.name)
        rec.flush()
    except RuntimeError as exc:  # what rerun raises when its viewer is not there
        return _viewer_failed(exc)
    finally:
        rec.disconnect()
    if save is not None:
        sys.stdout.write(f"wrote {len(episode)} steps of {path} to {save}\n")
    return EXIT_OK


def _open(rec: rr.RecordingStream, save: Path | None, blueprint: rrb.Blueprint | None) -> None:
    """Send ``rec`` to the file ``save``, or else to a spawned viewer: the ``rerun`` beside
    this Python (a virtual environment's, found even when it is not activated), else the
    one on PATH."""
    import rerun.sinks  # noqa: PLC0415

    if save is not None:
        rec.save(save, default_blueprint=blueprint)
        return
    beside = Path(sys.executable).parent / "rerun"
    rerun.sinks.spawn(recording=rec, default_blueprint=blueprint,
                      executable_path=str(beside) if beside.is_file() else None)


def _viewer_failed(exc: Exception) -> int:
    """rerun's spawn or its gRPC link failed (no viewer binary, no display): say what to do."""
    detail = mqtt.printable(" ".join(str(exc).split()), 200)
    sys.stderr.write(f"zima view: the rerun viewer did not start or cannot be reached "
                     f"({detail}); on a machine without a display use --save FILE.rrd and "
                     "open it elsewhere with `rerun FILE.rrd`\n")
    return EXIT_ERROR


# --- a live robot --------------------------------------------------------------------------


@dataclass(slots=True)
class LiveStats:
    """What ``watch_robot`` saw."""

    records: dict[str, int] = field(default_factory=dict)  # stream -> records logged
    bad_payloads: int = 0  # skipped: not a bounded JSON object
    last_bad: str = ""  # why the last one was skipped
    dropped_fields: int = 0  # numbers beyond MAX_FIELDS_PER_RECORD / MAX_ENTITIES


def _numbers(values: Mapping[str, object], depth: int = 0) -> Iterator[tuple[list[str], float]]:
    """(key path, value) of every finite number (bools as 0/1) in nested objects."""
    for key, value in values.items():
        if isinstance(value, bool):
            yield [key], float(value)
        elif isinstance(value, int | float):
            try:
                number = float(value)
            except OverflowError:  # an integer beyond float: not a reading
                continue
            if math.isfinite(number):
                yield [key], number
        elif isinstance(value, dict) and depth < MAX_DEPTH:
            for path, number in _numbers(value, depth + 1):
                yield [key, *path], number


class LiveLogger:
    """Turns the robot's MQTT messages into rerun rows (the pure part of live mode)."""

    def __init__(self, rec: rr.RecordingStream, robot_id: str) -> None:
        self.rec, self.prefix = rec, f"zima/{robot_id}/"
        self.stats = LiveStats()
        self._entities: set[str] = set()

    def message(self, topic: str, payload: object, received_unix_s: float) -> None:
        """Log one message of ``zima/<robot>/...`` (other topics are ignored)."""
        import rerun as rr  # noqa: PLC0415

        if not topic.startswith(self.prefix):
            return
        suffix = topic.removeprefix(self.prefix)
        if suffix == "status":
            raw = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            text = raw[:64].decode("utf-8", "replace")
            self.rec.set_time("robot_time", timestamp=received_unix_s)
            self.rec.log("status", rr.TextLog(mqtt.printable(text, 40), level="INFO"))
            self._count("status")
            return
        stream = suffix.removeprefix("telemetry/")
        if stream == suffix or not stream:
            return
        try:
            record = mqtt.payload_object(payload, f"telemetry/{mqtt.printable(stream, 40)}")
        except mqtt.InputError as exc:
            self.stats.bad_payloads += 1
            self.stats.last_bad = mqtt.printable(str(exc))
            return
        stamp = record.get("stamp_unix_s")
        valid_stamp = isinstance(stamp, int | float) and not isinstance(stamp, bool)
        stamp_s = float(stamp) if valid_stamp and math.isfinite(stamp) else received_unix_s  # type: ignore[arg-type]
        self.rec.set_time("robot_time", timestamp=stamp_s)
        base = f"telemetry/{rr.escape_entity_path_part(stream)}"
        numbers = [(p, v) for p, v in _numbers(record) if p != ["stamp_unix_s"]]
        for path, number in numbers[:MAX_FIELDS_PER_RECORD]:
            entity = "/".join([base, *(rr.escape_entity_path_part(k) for k in path)])
            if self._admit(entity):
                self.rec.log(entity, rr.Scalars(number))
        self.stats.dropped_fields += max(0, len(numbers) - MAX_FIELDS_PER_RECORD)
        words = [f"{k}={mqtt.printable(v, 200)}" for k, v in record.items()
                 if not isinstance(v, int | float | dict)]
        if words and self._admit(base):
            self.rec.log(base, rr.TextLog(" ".join(words)))
        self._count(stream)

    def _admit(self, entity: str) -> bool:
        if entity in self._entities:
            return True
        if len(self._entities) >= MAX_ENTITIES:
            self.stats.dropped_fields += 1
            return False
        self._entities.add(entity)
        return True

    def _count(self, stream: str) -> None:
        if stream in self.stats.records or len(self.stats.records) < MAX_ENTITIES:
            self.stats.records[stream] = self.stats.records.get(stream, 0) + 1


async def watch_robot(config: mqtt.HostMqttConfig, logger: LiveLogger,
                      duration_s: float | None) -> None:
    """Log the robot's telemetry through ``logger`` until ``duration_s`` passes (None: until
    cancelled)."""
    end_s = None if duration_s is None else time.monotonic() + duration_s
    async with mqtt.connect(config, "view") as client:
        await client.subscribe(config.topic("telemetry/#"))
        await client.subscribe(config.topic("status"), qos=1)
        while end_s is None or time.monotonic() < end_s:
            left_s = 1.0 if end_s is None else end_s - time.monotonic()
            message = await mqtt.next_message(client, left_s)
            if message is not None:
                logger.message(message.topic.value, message.payload, time.time())


def view_robot(args: argparse.Namespace) -> int:
    """`zima view --robot NAME`."""
    import rerun as rr  # noqa: PLC0415

    duration_s: float | None = args.duration
    problem = mqtt.seconds_problem(("--duration", duration_s))
    if problem is not None:
        sys.stderr.write(f"zima view: {problem}\n")
        return EXIT_ERROR
    try:
        config = mqtt.config_from_args(args)
    except mqtt.HostMqttError as exc:
        sys.stderr.write(f"zima view: {exc}\n")
        return EXIT_ERROR
    rec = rr.RecordingStream(APPLICATION_ID,
                             recording_id=f"robot:{config.robot_id}:{time.time():.0f}")
    logger, status = LiveLogger(rec, config.robot_id), EXIT_OK
    try:
        _open(rec, args.save, None)
        rec.send_recording_name(f"robot {config.robot_id}")
        try:
            asyncio.run(watch_robot(config, logger, duration_s))
        except mqtt.HostMqttError as exc:
            sys.stderr.write(f"zima view: {exc}\n")
            status = EXIT_ERROR
        except KeyboardInterrupt:
            pass  # Ctrl-C is how a watch without --duration ends; the recording is kept
        rec.flush()
    except RuntimeError as exc:  # what rerun raises when its viewer is not there
        return _viewer_failed(exc)
    finally:
        rec.disconnect()
    stats = logger.stats
    total = sum(stats.records.values())
    where = f" to {args.save}" if args.save is not None else ""
    sys.stdout.write(f"logged {total} records of {len(stats.records)} streams{where}\n")
    if stats.bad_payloads:
        sys.stderr.write(f"zima view: skipped {stats.bad_payloads} bad payloads "
                         f"(last: {stats.last_bad})\n")
    return status


# --- the command -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("episode", nargs="?", type=Path, metavar="EPISODE.h5",
                        help="an episode file to show (else --robot: a live robot)")
    parser.add_argument("--save", type=Path, metavar="FILE.rrd",
                        help="write a rerun recording instead of spawning the viewer")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="live mode: stop after S seconds (default: until Ctrl-C)")
    mqtt.add_connection_arguments(parser)
    parser.set_defaults(robot=None)  # --robot NAME asks for live mode


def run(args: argparse.Namespace) -> int:
    if args.save is not None and args.save.suffix != ".rrd":
        sys.stderr.write(f"zima view: --save {args.save}: a rerun recording ends in .rrd\n")
        return EXIT_ERROR
    if args.episode is not None:
        if args.robot is not None or args.duration is not None:
            sys.stderr.write("zima view: give EPISODE.h5 or --robot NAME, not both\n")
            return EXIT_ERROR
        return view_episode(args.episode, args.save)
    if args.robot is None:
        sys.stderr.write("zima view: give EPISODE.h5 or --robot NAME\n")
        return EXIT_ERROR
    return view_robot(args)
