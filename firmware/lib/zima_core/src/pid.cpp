#include "pid.h"

namespace zima {

namespace {

float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

}  // namespace

const uint32_t VelocityPid::kMaxDtUs;
constexpr float VelocityPid::kOutMax;

void VelocityPid::reset() {
  integrator_ = 0.0f;
  prev_measured_ = 0.0f;
  has_prev_ = false;
  output_ = 0.0f;
}

float VelocityPid::update(float target_mm_s, float measured_mm_s, uint32_t dt_us,
                          const PidGains& gains) {
  if (dt_us == 0) {
    return output_;
  }
  if (dt_us > kMaxDtUs) {
    reset();
    return output_;
  }
  const float dt_s = static_cast<float>(dt_us) * 1e-6f;
  const float error = target_mm_s - measured_mm_s;

  if (gains.ki > 0.0f) {
    integrator_ = clampf(integrator_ + gains.ki * error * dt_s, -kOutMax, kOutMax);
  } else {
    integrator_ = 0.0f;
  }
  float derivative = 0.0f;
  if (has_prev_ && gains.kd > 0.0f) {
    derivative = -gains.kd * (measured_mm_s - prev_measured_) / dt_s;
  }
  prev_measured_ = measured_mm_s;
  has_prev_ = true;

  const float wanted = gains.kff * target_mm_s + gains.kp * error + integrator_ + derivative;
  const float max_step = gains.out_slew_permille_s * dt_s;
  const float limited = clampf(wanted, -kOutMax, kOutMax);
  const float applied = clampf(limited, output_ - max_step, output_ + max_step);

  // Back-calculation: take back from the integrator the excess it is part of,
  // never more than it holds (so it does not flip sign to fight the feed-forward).
  const float excess = wanted - applied;
  if (excess > 0.0f && integrator_ > 0.0f) {
    integrator_ -= excess < integrator_ ? excess : integrator_;
  } else if (excess < 0.0f && integrator_ < 0.0f) {
    integrator_ -= excess > integrator_ ? excess : integrator_;
  }
  output_ = applied;
  return output_;
}

}  // namespace zima
