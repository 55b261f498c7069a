// Control-loop tests: PID (on a simulated motor), slew limit, dt guard, odometry,
// stall detection, servo slew, battery monitor and its latch through the Controller.
#include <gtest/gtest.h>

#include <math.h>

#include <vector>

#include "zima_core.h"
#include "zima_test_support.h"

using namespace zima;
using namespace zima_test;

namespace {

const uint32_t kDtUs = 5000;  // 200 Hz

PidGains default_gains() { return pid_gains(Params()); }

// First-order track: v' = (gain * out - v) / tau, with a stall clamp.
struct MotorModel {
  float gain_mm_s_per_permille = 0.8f;  // weaker than the feed-forward assumes
  float tau_s = 0.08f;
  float v_mm_s = 0.0f;
  bool stalled = false;
  void step(float out_permille, float dt_s) {
    v_mm_s += (gain_mm_s_per_permille * out_permille - v_mm_s) * dt_s / tau_s;
    if (stalled) v_mm_s = 0.0f;
  }
};

// Runs the PID against the model; returns the peak velocity seen.
float run(VelocityPid& pid, MotorModel& motor, float target, float seconds, const PidGains& g) {
  float peak = -1e9f;
  for (int i = 0; i < static_cast<int>(seconds * 200); ++i) {
    const float out = pid.update(target, motor.v_mm_s, kDtUs, g);
    motor.step(out, kDtUs * 1e-6f);
    if (motor.v_mm_s > peak) peak = motor.v_mm_s;
  }
  return peak;
}

uint16_t adc_for_mv(float pack_mv) {  // divider 4, 5000 mV over 1024 counts
  return static_cast<uint16_t>(pack_mv / 4.0f * 1024.0f / 5000.0f + 0.5f);
}

}  // namespace

TEST(Pid, ReachesTheTargetOnAFirstOrderMotorWithoutOvershoot) {
  VelocityPid pid;
  MotorModel motor;
  const float peak = run(pid, motor, 500.0f, 2.0f, default_gains());
  EXPECT_NEAR(motor.v_mm_s, 500.0f, 5.0f) << "the integrator removes the gain error";
  EXPECT_LT(peak, 500.0f * 1.05f);
  // And back down to a negative target.
  run(pid, motor, -300.0f, 2.0f, default_gains());
  EXPECT_NEAR(motor.v_mm_s, -300.0f, 5.0f);
}

TEST(Pid, AntiWindupLimitsOvershootAfterAStall) {
  VelocityPid pid;
  MotorModel motor;
  const PidGains g = default_gains();
  motor.stalled = true;
  run(pid, motor, 500.0f, 3.0f, g);  // 3 s stalled at full output
  EXPECT_FLOAT_EQ(pid.output(), 1000.0f);
  EXPECT_LE(pid.integrator(), 1000.0f - g.kff * 500.0f - g.kp * 500.0f + 1.0f)
      << "the integrator holds only what the saturated output needs";
  motor.stalled = false;
  const float peak = run(pid, motor, 500.0f, 2.0f, g);
  EXPECT_LT(peak, 500.0f * 1.15f) << "peak " << peak;
  EXPECT_NEAR(motor.v_mm_s, 500.0f, 5.0f);

  // The same stall without back-calculation would leave a wound-up integrator:
  // check that the test can tell (a naive integrator reaches its +1000 clamp).
  const float naive_integrator = std::min(1000.0f, g.ki * 500.0f * 3.0f);
  EXPECT_GT(naive_integrator, pid.integrator() + 500.0f);
}

TEST(Pid, OutputSlewIsLimited) {
  VelocityPid pid;
  PidGains g = default_gains();
  g.out_slew_permille_s = 5000.0f;  // 25 permille per 5 ms
  float prev = 0.0f;
  for (int i = 0; i < 40; ++i) {
    const float out = pid.update(1000.0f, 0.0f, kDtUs, g);
    EXPECT_LE(out - prev, 25.0f + 1e-3f);
    prev = out;
  }
  EXPECT_FLOAT_EQ(prev, 1000.0f);  // 40 steps of 25
  g.out_slew_permille_s = 100000.0f;
  pid.reset();
  EXPECT_FLOAT_EQ(pid.update(1000.0f, 0.0f, kDtUs, g), 500.0f);  // 500 permille per 5 ms
}

