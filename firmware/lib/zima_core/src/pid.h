// Velocity PID with feed-forward for one track, output in permille of full PWM.
//
//   u = kff * target + kp * error + I - kd * d(measured)/dt
//   out = slew_limit(clamp(u, -1000, 1000))
//
// Anti-windup: the integrator is clamped to +-1000 and, whenever the clamp or the
// slew limit holds the output back, it gives up (back-calculation) the part of
// the excess it contributed, so it cannot wind up during a stall or a ramp.
// Derivative acts on the measurement, so a step in the target gives no kick.
// dt guard: dt == 0 skips the update; dt > kMaxDtUs (a stalled main loop, or time
// going backwards) resets the controller, output included.
#ifndef ZIMA_CORE_PID_H
#define ZIMA_CORE_PID_H

#include <stdint.h>

namespace zima {

/// Gains in the units of PROTOCOL.md section 4.
struct PidGains {
  float kp;                   // permille per mm/s of error
  float ki;                   // permille per mm of integrated error
  float kd;                   // permille per mm/s^2
  float kff;                  // permille per mm/s of target
  float out_slew_permille_s;  // output ramp limit
};

class VelocityPid {
 public:
  /// Longest control period the PID trusts (10 periods of the 200 Hz tick).
  static const uint32_t kMaxDtUs = 50000UL;
  /// Output limit, permille.
  static constexpr float kOutMax = 1000.0f;

  VelocityPid() { reset(); }

  /// One control step; returns the new output in permille (-1000..1000).
  float update(float target_mm_s, float measured_mm_s, uint32_t dt_us, const PidGains& gains);

  /// Forgets the integrator and derivative history and sets the output to 0.
  void reset();

  float output() const { return output_; }
  float integrator() const { return integrator_; }

 private:
  float integrator_;
  float prev_measured_;
  bool has_prev_;
  float output_;
};

}  // namespace zima

#endif  // ZIMA_CORE_PID_H
