// Controller tests, session side: handshake, NO_SESSION, silence timeout,
// counters, LOG rate limit, transmit drops, periodic frames. Time is simulated.
#include <gtest/gtest.h>

#include <string.h>

#include <vector>

#include "zima_core.h"
#include "zima_test_support.h"

using namespace zima;
using namespace zima_test;

TEST(Handshake, MatchingHelloAnswersInfoThenAckOkAndOpensTheSession) {
  Harness h(ResetCause::kExternal);
  EXPECT_EQ(h.ctl.state(), State::kWaitHost);
  h.send(zima_test::matching_hello());
  const std::vector<Frame> frames = h.take_frames();
  ASSERT_EQ(frames.size(), 2u);
  const Info info = frames[0].as<Info>();
  EXPECT_EQ(info.protocol_version, kProtocolVersion);
  EXPECT_EQ(info.schema_hash, kSchemaHash);
  EXPECT_EQ(info.fw_major, 0);
  EXPECT_EQ(info.fw_minor, 1);
  EXPECT_EQ(info.fw_patch, 2);
  EXPECT_EQ(info.build_id, 0x1234abcdUL);
  EXPECT_EQ(info.board, kBoardHost);
  EXPECT_EQ(info.capabilities, 0x1F);
  EXPECT_EQ(info.max_payload, 49);
  EXPECT_EQ(info.reset_cause, static_cast<uint8_t>(ResetCause::kExternal));
  const Ack ack = frames[1].as<Ack>();
  EXPECT_EQ(ack.ref_msg_id, msg_id::kHello);
  EXPECT_EQ(ack.ref_seq, 0);
  EXPECT_EQ(ack.result, result_code(Result::kOk));
  EXPECT_EQ(frames[0].seq, 0);  // the MCU's own counter starts at 0
  EXPECT_EQ(frames[1].seq, 1);
  EXPECT_TRUE(h.ctl.session_open());
  EXPECT_EQ(h.ctl.state(), State::kIdle);
}

TEST(Handshake, VersionMismatchStillAnswersInfoAndKeepsTheSessionClosed) {
  Harness h;
  Hello hello = zima_test::matching_hello();
  hello.protocol_version = 2;
  h.send(hello);
  const std::vector<Frame> frames = h.take_frames();
  ASSERT_GE(frames.size(), 2u);
  EXPECT_EQ(frames[0].msg_id, msg_id::kInfo);
  EXPECT_EQ(frames[1].as<Ack>().result, result_code(Result::kVersionMismatch));
  EXPECT_FALSE(h.ctl.session_open());
}

TEST(Handshake, SchemaMismatchIsAVersionMismatchAndClosesAnOpenSession) {
  Harness h;
  h.handshake();
  h.send(drive_msg(300, 300));
  h.advance_ms(50);
  ASSERT_FALSE(outputs_zero(h.ctl.motor_outputs()));
  Hello hello = zima_test::matching_hello();
  hello.schema_hash ^= 1;
  h.send(hello);
  const std::vector<Frame> frames = h.take_frames();
  ASSERT_GE(frames.size(), 2u);
  EXPECT_EQ(frames[0].msg_id, msg_id::kInfo);
  EXPECT_EQ(Harness::acks(frames).at(0).result, result_code(Result::kVersionMismatch));
  EXPECT_FALSE(h.ctl.session_open());
  EXPECT_TRUE(outputs_zero(h.ctl.motor_outputs()));
}

