// Controller tests, command side: DRIVE, command watchdog, ESTOP/CLEAR, parameters.
// Time is simulated (Harness).
#include <gtest/gtest.h>

#include <string.h>

#include <vector>

#include "zima_core.h"
#include "zima_test_support.h"

using namespace zima;
using namespace zima_test;

TEST(Drive, TargetsWithinMaxSpeedAreAcceptedSilentlyOthersRefused) {
  Harness h;
  h.handshake();
  h.send(drive_msg(1000, -1000));
  EXPECT_TRUE(h.take_frames().empty()) << "an accepted DRIVE is not answered";
  EXPECT_EQ(h.ctl.drive().target_left_mm_s(), 1000);
  EXPECT_EQ(h.ctl.drive().target_right_mm_s(), -1000);
  EXPECT_EQ(h.ctl.state(), State::kDriving);

  h.send(drive_msg(1001, 0));
  const std::vector<Ack> acks = Harness::acks(h.take_frames());
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].ref_msg_id, msg_id::kDrive);
  EXPECT_EQ(acks[0].ref_seq, h.host_seq - 1);
  EXPECT_EQ(acks[0].result, result_code(Result::kOutOfRange));
  EXPECT_EQ(h.ctl.drive().target_left_mm_s(), 1000) << "previous targets stay";
  h.send(drive_msg(0, -1001));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOutOfRange));

  h.send(param_set(param::kMaxSpeedMmS, 2000.0f));
  h.take_frames();
  h.send(drive_msg(1500, -2000));
  EXPECT_TRUE(h.take_frames().empty());
  EXPECT_EQ(h.ctl.drive().target_right_mm_s(), -2000);
}

TEST(Watchdog, OutputsAreZeroAtTheFirstTickAfterWatchdogMs) {
  for (uint32_t watchdog_ms : {250u, 100u}) {
    SCOPED_TRACE(watchdog_ms);
    Harness h;
    h.handshake();
    h.send(param_set(param::kWatchdogMs, static_cast<float>(watchdog_ms)));
    h.take_frames();
    h.send(drive_msg(400, 400));
    h.advance_ms(watchdog_ms - 5);  // ticks up to watchdog_ms - 5 after the DRIVE
    EXPECT_FALSE(outputs_zero(h.last_out));
    EXPECT_EQ(h.ctl.faults() & fault::kWatchdog, 0);
    h.advance_ms(5);                // the tick at exactly watchdog_ms
    EXPECT_TRUE(outputs_zero(h.last_out)) << "forced to zero, not ramped";
    EXPECT_NE(h.ctl.faults() & fault::kWatchdog, 0);
    EXPECT_EQ(h.ctl.drive().target_left_mm_s(), 0);
    EXPECT_EQ(h.ctl.telemetry().faults & fault::kWatchdog, fault::kWatchdog);
    EXPECT_EQ(h.ctl.state(), State::kIdle);
    for (int i = 0; i < 20; ++i) {  // the tracks coast on: still no output (no braking)
      h.enc_left_ticks += 8;
      h.enc_right_ticks += 8;
      h.advance_ms(5);
      EXPECT_TRUE(outputs_zero(h.last_out));
    }

    h.send(drive_msg(400, 400));  // the next accepted DRIVE clears it
    EXPECT_EQ(h.ctl.faults() & fault::kWatchdog, 0);
    h.advance_ms(10);
    EXPECT_FALSE(outputs_zero(h.last_out));
  }
}

TEST(Watchdog, HeartbeatsDoNotFeedIt) {
  Harness h;
  h.handshake();
  h.send(drive_msg(400, 400));
  for (int i = 0; i < 10; ++i) {
    h.advance_ms(50);
    Heartbeat hb;
    hb.host_time_ms = 0;
    h.send(hb);
  }
  EXPECT_TRUE(outputs_zero(h.last_out));
  EXPECT_NE(h.ctl.faults() & fault::kWatchdog, 0);
}