TEST(Pid, DtGuardSkipsZeroAndResetsOnAGap) {
  VelocityPid pid;
  const PidGains g = default_gains();
  for (int i = 0; i < 20; ++i) pid.update(400.0f, 100.0f, kDtUs, g);
  const float out = pid.output();
  const float integ = pid.integrator();
  ASSERT_GT(out, 0.0f);
  EXPECT_EQ(pid.update(400.0f, 100.0f, 0, g), out);
  EXPECT_EQ(pid.integrator(), integ) << "dt 0 changes nothing";
  EXPECT_EQ(pid.update(400.0f, 100.0f, VelocityPid::kMaxDtUs + 1, g), 0.0f);
  EXPECT_EQ(pid.integrator(), 0.0f) << "a gap resets the controller";
}

TEST(Pid, DerivativeActsOnMeasurementOnly) {
  VelocityPid pid;
  PidGains g = default_gains();
  g.kp = 0.0f;
  g.ki = 0.0f;
  g.kff = 0.0f;
  g.kd = 1.0f;
  g.out_slew_permille_s = 100000.0f;
  pid.update(0.0f, 0.0f, kDtUs, g);
  EXPECT_EQ(pid.update(500.0f, 0.0f, kDtUs, g), 0.0f) << "no kick from a target step";
  EXPECT_NEAR(pid.update(500.0f, 1.0f, kDtUs, g), -200.0f, 1e-3f);  // -1 * 1 mm/s / 5 ms
}

TEST(Odometry, TicksToDistanceAndFilteredVelocity) {
  TrackOdometry odo;
  int32_t ticks = 1000;
  odo.update(ticks, 0, 4000.0f);  // first call records the count
  for (int i = 0; i < 200; ++i) {  // 4 ticks per 5 ms = 800 ticks/s = 200 mm/s
    ticks += 4;
    odo.update(ticks, kDtUs, 4000.0f);
  }
  EXPECT_NEAR(odo.velocity_mm_s(), 200.0f, 0.5f);
  EXPECT_NEAR(odo.distance_mm(), 200.0f, 1e-3f);
  TrackOdometry first;
  first.update(0, 0, 4000.0f);
  first.update(4, kDtUs, 4000.0f);
  EXPECT_GT(first.velocity_mm_s(), 0.0f);
  EXPECT_LT(first.velocity_mm_s(), 200.0f) << "filtered, not the raw 200 mm/s";
}

TEST(Odometry, EncoderCounterWrapIsASmallStep) {
  TrackOdometry odo;
  odo.update(INT32_MAX - 1, 0, 4000.0f);
  odo.update(INT32_MIN + 2, kDtUs, 4000.0f);  // +4 ticks across the wrap
  EXPECT_NEAR(odo.distance_mm(), 1.0f, 1e-4f);
  odo.update(INT32_MAX - 1, kDtUs, 4000.0f);  // and back
  EXPECT_NEAR(odo.distance_mm(), 0.0f, 1e-4f);
}

TEST(Stall, FlagAfterStallMsOfSaturatedOutputWithoutMotion) {
  Harness h;
  h.handshake();
  for (int i = 0; i < 30; ++i) {  // DRIVE every 50 ms (the watchdog), encoders still
    h.send(drive_msg(500, 500));
    h.advance_ms(50);
  }
  // Output ramps to 1000 in ~0.1-0.2 s, then 500 ms of stall: set within 1.5 s.
  EXPECT_EQ(h.ctl.faults() & (fault::kStallLeft | fault::kStallRight),
            fault::kStallLeft | fault::kStallRight);
  EXPECT_EQ(h.last_out.left_permille, 1000);
  // The left track starts moving: its flag drops, the right one stays.
  for (int i = 0; i < 10; ++i) {
    h.send(drive_msg(500, 500));
    for (int k = 0; k < 10; ++k) {
      h.enc_left_ticks += 10;  // 2000 ticks/s = 500 mm/s
      h.advance_ms(5);
    }
  }
  EXPECT_EQ(h.ctl.faults() & (fault::kStallLeft | fault::kStallRight), fault::kStallRight);
}