TEST(Session, WithoutHandshakeOnlyHelloHeartbeatParamGetAndEstopAreAccepted) {
  Harness h;
  h.send(drive_msg(100, 100));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kNoSession));
  h.send(arm_keep_all());
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kNoSession));
  h.send(param_set(param::kPidKp, 1.0f));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kNoSession));
  h.send(clear_msg(fault::kEstop));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kNoSession));

  Heartbeat hb;
  hb.host_time_ms = 5;
  h.send(hb);
  EXPECT_TRUE(h.take_frames().empty()) << "HEARTBEAT is never answered";
  ParamGet get;
  get.param_id = param::kWatchdogMs;
  h.send(get);
  std::vector<Frame> frames = h.take_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].as<ParamValue>().value, 250.0f);
  h.send(Estop());
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOk));
  EXPECT_EQ(h.ctl.state(), State::kEstop);

  h.advance_ms(500);
  EXPECT_TRUE(outputs_zero(h.last_out));
  EXPECT_EQ(h.ctl.params().pid_kp(), 0.6f) << "refused PARAM_SET changed nothing";
}

TEST(Session, ClosesAfter2000MsOfSilenceAndHeartbeatKeepsItOpen) {
  Harness h;
  h.handshake();
  for (int i = 0; i < 8; ++i) {  // 4 s of heartbeats every 500 ms
    h.advance_ms(500);
    Heartbeat hb;
    hb.host_time_ms = static_cast<uint32_t>(i);
    h.send(hb);
  }
  EXPECT_TRUE(h.ctl.session_open());
  h.send(drive_msg(200, 200));
  h.advance_ms(1995);
  EXPECT_TRUE(h.ctl.session_open());
  h.advance_ms(5);
  EXPECT_FALSE(h.ctl.session_open());
  EXPECT_EQ(h.ctl.state(), State::kWaitHost);
  EXPECT_TRUE(outputs_zero(h.last_out));
  h.send(drive_msg(200, 200));
  EXPECT_EQ(Harness::acks(h.take_frames()).back().result, result_code(Result::kNoSession));
}

TEST(Counters, SequenceGapsCountDroppedFramesDuplicatesDoNot) {
  Harness h;
  h.handshake();  // seq 0
  Heartbeat hb;
  hb.host_time_ms = 0;
  h.send(hb);       // 1
  h.host_seq = 5;   // 2, 3, 4 lost
  h.send(hb);       // 5
  EXPECT_EQ(h.ctl.counters().rx_dropped, 3);
  h.host_seq = 5;
  h.send(hb);       // duplicate 5: not counted
  h.send(hb);       // 6
  EXPECT_EQ(h.ctl.counters().rx_dropped, 3);
  EXPECT_EQ(h.ctl.counters().rx_frames, 5);
  EXPECT_EQ(h.ctl.telemetry().rx_dropped, 3);
}

TEST(Counters, UnknownIdAndBadLengthAreRejectedAndAnswered) {
  Harness h;
  h.handshake();
  uint8_t wire[kMaxWireFrame];
  const uint8_t payload[4] = {1, 2, 3, 4};
  size_t n = encode_frame(0x3F, 9, payload, 1, wire, sizeof wire);
  h.ctl.on_rx_bytes(wire, n, h.now_us);
  std::vector<Ack> acks = Harness::acks(h.take_frames());
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].ref_msg_id, 0x3F);
  EXPECT_EQ(acks[0].ref_seq, 9);
  EXPECT_EQ(acks[0].result, result_code(Result::kUnknownMsg));
  n = encode_frame(msg_id::kDrive, 10, payload, 3, wire, sizeof wire);
  h.ctl.on_rx_bytes(wire, n, h.now_us);
  acks = Harness::acks(h.take_frames());
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].result, result_code(Result::kBadLength));
  EXPECT_EQ(h.ctl.counters().rx_rejected, 2);
  EXPECT_EQ(h.ctl.counters().rx_frames, 1);  // the HELLO
  EXPECT_EQ(h.ctl.counters().rx_dropped, 8) << "seq 1..8 lost before seq 9";

}

