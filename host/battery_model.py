"""The battery monitor's arithmetic: state of charge from voltage, trend, time to empty.

Pure (no I/O, time handed in): ``zima battery`` feeds it the robot's readings, tests feed
it synthetic series with their own clock::

    tracker = BatteryTracker(Pack("liion", cells=3), window_s=120.0)
    tracker.add(BatteryReading(battery_mv=11_400, level="ok", low_mv=10_500,
                               critical_mv=9_900), at_s=now)
    view = tracker.view(now_s=now)      # soc_pct, trend_mv_per_min, time_to_empty_s, alarm

State of charge comes from resting-voltage discharge curves (tables of cell volts -> SoC %,
linearly interpolated). Under load a pack sags below its resting voltage, so the SoC shown
while driving reads low; the trend is fitted over a window (least squares) so a short
current spike barely moves it.

``battery_state`` says what state the battery is in and what the operator does about it:
ok; low (tracks derated); critical and latched by the MCU (tracks stopped until the pack is
above the MCU's clear threshold ``clear_mv``); or critical with the pack back above that
threshold, when asking for idle clears the latch. Data the robot marks ``stale`` (or older
than ``stale_after_s``, counting the robot's ``age_s``) is shown as stale, never as current,
and stays out of the trend.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from zima.onboard.api import BatteryRecord, RecordError

__all__ = [
    "CHEMISTRIES",
    "CURVES",
    "BatteryReading",
    "BatteryState",
    "BatteryTracker",
    "BatteryView",
    "Pack",
    "battery_state",
    "how_to_idle",
    "least_squares_slope",
    "soc_percent",
]

Level = Literal["ok", "low", "critical"]
LEVELS: tuple[Level, ...] = ("ok", "low", "critical")  # in order of severity

# (cell volts at rest, SoC %), ascending in both. Approximate resting (open-circuit) voltages
# at room temperature, from the commonly published tables; good to a few % mid-range, which
# is what a "how long do I have" display needs. Cells differ: calibrate against a measured
# discharge if the numbers matter.
CURVES: dict[str, tuple[tuple[float, float], ...]] = {
    # LiPo (LiCoO2 RC packs): the hobby "storage 3.85 V" table, 3.27 V taken as empty.
    "lipo": (
        (3.27, 0.0), (3.61, 5.0), (3.69, 10.0), (3.73, 20.0), (3.77, 30.0), (3.80, 40.0),
        (3.84, 50.0), (3.87, 60.0), (3.95, 70.0), (4.02, 80.0), (4.11, 90.0), (4.20, 100.0),
    ),
    # Li-ion 18650 (NMC/graphite), 0.2C discharge curves of common cells read at rest;
    # 3.0 V is the usual cut-off. The firmware's default thresholds (10.5 V / 9.9 V for
    # 3 cells = 3.5 / 3.3 V per cell) sit at about 7 % / 3 % on this curve.
    "liion": (
        (3.00, 0.0), (3.30, 3.0), (3.50, 8.0), (3.60, 15.0), (3.65, 20.0), (3.70, 30.0),
        (3.74, 40.0), (3.79, 50.0), (3.85, 60.0), (3.92, 70.0), (4.00, 80.0), (4.10, 90.0),
        (4.20, 100.0),
    ),
    # LiFePO4: very flat between 3.2 and 3.35 V, so mid-range SoC from voltage is coarse
    # (the widely used 12.8 V / 4-cell rest table divided by 4).
    "lifepo4": (
        (2.50, 0.0), (3.00, 9.0), (3.13, 14.0), (3.20, 17.0), (3.23, 20.0), (3.25, 30.0),
        (3.28, 40.0), (3.30, 70.0), (3.33, 90.0), (3.35, 99.0), (3.40, 100.0),
    ),
    # NiMH: flat near 1.2 V and temperature dependent; a rough guide only.
    "nimh": (
        (1.00, 0.0), (1.10, 10.0), (1.15, 20.0), (1.20, 40.0), (1.25, 60.0), (1.30, 80.0),
        (1.35, 90.0), (1.40, 100.0),
    ),
}
CHEMISTRIES = tuple(CURVES)


def soc_percent(cell_v: float, chemistry: str) -> float:
    """State of charge (0..100 %) of one cell at rest, interpolated on the chemistry's curve."""
    curve = CURVES[chemistry]
    volts = [v for v, _ in curve]
    if cell_v <= volts[0]:
        return curve[0][1]
    if cell_v >= volts[-1]:
        return curve[-1][1]
    i = bisect.bisect_right(volts, cell_v)  # volts[i-1] <= cell_v < volts[i]
    (v0, s0), (v1, s1) = curve[i - 1], curve[i]
    return s0 + (cell_v - v0) * (s1 - s0) / (v1 - v0)