TEST(Stall, NoFlagBeforeStallMs) {
  StallDetector s;
  for (int i = 0; i < 99; ++i) EXPECT_FALSE(s.update(1000.0f, 500.0f, 10.0f, kDtUs, 500));
  EXPECT_TRUE(s.update(-950.0f, -500.0f, -10.0f, kDtUs, 500)) << "at 500 ms";
  EXPECT_FALSE(s.update(1000.0f, 500.0f, 60.0f, kDtUs, 500)) << "moving at > 10 % of target";
  EXPECT_FALSE(s.update(850.0f, 500.0f, 0.0f, kDtUs, 500));
}

TEST(Servo, SlewLimitedTowardTheTarget) {
  ServoBank servos;
  servos.tick(0);
  Arm arm;
  for (uint8_t j = 0; j < kJointCount; ++j) {
    arm.target_ddeg[j] = kServoKeep;
    arm.speed_ddeg_s[j] = 0;
  }
  arm.target_ddeg[0] = 1800;
  arm.speed_ddeg_s[0] = 900;  // 90 deg/s
  arm.target_ddeg[1] = 0;
  arm.speed_ddeg_s[1] = 0;    // 0: servo_max_speed_ddeg_s
  arm.target_ddeg[2] = 1800;
  arm.speed_ddeg_s[2] = 3600; // above the parameter: limited to it
  arm.target_ddeg[3] = 950;
  arm.speed_ddeg_s[3] = 1;    // 1 ddeg/s (0.1 deg/s) still moves at 200 Hz
  ASSERT_TRUE(ServoBank::arm_in_range(arm));
  servos.command(arm, 1800);
  uint32_t now = 0;
  for (int i = 0; i < 50; ++i) servos.tick(now += kDtUs);  // 0.25 s
  EXPECT_EQ(servos.position_ddeg(0), 1125);
  EXPECT_EQ(servos.position_ddeg(1), 450);
  EXPECT_EQ(servos.position_ddeg(2), 1350) << "at 1800 ddeg/s, not 3600";
  for (int i = 0; i < 50; ++i) servos.tick(now += kDtUs);  // 0.5 s
  EXPECT_EQ(servos.position_ddeg(0), 1350);
  EXPECT_EQ(servos.position_ddeg(1), 0);       // 900 at 1800/s: there in 0.5 s
  EXPECT_EQ(servos.position_ddeg(2), 1800);
  EXPECT_EQ(servos.position_ddeg(4), kServoHomeDdeg) << "0xFFFF leaves the joint alone";
  for (int i = 0; i < 300; ++i) servos.tick(now += kDtUs);   // 2 s in all
  EXPECT_EQ(servos.position_ddeg(0), 1800);
  EXPECT_EQ(servos.position_ddeg(3), 902) << "2 s at 1 ddeg/s";
  for (int i = 0; i < 1000; ++i) servos.tick(now += kDtUs);  // 7 s
  EXPECT_EQ(servos.position_ddeg(3), 907);
  for (int i = 0; i < 10000; ++i) servos.tick(now += kDtUs);
  EXPECT_EQ(servos.position_ddeg(3), 950) << "stops at the target";

  arm.target_ddeg[5] = 1801;
  EXPECT_FALSE(ServoBank::arm_in_range(arm));
  arm.target_ddeg[5] = 1800;
  arm.speed_ddeg_s[5] = 3601;
  EXPECT_FALSE(ServoBank::arm_in_range(arm));
}

