// The MCU's command side: everything between the UART bytes and the actuators.
//
// firmware/src owns pins, timers, ISRs and the ADC and calls, with micros():
//
//   on_rx_bytes(bytes, n, now_us)                     whenever UART bytes arrive
//   control_tick(now_us, enc_left, enc_right) -> PWM  at 200 Hz
//   battery_sample(now_us, adc_counts)                at 20 Hz
//   servo_tick(now_us) then servo_position_ddeg(j)    at 50 Hz or faster
//   poll_tx(now_us)                                   every loop: TELEMETRY, ARM_STATE
//
// Loss-of-host rules: the command watchdog stops the tracks when DRIVE stops coming;
// losing the session (2000 ms silence, HELLO mismatch), a new HELLO, ESTOP and
// BATT_CRITICAL stop the tracks and hold the arm where it is.
//
// The Controller owns the session (handshake, 2000 ms silence timeout), the
// parameter table, the fault latches (ESTOP, BATT_CRITICAL, reset causes), the
// counters, and the LOG rate limit; outgoing frames go to a ByteSink and are
// counted in tx_dropped when they do not fit. It allocates nothing.
#ifndef ZIMA_CORE_CONTROLLER_H
#define ZIMA_CORE_CONTROLLER_H

#include <stddef.h>
#include <stdint.h>

#include "battery.h"
#include "byte_sink.h"
#include "drive.h"
#include "messages.h"
#include "params.h"
#include "protocol.h"
#include "servo.h"
#include "timing.h"

namespace zima {

/// INFO.board values.
const uint8_t kBoardHost = 0;
const uint8_t kBoardMega2560 = 1;

/// INFO.capabilities bits.
namespace capability {
const uint16_t kDrive = 1u << 0;
const uint16_t kEncoders = 1u << 1;
const uint16_t kBattery = 1u << 2;
const uint16_t kArm = 1u << 3;
const uint16_t kParams = 1u << 4;
const uint16_t kAll = kDrive | kEncoders | kBattery | kArm | kParams;
}  // namespace capability

/// What INFO reports about this build; set once at construction.
struct BuildInfo {
  uint8_t fw_major;
  uint8_t fw_minor;
  uint8_t fw_patch;
  uint32_t build_id;      // first 8 hex digits of the git commit, 0 when unknown
  uint8_t board;          // kBoardMega2560 or kBoardHost
  uint16_t capabilities;  // capability bits
  ResetCause reset_cause;
};

/// The counters TELEMETRY reports; all wrap at 2^16.
struct Counters {
  uint16_t rx_frames;    // frames that reached the message layer
  uint16_t rx_rejected;  // decoder rejects
  uint16_t rx_dropped;   // host frames lost according to sequence gaps
  uint16_t tx_dropped;   // frames not sent: sink full, or LOG over its rate limit
};

class Controller {
 public:
  static const uint32_t kSessionTimeoutMs = 2000;
  static const uint32_t kArmStateHz = 10;
  static const uint8_t kLogBurst = 5;
  static const uint32_t kLogRefillUs = 200000UL;  // 5 per second

  Controller(ByteSink& sink, const BuildInfo& build);

  /// Decodes and dispatches received bytes; answers go to the sink.
  void on_rx_bytes(const uint8_t* data, size_t len, uint32_t now_us);

  /// The 200 Hz control step: watchdog, odometry, PID. Returns the motor outputs.
  MotorOutputs control_tick(uint32_t now_us, int32_t enc_left_ticks, int32_t enc_right_ticks);

  /// One 10-bit ADC reading of the battery divider (Vref 5000 mV, times batt_divider).
  void battery_sample(uint32_t now_us, uint16_t adc_counts);

  /// Moves the servo commands toward their targets (slew limit).
  void servo_tick(uint32_t now_us);

  /// Sends TELEMETRY at telemetry_hz and ARM_STATE at 10 Hz (with a session) when due.
  void poll_tx(uint32_t now_us);

  /// Sends a LOG line (text cut to 48 bytes) within the 5/s, burst 5 limit;
  /// returns false, counting tx_dropped, when over the limit or the sink is full.
  bool log(uint32_t now_us, LogLevel level, const char* text);

  MotorOutputs motor_outputs() const { return drive_.outputs(); }
  uint16_t servo_position_ddeg(uint8_t joint) const { return servos_.position_ddeg(joint); }
  uint16_t servo_target_ddeg(uint8_t joint) const { return servos_.target_ddeg(joint); }
  bool session_open() const { return session_open_; }
  State state() const;
  uint16_t faults() const;
  const Counters& counters() const { return counters_; }
  uint16_t battery_mv() const { return battery_.battery_mv(); }
  const Params& params() const { return params_; }
  const DriveTrain& drive() const { return drive_; }

  /// The TELEMETRY message as it would be sent now.
  Telemetry telemetry() const;

 private:
  void advance_clock(uint32_t now_us);
  void close_session(uint32_t now_us, const char* why);
  bool motion_allowed() const;
  Result motion_refusal() const;

  void count_seq(uint8_t seq);
  void on_frame(const FrameView& frame, uint32_t now_us);
  void on_hello(const FrameView& frame, uint32_t now_us);
  void on_drive(const FrameView& frame, uint32_t now_us);
  void on_arm(const FrameView& frame);
  void on_param_set(const FrameView& frame);
  void on_param_get(const FrameView& frame);
  void on_estop(const FrameView& frame, uint32_t now_us);
  void on_clear(const FrameView& frame);

  void ack(const FrameView& frame, Result result) { ack(frame.msg_id, frame.seq, result); }
  void ack(uint8_t msg_id, uint8_t seq, Result result);
  void send_param_value(uint8_t param_id);
  bool send_frame(uint8_t msg_id, const uint8_t* payload, size_t len);

  template <typename Msg>
  bool send(const Msg& msg) {
    uint8_t payload[kMaxPayload];
    return send_frame(static_cast<uint8_t>(Msg::kId), payload, pack(msg, payload));
  }

  ByteSink& sink_;
  BuildInfo build_;
  Params params_;
  FrameDecoder decoder_;
  SeqTracker rx_seq_;
  uint8_t tx_seq_;
  Counters counters_;

  bool session_open_;
  uint32_t last_rx_us_;  // last frame that reached the message layer
  bool estop_;
  uint16_t reset_faults_;  // RESET_WATCHDOG / RESET_BROWNOUT until CLEARed

  DriveTrain drive_;
  BatteryMonitor battery_;
  ServoBank servos_;
  TokenBucket log_bucket_;
  UptimeMs uptime_;
  uint32_t next_telemetry_us_;
  uint32_t next_arm_state_us_;
  bool tx_started_;
};

}  // namespace zima

#endif  // ZIMA_CORE_CONTROLLER_H
