// Time helpers. The core never reads a clock: every entry point is handed
// `now_us`, a free-running 32-bit microsecond counter (Arduino's micros()), which
// wraps every 71.6 minutes. Unsigned subtraction makes every interval wrap-safe
// as long as it is shorter than that.
#ifndef ZIMA_CORE_TIMING_H
#define ZIMA_CORE_TIMING_H

#include <stdint.h>

namespace zima {

const uint32_t kUsPerMs = 1000;

/// Microseconds from `since_us` to `now_us`, across a wrap of the counter.
inline uint32_t elapsed_us(uint32_t now_us, uint32_t since_us) {
  return static_cast<uint32_t>(now_us - since_us);
}

/// Milliseconds to microseconds (parameters are at most minutes long).
inline uint32_t ms_to_us(uint32_t ms) { return ms * kUsPerMs; }

/// Milliseconds since the first call, from a wrapping microsecond counter; wraps
/// after 49.7 days like TELEMETRY.mcu_time_ms. Needs a call at least once per wrap.
class UptimeMs {
 public:
  UptimeMs() : last_us_(0), ms_(0), started_(false) {}

  uint32_t update(uint32_t now_us) {
    if (!started_) {
      started_ = true;
      last_us_ = now_us;
      return ms_;
    }
    const uint32_t whole_ms = elapsed_us(now_us, last_us_) / kUsPerMs;
    ms_ += whole_ms;
    last_us_ += whole_ms * kUsPerMs;  // keep the sub-millisecond remainder
    return ms_;
  }

  uint32_t ms() const { return ms_; }

 private:
  uint32_t last_us_;
  uint32_t ms_;
  bool started_;
};

/// Token bucket: `burst` tokens, one more every `refill_us`, starts full.
class TokenBucket {
 public:
  TokenBucket(uint8_t burst, uint32_t refill_us)
      : burst_(burst), tokens_(burst), refill_us_(refill_us), last_us_(0), started_(false) {}

  /// Takes one token if there is one.
  bool take(uint32_t now_us) {
    if (!started_) {
      started_ = true;
      last_us_ = now_us;
    }
    const uint32_t earned = elapsed_us(now_us, last_us_) / refill_us_;
    if (earned > 0) {
      const uint32_t total = tokens_ + earned;
      tokens_ = static_cast<uint8_t>(total < burst_ ? total : burst_);
      last_us_ += earned * refill_us_;
    }
    if (tokens_ == burst_) {
      last_us_ = now_us;  // a full bucket earns nothing while it waits
    }
    if (tokens_ == 0) {
      return false;
    }
    --tokens_;
    return true;
  }

 private:
  uint8_t burst_;
  uint8_t tokens_;
  uint32_t refill_us_;
  uint32_t last_us_;
  bool started_;
};

}  // namespace zima

#endif  // ZIMA_CORE_TIMING_H
