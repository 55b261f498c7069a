#include "drive.h"

#include "messages.h"
#include "timing.h"

namespace zima {

namespace {

int16_t to_permille(float v) {
  // The PID already clamps to +-1000; round to the nearest permille.
  return static_cast<int16_t>(v >= 0.0f ? v + 0.5f : v - 0.5f);
}

}  // namespace

PidGains pid_gains(const Params& params) {
  PidGains gains;
  gains.kp = params.pid_kp();
  gains.ki = params.pid_ki();
  gains.kd = params.pid_kd();
  gains.kff = params.pid_kff();
  gains.out_slew_permille_s = params.out_slew_permille_s();
  return gains;
}

DriveTrain::DriveTrain()
    : target_left_mm_s_(0), target_right_mm_s_(0), enc_left_ticks_(0), enc_right_ticks_(0),
      last_tick_us_(0), ticked_(false), last_drive_us_(0), watchdog_armed_(false),
      watchdog_fault_(false) {
  outputs_.left_permille = 0;
  outputs_.right_permille = 0;
}

void DriveTrain::set_targets(int16_t left_mm_s, int16_t right_mm_s, uint32_t now_us) {
  target_left_mm_s_ = left_mm_s;
  target_right_mm_s_ = right_mm_s;
  last_drive_us_ = now_us;
  watchdog_armed_ = true;
  watchdog_fault_ = false;
}

void DriveTrain::stop() {
  watchdog_armed_ = false;  // motion resumes only with a new DRIVE
  target_left_mm_s_ = 0;
  target_right_mm_s_ = 0;
  pid_left_.reset();
  pid_right_.reset();
  stall_left_.reset();
  stall_right_.reset();
  outputs_.left_permille = 0;
  outputs_.right_permille = 0;
}

void DriveTrain::check_watchdog(uint32_t now_us, const Params& params) {
  if (!watchdog_armed_ || elapsed_us(now_us, last_drive_us_) < ms_to_us(params.watchdog_ms())) {
    return;
  }
  if (has_target()) {
    watchdog_fault_ = true;
  }
  stop();
}

MotorOutputs DriveTrain::tick(uint32_t now_us, int32_t enc_left_ticks, int32_t enc_right_ticks,
                              bool enabled, const Params& params) {
  const uint32_t dt_us = ticked_ ? elapsed_us(now_us, last_tick_us_) : 0;
  ticked_ = true;
  last_tick_us_ = now_us;
  enc_left_ticks_ = enc_left_ticks;
  enc_right_ticks_ = enc_right_ticks;
  odo_left_.update(enc_left_ticks, dt_us, params.ticks_per_m());
  odo_right_.update(enc_right_ticks, dt_us, params.ticks_per_m());

  check_watchdog(now_us, params);
  // Outputs only while a fresh DRIVE is in force: after the watchdog (or before the
  // first DRIVE) the motors stay off rather than braking against the coasting track.
  if (!enabled || !watchdog_armed_) {
    stop();
    return outputs_;
  }
  const PidGains gains = pid_gains(params);
  const float vel_left = odo_left_.velocity_mm_s();
  const float vel_right = odo_right_.velocity_mm_s();
  const float out_left = pid_left_.update(target_left_mm_s_, vel_left, dt_us, gains);
  const float out_right = pid_right_.update(target_right_mm_s_, vel_right, dt_us, gains);
  outputs_.left_permille = to_permille(out_left);
  outputs_.right_permille = to_permille(out_right);

  stall_left_.update(out_left, target_left_mm_s_, vel_left, dt_us, params.stall_ms());
  stall_right_.update(out_right, target_right_mm_s_, vel_right, dt_us, params.stall_ms());
  return outputs_;
}

uint16_t DriveTrain::fault_bits() const {
  uint16_t bits = 0;
  if (watchdog_fault_) bits |= fault::kWatchdog;
  if (stall_left_.stalled()) bits |= fault::kStallLeft;
  if (stall_right_.stalled()) bits |= fault::kStallRight;
  return bits;
}

}  // namespace zima
