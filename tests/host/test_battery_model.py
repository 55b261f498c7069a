"""The battery model: SoC curves, the least-squares trend and time to empty, the battery's
state and what to do, stale data, with synthetic series on an injected clock (no broker, no
board); any JSON object is a reading or a refusal (hypothesis)."""

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.host.hostile import json_values
from zima.host.battery import format_line, format_view
from zima.host.battery_model import (
    CHEMISTRIES,
    CURVES,
    BatteryReading,
    BatteryState,
    BatteryTracker,
    Pack,
    battery_state,
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


# --- the battery's state, the latch, stale data ----------------------------------------------

BODY: dict[str, object] = {"battery_mv": 9_950, "level": "critical", "low_mv": 10_500,
                           "critical_mv": 9_900, "latched": True, "clear_mv": 10_100,
                           "age_s": 0.25, "stale": False, "stamp_unix_s": 1.7e9}


def test_reading_takes_the_latch_its_clear_threshold_and_the_data_age() -> None:
    r = BatteryReading.from_json(BODY)
    assert (r.latched, r.clear_mv, r.age_s, r.stale, r.latched_on_mcu) == (
        True, 10_100, 0.25, False, True)
    old = BatteryReading.from_json({k: BODY[k] for k in (
        "battery_mv", "level", "low_mv", "critical_mv")})  # an older robot: none of them
    assert (old.latched, old.clear_mv, old.age_s, old.stale) == (None, None, None, False)
    assert old.latched_on_mcu  # its level "critical" is that latch
    for key, bad in (("latched", "yes"), ("stale", 1), ("clear_mv", -1), ("clear_mv", 1.5),
                     ("age_s", -0.1), ("age_s", "1"), ("age_s", True), ("battery_mv", 70_000),
                     ("low_mv", None), ("battery_mv", 10**400)):
        with pytest.raises(ValueError, match=key):
            BatteryReading.from_json({**BODY, key: bad})
    assert BatteryReading.from_json({**BODY, "stamp_unix_s": 1e300}).stamp_unix_s is None
    assert BatteryReading.from_json({**BODY, "clear_mv": 0}).clear_mv is None  # not read yet


def test_battery_state_says_what_it_is_and_what_to_do() -> None:
    def state(**changes: object) -> BatteryState:
        return battery_state(BatteryReading.from_json({**BODY, **changes}), "r1")

    ok = state(battery_mv=11_800, level="ok", latched=False)
    assert (ok.name, ok.advice) == ("ok", None)
    low = state(battery_mv=10_300, level="low", latched=False)
    assert low.name == "low"
    assert "derated" in (low.advice or "")
    below = state(battery_mv=9_800, level="ok", latched=False)  # the MCU is still debouncing
    assert below.name == "critical"
    latched = state()
    assert latched.name == "critical, latched"
    assert latched.advice == (
        "the MCU stopped the tracks; charge or swap the pack; once the pack is above 10.10 V, "
        "ask for idle (the console's Idle button, or publish {\"mode\": \"idle\"} on "
        "zima/r1/cmd/mode) to clear the latch")
    back = state(battery_mv=12_000)
    assert back.name == "critical, latch can clear"
    assert back.advice is not None
    assert back.advice.startswith("the pack is back at 12.00 V, above the 10.10 V the MCU "
                                  "clears at: ask for idle (the console's Idle button")
    unknown = battery_state(BatteryReading(12_000, "critical", 10_500, 9_900), "r1")
    assert unknown.name == "critical, latched"  # no clear threshold said: cannot tell
    assert "charge or swap the pack; ask for idle" in (unknown.advice or "")


def test_stale_readings_show_as_stale_and_stay_out_of_the_trend() -> None:
    tracker = BatteryTracker(Pack(), window_s=60.0, stale_after_s=5.0, min_span_s=10.0)
    for t in range(30):
        tracker.add(reading(11_400 - 2 * t), at_s=float(t))
    assert tracker.view(29.0).trend_mv_per_min == pytest.approx(-120.0)
    stale = BatteryReading(11_342, "ok", 10_500, 9_900, age_s=3.0, stale=True)
    tracker.add(stale, at_s=30.0)
    view = tracker.view(30.5)
    assert view.reading == stale
    assert (view.stale, view.robot_stale, view.alarm) == (True, True, "stale")
    assert view.age_s == pytest.approx(3.5)  # the data's age: the robot's plus the trip
    assert view.trend_mv_per_min is None
    assert view.time_to_empty_s is None
    tracker.add(reading(11_330), at_s=31.0)  # current again
    view = tracker.view(31.0)
    assert (view.stale, view.robot_stale, view.alarm) == (False, False, None)
    assert view.trend_mv_per_min == pytest.approx(-120.0, abs=5.0)  # the stale one not in it
    old = BatteryReading(11_330, "ok", 10_500, 9_900, age_s=6.0)  # not marked, but too old
    tracker.add(old, at_s=32.0)
    assert tracker.view(32.0).stale


# Any JSON object (with the fields a reading has, or wrong ones): a reading whose numbers
# are in range, or a ValueError naming the field; the state and views never fail on it.
field_values = st.one_of(
    json_values, st.integers(0, 70_000), st.sampled_from(["ok", "low", "critical"]),
    st.booleans(), st.floats(0, 1e6))
bodies = st.dictionaries(
    st.sampled_from(["battery_mv", "level", "low_mv", "critical_mv", "latched", "clear_mv",
                     "age_s", "stale", "stamp_unix_s", "other"]),
    field_values, max_size=10)


@settings(max_examples=400)
@given(bodies, st.floats(0, 100))
def test_any_json_object_is_a_reading_or_a_value_error(
    body: dict[str, object], now_s: float
) -> None:
    try:
        r = BatteryReading.from_json(body)
    except ValueError as exc:
        refusal = str(exc)
        assert refusal.startswith("battery payload: "), refusal
        assert len(refusal) < 200, refusal
        return
    for mv in (r.battery_mv, r.low_mv, r.critical_mv, r.clear_mv or 0):
        assert 0 <= mv <= 65_535
    assert r.age_s is None or 0 <= r.age_s < math.inf
    state = battery_state(r, "r1")
    assert state.name.split(",")[0] in ("ok", "low", "critical")
    assert (state.advice is None) == (state.name == "ok")
    tracker = BatteryTracker(Pack())
    tracker.add(r, at_s=0.0)
    view = tracker.view(now_s)
    assert view.stale == (r.stale or now_s + (r.age_s or 0.0) > tracker.stale_after_s)
    assert format_view(view, "r1", Pack())
    assert format_line(view, 1.7e9, "r1")
