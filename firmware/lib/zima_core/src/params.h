// The parameter table of PROTOCOL.md section 4: values in RAM, defaults at reset,
// each with its range. Values travel as f32; integer parameters are rounded.
#ifndef ZIMA_CORE_PARAMS_H
#define ZIMA_CORE_PARAMS_H

#include <stdint.h>

#include "messages.h"

namespace zima {

/// Parameter ids (PARAM_SET / PARAM_GET.param_id).
namespace param {
const uint8_t kPidKp = 0;
const uint8_t kPidKi = 1;
const uint8_t kPidKd = 2;
const uint8_t kPidKff = 3;
const uint8_t kOutSlewPermilleS = 4;
const uint8_t kWatchdogMs = 5;
const uint8_t kBattLowMv = 6;
const uint8_t kBattCritMv = 7;
const uint8_t kBattHystMv = 8;
const uint8_t kBattDivider = 9;
const uint8_t kBattLowDebounceMs = 10;
const uint8_t kBattCritDebounceMs = 11;
const uint8_t kBattFilterMs = 12;
const uint8_t kTelemetryHz = 13;
const uint8_t kTicksPerM = 14;
const uint8_t kMaxSpeedMmS = 15;
const uint8_t kStallMs = 16;
const uint8_t kServoMaxSpeedDdegS = 17;
const uint8_t kCount = 18;
}  // namespace param

/// Range and default of one parameter.
struct ParamSpec {
  float default_value;
  float min_value;
  float max_value;
  bool is_integer;
};

/// The spec of parameter `id`, or nullptr when there is none.
const ParamSpec* param_spec(uint8_t id);

/// Current parameter values, with typed getters for the rest of the core.
class Params {
 public:
  /// All parameters at their defaults.
  Params();

  /// Sets a parameter: kOk, kUnknownParam, or kOutOfRange (value outside its
  /// range, NaN, or a batt_low_mv not above batt_crit_mv); nothing changes
  /// unless kOk. Integer parameters are rounded to the nearest integer.
  Result set(uint8_t id, float value);

  /// Value of parameter `id`; false when there is none.
  bool get(uint8_t id, float* value) const;

  float pid_kp() const { return values_[param::kPidKp]; }
  float pid_ki() const { return values_[param::kPidKi]; }
  float pid_kd() const { return values_[param::kPidKd]; }
  float pid_kff() const { return values_[param::kPidKff]; }
  float out_slew_permille_s() const { return values_[param::kOutSlewPermilleS]; }
  uint32_t watchdog_ms() const { return as_u32(param::kWatchdogMs); }
  uint32_t batt_low_mv() const { return as_u32(param::kBattLowMv); }
  uint32_t batt_crit_mv() const { return as_u32(param::kBattCritMv); }
  uint32_t batt_hyst_mv() const { return as_u32(param::kBattHystMv); }
  float batt_divider() const { return values_[param::kBattDivider]; }
  uint32_t batt_low_debounce_ms() const { return as_u32(param::kBattLowDebounceMs); }
  uint32_t batt_crit_debounce_ms() const { return as_u32(param::kBattCritDebounceMs); }
  uint32_t batt_filter_ms() const { return as_u32(param::kBattFilterMs); }
  uint32_t telemetry_hz() const { return as_u32(param::kTelemetryHz); }
  float ticks_per_m() const { return values_[param::kTicksPerM]; }
  uint32_t max_speed_mm_s() const { return as_u32(param::kMaxSpeedMmS); }
  uint32_t stall_ms() const { return as_u32(param::kStallMs); }
  uint32_t servo_max_speed_ddeg_s() const { return as_u32(param::kServoMaxSpeedDdegS); }

 private:
  uint32_t as_u32(uint8_t id) const { return static_cast<uint32_t>(values_[id]); }

  float values_[param::kCount];
};

}  // namespace zima

#endif  // ZIMA_CORE_PARAMS_H
