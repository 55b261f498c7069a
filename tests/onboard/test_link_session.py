"""Tests of ``HostSession``, the MCU link's pure protocol logic: no port, no event loop.

A scripted MCU (``Mcu``) encodes the frames the MCU would send and decodes what the
session queued; time is a plain float handed to every call, so timings are exact: HELLO
retries, heartbeats, the TELEMETRY timeout and request timeouts happen at their deadline
and not a nanosecond before. A property test feeds any bytes, any well-formed MCU
message, answers to the host's own requests, commands, port failures and time in any
order, and checks that nothing raises out of the session and that it stays consistent.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zima.onboard.link_config import LinkConfig
from zima.onboard.link_errors import (
    IncompatibleMcuError,
    LinkDownError,
    LinkError,
    NoAnswerError,
    PortError,
    RefusedError,
)
from zima.onboard.link_events import (
    Answered,
    DriveRefused,
    HandshakeFailed,
    LinkEvent,
    McuLog,
    NewState,
    RequestFailed,
    StatusChanged,
)
from zima.onboard.link_session import HostSession, Phase
from zima.protocol import (
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    SCHEMA_HASH,
    Ack,
    Arm,
    ArmState,
    Board,
    Clear,
    Drive,
    Estop,
    Fault,
    Frame,
    FrameDecoder,
    FrameEncoder,
    Heartbeat,
    Hello,
    Info,
    Log,
    LogLevel,
    Message,
    ParamGet,
    ParamId,
    ParamSet,
    ParamValue,
    ResetCause,
    Result,
    State,
    Telemetry,
)

E = TypeVar("E")
CFG = LinkConfig(port=Path("/dev/zima-test"))
INFO = Info(
    protocol_version=PROTOCOL_VERSION, schema_hash=SCHEMA_HASH, fw_major=0, fw_minor=1,
    fw_patch=0, build_id=0x1A2B3C4D, board=Board.MEGA2560, capabilities=0x1F,
    max_payload=MAX_PAYLOAD, reset_cause=ResetCause.POWER_ON,
)  # fmt: skip
QUIET = LinkConfig(port=CFG.port, telemetry_timeout_s=60.0)  # no TELEMETRY needed
ARM_HOME = Arm(900, 0, 900, 0, 900, 0, 900, 0, 900, 0, 900, 0)


def telemetry(mcu_time_ms: int, state: State = State.IDLE) -> Telemetry:
    return Telemetry(mcu_time_ms, 0, 0, 0, 0, 0, 0, 0, 0, 12_000, state, 0, 0, 0, 0, 0)


class Mcu:
    """The MCU's end of the line, scripted: its frames in, the host's frames out."""

    def __init__(self) -> None:
        self.encoder = FrameEncoder()
        self.decoder = FrameDecoder()

    def says(self, *messages: Message) -> bytes:
        return b"".join(self.encoder.encode(m) for m in messages)

    def hears(self, session: HostSession) -> list[Frame]:
        """What the session queued since last asked: whole, valid frames only."""
        events = self.decoder.feed(session.data_to_send())
        assert all(isinstance(e, Frame) for e in events), events
        return [e for e in events if isinstance(e, Frame)]


def of(kind: type[E], event: object) -> E:
    """``event``, checked to be a ``kind``."""
    assert isinstance(event, kind), event
    return event


def messages(frames: list[Frame]) -> list[Message]:
    return [f.message for f in frames]


def connected(
    now_s: float = 0.0, params: dict[int, float] | None = None, config: LinkConfig = CFG
) -> tuple[HostSession, Mcu]:
    """A session that completed its handshake at ``now_s`` (nothing left to hear)."""
    session, mcu = HostSession(config, now_s), Mcu()
    session.params.update(params or {})
    session.open(now_s)
    hello = mcu.hears(session)[0]
    events = session.receive(mcu.says(INFO, Ack(Hello.MSG_ID, hello.seq, Result.OK)), now_s)
    for param, value in (params or {}).items():
        sent = mcu.hears(session)[0]
        assert sent.message == ParamSet(param, value)
        events += session.receive(mcu.says(ParamValue(param, value)), now_s)
    assert [type(e) for e in events] == [StatusChanged]
    assert session.phase is Phase.UP
    mcu.hears(session)  # the first HEARTBEAT
    return session, mcu


# ---- the handshake ----------------------------------------------------------------------


def test_handshake_transcript() -> None:
    session, mcu = HostSession(CFG, now_s=5.0), Mcu()
    assert session.status.reason == "not started"
    assert session.open(now_s=5.0) == []
    wire = session.data_to_send()
    assert wire.startswith(b"\x00")  # ends whatever garbage the MCU's decoder holds
    assert mcu.decoder.feed(wire) == [Frame(0, Hello(PROTOCOL_VERSION, SCHEMA_HASH))]

    assert session.receive(mcu.says(INFO), now_s=5.01) == []  # INFO alone opens nothing
    assert not session.status.connected
    events = session.receive(mcu.says(Ack(Hello.MSG_ID, 0, Result.OK)), now_s=5.02)
    assert len(events) == 1
    assert isinstance(events[0], StatusChanged)
    status = events[0].status
    assert (status.connected, status.reason, status.since_s) == (True, "handshake done", 5.02)
    assert (status.info, status.connects, status.disconnects) == (INFO, 1, 0)
    assert session.phase is Phase.UP
    assert mcu.hears(session) == [Frame(1, Heartbeat(5020))]  # at once, host time in ms


def test_hello_repeats_until_the_handshake_timeout_exactly() -> None:
    session, mcu = HostSession(CFG, now_s=10.0), Mcu()
    session.open(now_s=10.0)
    hellos: list[float] = [10.0] * len(mcu.hears(session))
    events: list[LinkEvent] = []
    while (deadline := session.next_deadline_s()) is not None:
        assert session.tick(deadline - 1e-9) == []  # nothing is due before its time
        events = session.tick(deadline)
        hellos += [deadline] * len(mcu.hears(session))
    assert hellos == [10.0 + 0.25 * i for i in range(20)]  # every hello_retry_s ...
    assert len(events) == 1
    assert isinstance(events[0], HandshakeFailed)
    error = events[0].error
    assert isinstance(error, NoAnswerError)
    assert str(error) == "no answer from the MCU on /dev/zima-test in 5.0 s"
    assert session.phase is Phase.DOWN
    assert not session.status.connected


def test_info_is_kept_across_hello_retries_until_its_ack() -> None:
    session, mcu = HostSession(CFG, now_s=0.0), Mcu()
    session.open(0.0)
    mcu.hears(session)
    session.receive(mcu.says(INFO), 0.1)
    session.tick(0.25)
    assert messages(mcu.hears(session)) == [Hello(PROTOCOL_VERSION, SCHEMA_HASH)]
    events = session.receive(mcu.says(Ack(Hello.MSG_ID, 0, Result.OK)), 0.3)
    assert [type(e) for e in events] == [StatusChanged]


def test_another_schema_is_incompatible_for_good() -> None:
    session, mcu = HostSession(CFG, 0.0), Mcu()
    session.open(0.0)
    mcu.hears(session)
    other = replace(INFO, schema_hash=SCHEMA_HASH ^ 1)
    events = session.receive(mcu.says(other), 0.1)
    assert [type(e) for e in events] == [HandshakeFailed, StatusChanged]
    error = of(HandshakeFailed, events[0]).error
    assert isinstance(error, IncompatibleMcuError)
    assert f"schema 0x{SCHEMA_HASH:08x}" in str(error)  # both sides named
    assert f"schema 0x{SCHEMA_HASH ^ 1:08x}" in str(error)
    assert session.phase is Phase.FAILED
    assert session.failure is error
    assert session.status.reason.startswith("incompatible firmware: ")
    assert session.next_deadline_s() is None  # no more HELLOs
    with pytest.raises(IncompatibleMcuError):
        session.drive(0, 0)
    with pytest.raises(IncompatibleMcuError):
        session.handshake(0.2)


def test_a_refused_hello_after_a_matching_info_is_incompatible() -> None:
    session, mcu = HostSession(CFG, 0.0), Mcu()
    session.open(0.0)
    mcu.hears(session)
    events = session.receive(mcu.says(INFO, Ack(Hello.MSG_ID, 0, Result.VERSION_MISMATCH)), 0.1)
    error = of(HandshakeFailed, events[0]).error
    assert isinstance(error, IncompatibleMcuError)
    assert "refused HELLO (VERSION_MISMATCH) although its INFO matches" in str(error)
    assert session.phase is Phase.FAILED


# ---- keeping the session ----------------------------------------------------------------


def test_heartbeats_and_the_telemetry_timeout_by_the_clock() -> None:
    session, mcu = connected(0.0)
    heartbeats: list[float] = []
    for k in range(1, 51):  # TELEMETRY every 20 ms for 1 s, then silence
        arrival_s = k / 50
        while (deadline := session.next_deadline_s()) is not None and deadline <= arrival_s:
            session.tick(deadline)
            heartbeats += [deadline] * len(mcu.hears(session))
        events = session.receive(mcu.says(telemetry(k * 20)), arrival_s)
        assert [type(e) for e in events] == [NewState]
    assert heartbeats == [0.5, 1.0]
    assert session.next_deadline_s() == 1.25  # the last TELEMETRY at 1.0 s + 250 ms
    assert session.tick(1.25 - 1e-9) == []
    events = session.tick(1.25)
    lost = [e for e in events if isinstance(e, StatusChanged)]
    assert len(lost) == 1
    assert (lost[0].status.connected, lost[0].status.since_s) == (False, 1.25)
    assert lost[0].status.reason == "no TELEMETRY for 250 ms"
    assert lost[0].status.disconnects == 1
    assert mcu.hears(session) == []
    assert session.next_deadline_s() is None  # down: the driver decides what next


def test_a_heartbeat_carries_host_time_in_ms() -> None:
    session, mcu = connected(100.0)
    session.receive(mcu.says(telemetry(20)), 100.2)
    session.receive(mcu.says(telemetry(40)), 100.4)
    session.tick(100.5)
    assert messages(mcu.hears(session)) == [Heartbeat(100_500)]


def test_a_lower_telemetry_rate_stretches_the_timeout() -> None:
    session, mcu = connected(0.0)
    request = session.set_param(ParamId.telemetry_hz, 2, 0.0)
    sent = mcu.hears(session)[0]
    answer = mcu.says(Ack(ParamSet.MSG_ID, sent.seq, 0), ParamValue(13, 2.0), telemetry(20))
    events = session.receive(answer, 0.1)
    assert events[0] == Answered(request, 2.0)
    assert session.telemetry_timeout_s == 1.5  # three periods of 2 Hz
    assert session.next_deadline_s() == 0.5  # the heartbeat; the timeout is at 1.6 s
    session.tick(0.5)
    session.tick(1.0)
    assert session.tick(1.5) == []  # a heartbeat only
    assert session.status.connected
    assert session.next_deadline_s() == pytest.approx(1.6)
    assert not of(StatusChanged, session.tick(1.6)[0]).status.connected


@pytest.mark.parametrize(
    ("second", "reason"),
    [
        (telemetry(60, State.WAIT_HOST), "the MCU has no session"),
        (telemetry(20), "the MCU clock went back (40 -> 20 ms): reset"),
    ],
)
def test_telemetry_that_tells_of_a_reset_loses_the_link(second: Telemetry, reason: str) -> None:
    session, mcu = connected(0.0)
    session.receive(mcu.says(telemetry(40)), 0.02)
    events = session.receive(mcu.says(second), 0.04)
    assert [type(e) for e in events] == [StatusChanged, NewState]
    assert reason in of(StatusChanged, events[0]).status.reason
    assert session.state is not None
    assert session.state.telemetry == second


def test_no_session_loses_the_link_and_a_new_handshake_sets_the_parameters_again() -> None:
    session, mcu = connected(0.0)
    request = session.set_param(ParamId.pid_kp, 0.8, 0.1)
    sent = mcu.hears(session)[0]
    session.receive(mcu.says(Ack(ParamSet.MSG_ID, sent.seq, Result.OK)), 0.11)
    (answer,) = session.receive(mcu.says(ParamValue(ParamId.pid_kp, 0.8)), 0.12)
    assert of(Answered, answer).request == request
    assert of(Answered, answer).value == pytest.approx(0.8)
    arm = session.request(ARM_HOME, 0.2)
    session.drive(100, 100)
    drive = mcu.hears(session)[-1]
    assert drive.message == Drive(100, 100)
    events = session.receive(mcu.says(Ack(Drive.MSG_ID, drive.seq, Result.NO_SESSION)), 0.3)
    assert [type(e) for e in events] == [StatusChanged, RequestFailed]  # no DriveRefused
    assert "NO_SESSION" in session.status.reason
    failed = of(RequestFailed, events[1])
    assert failed.request == arm
    assert isinstance(failed.error, LinkDownError)
    with pytest.raises(LinkDownError, match="NO_SESSION"):
        session.drive(0, 0)

    assert session.handshake(0.4) == []  # on the same port: the sequence numbers go on
    hello = mcu.hears(session)[0]
    assert hello.seq == drive.seq + 1
    reset = replace(INFO, reset_cause=ResetCause.EXTERNAL)
    assert session.receive(mcu.says(reset, Ack(Hello.MSG_ID, hello.seq, 0)), 0.5) == []
    restore = mcu.hears(session)  # the MCU forgot pid_kp: set again before the link is up
    assert messages(restore) == [ParamSet(ParamId.pid_kp, 0.8)]
    assert not session.status.connected
    session.receive(mcu.says(Ack(ParamSet.MSG_ID, restore[0].seq, 0)), 0.55)
    events = session.receive(mcu.says(ParamValue(ParamId.pid_kp, 0.8)), 0.6)
    status = of(StatusChanged, events[0]).status
    assert (status.connected, status.connects, status.disconnects) == (True, 2, 1)
    assert status.info == reset


def test_an_estop_sent_while_down_is_answered_across_a_new_handshake() -> None:
    session, mcu = connected(0.0)
    session.tick(0.25)  # no TELEMETRY: lost
    assert not session.status.connected
    estop = session.request(Estop(), 0.3)  # the MCU takes ESTOP without a session
    assert session.handshake(0.3) == []
    estop_frame, hello = mcu.hears(session)
    events = session.receive(mcu.says(Ack(Estop.MSG_ID, estop_frame.seq, Result.OK)), 0.31)
    assert events == [Answered(estop, Ack(Estop.MSG_ID, estop_frame.seq, Result.OK))]
    assert hello.message == Hello(PROTOCOL_VERSION, SCHEMA_HASH)


def test_a_parameter_that_cannot_be_set_again_fails_the_handshake() -> None:
    session, mcu = connected(0.0, params={ParamId.stall_ms: 700.0})
    session.port_failed("the device vanished", 1.0)
    session.close(LinkDownError("closed"), 1.0)
    session.open(2.0)
    hello = mcu.hears(session)[0]
    session.receive(mcu.says(INFO, Ack(Hello.MSG_ID, hello.seq, 0)), 2.1)
    assert messages(mcu.hears(session)) == [ParamSet(ParamId.stall_ms, 700.0)]
    events = session.tick(2.6)  # request_timeout_s after it went out
    assert [type(e) for e in events] == [HandshakeFailed]
    error = of(HandshakeFailed, events[0]).error
    assert str(error) == f"no answer to PARAM_SET {int(ParamId.stall_ms)}"
    assert session.phase is Phase.DOWN
    assert not session.status.connected


# ---- requests ---------------------------------------------------------------------------


def test_requests_are_answered_refused_or_timed_out_exactly() -> None:
    session, mcu = connected(1.0, config=QUIET)
    arm = session.request(ARM_HOME, 1.0)
    clear = session.request(Clear(Fault.BATT_CRITICAL), 1.0)
    estop = session.request(Estop(), 1.0)
    arm_seq, clear_seq, _ = (f.seq for f in mcu.hears(session))
    events = session.receive(
        mcu.says(Ack(Arm.MSG_ID, arm_seq, 0), Ack(Clear.MSG_ID, clear_seq, 7)), 1.1
    )
    assert events[0] == Answered(arm, Ack(Arm.MSG_ID, arm_seq, 0))
    refused = events[1]
    assert isinstance(refused, RequestFailed)
    assert refused.request == clear
    assert isinstance(refused.error, RefusedError)
    assert refused.error.result == Result.CONDITION_ACTIVE
    assert str(refused.error) == "the MCU refused CLEAR: CONDITION_ACTIVE"
    assert session.next_deadline_s() == 1.5
    assert [e for e in session.tick(1.5 - 1e-9) if isinstance(e, RequestFailed)] == []
    failed = [e for e in session.tick(1.5) if isinstance(e, RequestFailed)]
    assert [f.request for f in failed] == [estop]
    assert str(failed[0].error) == "no ACK to ESTOP in 0.5 s"
    assert session.status.connected  # a lost answer is not a lost link


def test_parameter_requests_go_out_one_at_a_time() -> None:
    session, mcu = connected(0.0)
    first = session.set_param(ParamId.pid_ki, 5.0, 0.0)
    second = session.get_param(99, 0.0)
    third = session.get_param(ParamId.pid_ki, 0.0)
    dropped = session.get_param(ParamId.pid_kd, 0.0)
    session.cancel(dropped)  # nobody waits: it never goes out
    sent = mcu.hears(session)
    assert messages(sent) == [ParamSet(ParamId.pid_ki, 5.0)]  # PARAM_VALUE names no seq
    assert session.receive(mcu.says(Ack(ParamSet.MSG_ID, sent[0].seq, 0)), 0.01) == []
    assert mcu.hears(session) == []  # the OK ACK: PARAM_VALUE follows
    assert session.receive(mcu.says(ParamValue(ParamId.pid_ki, 5.0)), 0.02) == [
        Answered(first, 5.0)
    ]
    sent = mcu.hears(session)
    assert messages(sent) == [ParamGet(99)]
    events = session.receive(mcu.says(Ack(ParamGet.MSG_ID, sent[0].seq, 9)), 0.03)
    assert isinstance(events[0], RequestFailed)
    assert events[0].request == second
    assert isinstance(events[0].error, RefusedError)
    assert events[0].error.result == Result.UNKNOWN_PARAM
    assert messages(mcu.hears(session)) == [ParamGet(ParamId.pid_ki)]
    assert session.receive(mcu.says(ParamValue(ParamId.pid_ki, 5.0)), 0.04) == [
        Answered(third, 5.0)
    ]
    assert mcu.hears(session) == []
    assert session.params == {ParamId.pid_ki: 5.0}  # set again after a reconnect


def test_a_drive_refusal_is_raised_by_the_next_drive_only() -> None:
    session, mcu = connected(0.0)
    session.drive(900, 900)
    seq = mcu.hears(session)[0].seq
    events = session.receive(mcu.says(Ack(Drive.MSG_ID, seq, Result.OUT_OF_RANGE)), 0.01)
    assert [type(e) for e in events] == [DriveRefused]
    with pytest.raises(RefusedError, match="refused DRIVE: OUT_OF_RANGE") as caught:
        session.drive(100, 100)
    assert caught.value.result == Result.OUT_OF_RANGE
    assert mcu.hears(session) == []  # the refused call sent nothing ...
    session.drive(100, 100)  # ... and the next one sends again
    assert messages(mcu.hears(session)) == [Drive(100, 100)]


def test_commands_need_the_session_estop_only_a_port() -> None:
    session = HostSession(CFG, 0.0)
    with pytest.raises(LinkDownError, match="not started"):
        session.drive(0, 0)
    with pytest.raises(LinkDownError, match="not open"):
        session.request(Estop(), 0.0)
    session.open(0.0)
    session.data_to_send()
    session.request(Estop(), 0.0)  # the MCU takes ESTOP without a session
    with pytest.raises(LinkDownError):
        session.request(ARM_HOME, 0.0)
    with pytest.raises(LinkDownError):
        session.set_param(ParamId.pid_kp, 1.0, 0.0)


def test_a_failed_port_loses_the_link_and_fails_what_waits() -> None:
    session, _mcu = connected(0.0)
    request = session.get_param(ParamId.pid_kp, 0.1)
    session.drive(10, 10)
    events = session.port_failed("reading /dev/zima-test: the device vanished", 0.2)
    assert [type(e) for e in events] == [StatusChanged, RequestFailed]
    assert "vanished" in session.status.reason
    failed = of(RequestFailed, events[1])
    assert failed.request == request
    assert isinstance(failed.error, PortError)
    assert session.data_to_send() == b""  # what was queued never goes out
    with pytest.raises(LinkDownError, match="not open"):
        session.request(Estop(), 0.3)
    with pytest.raises(LinkDownError, match="not open"):
        session.handshake(0.3)


def test_a_closing_host_stops_the_tracks_unless_the_mcu_is_estopped() -> None:
    session, mcu = connected(0.0)
    session.stop_tracks()
    assert messages(mcu.hears(session)) == [Drive(0, 0)]
    session.receive(mcu.says(telemetry(20, State.ESTOP)), 0.02)
    session.stop_tracks()  # the MCU would refuse it
    assert mcu.hears(session) == []
    events = session.close(LinkDownError("the link is closed"), 0.1, reason="closed")
    (closed,) = events
    status = of(StatusChanged, closed).status
    assert (status.connected, status.reason) == (False, "closed")
    assert session.phase is Phase.CLOSED


def test_mcu_lines_and_arm_state_are_passed_on() -> None:
    session, mcu = connected(0.0)
    events = session.receive(mcu.says(Log(LogLevel.WARNING, b"battery \xfflow")), 0.1)
    assert events == [McuLog(LogLevel.WARNING, "battery \ufffdlow")]
    assert session.receive(mcu.says(ArmState(1, 2, 3, 4, 5, 6)), 0.2) == []
    assert session.arm_state == ArmState(1, 2, 3, 4, 5, 6)


def test_health_counts_rejected_frames_across_reopened_ports() -> None:
    session, mcu = connected(0.0)
    session.receive(b"\x01\x02\x03\x00" + mcu.says(telemetry(20)), 0.02)
    session.close(LinkDownError("reopening"), 0.03)
    session.open(0.04)
    events = session.receive(b"\x7f\x00" + Mcu().says(telemetry(40)), 0.05)
    health = next(e for e in events if isinstance(e, NewState)).state.health
    assert (health.rx_rejected, health.telemetry_frames) == (2, 2)


# ---- any input --------------------------------------------------------------------------

U8, U16, U32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
MCU_MESSAGES = st.one_of(
    st.builds(
        Telemetry, U32, st.just(0), st.just(0), st.just(0), st.just(0), st.just(0),
        st.just(0), st.just(0), st.just(0), U16, st.integers(0, 6), U16, U16, U16, U16, U16,
    ),
    st.builds(Ack, st.sampled_from([1, 3, 4, 5, 6, 7, 8, 0x42]), U8, st.integers(0, 10)),
    st.builds(ParamValue, st.integers(0, 20), st.floats(width=32)),
    st.sampled_from([INFO, replace(INFO, protocol_version=9)]),
    st.builds(Log, st.integers(0, 6), st.binary(max_size=48)),
    st.builds(ArmState, U16, U16, U16, U16, U16, U16),
)  # fmt: skip
RESULTS = st.sampled_from([Result.OK] * 4 + [Result.OUT_OF_RANGE, Result.NO_SESSION, 9])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("bytes"), st.binary(max_size=80)),
        st.tuples(st.just("message"), MCU_MESSAGES),
        st.tuples(st.just("answer"), RESULTS, st.floats(-1e3, 1e3, width=32)),
        st.tuples(st.just("wait"), st.floats(0.0, 3.0)),
        st.tuples(st.just("deadline")),
        st.tuples(st.just("command"), st.sampled_from(["drive", "arm", "estop", "set", "get"])),
        st.tuples(st.just("port"), st.sampled_from(["handshake", "failed", "reopen"])),
    ),
    max_size=60,
)


class Harness:
    """Plays one step at a time against a session and checks it after each."""

    def __init__(self, start_connected: bool) -> None:
        if start_connected:
            self.session, self.mcu = connected(0.0, params={ParamId.pid_kp: 0.7})
        else:
            self.session, self.mcu = HostSession(CFG, 0.0), Mcu()
            self.session.open(0.0)
        self.now_s = 0.0
        self.issued: list[int] = []
        self.outcomes: Counter[int] = Counter()
        self.last_heard: list[Frame] = []

    def take(self, events: list[LinkEvent]) -> None:
        for event in events:
            if isinstance(event, Answered | RequestFailed):
                self.outcomes[event.request] += 1
        session = self.session
        assert session.status.connected == (session.phase is Phase.UP)
        heard = self.mcu.hears(session)  # every byte queued is part of a valid frame
        self.last_heard = heard or self.last_heard
        deadline = session.next_deadline_s()
        assert deadline is None or deadline > self.now_s  # what is due was done

    def step(self, step: tuple[object, ...]) -> None:
        session = self.session
        match step:
            case ("bytes", bytes() as data):
                self.take(session.receive(data, self.now_s))
            case ("message", Message() as msg):
                self.take(session.receive(self.mcu.says(msg), self.now_s))
            case ("answer", int() as result, float() as value) if self.last_heard:
                self.take(
                    session.receive(
                        self.mcu.says(*answer(self.last_heard[-1], result, value)), self.now_s
                    )
                )
            case ("wait", float() as wait_s):
                self.now_s += wait_s
                self.take(session.tick(self.now_s))
            case ("deadline",):
                self.now_s = max(self.now_s, session.next_deadline_s() or self.now_s)
                self.take(session.tick(self.now_s))
            case ("command", str() as name):
                with contextlib.suppress(LinkError):
                    request = command(session, name, self.now_s)
                    if request is not None:
                        self.issued.append(request)
                self.take([])
            case ("port", "handshake"):
                with contextlib.suppress(LinkError):
                    self.take(session.handshake(self.now_s))
            case ("port", "failed"):
                self.take(session.port_failed("the device vanished", self.now_s))
                assert session.data_to_send() == b""
            case ("port", "reopen"):
                self.take(session.close(LinkDownError("reopening"), self.now_s))
                if session.failure is None:
                    self.mcu = Mcu()  # a new port: both codecs start over
                    self.take(session.open(self.now_s))


def answer(asked: Frame, result: int, value: float) -> list[Message]:
    """The MCU's answer to the host's last frame: its ACK, after INFO for a HELLO, before
    PARAM_VALUE for a parameter request it takes."""
    reply: list[Message] = [Ack(asked.message.MSG_ID, asked.seq, result)]
    if isinstance(asked.message, Hello):
        reply.insert(0, INFO)
    if isinstance(asked.message, ParamSet | ParamGet) and result == Result.OK:
        reply.append(ParamValue(asked.message.param_id, value))
    return reply


def command(session: HostSession, name: str, now_s: float) -> int | None:
    """One command; returns its request id (DRIVE has none)."""
    if name == "drive":
        session.drive(100, -100)
        return None
    if name == "arm":
        return session.request(ARM_HOME, now_s)
    if name == "estop":
        return session.request(Estop(), now_s)
    if name == "set":
        return session.set_param(ParamId.max_speed_mm_s, 500.0, now_s)
    return session.get_param(ParamId.watchdog_ms, now_s)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS, start_connected=st.booleans())
@example(  # the TELEMETRY timeout was once checked by a difference rounding below it
    steps=[("wait", 0.99999), ("answer", Result.OK, 0.0), ("deadline",)], start_connected=False
)
def test_any_input_in_any_order_never_raises_and_keeps_the_session_consistent(
    steps: list[tuple[object, ...]], start_connected: bool
) -> None:
    harness = Harness(start_connected)
    for step in steps:
        harness.step(step)
    session = harness.session
    harness.take(session.close(LinkDownError("the link is closed"), harness.now_s, "closed"))
    assert not session.status.connected
    assert session.next_deadline_s() is None
    outcomes = harness.outcomes  # exactly one outcome for every request that went out
    assert all(outcomes[r] == 1 for r in harness.issued), (harness.issued, outcomes)
    assert set(outcomes) <= set(harness.issued)