TEST(Estop, LatchesStopsAtOnceAndOnlyClearReleasesIt) {
  Harness h;
  h.handshake();
  h.send(drive_msg(500, 500));
  h.advance_ms(100);
  ASSERT_FALSE(outputs_zero(h.last_out));
  h.send(Estop());
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOk));
  EXPECT_TRUE(outputs_zero(h.ctl.motor_outputs())) << "at once, before the next tick";
  EXPECT_EQ(h.ctl.state(), State::kEstop);
  EXPECT_NE(h.ctl.faults() & fault::kEstop, 0);

  h.send(drive_msg(100, 100));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kEstopped));
  h.send(arm_keep_all());
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kEstopped));
  h.send(param_set(param::kPidKp, 1.0f));  // parameters stay settable
  EXPECT_EQ(Harness::acks(h.take_frames()).at(0).result, result_code(Result::kOk));
  h.advance_ms(100);
  EXPECT_TRUE(outputs_zero(h.last_out));
  h.send(clear_msg(fault::kWatchdog));  // not the ESTOP bit: still latched
  h.take_frames();
  EXPECT_EQ(h.ctl.state(), State::kEstop);

  h.send(clear_msg(fault::kEstop));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOk));
  EXPECT_EQ(h.ctl.state(), State::kIdle);
  h.advance_ms(100);
  EXPECT_TRUE(outputs_zero(h.last_out)) << "motion resumes only with a new DRIVE";
  h.send(drive_msg(100, 100));
  h.advance_ms(20);
  EXPECT_FALSE(outputs_zero(h.last_out));
}

TEST(Clear, ResetCauseBitsClearAndActiveConditionsAreReported) {
  Harness h(ResetCause::kWatchdog);
  EXPECT_EQ(h.ctl.faults(), fault::kResetWatchdog);
  h.handshake();
  h.send(clear_msg(fault::kResetWatchdog | fault::kResetBrownout));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOk));
  EXPECT_EQ(h.ctl.faults(), 0);

  Harness b(ResetCause::kBrownout);
  EXPECT_EQ(b.ctl.faults(), fault::kResetBrownout);
  b.handshake();
  b.send(drive_msg(300, 300));
  b.advance_ms(300);  // watchdog trips: WATCHDOG is set and CLEAR cannot clear it
  b.send(clear_msg(fault::kWatchdog | fault::kResetBrownout));
  EXPECT_EQ(b.single_ack_result(), result_code(Result::kConditionActive));
  EXPECT_EQ(b.ctl.faults(), fault::kWatchdog) << "the clearable bit is cleared anyway";
}

TEST(Params, SetAnswersAckThenValueAndGetReadsBack) {
  Harness h;
  h.handshake();
  h.send(param_set(param::kPidKp, 1.25f));
  std::vector<Frame> frames = h.take_frames();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].as<Ack>().result, result_code(Result::kOk));
  const ParamValue pv = frames[1].as<ParamValue>();
  EXPECT_EQ(pv.param_id, param::kPidKp);
  EXPECT_EQ(pv.value, 1.25f);

  h.send(param_set(param::kWatchdogMs, 100.6f));  // integers are rounded
  frames = h.take_frames();
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[1].as<ParamValue>().value, 101.0f);
  EXPECT_EQ(h.ctl.params().watchdog_ms(), 101u);

  ParamGet get;
  get.param_id = param::kPidKp;
  h.send(get);
  frames = h.take_frames();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].as<ParamValue>().value, 1.25f);
}

TEST(Params, RangeAndUnknownIdErrorsChangeNothing) {
  Harness h;
  h.handshake();
  const struct { uint8_t id; float value; Result result; } cases[] = {
      {param::kPidKp, -0.01f, Result::kOutOfRange},
      {param::kPidKp, 100.5f, Result::kOutOfRange},
      {param::kWatchdogMs, 19.0f, Result::kOutOfRange},
      {param::kWatchdogMs, 5001.0f, Result::kOutOfRange},
      {param::kTelemetryHz, 0.0f, Result::kOutOfRange},
      {param::kBattDivider, 0.5f, Result::kOutOfRange},
      {param::kBattLowMv, 9900.0f, Result::kOutOfRange},   // not above batt_crit_mv
      {param::kBattCritMv, 10500.0f, Result::kOutOfRange}, // not below batt_low_mv
      {param::kPidKd, __builtin_nanf(""), Result::kOutOfRange},
      {18, 1.0f, Result::kUnknownParam},
      {255, 1.0f, Result::kUnknownParam},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.id));
    h.send(param_set(c.id, c.value));
    const std::vector<Frame> frames = h.take_frames();
    ASSERT_EQ(frames.size(), 1u) << "no PARAM_VALUE after a refusal";
    EXPECT_EQ(frames[0].as<Ack>().result, result_code(c.result));
  }
  const Params defaults;
  for (uint8_t id = 0; id < param::kCount; ++id) {
    float a = 0, b = 0;
    ASSERT_TRUE(h.ctl.params().get(id, &a));
    ASSERT_TRUE(defaults.get(id, &b));
    EXPECT_EQ(a, b) << "param " << static_cast<int>(id);
  }
  ParamGet get;
  get.param_id = 18;
  h.send(get);
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kUnknownParam));
  EXPECT_EQ(h.ctl.params().batt_low_mv(), 10500u);
  EXPECT_EQ(h.ctl.params().batt_crit_mv(), 9900u);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