TEST(Servo, ArmMessageOutOfRangeRefusesEverythingAndEstopHolds) {
  Harness h;
  h.handshake();
  Arm arm;
  for (uint8_t j = 0; j < kJointCount; ++j) {
    arm.target_ddeg[j] = 0;
    arm.speed_ddeg_s[j] = 100;
  }
  arm.target_ddeg[4] = 2000;
  h.send(arm);
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOutOfRange));
  EXPECT_EQ(h.ctl.servo_target_ddeg(0), kServoHomeDdeg) << "nothing changed";
  arm.target_ddeg[4] = 0;
  h.send(arm);
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOk));
  h.ctl.servo_tick(h.now_us);
  h.now_us += 1000000;  // 1 s at 10 deg/s (gaps are capped at 100 ms per tick)
  Heartbeat hb;
  hb.host_time_ms = 0;
  h.send(hb);  // the session stays open: its loss would hold the arm
  for (int i = 0; i < 10; ++i) h.ctl.servo_tick(h.now_us += 100000);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 800);
  h.send(Estop());
  h.take_frames();
  for (int i = 0; i < 10; ++i) h.ctl.servo_tick(h.now_us += 100000);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 800) << "e-stop holds the servos";
}

namespace {

// ARM: joint 0 toward `target` at `speed` (0.1 deg/s), the others left alone.
Arm arm_joint0(uint16_t target, uint16_t speed) {
  Arm arm = zima_test::arm_keep_all();
  arm.target_ddeg[0] = target;
  arm.speed_ddeg_s[0] = speed;
  return arm;
}

// Runs the 50 Hz servo tick for `ms` of simulated time.
void servo_ms(Harness& h, uint32_t ms) {
  for (uint32_t t = 0; t < ms; t += 20) h.ctl.servo_tick(h.now_us += 20000);
}

// A new session with the servo tick started, then joint 0 sent toward `target` at `speed`
// (0.1 deg/s) and accepted.
void session_moving_joint0(Harness& h, uint16_t target, uint16_t speed) {
  h.handshake();
  h.ctl.servo_tick(h.now_us);
  h.send(arm_joint0(target, speed));
  ASSERT_EQ(h.single_ack_result(), result_code(Result::kOk));
}

// The last ARM_STATE among `frames`; fails when there is none.
ArmState last_arm_state(const std::vector<zima_test::Frame>& frames) {
  ArmState state = ArmState();
  bool found = false;
  for (const zima_test::Frame& f : frames) {
    if (f.msg_id == msg_id::kArmState) {
      state = f.as<ArmState>();
      found = true;
    }
  }
  EXPECT_TRUE(found) << "no ARM_STATE";
  return state;
}

}  // namespace

TEST(Servo, SessionTimeoutHoldsTheArmWhereItIs) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(session_moving_joint0(h, 1800, 100));  // 10 deg/s: 9 s to get there
  servo_ms(h, 1980);  // silence from here on
  EXPECT_TRUE(h.ctl.session_open());
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 1098);
  servo_ms(h, 20);  // 2000 ms without a frame: the session closes at this tick
  EXPECT_FALSE(h.ctl.session_open());
  const uint16_t held = h.ctl.servo_position_ddeg(0);
  EXPECT_GE(held, 1098);
  EXPECT_LE(held, 1100);
  EXPECT_EQ(h.ctl.servo_target_ddeg(0), held) << "the target became the present position";
  servo_ms(h, 3000);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), held) << "no slewing on without a session";
  EXPECT_EQ(h.ctl.servo_position_ddeg(1), kServoHomeDdeg);

  // A new session finds the arm where it stopped and reports it.
  h.take_frames();
  h.handshake();
  servo_ms(h, 1000);
  h.ctl.poll_tx(h.now_us);
  h.ctl.poll_tx(h.now_us += 100000);
  EXPECT_EQ(last_arm_state(h.take_frames()).pos_ddeg[0], held);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), held);
}

TEST(Servo, HelloOnAnOpenSessionHoldsTheArm) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(session_moving_joint0(h, 0, 450));
  servo_ms(h, 1000);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 450);
  h.handshake();  // a reconnecting host: it does not know the old target
  EXPECT_EQ(h.ctl.servo_target_ddeg(0), 450);
  servo_ms(h, 1000);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 450);
}

