"""Tests of ``Safety``: each rule of the mode table, then properties over any call sequence.

Pure logic: plain float clocks, no board, no broker. The property test drives random
sequences of every public call against a small model (what was last accepted, when, and
what the world looked like) and checks after each call that the tracks move only when
every rule allows it, by exactly the clamped and derated command; a second model predicts
every transition of operator presence (autonomy lasts exactly while an operator is heard).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.onboard.safety import (
    BatteryLevel,
    Decision,
    DriveMode,
    ModeRefusedError,
    NotOwnerError,
    OperatorHeard,
    Safety,
    SafetyConfig,
    SafetyError,
    Transition,
)

CFG = SafetyConfig()


def world(safety: Safety, t: float, **changes: object) -> None:
    """A healthy world (link up, battery OK, no MCU e-stop, policy ready), with changes."""
    kwargs: dict[str, object] = {
        "link_up": True, "battery": BatteryLevel.OK, "estop_latched_on_mcu": False,
        "policy_ready": True, "policy_reason": None,
    }
    kwargs.update(changes)
    safety.update(now_s=t, **kwargs)  # type: ignore[arg-type]


def in_mode(mode: DriveMode, t: float = 0.0) -> Safety:
    safety = Safety(now_s=t)
    world(safety, t)
    safety.request_mode(mode, source="test", now_s=t)
    assert safety.mode is mode
    safety.take_transitions()
    return safety


def kinds(safety: Safety) -> list[str]:
    return [tr.kind for tr in safety.take_transitions()]


def why(safety: Safety) -> str | None:
    """``mode_reason`` read afresh (mypy would narrow the property across calls)."""
    return safety.mode_reason


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("teleop_timeout_s", 0.0), ("teleop_timeout_s", math.nan), ("policy_timeout_s", -1.0),
        ("lease_timeout_s", math.inf), ("max_track_mm_s", 0.0), ("max_track_mm_s", True),
        ("low_battery_derate", 0.0), ("low_battery_derate", 1.5),
        ("low_battery_derate", math.nan), ("arm_min_ddeg", (0,) * 5),
        ("arm_max_ddeg", (1801,) * 6), ("arm_min_ddeg", (0.5,) * 6),
        ("arm_min_ddeg", (-1,) * 6), ("operator_timeout_s", -0.1),
        ("operator_timeout_s", math.nan), ("operator_timeout_s", math.inf),
        ("operator_timeout_s", True), ("operator_timeout_s", "5"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field_name: str, value: object) -> None:
    with pytest.raises(ValueError, match=field_name):
        SafetyConfig(**{field_name: value})  # type: ignore[arg-type]


def test_config_takes_lists_for_arm_ranges_and_stays_hashable() -> None:
    cfg = SafetyConfig(arm_min_ddeg=[100] * 6, arm_max_ddeg=[1700] * 6)  # type: ignore[arg-type]
    assert cfg.arm_min_ddeg == (100,) * 6
    hash(cfg)


# --- idle, mode requests --------------------------------------------------------------------


def test_starts_idle_with_no_owner_and_refuses_driving_before_the_first_update() -> None:
    safety = Safety(now_s=0.0)
    assert (safety.mode, safety.owner) == (DriveMode.IDLE, "none")
    assert safety.decide(now_s=0.0) == Decision(0, 0, "none", DriveMode.IDLE, "idle")
    with pytest.raises(ModeRefusedError, match="link down"):
        safety.request_mode(DriveMode.TELEOP, source="mqtt", now_s=0.0)


@pytest.mark.parametrize(
    ("changes", "mode", "match"),
    [
        ({"link_up": False}, DriveMode.TELEOP, "link down"),
        ({"estop_latched_on_mcu": True}, DriveMode.AUTONOMOUS, "e-stop latched on the MCU"),
        ({"policy_ready": False, "policy_reason": "forward camera stale"},
         DriveMode.AUTONOMOUS, "policy not ready: forward camera stale"),
        ({"policy_ready": False}, DriveMode.SUPERVISED, "policy not ready"),
        ({"battery": BatteryLevel.CRITICAL}, DriveMode.TELEOP, "battery critical"),
        ({}, DriveMode.LOW_BATTERY, "battery monitor only"),
    ],
)
def test_driving_modes_are_refused_with_a_reason(
    changes: dict[str, object], mode: DriveMode, match: str
) -> None:
    safety = Safety(now_s=0.0)
    world(safety, 0.0, **changes)
    with pytest.raises(ModeRefusedError, match=match):
        safety.request_mode(mode, source="mqtt", now_s=0.1)


def test_teleop_without_a_stale_camera_is_allowed_and_mode_strings_are_accepted() -> None:
    safety = Safety(now_s=0.0)
    world(safety, 0.0, policy_ready=False)
    safety.request_mode("teleop", source="mqtt", now_s=0.0)
    assert safety.mode is DriveMode.TELEOP
    [tr] = safety.take_transitions()
    assert tr == Transition(0.0, "mode", DriveMode.IDLE, DriveMode.TELEOP, "none", "mqtt")
    with pytest.raises(ValueError, match="flying"):
        safety.request_mode("flying", source="mqtt", now_s=0.0)


@pytest.mark.parametrize("mode", [DriveMode.IDLE, DriveMode.AUTONOMOUS])
def test_teleop_is_refused_outside_teleop_and_supervised(mode: DriveMode) -> None:
    safety = in_mode(mode)
    with pytest.raises(ModeRefusedError, match=f"refused in {mode}"):
        safety.teleop(left_mm_s=100, right_mm_s=100, client="web-1", now_s=0.0)
    assert safety.lease is None


# --- teleop and the lease -------------------------------------------------------------------


def test_teleop_drives_takes_the_lease_implicitly_and_times_out() -> None:
    safety = in_mode(DriveMode.TELEOP)
    assert safety.decide(now_s=0.0).reason == "no teleop client holds the lease"
    safety.teleop(left_mm_s=200, right_mm_s=-150.7, client="mqtt", now_s=0.0)
    assert kinds(safety) == ["lease_acquired"]
    assert safety.decide(now_s=0.3) == Decision(200, -150, "teleop:mqtt", DriveMode.TELEOP)
    late = safety.decide(now_s=0.31)
    assert (late.left_mm_s, late.right_mm_s, late.reason) == (0, 0, "teleop command timed out")
    assert late.owner == "teleop:mqtt"  # the lease is still live (0.5 s)


def test_a_second_client_is_refused_until_the_lease_expires() -> None:
    safety = in_mode(DriveMode.TELEOP)
    lease = safety.acquire_lease(client="web-1", now_s=0.0)
    assert (lease.client, lease.expires_s) == ("web-1", CFG.lease_timeout_s)
    for call in (
        lambda: safety.acquire_lease(client="web-2", now_s=0.1),
        lambda: safety.teleop(left_mm_s=1, right_mm_s=1, client="web-2", now_s=0.1),
        lambda: safety.renew_lease(client="web-2", now_s=0.1),
        lambda: safety.release_lease(client="web-2", now_s=0.1),
        lambda: safety.teleop_arm(targets_ddeg=[None] * 6, client="web-2", now_s=0.1),
    ):
        with pytest.raises(NotOwnerError, match="web-1"):
            call()
    safety.teleop(left_mm_s=100, right_mm_s=100, client="web-1", now_s=0.4)  # renews to 0.9
    assert safety.acquire_lease(client="web-1", now_s=0.4).expires_s == pytest.approx(0.9)
    with pytest.raises(NotOwnerError):
        safety.acquire_lease(client="web-2", now_s=0.9)
    safety.take_transitions()
    safety.teleop(left_mm_s=50, right_mm_s=50, client="web-2", now_s=0.91)
    expired, acquired = safety.take_transitions()
    assert (expired.kind, expired.owner, expired.to_mode) == (
        "lease_expired", "none", DriveMode.TELEOP)
    assert (acquired.kind, acquired.owner, acquired.source) == (
        "lease_acquired", "teleop:web-2", "web-2")
    assert safety.decide(now_s=0.91).left_mm_s == 50


def test_lease_expiry_in_teleop_stops_the_tracks_and_keeps_the_mode() -> None:
    safety = in_mode(DriveMode.TELEOP)
    safety.acquire_lease(client="web-1", now_s=0.0)
    safety.renew_lease(client="web-1", now_s=0.4)
    safety.teleop(left_mm_s=100, right_mm_s=100, client="web-1", now_s=0.8)
    assert safety.decide(now_s=0.9).left_mm_s == 100
    d = safety.decide(now_s=1.31)
    assert (d.left_mm_s, d.owner, d.mode) == (0, "none", DriveMode.TELEOP)
    assert kinds(safety)[-1] == "lease_expired"
    with pytest.raises(NotOwnerError):
        safety.renew_lease(client="web-1", now_s=1.31)


def test_release_lease_stops_and_frees_the_robot_for_another_client() -> None:
    safety = in_mode(DriveMode.TELEOP)
    safety.teleop(left_mm_s=100, right_mm_s=100, client="web-1", now_s=0.0)
    safety.release_lease(client="web-1", now_s=0.1)
    assert safety.decide(now_s=0.1).reason == "no teleop client holds the lease"
    safety.release_lease(client="web-1", now_s=0.1)  # nothing held: a no-op
    safety.acquire_lease(client="web-2", now_s=0.2)
    assert safety.owner == "teleop:web-2"
    assert safety.decide(now_s=0.2).reason == "no teleop command yet"  # web-1's is gone
    assert kinds(safety) == ["lease_acquired", "lease_released", "lease_acquired"]


def test_a_client_name_must_be_a_non_empty_string() -> None:
    safety = in_mode(DriveMode.TELEOP)
    with pytest.raises(ValueError, match="client"):
        safety.acquire_lease(client="", now_s=0.0)


# --- autonomous, supervised, take-over ------------------------------------------------------


def test_autonomous_is_driven_by_the_policy_only() -> None:
    safety = in_mode(DriveMode.AUTONOMOUS)
    assert safety.owner == "policy"
    assert safety.decide(now_s=0.0).reason == "no policy command yet"
    left: Any = np.float32(300)  # a policy's numpy scalars are numbers too
    right: Any = np.int64(310)
    assert safety.policy_step(left_mm_s=left, right_mm_s=right, now_s=0.0)
    assert safety.decide(now_s=0.2) == Decision(300, 310, "policy", DriveMode.AUTONOMOUS)
    assert safety.decide(now_s=0.31).reason == "policy command timed out"
    with pytest.raises(ModeRefusedError, match="supervised to take over"):
        safety.teleop(left_mm_s=0, right_mm_s=0, client="web-1", now_s=0.3)


def test_a_policy_that_is_not_ready_stops_and_its_steps_are_ignored() -> None:
    safety = in_mode(DriveMode.AUTONOMOUS)
    safety.policy_step(left_mm_s=300, right_mm_s=300, now_s=0.0)
    world(safety, 0.02, policy_ready=False, policy_reason="wrist camera stale")
    d = safety.decide(now_s=0.02)
    assert (d.left_mm_s, d.reason, d.mode) == (0, "wrist camera stale", DriveMode.AUTONOMOUS)
    assert not safety.policy_step(left_mm_s=300, right_mm_s=300, now_s=0.04)
    world(safety, 0.06)  # ready again: the step planned on stale input does not drive
    assert safety.decide(now_s=0.06).reason == "no policy command yet"
    assert safety.policy_step(left_mm_s=100, right_mm_s=100, now_s=0.08)
    assert safety.decide(now_s=0.08).left_mm_s == 100


@pytest.mark.parametrize("mode", [DriveMode.IDLE, DriveMode.TELEOP, DriveMode.ESTOP])
def test_policy_steps_are_ignored_when_the_policy_does_not_own_the_tracks(
    mode: DriveMode,
) -> None:
    safety = in_mode(mode)
    assert not safety.policy_step(left_mm_s=300, right_mm_s=300, now_s=0.0)
    assert safety.decide(now_s=0.0).left_mm_s == 0


def test_supervised_take_over_and_hand_back() -> None:
    safety = in_mode(DriveMode.SUPERVISED)
    safety.policy_step(left_mm_s=300, right_mm_s=300, now_s=0.0)
    assert safety.decide(now_s=0.0).owner == "policy"
    safety.teleop(left_mm_s=-100, right_mm_s=100, client="web-1", now_s=0.02)
    lease, takeover = safety.take_transitions()
    assert lease.kind == "lease_acquired"
    assert takeover == Transition(0.02, "takeover", DriveMode.SUPERVISED, DriveMode.SUPERVISED,
                                  "teleop:web-1", "web-1")
    assert safety.decide(now_s=0.02) == Decision(-100, 100, "teleop:web-1", DriveMode.SUPERVISED)
    assert not safety.policy_step(left_mm_s=300, right_mm_s=300, now_s=0.04)
    with pytest.raises(NotOwnerError):
        safety.hand_back(client="web-2", now_s=0.05)
    safety.hand_back(client="web-1", now_s=0.06)
    assert kinds(safety) == ["handback"]
    assert safety.owner == "policy"
    assert safety.decide(now_s=0.06).reason == "no policy command yet"  # no old step drives
    with pytest.raises(NotOwnerError, match="not taken over"):
        safety.hand_back(client="web-1", now_s=0.07)


def test_the_lease_holder_alone_may_take_over() -> None:
    safety = in_mode(DriveMode.SUPERVISED)
    safety.acquire_lease(client="console", now_s=0.0)
    with pytest.raises(NotOwnerError):
        safety.teleop(left_mm_s=1, right_mm_s=1, client="mqtt", now_s=0.1)
    assert safety.owner == "policy"
    safety.teleop_arm(targets_ddeg=[900, None, None, None, None, None], client="console",
                      now_s=0.2)  # an arm command takes over as well
    assert safety.owner == "teleop:console"


def test_lease_expiry_during_a_take_over_drops_to_idle_not_back_to_the_policy() -> None:
    safety = in_mode(DriveMode.SUPERVISED)
    safety.teleop(left_mm_s=100, right_mm_s=100, client="web-1", now_s=0.0)
    safety.take_transitions()
    assert safety.decide(now_s=0.51).mode is DriveMode.IDLE
    [tr] = safety.take_transitions()
    assert (tr.kind, tr.from_mode, tr.to_mode, tr.owner) == (
        "lease_expired", DriveMode.SUPERVISED, DriveMode.IDLE, "none")
    assert tr.reason is not None
    assert "during take-over" in tr.reason


def test_hand_back_outside_supervised_is_refused() -> None:
    with pytest.raises(ModeRefusedError):
        in_mode(DriveMode.TELEOP).hand_back(client="web-1", now_s=0.0)


# --- e-stop, link, MCU latch ------------------------------------------------------------------


@pytest.mark.parametrize("mode", [DriveMode.TELEOP, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED])
def test_estop_stops_at_once_and_releases_to_idle(mode: DriveMode) -> None:
    safety = in_mode(mode)
    safety.teleop(left_mm_s=100, right_mm_s=100, client="c", now_s=0.0) if mode is not (
        DriveMode.AUTONOMOUS) else safety.policy_step(left_mm_s=100, right_mm_s=100, now_s=0.0)
    assert safety.decide(now_s=0.0).left_mm_s == 100
    safety.take_transitions()
    safety.engage_estop(source="mqtt", now_s=0.01)
    safety.engage_estop(source="mqtt", now_s=0.01)  # again: nothing new
    d = safety.decide(now_s=0.01)
    assert (d.left_mm_s, d.owner, d.reason) == (0, "none", "e-stop engaged")
    [tr] = safety.take_transitions()
    assert (tr.kind, tr.from_mode, tr.to_mode, tr.reason) == (
        "estop", mode, DriveMode.ESTOP, f"engaged from {mode}")
    for wanted in (DriveMode.IDLE, mode):
        with pytest.raises(ModeRefusedError, match="e-stop engaged"):
            safety.request_mode(wanted, source="mqtt", now_s=0.02)
    with pytest.raises(ModeRefusedError, match="e-stop engaged"):
        safety.teleop(left_mm_s=1, right_mm_s=1, client="c", now_s=0.02)
    safety.release_estop(source="mqtt", now_s=0.03)
    assert safety.mode is DriveMode.IDLE
    assert safety.decide(now_s=0.03).left_mm_s == 0
    assert kinds(safety) == ["estop_released"]
    safety.release_estop(source="mqtt", now_s=0.04)  # not engaged: a no-op
    assert kinds(safety) == []


def test_request_mode_estop_engages_it() -> None:
    safety = in_mode(DriveMode.TELEOP)
    safety.request_mode(DriveMode.ESTOP, source="console", now_s=0.0)
    assert safety.mode is DriveMode.ESTOP


@pytest.mark.parametrize(
    ("changes", "kind", "reason"),
    [({"link_up": False}, "link_lost", "link down"),
     ({"estop_latched_on_mcu": True}, "mcu_estop", "e-stop latched on the MCU")],
)
@pytest.mark.parametrize("mode", [DriveMode.AUTONOMOUS, DriveMode.SUPERVISED])
def test_an_unchosen_stop_ends_autonomy(
    mode: DriveMode, changes: dict[str, object], kind: str, reason: str
) -> None:
    safety = in_mode(mode)
    safety.policy_step(left_mm_s=100, right_mm_s=100, now_s=0.0)
    world(safety, 0.02, **changes)
    # The stop is named, not just "idle" (the mode record publishes this reason).
    assert safety.decide(now_s=0.02).reason == f"{kind}: {reason}"
    [tr] = safety.take_transitions()
    assert (tr.kind, tr.from_mode, tr.to_mode, tr.source, tr.reason) == (
        kind, mode, DriveMode.IDLE, kind.split("_", maxsplit=1)[0], reason)
    world(safety, 0.04)  # back: the robot does not drive off on its own
    assert safety.mode is DriveMode.IDLE
    assert why(safety) == f"{kind}: {reason}"  # why it is idle, until a new mode
    safety.request_mode(DriveMode.IDLE, source="mqtt", now_s=0.05)  # idle again: no change
    assert why(safety) == f"{kind}: {reason}"
    safety.request_mode(DriveMode.TELEOP, source="mqtt", now_s=0.06)
    assert why(safety) is None  # a driving mode: decide says whether tracks move
    safety.request_mode(DriveMode.IDLE, source="mqtt", now_s=0.07)
    assert (why(safety), safety.decide(now_s=0.07).reason) == ("idle", "idle")


def test_mode_reason_of_each_mode_that_never_drives() -> None:
    safety = Safety(now_s=0.0)
    assert safety.mode_reason == "idle"
    world(safety, 0.0)
    safety.engage_estop(source="mqtt", now_s=0.0)
    assert safety.mode_reason == safety.decide(now_s=0.0).reason == "e-stop engaged"
    safety.release_estop(source="mqtt", now_s=0.1)
    assert safety.mode_reason == "idle"
    for mode in (DriveMode.TELEOP, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED):
        safety.request_mode(mode, source="mqtt", now_s=0.2)
        assert safety.mode_reason is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"link_up": False}, "link down"), ({"estop_latched_on_mcu": True},
                                          "e-stop latched on the MCU")],
)
def test_teleop_keeps_its_mode_over_an_unchosen_stop_but_forgets_its_command(
    changes: dict[str, object], reason: str
) -> None:
    safety = in_mode(DriveMode.TELEOP)
    safety.teleop(left_mm_s=100, right_mm_s=100, client="c", now_s=0.0)
    world(safety, 0.02, **changes)
    d = safety.decide(now_s=0.02)
    assert (d.left_mm_s, d.reason, d.mode) == (0, reason, DriveMode.TELEOP)
    with pytest.raises(ModeRefusedError, match=reason):
        safety.teleop_arm(targets_ddeg=[None] * 6, client="c", now_s=0.03)
    world(safety, 0.04)
    assert safety.decide(now_s=0.04).reason == "no teleop command yet"
    safety.teleop(left_mm_s=50, right_mm_s=50, client="c", now_s=0.05)
    assert safety.decide(now_s=0.05).left_mm_s == 50


# --- battery --------------------------------------------------------------------------------


def test_low_battery_derates_every_track_command() -> None:
    safety = in_mode(DriveMode.TELEOP)
    world(safety, 0.0, battery=BatteryLevel.LOW)
    safety.teleop(left_mm_s=201, right_mm_s=-5000, client="c", now_s=0.0)
    assert safety.decide(now_s=0.0) == Decision(
        100, -300, "teleop:c", DriveMode.TELEOP, None, derate=0.5, clamped=True)
    world(safety, 0.1, battery="ok")
    assert safety.decide(now_s=0.1) == Decision(
        201, -600, "teleop:c", DriveMode.TELEOP, None, derate=1.0, clamped=True)


def test_critical_battery_stops_and_needs_the_latch_cleared_and_idle_to_drive_again() -> None:
    safety = in_mode(DriveMode.AUTONOMOUS)
    safety.policy_step(left_mm_s=100, right_mm_s=100, now_s=0.0)
    world(safety, 0.02, battery=BatteryLevel.CRITICAL)
    d = safety.decide(now_s=0.02)
    assert (d.left_mm_s, d.mode) == (0, DriveMode.LOW_BATTERY)
    assert d.reason == ("battery critical (latched by the MCU): once the pack has recovered "
                        "(charge or swap it), ask for idle to clear it")
    [tr] = safety.take_transitions()
    assert (tr.kind, tr.source, tr.reason) == ("low_battery", "battery", "battery critical")
    world(safety, 0.04, battery=BatteryLevel.CRITICAL)  # the MCU holds its latch
    for mode in (DriveMode.IDLE, DriveMode.TELEOP):
        with pytest.raises(ModeRefusedError, match="ask for idle to clear it"):
            safety.request_mode(mode, source="mqtt", now_s=0.05)
    world(safety, 0.06)  # the latch cleared (the runtime sent CLEAR on an idle request)
    assert safety.mode is DriveMode.LOW_BATTERY  # no automatic way out
    assert safety.mode_reason == "battery was critical, the MCU's latch is clear: ask for idle"
    with pytest.raises(ModeRefusedError, match="ask for idle first"):
        safety.request_mode(DriveMode.AUTONOMOUS, source="mqtt", now_s=0.07)
    safety.request_mode(DriveMode.IDLE, source="mqtt", now_s=0.08)
    assert safety.mode_reason == "idle"
    safety.request_mode(DriveMode.AUTONOMOUS, source="mqtt", now_s=0.09)


def test_the_low_battery_message_says_what_the_pack_is_at_and_what_clears_it() -> None:
    safety = in_mode(DriveMode.TELEOP)
    world(safety, 0.0, battery=BatteryLevel.CRITICAL, battery_mv=9_700,
          battery_clear_mv=10_100)
    world(safety, 0.1, battery=BatteryLevel.CRITICAL, battery_mv=9_950,
          battery_clear_mv=10_100)
    below = ("battery critical (latched by the MCU at 9700 mV; the pack is at 9950 mV): "
             "once it is above 10100 mV, ask for idle to clear the latch")
    assert safety.mode_reason == safety.decide(now_s=0.1).reason == below
    with pytest.raises(ModeRefusedError) as refused:
        safety.request_mode(DriveMode.IDLE, source="mqtt", now_s=0.1)
    assert str(refused.value) == f"idle refused: {below}"
    with pytest.raises(ModeRefusedError) as refused:
        safety.teleop(left_mm_s=1, right_mm_s=1, client="c", now_s=0.1)
    assert str(refused.value) == f"teleop refused in low_battery: {below}"
    # Back above the clear threshold while the MCU still holds the latch (no CLEAR yet).
    world(safety, 0.2, battery=BatteryLevel.CRITICAL, battery_mv=12_000,
          battery_clear_mv=10_100)
    assert safety.mode_reason == (
        "battery critical (latched by the MCU at 9700 mV; the pack is at 12000 mV, above the "
        "10100 mV that clears it): ask for idle to clear the latch")
    world(safety, 0.3, battery=BatteryLevel.OK, battery_mv=12_000, battery_clear_mv=10_100)
    assert safety.mode_reason == ("battery was critical, the MCU's latch is clear "
                                  "(the pack is at 12000 mV): ask for idle")
    with pytest.raises(ValueError, match="battery_mv"):
        world(safety, 0.4, battery_mv=math.nan)


def test_a_low_battery_whose_latch_cleared_may_go_back_to_idle_and_drives_derated() -> None:
    # The MCU clears BATT_CRITICAL above batt_crit_mv + batt_hyst_mv, which is still below
    # batt_low_mv: the robot goes on, derated, rather than waiting for an ok pack.
    safety = in_mode(DriveMode.TELEOP)
    world(safety, 0.0, battery=BatteryLevel.CRITICAL)
    world(safety, 0.1, battery=BatteryLevel.LOW)
    safety.request_mode(DriveMode.IDLE, source="mqtt", now_s=0.2)
    safety.request_mode(DriveMode.TELEOP, source="mqtt", now_s=0.3)
    safety.teleop(left_mm_s=200, right_mm_s=200, client="c", now_s=0.3)
    assert safety.decide(now_s=0.3).left_mm_s == 100


def test_estop_does_not_bypass_the_battery_latch() -> None:
    safety = in_mode(DriveMode.TELEOP)
    world(safety, 0.0, battery=BatteryLevel.CRITICAL)
    world(safety, 0.1)  # cleared on the MCU, but the operator has not asked for idle yet
    safety.engage_estop(source="mqtt", now_s=0.2)
    safety.release_estop(source="mqtt", now_s=0.3)
    assert safety.mode is DriveMode.LOW_BATTERY
    assert kinds(safety)[-2:] == ["estop_released", "low_battery"]
    safety.request_mode(DriveMode.IDLE, source="mqtt", now_s=0.4)
    safety.engage_estop(source="mqtt", now_s=0.5)
    safety.release_estop(source="mqtt", now_s=0.6)
    assert safety.decide(now_s=0.6).mode is DriveMode.IDLE  # acknowledged: the latch is gone


def test_critical_battery_during_estop_waits_and_release_goes_to_low_battery() -> None:
    safety = in_mode(DriveMode.TELEOP)
    safety.engage_estop(source="mqtt", now_s=0.0)
    world(safety, 0.02, battery=BatteryLevel.CRITICAL)
    assert safety.mode is DriveMode.ESTOP
    safety.release_estop(source="mqtt", now_s=0.04)
    assert safety.decide(now_s=0.04).mode is DriveMode.LOW_BATTERY
    assert kinds(safety) == ["estop", "estop_released", "low_battery"]


# --- operator presence ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [DriveMode.AUTONOMOUS, DriveMode.SUPERVISED])
def test_autonomy_without_an_operator_drops_to_idle_saying_so(mode: DriveMode) -> None:
    safety = in_mode(mode)
    for t in (1.0, 3.0, 5.0):  # the policy drives; its steps are no operator
        assert safety.policy_step(left_mm_s=100, right_mm_s=100, now_s=t)
        world(safety, t)
    assert safety.decide(now_s=5.0).left_mm_s == 100  # 5.0 s of silence: still allowed
    d = safety.decide(now_s=5.01)
    assert (d.left_mm_s, d.mode, d.owner) == (0, DriveMode.IDLE, "none")
    assert d.reason == "operator_lost: no operator heard for 5.0 s"
    assert safety.mode_reason == d.reason
    [tr] = safety.take_transitions()
    assert tr == Transition(5.01, "operator_lost", mode, DriveMode.IDLE, "none", "operator",
                            "no operator heard for 5.0 s")
    assert not safety.policy_step(left_mm_s=100, right_mm_s=100, now_s=5.02)
    safety.operator_seen(source="console", now_s=6.0)  # back: it does not drive off by itself
    assert safety.mode is DriveMode.IDLE


def test_operator_seen_keeps_autonomy_going_and_says_who_was_heard() -> None:
    safety = in_mode(DriveMode.AUTONOMOUS)
    assert safety.operator == OperatorHeard("test", 0.0)  # entering counts
    for t in (4.0, 8.5, 13.0):
        safety.operator_seen(source="mqtt", now_s=t)
        world(safety, t)
        assert safety.mode is DriveMode.AUTONOMOUS
    assert safety.operator == OperatorHeard("mqtt", 13.0)
    assert safety.decide(now_s=18.0).mode is DriveMode.AUTONOMOUS
    assert safety.decide(now_s=18.01).mode is DriveMode.IDLE
    assert kinds(safety) == ["operator_lost"]


def test_a_late_heartbeat_comes_after_the_drop_not_before_it() -> None:
    safety = in_mode(DriveMode.AUTONOMOUS)
    safety.operator_seen(source="mqtt", now_s=5.5)  # judged at 5.5: 5.5 s of silence first
    assert safety.mode is DriveMode.IDLE
    assert safety.operator == OperatorHeard("mqtt", 5.5)


def test_asking_for_autonomy_after_a_long_silence_is_hearing_the_operator() -> None:
    safety = in_mode(DriveMode.IDLE)
    world(safety, 100.0)
    safety.request_mode(DriveMode.SUPERVISED, source="web-1", now_s=100.0)
    assert safety.decide(now_s=104.0).mode is DriveMode.SUPERVISED
    safety.request_mode(DriveMode.SUPERVISED, source="web-1", now_s=104.0)  # asked again
    assert safety.decide(now_s=109.0).mode is DriveMode.SUPERVISED
    assert safety.decide(now_s=109.01).mode is DriveMode.IDLE


def test_a_take_over_and_lease_calls_are_hearing_the_operator() -> None:
    safety = in_mode(DriveMode.SUPERVISED)
    t = 0.0
    for _ in range(30):  # 12 s of driving by hand, the lease renewed by each command
        t += 0.4
        safety.teleop(left_mm_s=50, right_mm_s=50, client="web-1", now_s=t)
    assert safety.mode is DriveMode.SUPERVISED
    safety.hand_back(client="web-1", now_s=t)  # 12.0
    assert safety.decide(now_s=t + 4.0).mode is DriveMode.SUPERVISED
    safety.acquire_lease(client="web-2", now_s=t + 4.0)
    safety.renew_lease(client="web-2", now_s=t + 4.4)
    assert safety.decide(now_s=t + 9.4).mode is DriveMode.SUPERVISED
    assert safety.decide(now_s=t + 9.41).mode is DriveMode.IDLE


def test_the_operator_rule_applies_to_autonomy_only_and_can_be_turned_off() -> None:
    teleop = in_mode(DriveMode.TELEOP)  # teleop has its lease and command timeouts
    assert teleop.decide(now_s=100.0).mode is DriveMode.TELEOP
    unattended = Safety(SafetyConfig(operator_timeout_s=0), now_s=0.0)
    world(unattended, 0.0)
    unattended.request_mode(DriveMode.AUTONOMOUS, source="config", now_s=0.0)
    world(unattended, 3600.0)
    assert unattended.decide(now_s=3600.0).mode is DriveMode.AUTONOMOUS
    short = Safety(SafetyConfig(operator_timeout_s=2.5), now_s=0.0)
    world(short, 0.0)
    short.request_mode(DriveMode.AUTONOMOUS, source="mqtt", now_s=0.0)
    assert short.decide(now_s=2.6).reason == "operator_lost: no operator heard for 2.5 s"


def test_operator_seen_checks_its_input() -> None:
    safety = in_mode(DriveMode.AUTONOMOUS)
    with pytest.raises(ValueError, match="source"):
        safety.operator_seen(source="", now_s=1.0)
    with pytest.raises(ValueError, match="finite"):
        safety.operator_seen(source="mqtt", now_s=math.nan)
    assert safety.operator == OperatorHeard("test", 0.0)


# --- arm, input checks, clock ---------------------------------------------------------------


def test_arm_targets_are_clamped_per_joint() -> None:
    cfg = SafetyConfig(arm_min_ddeg=(100, 0, 0, 0, 0, 300), arm_max_ddeg=(1700,) * 5 + (900,))
    safety = Safety(cfg, now_s=0.0)
    world(safety, 0.0)
    safety.request_mode(DriveMode.TELEOP, source="mqtt", now_s=0.0)
    numpy_int: Any = np.int64(5)
    got = safety.teleop_arm(targets_ddeg=[0, 1800, None, 899.6, numpy_int, 1000],
                            client="web-1", now_s=0.0)
    assert got == [100, 1700, None, 900, 5, 900]
    assert safety.owner == "teleop:web-1"  # arm commands hold the lease too
    assert safety.decide(now_s=0.0).left_mm_s == 0  # ...but do not move the tracks


@pytest.mark.parametrize(
    "targets", [[0] * 5, [0] * 7, [math.nan] + [0] * 5, [None] * 5 + [math.inf], ["1"] * 6]
)
def test_bad_arm_targets_raise_value_error(targets: list[object]) -> None:
    safety = in_mode(DriveMode.TELEOP)
    with pytest.raises(ValueError, match="targets_ddeg"):
        safety.teleop_arm(targets_ddeg=targets, client="c", now_s=0.0)  # type: ignore[arg-type]


def test_arm_is_refused_where_teleop_is() -> None:
    with pytest.raises(ModeRefusedError, match="the policy drives"):
        in_mode(DriveMode.AUTONOMOUS).teleop_arm(targets_ddeg=[0] * 6, client="c", now_s=0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, True, "1", None])
def test_non_finite_inputs_raise_value_error(bad: Any) -> None:
    safety = in_mode(DriveMode.SUPERVISED)
    calls = [
        lambda: safety.teleop(left_mm_s=bad, right_mm_s=0, client="c", now_s=0.0),
        lambda: safety.teleop(left_mm_s=0, right_mm_s=bad, client="c", now_s=0.0),
        lambda: safety.policy_step(left_mm_s=bad, right_mm_s=0, now_s=0.0),
        lambda: safety.decide(now_s=bad),
        lambda: safety.update(now_s=bad, link_up=True, battery=BatteryLevel.OK,
                              estop_latched_on_mcu=False, policy_ready=True),
        lambda: Safety(now_s=bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="must be a finite number"):
            call()  # type: ignore[no-untyped-call]
    assert safety.owner == "policy"  # a rejected teleop took nothing over


def test_a_clock_that_steps_back_counts_as_the_latest_time_seen() -> None:
    safety = in_mode(DriveMode.TELEOP, t=10.0)
    safety.teleop(left_mm_s=100, right_mm_s=100, client="c", now_s=10.0)
    assert safety.decide(now_s=10.4).reason == "teleop command timed out"
    assert safety.decide(now_s=10.1).reason == "teleop command timed out"  # not fresh again
    safety.teleop(left_mm_s=100, right_mm_s=100, client="c", now_s=10.2)  # stamped 10.4
    assert safety.decide(now_s=10.7).left_mm_s == 100


def test_transitions_are_kept_until_taken() -> None:
    safety = in_mode(DriveMode.TELEOP)
    safety.engage_estop(source="mqtt", now_s=1.0)
    assert [t.kind for t in safety.transitions] == ["estop"]
    assert [t.kind for t in safety.take_transitions()] == ["estop"]
    assert safety.transitions == []


def test_safety_errors_share_a_base() -> None:
    assert issubclass(NotOwnerError, SafetyError)
    assert issubclass(ModeRefusedError, SafetyError)


# --- properties over any call sequence ------------------------------------------------------

CLIENTS = ("web-1", "web-2", "mqtt")
DRIVING = {DriveMode.TELEOP, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED}
# Hypothesis favours 0.0, and a zero command cannot show a rule broken: mostly clear speeds.
speeds = st.one_of(st.sampled_from([-700.0, -250.0, 120.0, 400.0, 1500.0]),
                   st.floats(-2000, 2000, allow_nan=False))
often = st.sampled_from([True] * 9 + [False])  # a mostly healthy world, or nothing drives
batteries = st.sampled_from([BatteryLevel.OK] * 6 + [BatteryLevel.LOW] * 3
                            + [BatteryLevel.CRITICAL])
commands = st.one_of(
    st.tuples(st.just("teleop"), speeds, speeds, st.sampled_from(CLIENTS)),
    st.tuples(st.just("policy"), speeds, speeds),
)
ops = st.one_of(
    # Steps near the timeouts (0.3 s commands, 0.5 s lease) and anything up to 0.7 s; a few
    # backwards (time never runs backwards in Safety).
    st.tuples(st.just("time"), st.one_of(
        st.sampled_from([0.02, 0.02, 0.1, 0.29, 0.31, 0.49, 0.51, -0.03]),
        st.floats(-0.05, 0.7))),
    st.tuples(st.just("time"), st.sampled_from([0.02, 0.1, 0.2])),
    st.tuples(st.just("mode"), st.sampled_from(list(DriveMode))),
    st.tuples(st.just("mode"), st.sampled_from(sorted(DRIVING))),
    st.tuples(st.just("estop"), st.sampled_from([True] + [False] * 3)),
    st.tuples(st.just("lease"), st.sampled_from(["acquire", "renew", "release"]),
              st.sampled_from(CLIENTS)),
    commands, commands, commands,
    st.tuples(st.just("arm"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("world"), often, batteries, often.map(lambda b: not b), often),
    st.tuples(st.just("handback"), st.sampled_from(CLIENTS)),
    st.tuples(st.just("operator"), st.sampled_from(CLIENTS)),
)
# Operator timeouts that the 0.02..0.7 s steps cross often, the default, and off.
operator_timeouts = st.sampled_from([0.8, 2.0, 5.0, 0.0])
HEALTHY = ("world", True, BatteryLevel.OK, False, True)


@dataclass
class Model:
    """What the test saw accepted, and the world it last reported."""

    now_s: float = 0.0
    link_up: bool = False
    battery: BatteryLevel = BatteryLevel.OK
    mcu_estop: bool = False
    policy_ready: bool = False
    teleop: tuple[str, float, float, float] | None = None  # client, left, right, at
    policy: tuple[float, float, float] | None = None  # left, right, at
    operator_s: float | None = None  # when an operator was last heard
    battery_latched: bool = False  # critical seen, not yet acknowledged by asking for idle
    log: list[Transition] = field(default_factory=list)


def apply(safety: Safety, model: Model, op: tuple[object, ...]) -> None:  # noqa: PLR0912
    t = model.now_s
    match op:
        case ("time", float(dt)):
            model.now_s = max(t, t + dt)
            safety.decide(now_s=t + dt)  # backwards steps count as the latest time
        case ("mode", DriveMode() as mode):
            was = safety.mode
            safety.request_mode(mode, source="mqtt", now_s=t)
            if mode in (DriveMode.AUTONOMOUS, DriveMode.SUPERVISED):
                model.operator_s = t
            if was is DriveMode.LOW_BATTERY and mode is DriveMode.IDLE:
                model.battery_latched = False
        case ("estop", bool(engage)):
            if engage:
                safety.engage_estop(source="mqtt", now_s=t)
            else:
                safety.release_estop(source="mqtt", now_s=t)
        case ("lease", str(what), str(client)):
            if what == "acquire":
                safety.acquire_lease(client=client, now_s=t)
            elif what == "renew":
                safety.renew_lease(client=client, now_s=t)
            else:
                safety.release_lease(client=client, now_s=t)
                return  # giving the lease up is not presence
            model.operator_s = t
        case ("teleop", float(left), float(right), str(client)):
            safety.teleop(left_mm_s=left, right_mm_s=right, client=client, now_s=t)
            model.teleop = (client, left, right, t)
            model.operator_s = t
        case ("arm", str(client)):
            safety.teleop_arm(targets_ddeg=[900] * 6, client=client, now_s=t)
            model.operator_s = t
        case ("policy", float(left), float(right)):
            if safety.policy_step(left_mm_s=left, right_mm_s=right, now_s=t):
                model.policy = (left, right, t)
        case ("world", bool(link), BatteryLevel() as battery, bool(latched), bool(ready)):
            world(safety, t, link_up=link, battery=battery, estop_latched_on_mcu=latched,
                  policy_ready=ready)
            if not ready:  # a step planned on stale input must never drive
                model.policy = None
            if (not link and model.link_up) or (latched and not model.mcu_estop):
                model.teleop = model.policy = None  # a stop not chosen forgets commands
            model.link_up, model.battery, model.mcu_estop = link, battery, latched
            model.policy_ready = ready
            model.battery_latched |= battery is BatteryLevel.CRITICAL
        case ("handback", str(client)):
            safety.hand_back(client=client, now_s=t)
            model.operator_s = t
        case ("operator", str(client)):
            safety.operator_seen(source=client, now_s=t)
            model.operator_s = t
        case _:
            raise AssertionError(op)


def check(safety: Safety, model: Model, d: Decision) -> None:
    cfg, t = safety.config, model.now_s
    owner = safety.owner
    assert d.owner == owner
    assert d.mode is safety.mode
    assert owner in ("none", "policy") or owner.removeprefix("teleop:") in CLIENTS
    if safety.mode not in (DriveMode.TELEOP, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED):
        assert owner == "none"
    if safety.mode is DriveMode.AUTONOMOUS:
        assert owner == "policy"
    if owner.startswith("teleop:"):
        lease = safety.lease
        assert lease is not None
        assert lease.client == owner.removeprefix("teleop:")
        assert lease.expires_s >= t
    if model.battery is BatteryLevel.CRITICAL or model.battery_latched:
        # Only asking for idle once the MCU's latch is clear leaves low_battery.
        assert safety.mode in (DriveMode.ESTOP, DriveMode.LOW_BATTERY)
    timeout_s = cfg.operator_timeout_s
    if timeout_s > 0 and safety.mode in (DriveMode.AUTONOMOUS, DriveMode.SUPERVISED):
        assert model.operator_s is not None
        assert t - model.operator_s <= timeout_s  # autonomy only with an operator heard
    # Why the robot is where it is: what put it there, never a bare "idle" after a stop.
    changes = [tr for tr in model.log if tr.from_mode is not tr.to_mode]
    if safety.mode is DriveMode.IDLE:
        last = changes[-1] if changes else None
        forced = last is not None and last.kind not in ("mode", "estop_released")
        assert safety.mode_reason == (f"{last.kind}: {last.reason}" if forced and last
                                      else "idle")
    if safety.mode not in DRIVING:
        assert d.reason == safety.mode_reason
    else:
        assert safety.mode_reason is None
    derate = cfg.low_battery_derate if model.battery is BatteryLevel.LOW else 1.0
    assert d.derate == derate
    limit = cfg.max_track_mm_s * derate
    assert abs(d.left_mm_s) <= limit
    assert abs(d.right_mm_s) <= limit
    if (d.left_mm_s, d.right_mm_s) == (0, 0):
        return
    # The tracks move: every rule must allow it, and they move by exactly the command.
    assert d.reason is None
    assert safety.mode in (DriveMode.TELEOP, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED)
    assert model.link_up
    assert not model.mcu_estop
    if owner == "policy":
        assert model.policy_ready
        assert model.policy is not None
        left, right, at = model.policy
        assert t - at <= cfg.policy_timeout_s
    else:
        assert model.teleop is not None
        client, left, right, at = model.teleop
        assert owner == f"teleop:{client}"
        assert t - at <= cfg.teleop_timeout_s
    m = cfg.max_track_mm_s
    assert d.left_mm_s == int(min(max(left, -m), m) * derate)
    assert d.right_mm_s == int(min(max(right, -m), m) * derate)


@settings(max_examples=300)
@given(st.sampled_from(sorted(DRIVING)), st.lists(ops, max_size=60), operator_timeouts)
def test_the_tracks_move_only_when_every_rule_allows(
    start: DriveMode, sequence: list[tuple[object, ...]], operator_timeout_s: float
) -> None:
    safety = Safety(SafetyConfig(operator_timeout_s=operator_timeout_s), now_s=0.0)
    model = Model()
    # Most sequences would never leave idle: start from a healthy world in a driving mode.
    for op in [HEALTHY, ("mode", start), *sequence]:
        heard_s = model.operator_s
        with contextlib.suppress(SafetyError):  # a refusal is an answer: invariants hold
            apply(safety, model, op)
        taken = safety.take_transitions()
        for tr in taken:
            if tr.kind == "operator_lost":  # never early: only after a real silence
                assert heard_s is not None
                assert operator_timeout_s > 0
                assert tr.now_s - heard_s > operator_timeout_s
                assert tr.reason == f"no operator heard for {operator_timeout_s} s"
        model.log.extend(taken)
        check(safety, model, safety.decide(now_s=model.now_s))
    # The transitions chain: each starts in the mode the one before it ended in.
    modes = [DriveMode.IDLE] + [tr.to_mode for tr in model.log]
    assert [tr.from_mode for tr in model.log] == modes[:-1]
    assert modes[-1] is safety.mode
    assert all(a.now_s <= b.now_s for a, b in zip(model.log, model.log[1:], strict=False))


# Operator presence, exactly: in a healthy world, a model that knows the whole rule (the
# lease too, since a take-over's lease can end autonomy first) predicts every transition.
presence_ops = st.one_of(
    st.tuples(st.just("time"), st.one_of(
        st.sampled_from([0.1, 0.3, 0.49, 0.51, 0.79, 0.81, 1.0, 1.99, 2.01, 4.99, 5.01]),
        st.floats(0.0, 6.0))),
    st.tuples(st.just("heard")),
    st.tuples(st.just("mode"), st.sampled_from(
        [DriveMode.IDLE, DriveMode.AUTONOMOUS, DriveMode.SUPERVISED])),
    st.tuples(st.just("teleop")),
    st.tuples(st.just("policy")),
)


@dataclass
class PresenceModel:
    timeout_s: float
    lease_timeout_s: float
    now_s: float = 0.0
    mode: DriveMode = DriveMode.IDLE
    heard_s: float = 0.0
    lease_expires_s: float | None = None
    takeover: bool = False
    kinds: list[str] = field(default_factory=list)

    def advance(self, t: float) -> None:
        self.now_s = max(self.now_s, t)
        if self.lease_expires_s is not None and self.now_s > self.lease_expires_s:
            self.lease_expires_s = None
            if self.mode is DriveMode.SUPERVISED and self.takeover:
                self.set(DriveMode.IDLE, "lease_expired")
            else:
                self.kinds.append("lease_expired")
        if (self.timeout_s > 0 and self.mode in (DriveMode.AUTONOMOUS, DriveMode.SUPERVISED)
                and self.now_s - self.heard_s > self.timeout_s):
            self.set(DriveMode.IDLE, "operator_lost")

    def set(self, mode: DriveMode, kind: str) -> None:
        self.mode, self.takeover = mode, False
        self.kinds.append(kind)


@settings(max_examples=300)
@given(st.lists(presence_ops, min_size=5, max_size=60), operator_timeouts)
def test_autonomy_lasts_exactly_while_an_operator_is_heard(  # noqa: PLR0912 - one case per op
    sequence: list[tuple[object, ...]], operator_timeout_s: float
) -> None:
    cfg = SafetyConfig(operator_timeout_s=operator_timeout_s)
    safety, model = Safety(cfg, now_s=0.0), PresenceModel(operator_timeout_s, cfg.lease_timeout_s)
    world(safety, 0.0)
    for op in [("mode", DriveMode.AUTONOMOUS), *sequence]:
        t = model.now_s
        match op:
            case ("time", float(dt)):
                model.advance(t + dt)
                safety.decide(now_s=t + dt)
            case ("heard",):
                model.advance(t)
                model.heard_s = model.now_s
                safety.operator_seen(source="console", now_s=t)
            case ("mode", DriveMode() as mode):
                model.advance(t)
                if mode is not model.mode:
                    model.set(mode, "mode")
                if mode is not DriveMode.IDLE:
                    model.heard_s = model.now_s
                safety.request_mode(mode, source="console", now_s=t)
            case ("teleop",):
                model.advance(t)
                if model.mode is DriveMode.SUPERVISED:
                    if model.lease_expires_s is None:
                        model.kinds.append("lease_acquired")
                    model.lease_expires_s = model.now_s + model.lease_timeout_s
                    if not model.takeover:
                        model.takeover = True
                        model.kinds.append("takeover")
                    model.heard_s = model.now_s
                    safety.teleop(left_mm_s=50, right_mm_s=50, client="web-1", now_s=t)
                else:
                    with pytest.raises(ModeRefusedError):
                        safety.teleop(left_mm_s=50, right_mm_s=50, client="web-1", now_s=t)
            case ("policy",):
                model.advance(t)
                drives = model.mode is not DriveMode.IDLE and not model.takeover
                assert safety.policy_step(left_mm_s=80, right_mm_s=80, now_s=t) is drives
            case _:
                raise AssertionError(op)
        assert [tr.kind for tr in safety.take_transitions()] == model.kinds
        model.kinds.clear()
        assert safety.mode is model.mode
        d = safety.decide(now_s=model.now_s)
        if model.mode is not DriveMode.IDLE and model.timeout_s > 0:
            assert model.now_s - model.heard_s <= model.timeout_s
        if d.reason is not None and d.reason.startswith("operator_lost"):
            assert d.reason == f"operator_lost: no operator heard for {operator_timeout_s} s"


def test_the_stack_stops_autonomy_with_its_reason_and_leaves_other_modes_alone() -> None:
    safety = Safety(SafetyConfig(operator_timeout_s=0), now_s=0.0)
    safety.update(now_s=0.0, link_up=True, battery="ok", estop_latched_on_mcu=False,
                  policy_ready=True)
    safety.request_mode("autonomous", source="op", now_s=0.1)
    safety.stop_autonomy(kind="model_faulty", reason="3 bad outputs in a row",
                         source="policy", now_s=0.2)
    assert safety.mode_reason == "model_faulty: 3 bad outputs in a row"
    assert safety.decide(now_s=0.2).mode is DriveMode.IDLE
    assert safety.decide(now_s=0.2).reason == safety.mode_reason
    assert safety.take_transitions()[-1].kind == "model_faulty"
    safety.request_mode("teleop", source="op", now_s=0.3)
    safety.stop_autonomy(kind="part_failed", reason="x", source="runtime", now_s=0.4)
    assert safety.decide(now_s=0.4).mode is DriveMode.TELEOP  # the operator drives
    with pytest.raises(ValueError, match="not a stop"):
        safety.stop_autonomy(kind="mode", reason="x", source="runtime", now_s=0.5)