TEST(Counters, McuToHostIdsSentToTheMcuAreRejectedUnansweredAndKeepNoSession) {
  Harness h;
  h.handshake();
  const uint16_t frames_before = h.ctl.counters().rx_frames;
  h.send(Ack{0, 0, 0});
  Telemetry echo = h.ctl.telemetry();  // what a looped-back line would carry
  h.send(echo);
  ArmState arm_state;
  for (uint8_t j = 0; j < kJointCount; ++j) arm_state.pos_ddeg[j] = 0;
  h.send(arm_state);
  EXPECT_TRUE(h.take_frames().empty()) << "not answered: an echo must not loop";
  EXPECT_EQ(h.ctl.counters().rx_rejected, 3);
  EXPECT_EQ(h.ctl.counters().rx_frames, frames_before);
  EXPECT_EQ(h.ctl.counters().rx_dropped, 0) << "their sequence numbers are checked";
  EXPECT_EQ(h.ctl.telemetry().rx_rejected, 3);

  // They do not keep the session open: only the host's own messages do.
  for (int i = 0; i < 10; ++i) {
    h.advance_ms(250);
    h.send(echo);
  }
  EXPECT_FALSE(h.ctl.session_open());
}

TEST(Counters, GarbageBetweenFramesNeverMovesAMotor) {
  Harness h;
  h.handshake();
  uint32_t rng = 12345;
  auto next = [&rng]() { rng = rng * 1103515245u + 12345u; return static_cast<uint8_t>(rng >> 16); };
  const uint16_t rejected_before = h.ctl.counters().rx_rejected;
  for (int round = 0; round < 2000; ++round) {
    std::vector<uint8_t> bytes;
    const int n = next() % 80;
    for (int i = 0; i < n; ++i) bytes.push_back(next());
    // Corrupted DRIVE frames too: one byte flipped, the CRC no longer matches.
    std::vector<uint8_t> drive = zima_test::wire_of(drive_msg(800, 800), h.host_seq++);
    drive[next() % (drive.size() - 1)] ^= static_cast<uint8_t>(next() | 1);
    bytes.insert(bytes.end(), drive.begin(), drive.end());
    h.send_bytes(bytes);
    h.advance_ms(5);
    ASSERT_TRUE(outputs_zero(h.last_out)) << "round " << round;
    ASSERT_EQ(h.ctl.drive().target_left_mm_s(), 0);
    // Keep the session open with a valid frame so that only the garbage is tested.
    Heartbeat hb;
    hb.host_time_ms = 0;
    h.send(hb);
  }
  EXPECT_GT(h.ctl.counters().rx_rejected - rejected_before, 1000);
  EXPECT_TRUE(h.ctl.session_open());
}

TEST(Log, RateLimitedToFivePerSecondBurstFive) {
  Harness h;
  int sent = 0;
  for (int i = 0; i < 10; ++i) sent += h.ctl.log(h.now_us, LogLevel::kInfo, "hello") ? 1 : 0;
  EXPECT_EQ(sent, 5);
  EXPECT_EQ(h.ctl.counters().tx_dropped, 5);
  h.now_us += 199000;
  EXPECT_FALSE(h.ctl.log(h.now_us, LogLevel::kInfo, "x"));
  h.now_us += 1000;
  EXPECT_TRUE(h.ctl.log(h.now_us, LogLevel::kInfo, "x")) << "one token per 200 ms";
  EXPECT_FALSE(h.ctl.log(h.now_us, LogLevel::kInfo, "x"));
  h.now_us += 10000000;
  sent = 0;
  for (int i = 0; i < 10; ++i) sent += h.ctl.log(h.now_us, LogLevel::kInfo, "y") ? 1 : 0;
  EXPECT_EQ(sent, 5) << "the burst does not grow past 5";

  std::vector<Frame> frames = h.take_frames();
  ASSERT_EQ(frames.size(), 11u);
  const Log first = frames[0].as<Log>();
  EXPECT_EQ(first.level, static_cast<uint8_t>(LogLevel::kInfo));
  ASSERT_EQ(first.text_len, 5);
  EXPECT_EQ(memcmp(first.text, "hello", 5), 0);

  h.now_us += 10000000;
  const char* long_text = "0123456789012345678901234567890123456789012345678901234567890123456789";
  ASSERT_TRUE(h.ctl.log(h.now_us, LogLevel::kError, long_text));
  EXPECT_EQ(h.take_frames().at(0).as<Log>().text_len, 48) << "text is cut to 48 bytes";
}

