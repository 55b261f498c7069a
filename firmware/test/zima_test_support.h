// Shared test helpers (header only: PlatformIO compiles .cpp files in the root of
// test/ into every test, so helpers live here as inline code).
//
// RecordingSink  a ByteSink over a byte vector, with an optional capacity
// decode_frames  every frame a sink received, decoded and checked
// Harness        a Controller with injected time, a host-side sequence counter
//                and a 200 Hz control loop driven by advance_ms()
#ifndef ZIMA_TEST_SUPPORT_H
#define ZIMA_TEST_SUPPORT_H

#include <gtest/gtest.h>

#include <stdint.h>

#include <vector>

#include "zima_core.h"

namespace zima_test {

class RecordingSink : public zima::ByteSink {
 public:
  bool write(const uint8_t* data, size_t len) override {
    if (bytes.size() + len > capacity) return false;
    bytes.insert(bytes.end(), data, data + len);
    return true;
  }
  std::vector<uint8_t> bytes;
  size_t capacity = SIZE_MAX;
};

struct Frame {
  uint8_t msg_id;
  uint8_t seq;
  std::vector<uint8_t> payload;

  template <typename Msg>
  Msg as() const {
    Msg msg;
    EXPECT_EQ(msg_id, static_cast<uint8_t>(Msg::kId));
    EXPECT_TRUE(zima::unpack(payload.data(), payload.size(), &msg));
    return msg;
  }
};

/// Decodes every frame in `bytes`; any reject fails the test (the MCU must only
/// ever send valid frames).
inline std::vector<Frame> decode_frames(const std::vector<uint8_t>& bytes) {
  std::vector<Frame> frames;
  zima::FrameDecoder decoder;
  for (uint8_t byte : bytes) {
    const zima::FrameDecoder::Event event = decoder.push(byte);
    if (event == zima::FrameDecoder::Event::kFrame) {
      const zima::FrameView& f = decoder.frame();
      frames.push_back(Frame{f.msg_id, f.seq, std::vector<uint8_t>(f.payload, f.payload + f.payload_len)});
    } else if (event == zima::FrameDecoder::Event::kReject) {
      ADD_FAILURE() << "sink holds a bad frame, reject " << static_cast<int>(decoder.reject());
    }
  }
  return frames;
}

/// Wire bytes of one message.
template <typename Msg>
std::vector<uint8_t> wire_of(const Msg& msg, uint8_t seq) {
  uint8_t buf[zima::kMaxWireFrame];
  const size_t n = zima::encode_message(msg, seq, buf, sizeof buf);
  EXPECT_GT(n, 0u);
  return std::vector<uint8_t>(buf, buf + n);
}

inline zima::BuildInfo test_build_info(zima::ResetCause cause = zima::ResetCause::kPowerOn) {
  zima::BuildInfo info;
  info.fw_major = 0;
  info.fw_minor = 1;
  info.fw_patch = 2;
  info.build_id = 0x1234abcdUL;
  info.board = zima::kBoardHost;
  info.capabilities = zima::capability::kAll;
  info.reset_cause = cause;
  return info;
}

inline zima::Hello matching_hello() {
  zima::Hello hello;
  hello.protocol_version = zima::kProtocolVersion;
  hello.schema_hash = zima::kSchemaHash;
  return hello;
}

inline zima::Drive drive_msg(int16_t left_mm_s, int16_t right_mm_s) {
  zima::Drive d;
  d.left_mm_s = left_mm_s;
  d.right_mm_s = right_mm_s;
  return d;
}

/// A Controller on a simulated clock. Time starts at an arbitrary non-zero value
/// close to the 32-bit wrap, so every test also crosses a micros() wrap.
class Harness {
 public:
  static const uint32_t kControlPeriodUs = 5000;  // 200 Hz

  explicit Harness(zima::ResetCause cause = zima::ResetCause::kPowerOn,
                   uint32_t start_us = 0xFFFFFFFFUL - 1500000UL)
      : ctl(sink, test_build_info(cause)), now_us(start_us) {}

  /// Sends one message from the host with the next host sequence number.
  template <typename Msg>
  void send(const Msg& msg) {
    send_bytes(wire_of(msg, host_seq++));
  }
  void send_bytes(const std::vector<uint8_t>& bytes) {
    ctl.on_rx_bytes(bytes.data(), bytes.size(), now_us);
  }

  /// HELLO with matching version and hash; expects INFO then ACK OK.
  void handshake() {
    send(matching_hello());
    const std::vector<Frame> frames = take_frames();
    ASSERT_GE(frames.size(), 2u);
    EXPECT_EQ(frames[0].msg_id, zima::msg_id::kInfo);
    const zima::Ack ack = frames[1].as<zima::Ack>();
    ASSERT_EQ(ack.result, static_cast<uint8_t>(zima::Result::kOk));
    ASSERT_TRUE(ctl.session_open());
  }

  /// Runs the 200 Hz control loop for `ms` (one tick per 5 ms of simulated time).
  void advance_ms(uint32_t ms) {
    for (uint32_t t = 0; t < ms * 1000u; t += kControlPeriodUs) {
      now_us += kControlPeriodUs;
      last_out = ctl.control_tick(now_us, enc_left_ticks, enc_right_ticks);
    }
  }

  /// Frames the controller sent since the last call.
  std::vector<Frame> take_frames() {
    std::vector<Frame> frames = decode_frames(sink.bytes);
    sink.bytes.clear();
    return frames;
  }

  /// The ACKs among `frames`.
  static std::vector<zima::Ack> acks(const std::vector<Frame>& frames) {
    std::vector<zima::Ack> out;
    for (const Frame& f : frames) {
      if (f.msg_id == zima::msg_id::kAck) out.push_back(f.as<zima::Ack>());
    }
    return out;
  }

  /// The result of the single ACK that the last command produced.
  uint8_t single_ack_result() {
    const std::vector<zima::Ack> a = acks(take_frames());
    EXPECT_EQ(a.size(), 1u);
    return a.empty() ? 0xFF : a[0].result;
  }

  RecordingSink sink;
  zima::Controller ctl;
  uint32_t now_us;
  uint8_t host_seq = 0;
  int32_t enc_left_ticks = 0;
  int32_t enc_right_ticks = 0;
  zima::MotorOutputs last_out{0, 0};
};

inline zima::ParamSet param_set(uint8_t id, float value) {
  zima::ParamSet s;
  s.param_id = id;
  s.value = value;
  return s;
}

inline zima::Clear clear_msg(uint16_t faults) {
  zima::Clear c;
  c.faults = faults;
  return c;
}

/// An ARM that leaves every joint where it is.
inline zima::Arm arm_keep_all() {
  zima::Arm arm;
  for (uint8_t j = 0; j < zima::kJointCount; ++j) {
    arm.target_ddeg[j] = zima::kServoKeep;
    arm.speed_ddeg_s[j] = 0;
  }
  return arm;
}

inline bool outputs_zero(const zima::MotorOutputs& o) {
  return o.left_permille == 0 && o.right_permille == 0;
}

inline uint8_t result_code(zima::Result r) { return static_cast<uint8_t>(r); }

}  // namespace zima_test

#endif  // ZIMA_TEST_SUPPORT_H
