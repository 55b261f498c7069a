#include "odometry.h"

namespace zima {

const uint32_t TrackOdometry::kDefaultFilterUs;
const uint32_t TrackOdometry::kMaxDtUs;

void TrackOdometry::update(int32_t enc_ticks, uint32_t dt_us, float ticks_per_m) {
  if (!started_) {
    started_ = true;
    last_ticks_ = enc_ticks;
    return;
  }
  if (dt_us == 0) {
    return;  // the ticks stay pending for the next update
  }
  // Difference modulo 2^32 read back as signed: a counter wrap is a small step.
  const uint32_t raw = static_cast<uint32_t>(enc_ticks) - static_cast<uint32_t>(last_ticks_);
  const int32_t delta_ticks = raw < 0x80000000UL ? static_cast<int32_t>(raw)
                                                 : -static_cast<int32_t>(~raw) - 1;
  last_ticks_ = enc_ticks;

  const float delta_mm = static_cast<float>(delta_ticks) * 1000.0f / ticks_per_m;
  distance_mm_ += delta_mm;
  const float raw_mm_s = delta_mm * 1e6f / static_cast<float>(dt_us);
  if (dt_us > kMaxDtUs || filter_us_ == 0) {
    velocity_mm_s_ = raw_mm_s;
    return;
  }
  const float alpha = static_cast<float>(dt_us) / static_cast<float>(filter_us_ + dt_us);
  velocity_mm_s_ += alpha * (raw_mm_s - velocity_mm_s_);
}

}  // namespace zima
