// Message definitions of protocol version 1 (PROTOCOL.md section 3), one plain
// struct per message, with explicit little-endian pack/unpack.
//
//   size_t n = pack(msg, payload);                     // payload: kMaxPayload bytes
//   bool ok = unpack(payload, payload_len, &msg);      // false: wrong length
//
// Every struct carries its id and payload size as `kId` and `kSize`, and lists its
// fields once, in wire order, in `visit(m, v)`: v(name, field) per field (a `#` in a
// joint field's name stands for the joint, the third argument), v.text(...) for LOG's
// text. pack() and unpack() are visitors; the tests' text form and schema text
// (test/message_fields.h) are others. The names cost the AVR build nothing: the packing
// visitors never read them, so the optimiser drops them.
#ifndef ZIMA_CORE_MESSAGES_H
#define ZIMA_CORE_MESSAGES_H

#include <stddef.h>
#include <stdint.h>

namespace zima {

/// Protocol version spoken by this build (HELLO / INFO).
const uint8_t kProtocolVersion = 1;
/// CRC-32 of the canonical schema text (PROTOCOL.md section 2); the golden vectors
/// test compares it with the `schema_hash` line that the Python side writes.
const uint32_t kSchemaHash = 0x26F1F2A2UL;
/// Longest payload (LOG with 48 bytes of text).
const uint8_t kMaxPayload = 49;
/// Longest LOG text, bytes, no terminator.
const uint8_t kLogTextMax = 48;
/// Servo joints: base yaw, shoulder, elbow, wrist pitch, wrist roll, gripper.
const uint8_t kJointCount = 6;

/// Message ids. Host -> MCU 0x01..0x3F, MCU -> host 0x81..0xBF.
namespace msg_id {
const uint8_t kHello = 0x01;
const uint8_t kHeartbeat = 0x02;
const uint8_t kDrive = 0x03;
const uint8_t kArm = 0x04;
const uint8_t kParamSet = 0x05;
const uint8_t kParamGet = 0x06;
const uint8_t kEstop = 0x07;
const uint8_t kClear = 0x08;
const uint8_t kInfo = 0x81;
const uint8_t kTelemetry = 0x82;
const uint8_t kAck = 0x83;
const uint8_t kParamValue = 0x84;
const uint8_t kLog = 0x85;
const uint8_t kArmState = 0x86;
}  // namespace msg_id

/// Whether an id is in the MCU -> host range (0x80..0xFF).
inline bool is_mcu_to_host(uint8_t id) { return (id & 0x80u) != 0; }

/// Payload length limits of a message id. Returns false for an unknown id.
bool message_size_range(uint8_t id, uint8_t* min_len, uint8_t* max_len);

/// ACK.result codes (PROTOCOL.md section 3).
enum class Result : uint8_t {
  kOk = 0, kUnknownMsg = 1, kBadLength = 2, kOutOfRange = 3, kNoSession = 4,
  kEstopped = 5, kBatteryCritical = 6, kConditionActive = 7,
  kVersionMismatch = 8, kUnknownParam = 9,
};

/// TELEMETRY.state values; the first that applies wins (PROTOCOL.md section 5).
enum class State : uint8_t { kWaitHost = 0, kIdle = 1, kDriving = 2, kEstop = 3, kFault = 4 };

/// TELEMETRY.faults bits and CLEAR masks.
namespace fault {
const uint16_t kWatchdog = 1u << 0;
const uint16_t kEstop = 1u << 1;
const uint16_t kBattLow = 1u << 2;
const uint16_t kBattCritical = 1u << 3;
const uint16_t kStallLeft = 1u << 4;
const uint16_t kStallRight = 1u << 5;
const uint16_t kResetWatchdog = 1u << 6;
const uint16_t kResetBrownout = 1u << 7;
}  // namespace fault

/// INFO.reset_cause values.
enum class ResetCause : uint8_t {
  kUnknown = 0, kPowerOn = 1, kExternal = 2, kBrownout = 3, kWatchdog = 4,
};

/// LOG.level values.
enum class LogLevel : uint8_t { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// ---- host -> MCU ----------------------------------------------------------

struct Hello {
  enum : uint8_t { kId = msg_id::kHello, kSize = 5 };
  uint8_t protocol_version;
  uint32_t schema_hash;
  template <class M, class V> static void visit(M& m, V& v) {
    v("protocol_version", m.protocol_version);
    v("schema_hash", m.schema_hash);
  }
};

struct Heartbeat {
  enum : uint8_t { kId = msg_id::kHeartbeat, kSize = 4 };
  uint32_t host_time_ms;
  template <class M, class V> static void visit(M& m, V& v) { v("host_time_ms", m.host_time_ms); }
};

struct Drive {
  enum : uint8_t { kId = msg_id::kDrive, kSize = 4 };
  int16_t left_mm_s;
  int16_t right_mm_s;
  template <class M, class V> static void visit(M& m, V& v) {
    v("left_mm_s", m.left_mm_s);
    v("right_mm_s", m.right_mm_s);
  }
};

/// target_ddeg 0..1800 or 0xFFFF (leave the joint alone); speed_ddeg_s 0..3600, 0 = default.
struct Arm {
  enum : uint8_t { kId = msg_id::kArm, kSize = 24 };
  uint16_t target_ddeg[kJointCount];
  uint16_t speed_ddeg_s[kJointCount];
  template <class M, class V> static void visit(M& m, V& v) {
    for (uint8_t j = 0; j < kJointCount; ++j) {  // interleaved: target<j>, speed<j>
      v("target#_ddeg", m.target_ddeg[j], j);
      v("speed#_ddeg_s", m.speed_ddeg_s[j], j);
    }
  }
};

struct ParamSet {
  enum : uint8_t { kId = msg_id::kParamSet, kSize = 5 };
  uint8_t param_id;
  float value;
  template <class M, class V> static void visit(M& m, V& v) {
    v("param_id", m.param_id);
    v("value", m.value);
  }
};

struct ParamGet {
  enum : uint8_t { kId = msg_id::kParamGet, kSize = 1 };
  uint8_t param_id;
  template <class M, class V> static void visit(M& m, V& v) { v("param_id", m.param_id); }
};

struct Estop {
  enum : uint8_t { kId = msg_id::kEstop, kSize = 0 };
  template <class M, class V> static void visit(M&, V&) {}
};

struct Clear {
  enum : uint8_t { kId = msg_id::kClear, kSize = 2 };
  uint16_t faults;
  template <class M, class V> static void visit(M& m, V& v) { v("faults", m.faults); }
};

// ---- MCU -> host ----------------------------------------------------------

struct Info {
  enum : uint8_t { kId = msg_id::kInfo, kSize = 17 };
  uint8_t protocol_version;
  uint32_t schema_hash;
  uint8_t fw_major;
  uint8_t fw_minor;
  uint8_t fw_patch;
  uint32_t build_id;
  uint8_t board;
  uint16_t capabilities;
  uint8_t max_payload;
  uint8_t reset_cause;
  template <class M, class V> static void visit(M& m, V& v) {
    v("protocol_version", m.protocol_version);
    v("schema_hash", m.schema_hash);
    v("fw_major", m.fw_major);
    v("fw_minor", m.fw_minor);
    v("fw_patch", m.fw_patch);
    v("build_id", m.build_id);
    v("board", m.board);
    v("capabilities", m.capabilities);
    v("max_payload", m.max_payload);
    v("reset_cause", m.reset_cause);
  }
};

struct Telemetry {
  enum : uint8_t { kId = msg_id::kTelemetry, kSize = 37 };
  uint32_t mcu_time_ms;
  int32_t enc_left_ticks;
  int32_t enc_right_ticks;
  int16_t vel_left_mm_s;
  int16_t vel_right_mm_s;
  int16_t target_left_mm_s;
  int16_t target_right_mm_s;
  int16_t out_left_permille;
  int16_t out_right_permille;
  uint16_t battery_mv;
  uint8_t state;
  uint16_t faults;
  uint16_t rx_frames;
  uint16_t rx_rejected;
  uint16_t rx_dropped;
  uint16_t tx_dropped;
  template <class M, class V> static void visit(M& m, V& v) {
    v("mcu_time_ms", m.mcu_time_ms);
    v("enc_left_ticks", m.enc_left_ticks);
    v("enc_right_ticks", m.enc_right_ticks);
    v("vel_left_mm_s", m.vel_left_mm_s);
    v("vel_right_mm_s", m.vel_right_mm_s);
    v("target_left_mm_s", m.target_left_mm_s);
    v("target_right_mm_s", m.target_right_mm_s);
    v("out_left_permille", m.out_left_permille);
    v("out_right_permille", m.out_right_permille);
    v("battery_mv", m.battery_mv);
    v("state", m.state);
    v("faults", m.faults);
    v("rx_frames", m.rx_frames);
    v("rx_rejected", m.rx_rejected);
    v("rx_dropped", m.rx_dropped);
    v("tx_dropped", m.tx_dropped);
  }
};

struct Ack {
  enum : uint8_t { kId = msg_id::kAck, kSize = 3 };
  uint8_t ref_msg_id;
  uint8_t ref_seq;
  uint8_t result;
  template <class M, class V> static void visit(M& m, V& v) {
    v("ref_msg_id", m.ref_msg_id);
    v("ref_seq", m.ref_seq);
    v("result", m.result);
  }
};

struct ParamValue {
  enum : uint8_t { kId = msg_id::kParamValue, kSize = 5 };
  uint8_t param_id;
  float value;
  template <class M, class V> static void visit(M& m, V& v) {
    v("param_id", m.param_id);
    v("value", m.value);
  }
};

/// Variable length: 1 + text_len bytes.
struct Log {
  enum : uint8_t { kId = msg_id::kLog, kMinSize = 1, kSize = 1 + kLogTextMax };
  uint8_t level;
  uint8_t text_len;
  uint8_t text[kLogTextMax];
  template <class M, class V> static void visit(M& m, V& v) {
    v("level", m.level);
    v.text("text", m.text, m.text_len);
  }
};

struct ArmState {
  enum : uint8_t { kId = msg_id::kArmState, kSize = 12 };
  uint16_t pos_ddeg[kJointCount];
  template <class M, class V> static void visit(M& m, V& v) {
    for (uint8_t j = 0; j < kJointCount; ++j) v("pos#_ddeg", m.pos_ddeg[j], j);
  }
};

/// Calls v(name, field) for each field of `m` in wire order (see the top of this file).
template <class Msg, class V> void visit(Msg& m, V& v) { Msg::visit(m, v); }

// pack() writes the payload (at most kMaxPayload bytes) and returns its length.
// unpack() returns false when `len` is not the message's payload length.
size_t pack(const Hello& m, uint8_t* out);
size_t pack(const Heartbeat& m, uint8_t* out);
size_t pack(const Drive& m, uint8_t* out);
size_t pack(const Arm& m, uint8_t* out);
size_t pack(const ParamSet& m, uint8_t* out);
size_t pack(const ParamGet& m, uint8_t* out);
size_t pack(const Estop& m, uint8_t* out);
size_t pack(const Clear& m, uint8_t* out);
size_t pack(const Info& m, uint8_t* out);
size_t pack(const Telemetry& m, uint8_t* out);
size_t pack(const Ack& m, uint8_t* out);
size_t pack(const ParamValue& m, uint8_t* out);
size_t pack(const Log& m, uint8_t* out);
size_t pack(const ArmState& m, uint8_t* out);

bool unpack(const uint8_t* in, size_t len, Hello* m);
bool unpack(const uint8_t* in, size_t len, Heartbeat* m);
bool unpack(const uint8_t* in, size_t len, Drive* m);
bool unpack(const uint8_t* in, size_t len, Arm* m);
bool unpack(const uint8_t* in, size_t len, ParamSet* m);
bool unpack(const uint8_t* in, size_t len, ParamGet* m);
bool unpack(const uint8_t* in, size_t len, Estop* m);
bool unpack(const uint8_t* in, size_t len, Clear* m);
bool unpack(const uint8_t* in, size_t len, Info* m);
bool unpack(const uint8_t* in, size_t len, Telemetry* m);
bool unpack(const uint8_t* in, size_t len, Ack* m);
bool unpack(const uint8_t* in, size_t len, ParamValue* m);
bool unpack(const uint8_t* in, size_t len, Log* m);
bool unpack(const uint8_t* in, size_t len, ArmState* m);

}  // namespace zima

#endif  // ZIMA_CORE_MESSAGES_H