@dataclass(frozen=True, slots=True)
class Pack:
    """The robot's battery: ``cells`` in series of one chemistry."""

    chemistry: str = "liion"
    cells: int = 3

    def __post_init__(self) -> None:
        if self.chemistry not in CURVES:
            raise ValueError(f"chemistry {self.chemistry!r} is not one of {list(CHEMISTRIES)}")
        if not 1 <= self.cells <= 32:
            raise ValueError(f"cells={self.cells} must be 1..32")

    def cell_mv(self, pack_mv: float) -> float:
        return pack_mv / self.cells  # assumes balanced cells: only the pack is measured

    def soc_percent(self, pack_mv: float) -> float:
        return soc_percent(self.cell_mv(pack_mv) / 1000.0, self.chemistry)


@dataclass(frozen=True, slots=True)
class BatteryReading:
    """One ``telemetry/battery`` message (onboard/MQTT.md: battery_mv, level, thresholds;
    from newer robots also the MCU's latch, its clear threshold and the data's age)."""

    battery_mv: int
    level: str  # the robot's verdict: "ok", "low", "critical" (debounced on the MCU)
    low_mv: int
    critical_mv: int
    stamp_unix_s: float | None = None  # the robot's wall clock
    latched: bool | None = None  # BATT_CRITICAL latched on the MCU (None: not said)
    clear_mv: int | None = None  # the MCU clears that latch only above this (None: not said)
    age_s: float | None = None  # how old the data was when published (None: not said)
    stale: bool = False  # the robot says the data is from a lost link: not current

    @classmethod
    def from_json(cls, body: dict[str, object]) -> BatteryReading:
        """Parse a payload (zima.onboard.api.BatteryRecord, its fields and bounds);
        ``ValueError`` naming the bad field."""
        try:
            record = BatteryRecord.from_json(body)
        except RecordError as exc:
            raise ValueError(f"battery payload: {exc}") from None
        return cls.from_record(record, body.get("stamp_unix_s"))

    @classmethod
    def from_record(cls, record: BatteryRecord, stamp: object = None) -> BatteryReading:
        """The reading of a checked record (``stamp``: its payload's stamp_unix_s)."""
        stamp_s = (float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool)
                   and 0 <= stamp < 1e11 else None)  # a clock this wrong says nothing
        return cls(
            record.battery_mv, record.level.value, record.low_mv, record.critical_mv, stamp_s,
            latched=record.latched,
            # 0: the robot has not read the threshold from its MCU yet
            clear_mv=record.clear_mv or None, age_s=record.age_s, stale=record.stale is True)

    @property
    def latched_on_mcu(self) -> bool:
        """BATT_CRITICAL is latched: the robot says so, or (older robots) its level is
        "critical", which is that latch."""
        return self.latched if self.latched is not None else self.level == "critical"

    @property
    def alarm_level(self) -> Level:
        """The worse of the robot's level and the thresholds applied to this reading (the
        robot debounces its level, so a pack already below a threshold shows at once)."""
        by_threshold: Level = "ok"
        if self.battery_mv <= self.critical_mv:
            by_threshold = "critical"
        elif self.battery_mv <= self.low_mv:
            by_threshold = "low"
        robot: Level = next((level for level in LEVELS if level == self.level), "ok")
        return max(by_threshold, robot, key=LEVELS.index)


def how_to_idle(robot_id: str) -> str:
    """How an operator asks this robot for idle (no host tool sends modes)."""
    return (f"the console's Idle button, or publish {{\"mode\": \"idle\"}} on "
            f"zima/{robot_id}/cmd/mode")


@dataclass(frozen=True, slots=True)
class BatteryState:
    """What state the battery is in, in words, and what the operator does about it."""

    name: str  # "ok", "low", "critical", "critical, latched", "critical, latch can clear"
    advice: str | None  # None: nothing to do


