// Stall detection for one track (PROTOCOL.md section 5, STALL_LEFT/STALL_RIGHT):
// output at >= 90 % of full scale while the measured speed stays below 10 % of
// the target, continuously for stall_ms. The flag drops as soon as that ends.
#ifndef ZIMA_CORE_STALL_H
#define ZIMA_CORE_STALL_H

#include <stdint.h>

namespace zima {

/// Output magnitude from which a track counts as driven hard, permille.
const float kStallOutPermille = 900.0f;

class StallDetector {
 public:

  StallDetector() : stalled_for_us_(0), stalled_(false) {}

  /// One step of `dt_us`; returns whether the track is stalled.
  bool update(float out_permille, float target_mm_s, float measured_mm_s,
              uint32_t dt_us, uint32_t stall_ms) {
    const float out_abs = out_permille < 0 ? -out_permille : out_permille;
    const float target_abs = target_mm_s < 0 ? -target_mm_s : target_mm_s;
    const float measured_abs = measured_mm_s < 0 ? -measured_mm_s : measured_mm_s;
    const bool condition = out_abs >= kStallOutPermille && target_abs > 0.0f &&
                           measured_abs < 0.1f * target_abs;
    if (!condition) {
      reset();
      return false;
    }
    const uint32_t limit_us = stall_ms * 1000u;  // stall_ms <= 10000
    const uint32_t room_us = stalled_for_us_ < limit_us ? limit_us - stalled_for_us_ : 0;
    stalled_for_us_ = dt_us < room_us ? stalled_for_us_ + dt_us : limit_us;
    stalled_ = stalled_for_us_ >= limit_us;
    return stalled_;
  }

  void reset() {
    stalled_for_us_ = 0;
    stalled_ = false;
  }

  bool stalled() const { return stalled_; }

 private:
  uint32_t stalled_for_us_;
  bool stalled_;
};

}  // namespace zima

#endif  // ZIMA_CORE_STALL_H
