"""The battery model: SoC curves, the least-squares trend and time to empty, with synthetic
series on an injected clock (no broker, no board)."""

import itertools
import math

import pytest

from zima.host.battery_model import (
    CHEMISTRIES,
    CURVES,
    BatteryReading,
    BatteryTracker,
    Pack,
    least_squares_slope,
    soc_percent,
)


def reading(mv: int, level: str = "ok") -> BatteryReading:
    return BatteryReading(battery_mv=mv, level=level, low_mv=10_500, critical_mv=9_900)


@pytest.mark.parametrize("chemistry", CHEMISTRIES)
def test_every_curve_rises_from_0_to_100_percent(chemistry: str) -> None:
    curve = CURVES[chemistry]
    assert curve[0][1] == 0.0
    assert curve[-1][1] == 100.0
    for (v0, s0), (v1, s1) in itertools.pairwise(curve):
        assert v1 > v0, (chemistry, v0, v1)
        assert s1 > s0, (chemistry, s0, s1)
    # and so does the interpolation, on a fine grid across and beyond the table
    lo, hi = curve[0][0] - 0.2, curve[-1][0] + 0.2
    grid = [lo + (hi - lo) * i / 500 for i in range(501)]
    socs = [soc_percent(v, chemistry) for v in grid]
    assert all(b >= a for a, b in itertools.pairwise(socs))
    assert socs[0] == 0.0
    assert socs[-1] == 100.0


def test_soc_interpolates_linearly_between_table_points() -> None:
    # liion: (3.74 V, 40 %) and (3.79 V, 50 %): half way is 45 %
    assert soc_percent(3.765, "liion") == pytest.approx(45.0)
    assert soc_percent(3.79, "liion") == pytest.approx(50.0)
    assert soc_percent(4.5, "liion") == 100.0
    assert soc_percent(2.0, "liion") == 0.0
    pack = Pack("liion", cells=3)
    assert pack.soc_percent(3 * 3765) == pytest.approx(45.0)
    assert pack.cell_mv(11_400) == pytest.approx(3800.0)


def test_bad_pack_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="chemistry 'lead'"):
        Pack("lead", 6)
    with pytest.raises(ValueError, match="cells=0"):
        Pack("lipo", 0)


def test_least_squares_slope_of_a_noisy_line() -> None:
    points = [(float(t), 100.0 - 2.0 * t + (0.5 if t % 2 else -0.5)) for t in range(20)]
    slope = least_squares_slope(points)
    assert slope is not None
    assert slope == pytest.approx(-2.0, abs=0.01)
    assert least_squares_slope([(1.0, 5.0)]) is None
    assert least_squares_slope([(1.0, 5.0), (1.0, 6.0)]) is None


def test_trend_and_time_to_empty_from_a_steady_discharge() -> None:
    pack = Pack("liion", cells=3)
    tracker = BatteryTracker(pack, window_s=120.0, stale_after_s=5.0, min_span_s=10.0)
    # 60 mV/min from 11 400 mV (45.x %), one reading a second for two minutes
    for t in range(121):
        tracker.add(reading(round(11_400 - t)), at_s=1000.0 + t)
    view = tracker.view(now_s=1120.5)
    assert view.trend_mv_per_min == pytest.approx(-60.0, abs=0.5)
    assert view.soc_pct == pytest.approx(pack.soc_percent(11_280))
    # SoC falls at (d SoC / d V) * 60 mV/min; on this stretch of the liion curve
    # (3.74 -> 3.79 V per 10 %) that is 10 % per 150 mV of pack, i.e. 4 %/min.
    assert view.time_to_empty_s is not None
    assert view.soc_pct is not None
    assert view.time_to_empty_s == pytest.approx(view.soc_pct / 4.0 * 60.0, rel=0.05)
    assert view.age_s == pytest.approx(0.5)
    assert not view.stale
    assert view.alarm is None


def test_no_time_to_empty_when_not_discharging_or_too_little_data() -> None:
    tracker = BatteryTracker(Pack(), window_s=60.0, min_span_s=10.0)
    tracker.add(reading(11_400), at_s=0.0)
    tracker.add(reading(11_400), at_s=1.0)
    tracker.add(reading(11_400), at_s=2.0)
    assert tracker.view(2.0).trend_mv_per_min is None  # 2 s is too short a window
    for t in range(3, 60):
        tracker.add(reading(11_400 + (t % 3)), at_s=float(t))  # steady, a little noise
    view = tracker.view(60.0)
    assert view.trend_mv_per_min is not None
    assert abs(view.trend_mv_per_min) < 1.0
    assert view.time_to_empty_s is None  # "unknown"
    for t in range(60, 120):
        tracker.add(reading(11_400 + 2 * (t - 60)), at_s=float(t))  # charging
    assert tracker.view(120.0).time_to_empty_s is None


def test_the_window_forgets_old_readings() -> None:
    tracker = BatteryTracker(Pack(), window_s=30.0, min_span_s=10.0)
    for t in range(100):  # discharging fast, then flat for the last 40 s
        tracker.add(reading(12_000 - 10 * min(t, 60)), at_s=float(t))
    view = tracker.view(99.0)
    assert view.trend_mv_per_min == pytest.approx(0.0, abs=1e-9)


def test_levels_stale_and_offline_alarms() -> None:
    tracker = BatteryTracker(Pack(), stale_after_s=5.0)
    tracker.start(now_s=100.0)
    assert tracker.view(now_s=104.0).alarm is None  # not heard yet, but not for long
    never = tracker.view(now_s=106.0)
    assert never.stale
    assert never.alarm == "stale"
    assert never.age_s == pytest.approx(6.0)  # counted from the start of listening
    tracker.add(reading(10_400), at_s=104.0)  # below low_mv, robot still debouncing: "ok"
    assert tracker.view(104.0).alarm == "low"
    tracker.add(reading(10_800, "low"), at_s=105.0)  # the robot's own verdict counts too
    assert tracker.view(105.0).alarm == "low"
    tracker.add(reading(9_800), at_s=106.0)
    assert tracker.view(106.0).alarm == "critical"
    tracker.add(reading(11_800), at_s=107.0)
    assert tracker.view(107.0).alarm is None
    stale = tracker.view(112.5)
    assert stale.stale
    assert stale.alarm == "stale"
    assert math.isclose(stale.age_s or 0.0, 5.5)
    tracker.offline = True
    assert tracker.view(112.5).alarm == "offline"


def test_reading_from_json_names_the_bad_field() -> None:
    body: dict[str, object] = {"battery_mv": 11_000, "level": "ok", "low_mv": 10_500,
                               "critical_mv": 9_900, "stamp_unix_s": 12.5}
    assert BatteryReading.from_json(body).stamp_unix_s == 12.5
    with pytest.raises(ValueError, match="battery_mv"):
        BatteryReading.from_json({**body, "battery_mv": "11"})
    with pytest.raises(ValueError, match="level"):
        BatteryReading.from_json({**body, "level": "empty"})