TEST(Servo, EstopHoldsAndClearDoesNotResumeTheOldTarget) {
  Harness h;
  ASSERT_NO_FATAL_FAILURE(session_moving_joint0(h, 1800, 900));
  servo_ms(h, 500);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 1350);
  h.send(Estop());
  ASSERT_EQ(h.single_ack_result(), result_code(Result::kOk));
  EXPECT_EQ(h.ctl.servo_target_ddeg(0), 1350);
  servo_ms(h, 500);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 1350);
  h.send(arm_joint0(0, 0));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kEstopped));
  h.send(zima_test::clear_msg(fault::kEstop));
  ASSERT_EQ(h.single_ack_result(), result_code(Result::kOk));
  servo_ms(h, 1000);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 1350) << "moves again only with a new ARM";
  h.send(arm_joint0(1400, 500));
  ASSERT_EQ(h.single_ack_result(), result_code(Result::kOk));
  servo_ms(h, 200);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 1400);
}

TEST(Servo, BatteryCriticalHoldsTheArm) {
  Harness h;
  h.handshake();
  for (uint8_t id : {param::kBattFilterMs, param::kBattCritDebounceMs}) {
    h.send(zima_test::param_set(id, 0.0f));
  }
  h.ctl.battery_sample(h.now_us, adc_for_mv(12000));
  h.ctl.servo_tick(h.now_us);
  h.take_frames();
  h.send(arm_joint0(1800, 900));
  ASSERT_EQ(h.single_ack_result(), result_code(Result::kOk));
  servo_ms(h, 200);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 1080);
  h.ctl.battery_sample(h.now_us, adc_for_mv(9500));
  ASSERT_NE(h.ctl.faults() & fault::kBattCritical, 0);
  servo_ms(h, 500);
  EXPECT_EQ(h.ctl.servo_position_ddeg(0), 1080);
  h.take_frames();
  h.send(arm_joint0(1800, 900));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kBatteryCritical));
}

TEST(Battery, AdcCountsToPackMillivolts) {
  EXPECT_FLOAT_EQ(adc_counts_to_pack_mv(512, 4.0f), 10000.0f);
  EXPECT_FLOAT_EQ(adc_counts_to_pack_mv(1023, 1.0f), 4995.1171875f);
  EXPECT_FLOAT_EQ(adc_counts_to_pack_mv(0, 30.0f), 0.0f);
}

TEST(Battery, FirstSampleInitialisesTheFilterThenFirstOrderLag) {
  Params p;
  BatteryMonitor b;
  EXPECT_EQ(b.battery_mv(), 0);
  b.sample(1000, 640, p);  // 12500 mV
  EXPECT_EQ(b.battery_mv(), 12500);
  uint32_t now = 1000;
  for (int i = 0; i < 10; ++i) b.sample(now += 50000, 512, p);  // step to 10000 mV for 500 ms = tau
  // Discrete first order, alpha = 50/550 per sample: 1 - (1 - alpha)^10 = 61.5 %.
  EXPECT_NEAR(b.battery_mv(), 12500 - 2500 * 0.615, 5.0);
}

TEST(Battery, LowNeedsTheDebounceAndClearsWithHysteresis) {
  Params p;
  ASSERT_EQ(p.set(param::kBattFilterMs, 0.0f), Result::kOk);  // the raw voltage
  BatteryMonitor b;
  uint32_t now = 0xFFFFFFFFUL - 3000000UL;  // across the micros() wrap
  b.sample(now, adc_for_mv(12000), p);
  // A 9.9 s sag below 10500 mV (sampled at 20 Hz) is not low.
  for (int i = 0; i < 198; ++i) b.sample(now += 50000, adc_for_mv(10390), p);
  EXPECT_FALSE(b.low());
  b.sample(now += 50000, adc_for_mv(12000), p);
  for (int i = 0; i < 200; ++i) b.sample(now += 50000, adc_for_mv(10390), p);  // 9.95 s
  EXPECT_FALSE(b.low()) << "the sag restarted the debounce";
  b.sample(now += 50000, adc_for_mv(10390), p);  // 10 s below
  EXPECT_TRUE(b.low());
  EXPECT_FALSE(b.critical());
  b.sample(now += 50000, adc_for_mv(10684), p);  // above low, below low + hyst
  EXPECT_TRUE(b.low());
  b.sample(now += 50000, adc_for_mv(10703), p);  // above 10700
  EXPECT_FALSE(b.low());
}