TEST(Transmit, FramesThatDoNotFitAreCountedAsDropped) {
  Harness h;
  h.sink.capacity = 30;  // INFO (23 bytes) fits, then nothing else does
  h.send(zima_test::matching_hello());
  EXPECT_EQ(h.ctl.counters().tx_dropped, 1);
  h.ctl.poll_tx(h.now_us);  // TELEMETRY and ARM_STATE (the session is open) do not fit
  EXPECT_EQ(h.ctl.counters().tx_dropped, 3);
  const std::vector<Frame> frames = h.take_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].msg_id, msg_id::kInfo);
  EXPECT_EQ(frames[0].seq, 0);
  h.sink.capacity = SIZE_MAX;
  h.now_us += 20000;
  h.ctl.poll_tx(h.now_us);
  const std::vector<Frame> later = h.take_frames();
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].seq, 1) << "a refused frame does not use a sequence number";
  EXPECT_EQ(later[0].as<Telemetry>().tx_dropped, 3);
}

TEST(Periodic, TelemetryAtTelemetryHzArmStateAt10HzOnlyInSession) {
  Harness h;
  auto count = [](const std::vector<Frame>& frames, uint8_t id) {
    size_t n = 0;
    for (const Frame& f : frames) n += f.msg_id == id;
    return n;
  };
  for (int i = 0; i < 1000; ++i) {  // poll every ms for 1 s
    h.now_us += 1000;
    h.ctl.poll_tx(h.now_us);
  }
  std::vector<Frame> frames = h.take_frames();
  EXPECT_EQ(count(frames, msg_id::kTelemetry), 50u);
  EXPECT_EQ(count(frames, msg_id::kArmState), 0u);
  EXPECT_EQ(frames[0].as<Telemetry>().state, static_cast<uint8_t>(State::kWaitHost));

  h.handshake();
  h.send(param_set(param::kTelemetryHz, 10.0f));
  h.take_frames();
  for (int i = 0; i < 1000; ++i) {
    h.now_us += 1000;
    h.ctl.poll_tx(h.now_us);
    if (i % 400 == 0) {
      Heartbeat hb;
      hb.host_time_ms = 0;
      h.send(hb);
    }
  }
  frames = h.take_frames();
  EXPECT_EQ(count(frames, msg_id::kTelemetry), 10u);
  EXPECT_EQ(count(frames, msg_id::kArmState), 10u);
  const ArmState arm = frames.back().msg_id == msg_id::kArmState ? frames.back().as<ArmState>()
                                                                : frames[frames.size() - 2].as<ArmState>();
  EXPECT_EQ(arm.pos_ddeg[0], kServoHomeDdeg);
}

TEST(Periodic, TelemetryReportsTheDriveState) {
  Harness h;
  h.handshake();
  h.send(drive_msg(300, -200));
  h.enc_left_ticks = 1234;
  h.enc_right_ticks = -99;
  h.advance_ms(20);
  const Telemetry t = h.ctl.telemetry();
  EXPECT_EQ(t.state, static_cast<uint8_t>(State::kDriving));
  EXPECT_EQ(t.target_left_mm_s, 300);
  EXPECT_EQ(t.target_right_mm_s, -200);
  EXPECT_EQ(t.enc_left_ticks, 1234);
  EXPECT_EQ(t.enc_right_ticks, -99);
  EXPECT_GT(t.out_left_permille, 0);
  EXPECT_LT(t.out_right_permille, 0);
  EXPECT_EQ(t.out_left_permille, h.last_out.left_permille);
  EXPECT_EQ(t.rx_frames, 2);
  EXPECT_EQ(t.mcu_time_ms, 20u) << "ms since the first call, across the micros() wrap";
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
