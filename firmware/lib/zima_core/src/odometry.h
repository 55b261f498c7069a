// Encoder odometry for one track: ticks -> distance and filtered velocity.
#ifndef ZIMA_CORE_ODOMETRY_H
#define ZIMA_CORE_ODOMETRY_H

#include <stdint.h>

namespace zima {

class TrackOdometry {
 public:
  /// Velocity filter time constant: at 200 Hz and 4000 ticks/m one tick per
  /// period is 50 mm/s, so the raw difference needs smoothing.
  static const uint32_t kDefaultFilterUs = 20000UL;
  /// A gap longer than this restarts the filter from the average over the gap.
  static const uint32_t kMaxDtUs = 500000UL;

  explicit TrackOdometry(uint32_t filter_us = kDefaultFilterUs)
      : filter_us_(filter_us), last_ticks_(0), started_(false),
        velocity_mm_s_(0.0f), distance_mm_(0.0f) {}

  /// Takes the encoder count (wrap-safe across the int32 range) after `dt_us`.
  /// The first call only records the count; dt_us == 0 is ignored.
  void update(int32_t enc_ticks, uint32_t dt_us, float ticks_per_m);

  /// Filtered velocity, mm/s (first-order low-pass).
  float velocity_mm_s() const { return velocity_mm_s_; }
  /// Signed distance travelled since the first update, mm.
  float distance_mm() const { return distance_mm_; }

 private:
  uint32_t filter_us_;
  int32_t last_ticks_;
  bool started_;
  float velocity_mm_s_;
  float distance_mm_;
};

}  // namespace zima

#endif  // ZIMA_CORE_ODOMETRY_H
