// Controller, periodic side: ticks, session timeout, telemetry and sending.
#include "controller.h"

#include <string.h>

namespace zima {

namespace {

int16_t clamp_i16(float v) {
  if (v >= 32767.0f) return 32767;
  if (v <= -32768.0f) return -32768;
  return static_cast<int16_t>(v >= 0.0f ? v + 0.5f : v - 0.5f);
}

// True when a periodic frame is due; keeps the schedule, or restarts it when
// more than a period behind (the loop stalled) so that frames do not burst.
bool periodic_due(uint32_t now_us, uint32_t* next_us, uint32_t period_us) {
  const uint32_t late_us = elapsed_us(now_us, *next_us);
  if (late_us >= 0x80000000UL) {
    return false;  // next_us is still ahead
  }
  *next_us = late_us < period_us ? *next_us + period_us : now_us + period_us;
  return true;
}

}  // namespace

void Controller::advance_clock(uint32_t now_us) {
  uptime_.update(now_us);
  if (session_open_ && elapsed_us(now_us, last_rx_us_) >= ms_to_us(kSessionTimeoutMs)) {
    close_session(now_us, "session timeout: no frame for 2000 ms");
  }
}

void Controller::close_session(uint32_t now_us, const char* why) {
  session_open_ = false;
  drive_.stop();
  servos_.hold();  // a lost host's last ARM target is not carried on without it
  log(now_us, LogLevel::kWarning, why);
}

MotorOutputs Controller::control_tick(uint32_t now_us, int32_t enc_left_ticks,
                                      int32_t enc_right_ticks) {
  advance_clock(now_us);
  const bool watchdog_before = (drive_.fault_bits() & fault::kWatchdog) != 0;
  const MotorOutputs out =
      drive_.tick(now_us, enc_left_ticks, enc_right_ticks, motion_allowed(), params_);
  if (!watchdog_before && (drive_.fault_bits() & fault::kWatchdog)) {
    log(now_us, LogLevel::kWarning, "command watchdog: motors stopped");
  }
  return out;
}

void Controller::battery_sample(uint32_t now_us, uint16_t adc_counts) {
  advance_clock(now_us);
  const bool was_critical = battery_.critical();
  const bool was_low = battery_.low();
  battery_.sample(now_us, adc_counts, params_);
  if (battery_.critical()) {
    drive_.stop();  // at once, not at the next control tick
    servos_.hold();  // and the arm stops slewing; ARM is refused until CLEAR
    if (!was_critical) log(now_us, LogLevel::kError, "battery critical: motors disabled");
  }
  if (battery_.low() && !was_low) {
    log(now_us, LogLevel::kWarning, "battery low");
  }
}

void Controller::servo_tick(uint32_t now_us) {
  advance_clock(now_us);
  servos_.tick(now_us);
}

void Controller::poll_tx(uint32_t now_us) {
  advance_clock(now_us);
  const uint32_t telemetry_period_us = 1000000UL / params_.telemetry_hz();
  const uint32_t arm_state_period_us = 1000000UL / kArmStateHz;
  if (!tx_started_) {
    tx_started_ = true;
    next_telemetry_us_ = now_us;
    next_arm_state_us_ = now_us;
  }
  if (periodic_due(now_us, &next_telemetry_us_, telemetry_period_us)) {
    send(telemetry());
  }
  if (periodic_due(now_us, &next_arm_state_us_, arm_state_period_us) && session_open_) {
    ArmState arm_state;
    for (uint8_t j = 0; j < kJointCount; ++j) {
      arm_state.pos_ddeg[j] = servos_.position_ddeg(j);
    }
    send(arm_state);
  }
}

bool Controller::log(uint32_t now_us, LogLevel level, const char* text) {
  if (!log_bucket_.take(now_us)) {
    ++counters_.tx_dropped;
    return false;
  }
  Log line;
  line.level = static_cast<uint8_t>(level);
  size_t n = 0;
  while (n < kLogTextMax && text[n] != '\0') {
    line.text[n] = static_cast<uint8_t>(text[n]);
    ++n;
  }
  line.text_len = static_cast<uint8_t>(n);
  return send(line);
}

State Controller::state() const {
  if (estop_) return State::kEstop;
  if (battery_.critical()) return State::kFault;
  if (!session_open_) return State::kWaitHost;
  if (drive_.has_target()) return State::kDriving;
  return State::kIdle;
}

uint16_t Controller::faults() const {
  uint16_t bits = drive_.fault_bits() | reset_faults_;
  if (estop_) bits |= fault::kEstop;
  if (battery_.low()) bits |= fault::kBattLow;
  if (battery_.critical()) bits |= fault::kBattCritical;
  return bits;
}

Telemetry Controller::telemetry() const {
  Telemetry t;
  t.mcu_time_ms = uptime_.ms();
  t.enc_left_ticks = drive_.enc_left_ticks();
  t.enc_right_ticks = drive_.enc_right_ticks();
  t.vel_left_mm_s = clamp_i16(drive_.odometry_left().velocity_mm_s());
  t.vel_right_mm_s = clamp_i16(drive_.odometry_right().velocity_mm_s());
  t.target_left_mm_s = drive_.target_left_mm_s();
  t.target_right_mm_s = drive_.target_right_mm_s();
  t.out_left_permille = drive_.outputs().left_permille;
  t.out_right_permille = drive_.outputs().right_permille;
  t.battery_mv = battery_.battery_mv();
  t.state = static_cast<uint8_t>(state());
  t.faults = faults();
  t.rx_frames = counters_.rx_frames;
  t.rx_rejected = counters_.rx_rejected;
  t.rx_dropped = counters_.rx_dropped;
  t.tx_dropped = counters_.tx_dropped;
  return t;
}

void Controller::ack(uint8_t msg_id, uint8_t seq, Result result) {
  Ack a;
  a.ref_msg_id = msg_id;
  a.ref_seq = seq;
  a.result = static_cast<uint8_t>(result);
  send(a);
}

void Controller::send_param_value(uint8_t param_id) {
  ParamValue pv;
  pv.param_id = param_id;
  pv.value = 0.0f;
  params_.get(param_id, &pv.value);
  send(pv);
}

bool Controller::send_frame(uint8_t msg_id, const uint8_t* payload, size_t len) {
  uint8_t wire[kMaxWireFrame];
  const size_t n = encode_frame(msg_id, tx_seq_, payload, len, wire, sizeof wire);
  if (n == 0 || !sink_.write(wire, n)) {
    ++counters_.tx_dropped;
    return false;
  }
  ++tx_seq_;  // counts frames sent; a refused frame was not sent
  return true;
}

}  // namespace zima