def battery_state(reading: BatteryReading, robot_id: str) -> BatteryState:
    """The battery's state from one reading (see the module doc)."""
    volts = reading.battery_mv / 1000
    idle = how_to_idle(robot_id)
    if reading.latched_on_mcu:
        clear_mv = reading.clear_mv
        if clear_mv is not None and reading.battery_mv > clear_mv:
            return BatteryState(
                "critical, latch can clear",
                f"the pack is back at {volts:.2f} V, above the {clear_mv / 1000:.2f} V the MCU "
                f"clears at: ask for idle ({idle}) to clear the latch and go on")
        above = ("" if clear_mv is None
                 else f"once the pack is above {clear_mv / 1000:.2f} V, ")
        return BatteryState(
            "critical, latched",
            f"the MCU stopped the tracks; charge or swap the pack; {above}ask for idle "
            f"({idle}) to clear the latch")
    level = reading.alarm_level
    if level == "critical":
        return BatteryState("critical", "below the critical threshold: the MCU stops the "
                            "tracks and latches it if this lasts; charge or swap the pack")
    if level == "low":
        return BatteryState("low", "tracks derated; charge or swap the pack soon")
    return BatteryState("ok", None)


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope dy/dx of the least-squares line through (x, y) points; None if undefined."""
    n = len(points)
    if n < 2:
        return None
    mean_x = math.fsum(x for x, _ in points) / n
    mean_y = math.fsum(y for _, y in points) / n
    sxx = math.fsum((x - mean_x) ** 2 for x, _ in points)
    if sxx <= 0.0:
        return None
    return math.fsum((x - mean_x) * (y - mean_y) for x, y in points) / sxx


@dataclass(frozen=True, slots=True)
class BatteryView:
    """What the monitor shows at one moment."""

    reading: BatteryReading | None  # the latest, None before the first
    cell_mv: float | None
    soc_pct: float | None
    trend_mv_per_min: float | None  # None until the window holds enough
    time_to_empty_s: float | None  # None: not discharging (or not known yet)
    age_s: float | None  # how old the latest reading's data is (the robot's age_s included)
    stale: bool  # no current reading for longer than stale_after_s (or none since start())
    offline: bool  # the robot's status says "offline"
    level: Level | None  # reading.alarm_level
    robot_stale: bool = False  # the robot itself marked the latest reading stale

    @property
    def alarm(self) -> str | None:
        """The most urgent alarm: "offline", "stale", "critical", "low" or None."""
        if self.offline:
            return "offline"
        if self.stale:
            return "stale"
        return self.level if self.level in ("low", "critical") else None


class BatteryTracker:
    """Keeps a window of readings (host clock) and derives the view from them."""

    def __init__(
        self,
        pack: Pack,
        window_s: float = 120.0,
        stale_after_s: float = 5.0,
        min_span_s: float = 10.0,
        discharge_pct_per_min: float = 0.01,
    ) -> None:
        if not (window_s > 0 and stale_after_s > 0 and 0 < min_span_s <= window_s):
            raise ValueError("window_s, stale_after_s > 0 and 0 < min_span_s <= window_s")
        self.pack = pack
        self.window_s = window_s
        self.stale_after_s = stale_after_s
        self.min_span_s = min_span_s  # a trend over less time is noise
        self.discharge_pct_per_min = discharge_pct_per_min  # slower than this: "not discharging"
        self.offline = False
        self._samples: deque[tuple[float, BatteryReading]] = deque()  # current readings
        self._stale: tuple[float, BatteryReading] | None = None  # a newer, stale one
        self._started_s: float | None = None

    def start(self, now_s: float) -> None:
        """Mark when listening began (the "no data" age counts from here)."""
        self._started_s = now_s

    def add(self, reading: BatteryReading, at_s: float) -> None:
        """A reading that arrived at ``at_s`` (host clock). One the robot marks stale is
        shown (as stale) but stays out of the trend: it repeats old data."""
        if reading.stale:
            self._stale = (at_s, reading)
            return
        self._stale = None
        self._samples.append((at_s, reading))
        while self._samples and self._samples[0][0] < at_s - self.window_s:
            self._samples.popleft()

    def _latest(self) -> tuple[float, BatteryReading] | None:
        if self._stale is not None:
            return self._stale
        return self._samples[-1] if self._samples else None

    @property
    def latest(self) -> BatteryReading | None:
        latest = self._latest()
        return None if latest is None else latest[1]

    def _slope_per_min(self, value: str) -> float | None:
        if len(self._samples) < 3 or self._samples[-1][0] - self._samples[0][0] < self.min_span_s:
            return None
        t0 = self._samples[0][0]
        if value == "mv":
            points = [(t - t0, float(r.battery_mv)) for t, r in self._samples]
        else:
            points = [(t - t0, self.pack.soc_percent(r.battery_mv)) for t, r in self._samples]
        slope = least_squares_slope(points)
        return None if slope is None else slope * 60.0

    def view(self, now_s: float) -> BatteryView:
        newest = self._latest()
        if newest is None:
            since = self._started_s if self._started_s is not None else now_s
            age = now_s - since  # listening this long without a reading
            return BatteryView(None, None, None, None, None, age,
                               stale=age > self.stale_after_s, offline=self.offline, level=None)
        at_s, latest = newest
        soc = self.pack.soc_percent(latest.battery_mv)
        current = not latest.stale
        soc_trend = self._slope_per_min("soc") if current else None
        tte: float | None = None
        if soc_trend is not None and soc_trend < -self.discharge_pct_per_min:
            tte = soc / -soc_trend * 60.0
        age = now_s - at_s + (latest.age_s or 0.0)  # the data's age, not the message's
        return BatteryView(
            reading=latest,
            cell_mv=self.pack.cell_mv(latest.battery_mv),
            soc_pct=soc,
            trend_mv_per_min=self._slope_per_min("mv") if current else None,
            time_to_empty_s=tte,
            age_s=age,
            stale=latest.stale or age > self.stale_after_s,
            offline=self.offline,
            level=latest.alarm_level,
            robot_stale=latest.stale,
        )
