// Slew-limited servo commands for the arm's six joints (PROTOCOL.md ARM / ARM_STATE).
// Positions are the commanded angles in 0.1 degree; firmware/src turns them into
// pulse widths. Each joint moves toward its target at most at its own speed.
#ifndef ZIMA_CORE_SERVO_H
#define ZIMA_CORE_SERVO_H

#include <stdint.h>

#include "messages.h"

namespace zima {

/// Servo angle limits, 0.1 degree, and the "leave this joint alone" marker.
const uint16_t kServoMaxDdeg = 1800;
const uint16_t kServoKeep = 0xFFFFu;
const uint16_t kServoMaxSpeedDdegS = 3600;
/// Where the joints are commanded at reset (mid travel: 90.0 degrees, a 1500 us pulse
/// from firmware/src, put out from power-on without a slew limit).
const uint16_t kServoHomeDdeg = 900;

class ServoBank {
 public:
  /// A servo_tick gap longer than this moves the joints as if it were this long.
  static const uint32_t kMaxDtUs = 100000UL;

  ServoBank();

  /// Whether every field of an ARM message is within range (PROTOCOL.md section 3).
  static bool arm_in_range(const Arm& arm);

  /// Applies an in-range ARM message: speed 0 means, and any faster speed is
  /// limited to, `max_speed_ddeg_s`; targets of kServoKeep leave the joint alone.
  void command(const Arm& arm, uint16_t max_speed_ddeg_s);

  /// Stops every joint where it is: the target becomes the present position
  /// (e-stop, battery critical, session lost or restarted).
  void hold();

  /// Moves the joints; the first call only starts the clock.
  void tick(uint32_t now_us);

  uint16_t position_ddeg(uint8_t joint) const;
  uint16_t target_ddeg(uint8_t joint) const { return target_ddeg_[joint]; }

 private:
  // Positions in microdegrees so that 0.1 deg/s still moves at 200 Hz (1.8e8 max).
  uint32_t pos_udeg_[kJointCount];
  uint16_t target_ddeg_[kJointCount];
  uint16_t speed_ddeg_s_[kJointCount];
  uint32_t last_us_;
  bool started_;
};

}  // namespace zima

#endif  // ZIMA_CORE_SERVO_H
