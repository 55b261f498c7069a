// The two tracks: velocity targets, command watchdog, odometry, PID, stall flags.
//
// Called at the 200 Hz control tick with the encoder counts; returns the motor
// outputs in permille that firmware/src turns into PWM and direction pins.
//
// Command watchdog: only an accepted DRIVE feeds it (set_targets). When none has
// arrived for watchdog_ms, the next tick sets both outputs to zero at once (no
// ramp), resets the PIDs and the targets, and, if a target was non-zero, raises
// the WATCHDOG fault until the next accepted DRIVE. Until that DRIVE the outputs
// stay at zero.
#ifndef ZIMA_CORE_DRIVE_H
#define ZIMA_CORE_DRIVE_H

#include <stdint.h>

#include "odometry.h"
#include "params.h"
#include "pid.h"
#include "stall.h"

namespace zima {

/// Motor outputs, permille of full PWM, sign = direction.
struct MotorOutputs {
  int16_t left_permille;
  int16_t right_permille;
};

/// The tracks' PID gains as the parameters hold them now (read at every tick, so a
/// PARAM_SET takes effect at the next one).
PidGains pid_gains(const Params& params);

class DriveTrain {
 public:
  DriveTrain();

  /// An accepted DRIVE (range already checked): new targets, feeds the watchdog
  /// and clears its fault.
  void set_targets(int16_t left_mm_s, int16_t right_mm_s, uint32_t now_us);

  /// Stops at once: targets and outputs to zero, PIDs reset (e-stop, battery
  /// critical, session closed). Outputs stay zero until the next set_targets().
  void stop();

  /// One control step. `enabled` is false while motion is not allowed: the
  /// outputs are then forced to zero. Odometry runs either way.
  MotorOutputs tick(uint32_t now_us, int32_t enc_left_ticks, int32_t enc_right_ticks,
                    bool enabled, const Params& params);

  MotorOutputs outputs() const { return outputs_; }
  int16_t target_left_mm_s() const { return target_left_mm_s_; }
  int16_t target_right_mm_s() const { return target_right_mm_s_; }
  bool has_target() const { return target_left_mm_s_ != 0 || target_right_mm_s_ != 0; }
  const TrackOdometry& odometry_left() const { return odo_left_; }
  const TrackOdometry& odometry_right() const { return odo_right_; }
  const VelocityPid& pid_left() const { return pid_left_; }
  const VelocityPid& pid_right() const { return pid_right_; }
  int32_t enc_left_ticks() const { return enc_left_ticks_; }
  int32_t enc_right_ticks() const { return enc_right_ticks_; }

  /// WATCHDOG, STALL_LEFT and STALL_RIGHT bits.
  uint16_t fault_bits() const;

 private:
  void check_watchdog(uint32_t now_us, const Params& params);

  TrackOdometry odo_left_;
  TrackOdometry odo_right_;
  VelocityPid pid_left_;
  VelocityPid pid_right_;
  StallDetector stall_left_;
  StallDetector stall_right_;
  int16_t target_left_mm_s_;
  int16_t target_right_mm_s_;
  MotorOutputs outputs_;
  int32_t enc_left_ticks_;
  int32_t enc_right_ticks_;
  uint32_t last_tick_us_;
  bool ticked_;
  uint32_t last_drive_us_;
  bool watchdog_armed_;   // a DRIVE arrived and the watchdog has not expired since
  bool watchdog_fault_;
};

}  // namespace zima

#endif  // ZIMA_CORE_DRIVE_H
