"""Outages, and the freshness of what is published meanwhile and after.

MCU: the emulator is paused (SIGSTOP: the port stays open, nothing comes), as a hung MCU
or USB link looks. Odometry and faults must then say their data is old (``stale``, an
``age_s`` that grows), not repeat the last values with a fresh stamp, and the mode must
say the link loss. Broker: Mosquitto stops and starts again on the same port; what the
runtime queued meanwhile must arrive newest first per topic, and nothing older than the
backlog limit (2 s) at all.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time

from tests.onboard.helpers import run

from .stack import (
    Message,
    Operator,
    Stack,
    as_float,
    board_until,
    driving_forward,
    emulator_pid,
    heartbeats,
)

OUTAGE_S = 3.0
MAX_BACKLOG_AGE_S = 2.0  # MqttConfig.max_backlog_age_s' default
SLACK_S = 1.0  # delivery and scheduling on a loaded machine


def test_during_an_mcu_outage_odometry_and_faults_say_they_are_stale(stack: Stack) -> None:
    async def main() -> None:
        async with stack.operator() as op, heartbeats(op):
            stack.start_runtime()
            await stack.ready(op)
            await op.request_mode("autonomous")
            await board_until(stack.board, driving_forward, 10.0, "driving forward")
            before = await op.wait("telemetry/odometry", after=op.mark())
            pid = emulator_pid(stack.port)
            start = op.mark()
            os.kill(pid, signal.SIGSTOP)
            paused_s = time.monotonic()
            try:
                lost = await op.wait("telemetry/link", lambda m: m.get("connected") is False,
                                     after=start, timeout_s=10.0, what="disconnected")
                await op.wait("telemetry/odometry",
                              lambda m: m.received_s > paused_s + OUTAGE_S, after=start,
                              timeout_s=OUTAGE_S + 5.0, what=f"{OUTAGE_S} s into the outage")
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = op.mark()
            for topic in ("telemetry/odometry", "telemetry/faults"):
                check_stale(between(op, topic, op.after(lost), resumed),
                            between(op, topic, start, resumed), paused_s, topic)
            mode = [m for m in between(op, "telemetry/mode", start, resumed)
                    if m.get("mode") == "idle"]
            assert mode, "autonomy did not end with the link"
            assert "link" in str(mode[-1].get("reason")).lower(), (
                f"the mode's reason after link loss: {mode[-1].get('reason')!r}")
            # Before and after: fresh.
            assert before.get("stale") is False, before.body
            assert as_float(before.get("age_s")) < 1.0, before.body
            back = await op.wait("telemetry/link", lambda m: m.get("connected") is True,
                                 after=resumed, timeout_s=15.0, what="connected again")
            fresh = await op.wait("telemetry/odometry", after=op.after(back), timeout_s=5.0)
            assert fresh.get("stale") is False, fresh.body
            assert as_float(fresh.get("age_s")) < 1.0, fresh.body

    try:
        run(main, guard_s=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- runtime log:\n{stack.log_tail()}") from exc


def between(op: Operator, topic: str, start: int, end: int) -> list[Message]:
    return [m for m in op.messages[start:end] if m.topic == topic]


def check_stale(during: list[Message], since_pause: list[Message], paused_s: float,
                topic: str) -> None:
    """``during`` (after the link was reported lost, before the MCU came back): every record
    says stale and ages with the wall clock; none since the pause claims younger data."""
    assert len(during) >= 3, (
        f"{topic}: {len(during)} records during the outage (say stale, do not fall silent)")
    bad = [m.body for m in during if m.get("stale") is not True]
    assert not bad, f"{topic}: records during the MCU outage not marked stale: {bad[:2]}"
    ages = [as_float(m.get("age_s")) for m in during]
    span_s = during[-1].received_s - during[0].received_s
    grows = all(b >= a for a, b in itertools.pairwise(ages))
    assert grows, f"{topic}: age_s goes down during the outage: {ages}"
    assert ages[-1] - ages[0] >= span_s - SLACK_S, (
        f"{topic}: age_s does not grow with the outage ({span_s:.1f} s): {ages}")
    for m in since_pause:
        gone_s = m.received_s - paused_s  # how long the MCU had been silent
        if m.get("age_s") is not None:
            assert as_float(m.get("age_s")) >= gone_s - SLACK_S, (
                f"{topic}: age_s {m.get('age_s')} while the MCU had been silent {gone_s:.2f} s")


def test_after_a_broker_outage_the_newest_goes_first_and_nothing_old(stack: Stack) -> None:
    broker = stack.broker
    # The operator's session (and what is sent to it while it is away) outlives the
    # broker's restart, so that it sees everything the robot sends after reconnecting,
    # whichever of the two reconnects first.
    state = stack.directory / "broker-state"
    state.mkdir()
    broker.stop()
    with broker.conf.open("a") as conf:
        conf.write(f"persistence true\npersistence_location {state}/\n"
                   "queue_qos0_messages true\nmax_queued_messages 100000\n")
    broker.start()

    async def main() -> None:
        op = stack.operator(client_id="faults-operator", clean_session=False)
        await op.connect()
        try:
            stack.start_runtime()
            await stack.ready(op)
            await op.wait("telemetry/odometry", after=op.mark())
            broker.stop()
            down_unix_s = time.time()
            await op.disconnect()
            await asyncio.sleep(2 * MAX_BACKLOG_AGE_S)  # the outage; the robot queues
            stack.check_running()
            up_unix_s = time.time()
            broker.start()
            start = op.mark()
            await op.connect(subscribe=False)  # the session kept the subscriptions
            online = await op.wait("status", lambda m: m.body == "online", after=start,
                                   timeout_s=10.0, what="online again")
            await op.wait("telemetry/odometry", after=op.after(online), timeout_s=10.0)
            # Two more seconds of the stream: every backlog message has come by then.
            t0 = time.monotonic()
            await op.wait("telemetry/odometry", lambda m: m.received_s > t0 + 2.0,
                          after=op.after(online), timeout_s=10.0)
            check_backlog(op, op.after(online), down_unix_s, up_unix_s)
        finally:
            await op.disconnect()

    try:
        run(main, guard_s=90)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- runtime log:\n{stack.log_tail()}") from exc


def check_backlog(op: Operator, after: int, down_unix_s: float, up_unix_s: float) -> None:
    """Telemetry after the reconnect: nothing older than the backlog limit when the broker
    came back, and per topic the first is the newest of what was queued."""
    telemetry = [m for m in op.messages[after:] if m.topic.startswith("telemetry/")]
    stamps = {(m.topic, as_float(m.get("stamp_unix_s"))) for m in telemetry}
    old = sorted((round(up_unix_s - s, 2), t) for t, s in stamps
                 if s < up_unix_s - MAX_BACKLOG_AGE_S - SLACK_S)
    assert not old, (f"{len(old)} messages older than {MAX_BACKLOG_AGE_S} s arrived after "
                     f"the reconnect; (age at reconnect s, topic): {old[-5:]}")
    for topic in sorted({m.topic for m in telemetry}):
        sent = [as_float(m.get("stamp_unix_s")) for m in telemetry if m.topic == topic]
        queued = [s for s in sent if s < up_unix_s]  # made while the broker was down
        if len(queued) >= 2:
            assert sent[0] >= max(queued), (
                f"{topic}: the first message after the reconnect is {max(queued) - sent[0]:.2f}"
                f" s older than the newest queued one (down for {up_unix_s - down_unix_s:.1f} s)")