TEST(Battery, CriticalLatchesDisablesMotorsAndClearNeedsRecovery) {
  Harness h;
  h.handshake();
  h.send(zima_test::drive_msg(0, 0));
  ParamSet no_filter;
  no_filter.param_id = param::kBattFilterMs;
  no_filter.value = 0.0f;
  h.send(no_filter);
  h.take_frames();
  h.ctl.battery_sample(h.now_us, adc_for_mv(12500));
  h.send(drive_msg(300, 300));
  h.advance_ms(50);
  ASSERT_FALSE(h.last_out.left_permille == 0);

  for (int i = 0; i < 20; ++i) {  // 950 ms below 9900 mV: not yet
    h.ctl.battery_sample(h.now_us, adc_for_mv(9785));
    h.send(drive_msg(300, 300));
    h.advance_ms(50);
  }
  EXPECT_EQ(h.ctl.faults() & fault::kBattCritical, 0);
  h.ctl.battery_sample(h.now_us, adc_for_mv(9785));  // 1000 ms
  EXPECT_NE(h.ctl.faults() & fault::kBattCritical, 0);
  EXPECT_EQ(h.ctl.state(), State::kFault);
  EXPECT_EQ(h.ctl.motor_outputs().left_permille, 0) << "motors off at once";
  h.take_frames();
  h.send(drive_msg(300, 300));
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kBatteryCritical));

  // Voltage back to 10098 mV: above batt_crit_mv, below batt_crit_mv + batt_hyst_mv.
  h.ctl.battery_sample(h.now_us, adc_for_mv(10098));
  Clear clear;
  clear.faults = fault::kBattCritical;
  h.send(clear);
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kConditionActive));
  EXPECT_EQ(h.ctl.state(), State::kFault);

  // Recovered (10117 mV > 10100 mV) but not yet cleared: still latched.
  h.ctl.battery_sample(h.now_us, adc_for_mv(10117));
  h.advance_ms(100);
  EXPECT_NE(h.ctl.faults() & fault::kBattCritical, 0);
  h.send(clear);
  EXPECT_EQ(h.single_ack_result(), result_code(Result::kOk));
  EXPECT_EQ(h.ctl.faults() & fault::kBattCritical, 0);
  EXPECT_EQ(h.ctl.state(), State::kIdle);
  h.send(drive_msg(300, 300));
  EXPECT_TRUE(h.take_frames().empty());
  h.advance_ms(20);
  EXPECT_GT(h.last_out.left_permille, 0);
}

TEST(Battery, CriticalAgainRightAfterAClearStopsTheMotorsAtOnce) {
  // Found by the fuzzer: the "just became critical" edge was tracked per sample, so a
  // CLEAR followed by a new latch before the next sample left the motors running
  // until the next control tick.
  Harness h;
  h.handshake();
  for (uint8_t id : {param::kBattFilterMs, param::kBattCritDebounceMs}) {
    ParamSet set;
    set.param_id = id;
    set.value = 0.0f;
    h.send(set);
  }
  h.ctl.battery_sample(h.now_us, adc_for_mv(9785));
  ASSERT_NE(h.ctl.faults() & fault::kBattCritical, 0);
  h.ctl.battery_sample(h.now_us, adc_for_mv(12500));
  Clear clear;
  clear.faults = fault::kBattCritical;
  h.send(clear);
  h.send(drive_msg(300, 300));
  h.advance_ms(50);
  ASSERT_GT(h.ctl.motor_outputs().left_permille, 0);
  h.ctl.battery_sample(h.now_us, adc_for_mv(9785));
  EXPECT_NE(h.ctl.faults() & fault::kBattCritical, 0);
  EXPECT_EQ(h.ctl.motor_outputs().left_permille, 0);
  EXPECT_EQ(h.ctl.motor_outputs().right_permille, 0);
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
