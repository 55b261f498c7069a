#include "servo.h"

#include "timing.h"

namespace zima {

const uint32_t ServoBank::kMaxDtUs;

namespace {
const uint32_t kUdegPerDdeg = 100000;  // microdegrees per 0.1 degree
}  // namespace

ServoBank::ServoBank() : last_us_(0), started_(false) {
  for (uint8_t j = 0; j < kJointCount; ++j) {
    pos_udeg_[j] = static_cast<uint32_t>(kServoHomeDdeg) * kUdegPerDdeg;
    target_ddeg_[j] = kServoHomeDdeg;
    speed_ddeg_s_[j] = kServoMaxSpeedDdegS;
  }
}

bool ServoBank::arm_in_range(const Arm& arm) {
  for (uint8_t j = 0; j < kJointCount; ++j) {
    if (arm.target_ddeg[j] > kServoMaxDdeg && arm.target_ddeg[j] != kServoKeep) return false;
    if (arm.speed_ddeg_s[j] > kServoMaxSpeedDdegS) return false;
  }
  return true;
}

void ServoBank::command(const Arm& arm, uint16_t max_speed_ddeg_s) {
  for (uint8_t j = 0; j < kJointCount; ++j) {
    if (arm.target_ddeg[j] == kServoKeep) continue;
    const uint16_t speed = arm.speed_ddeg_s[j];
    target_ddeg_[j] = arm.target_ddeg[j];
    speed_ddeg_s_[j] = (speed == 0 || speed > max_speed_ddeg_s) ? max_speed_ddeg_s : speed;
  }
}

void ServoBank::hold() {
  for (uint8_t j = 0; j < kJointCount; ++j) {
    // Round the present position to the nearest target step and stop there.
    const uint16_t here = position_ddeg(j);
    target_ddeg_[j] = here;
    pos_udeg_[j] = static_cast<uint32_t>(here) * kUdegPerDdeg;
  }
}

void ServoBank::tick(uint32_t now_us) {
  if (!started_) {
    started_ = true;
    last_us_ = now_us;
    return;
  }
  uint32_t dt_us = elapsed_us(now_us, last_us_);
  last_us_ = now_us;
  if (dt_us > kMaxDtUs) dt_us = kMaxDtUs;
  for (uint8_t j = 0; j < kJointCount; ++j) {
    // speed (0.1 deg/s) * dt (us) / 10 = step in microdegrees; at most 3.6e8 before the divide.
    const uint32_t step = static_cast<uint32_t>(speed_ddeg_s_[j]) * dt_us / 10UL;
    const uint32_t goal = static_cast<uint32_t>(target_ddeg_[j]) * kUdegPerDdeg;
    uint32_t& pos = pos_udeg_[j];
    if (pos < goal) {
      pos = (goal - pos > step) ? pos + step : goal;
    } else if (pos > goal) {
      pos = (pos - goal > step) ? pos - step : goal;
    }
  }
}

uint16_t ServoBank::position_ddeg(uint8_t joint) const {
  return static_cast<uint16_t>((pos_udeg_[joint] + kUdegPerDdeg / 2) / kUdegPerDdeg);
}

}  // namespace zima
