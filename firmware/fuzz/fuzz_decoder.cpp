// libFuzzer target: the streaming decoder and the Controller's receive path,
// dispatch included, against invariants checked independently of the library.
//
// Input layout: byte 0 = flags, byte 1 = knob, the rest = body.
//   flags bit 0: start with a valid handshake (reaches the session states)
//   flags bit 1: structured body (records that build valid frames, advance time,
//                sample the battery) instead of raw bytes
//   flags bit 2: small transmit buffer (exercises tx_dropped)
//   knob:        raw mode: chunk size (1..16) and time step per chunk
//
// Invariants (abort on violation):
//   - the decoder never reports a frame whose COBS/CRC a reference decoder in this
//     file rejects, nor a payload longer than MAX_PAYLOAD; a decoded frame
//     re-encodes to the same bytes;
//   - rx_frames / rx_rejected equal the counts of a second decoder fed the same bytes;
//   - every byte the Controller sends is a valid MCU -> host frame, seq +1 each;
//   - motor outputs within +-1000, zero without a session, in e-stop or battery
//     critical, and zero unless a matching HELLO and then a DRIVE were received;
//   - servo commands within 0..1800; without a session, in e-stop or battery
//     critical every servo's target is its present position (the arm holds).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zima_core.h"

using namespace zima;

#define FUZZ_CHECK(cond)                                                   \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      abort();                                                             \
    }                                                                      \
  } while (0)

namespace {

// ---- reference codec, written independently of the library -------------------------

// Coverage of these loops says nothing about the code under test and their
// comparison tracing would dominate the run time: leave them uninstrumented.
#if defined(__clang__)
#define ZIMA_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define ZIMA_NO_COVERAGE
#endif

ZIMA_NO_COVERAGE uint16_t ref_crc(const uint8_t* d, size_t n) {
  uint16_t c = 0xFFFF;
  for (size_t i = 0; i < n; ++i) {
    for (int b = 7; b >= 0; --b) {
      const bool top = ((c >> 15) & 1) != (((d[i] >> b) & 1) != 0);
      c = static_cast<uint16_t>(c << 1);
      if (top) c ^= 0x1021;
    }
  }
  return c;
}

// Returns the decoded length, or -1 when the COBS is invalid.
ZIMA_NO_COVERAGE int ref_cobs_decode(const uint8_t* in, size_t n, uint8_t* out) {
  size_t i = 0;
  int o = 0;
  while (i < n) {
    const size_t code = in[i];
    if (code == 0 || i + code > n) return -1;
    for (size_t k = 1; k < code; ++k) out[o++] = in[i + k];
    i += code;
    if (code < 0xFF && i < n) out[o++] = 0;
  }
  return o;
}

// Watches the bytes going to the Controller with a second FrameDecoder.
struct Shadow {
  FrameDecoder decoder;
  uint8_t pending[256];
  size_t pending_len = 0;
  uint32_t frames = 0;
  uint32_t rejects = 0;
  bool hello_ok = false;
  bool drive_after_hello = false;

  void push(uint8_t byte) {
    if (byte != 0 && pending_len < sizeof pending) pending[pending_len++] = byte;
    const FrameDecoder::Event e = decoder.push(byte);
    if (e == FrameDecoder::Event::kReject) ++rejects;
    if (e == FrameDecoder::Event::kFrame) {
      check_frame(decoder.frame());
      // the Controller rejects MCU -> host ids that reach it
      if (decoder.frame().msg_id & 0x80) {
        ++rejects;
      } else {
        ++frames;
      }
    }
    if (byte == 0) pending_len = 0;
  }

  void check_frame(const FrameView& f) {
    FUZZ_CHECK(f.payload_len <= kMaxPayload);
    FUZZ_CHECK(pending_len <= kMaxEncodedFrame);
    uint8_t raw[256];
    const int n = ref_cobs_decode(pending, pending_len, raw);
    FUZZ_CHECK(n == f.payload_len + 4);
    FUZZ_CHECK(ref_crc(raw, static_cast<size_t>(n - 2)) == (raw[n - 2] | (raw[n - 1] << 8)));
    FUZZ_CHECK(raw[0] == f.msg_id && raw[1] == f.seq);
    FUZZ_CHECK(memcmp(raw + 2, f.payload, f.payload_len) == 0);
    uint8_t wire[kMaxWireFrame];
    const size_t w = encode_frame(f.msg_id, f.seq, f.payload, f.payload_len, wire, sizeof wire);
    FUZZ_CHECK(w == pending_len + 1 && memcmp(wire, pending, pending_len) == 0);

    if (f.msg_id == msg_id::kHello) {
      Hello h;
      FUZZ_CHECK(unpack(f.payload, f.payload_len, &h));
      hello_ok = h.protocol_version == kProtocolVersion && h.schema_hash == kSchemaHash;
      drive_after_hello = false;
    }
    if (f.msg_id == msg_id::kDrive && hello_ok) drive_after_hello = true;
  }
};

// Checks every byte the Controller sends.
class CheckingSink : public ByteSink {
 public:
  explicit CheckingSink(size_t capacity) : capacity_(capacity), used_(0), seq_(0), frames_(0) {}

  bool write(const uint8_t* data, size_t len) override {
    FUZZ_CHECK(len >= 5 && len <= kMaxWireFrame);
    if (used_ + len > capacity_) {
      used_ = 0;  // "the UART drained": the next frame fits again
      return false;
    }
    used_ += len;
    for (size_t i = 0; i < len; ++i) {
      const FrameDecoder::Event e = decoder_.push(data[i]);
      FUZZ_CHECK(e != FrameDecoder::Event::kReject);
      FUZZ_CHECK((e == FrameDecoder::Event::kFrame) == (i + 1 == len));
    }
    const FrameView& f = decoder_.frame();
    FUZZ_CHECK(f.msg_id >= 0x81 && f.msg_id <= 0x86);
    FUZZ_CHECK(f.seq == seq_);
    seq_ = static_cast<uint8_t>(seq_ + 1);
    ++frames_;
    return true;
  }

 private:
  FrameDecoder decoder_;
  size_t capacity_;
  size_t used_;
  uint8_t seq_;
  uint32_t frames_;
};

// Per input, to keep executions fast: control ticks before time steps get
// coarse, and ticks that also poll the periodic frames.
const uint32_t kTickBudget = 400;
const uint32_t kPollBudget = 100;

struct Rig {
  CheckingSink sink;
  Controller ctl;
  Shadow shadow;
  uint32_t now_us = 0xFFF00000UL;  // close to the micros() wrap
  int32_t enc_left = 0;
  int32_t enc_right = 0;
  uint8_t host_seq = 0;
  uint32_t ticks = 0;

  Rig(size_t capacity, ResetCause cause) : sink(capacity), ctl(sink, build(cause)) {}

  static BuildInfo build(ResetCause cause) {
    BuildInfo b = {0, 1, 0, 0, kBoardHost, capability::kAll, cause};
    return b;
  }

  void feed(const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) shadow.push(data[i]);
    ctl.on_rx_bytes(data, n, now_us);
    check();
  }

  template <typename Msg>
  void send(const Msg& msg) {
    uint8_t wire[kMaxWireFrame];
    feed(wire, encode_message(msg, host_seq++, wire, sizeof wire));
  }

  // One 5 ms control period with a crude motor: 1000 permille ~ 20 ticks.
  void tick(uint32_t dt_us) {
    ++ticks;
    now_us += dt_us;
    const MotorOutputs out = ctl.control_tick(now_us, enc_left, enc_right);
    enc_left += out.left_permille / 50;
    enc_right += out.right_permille / 50;
    ctl.servo_tick(now_us);
    // Sending (and checking) TELEMETRY costs most of an execution: only early on.
    if (ticks <= kPollBudget) ctl.poll_tx(now_us);
    check();
  }

  void check() {
    FUZZ_CHECK(ctl.counters().rx_frames == static_cast<uint16_t>(shadow.frames));
    FUZZ_CHECK(ctl.counters().rx_rejected == static_cast<uint16_t>(shadow.rejects));
    const MotorOutputs out = ctl.motor_outputs();
    FUZZ_CHECK(out.left_permille >= -1000 && out.left_permille <= 1000);
    FUZZ_CHECK(out.right_permille >= -1000 && out.right_permille <= 1000);
    const bool moving = out.left_permille != 0 || out.right_permille != 0;
    const uint16_t faults = ctl.faults();
    if (moving) {
      FUZZ_CHECK(ctl.session_open());
      FUZZ_CHECK(!(faults & (fault::kEstop | fault::kBattCritical)));
      FUZZ_CHECK(shadow.hello_ok && shadow.drive_after_hello);
    }
    FUZZ_CHECK(((faults & fault::kEstop) != 0) == (ctl.state() == State::kEstop));
    for (uint8_t j = 0; j < kJointCount; ++j) {
      FUZZ_CHECK(ctl.servo_position_ddeg(j) <= 1800);
      // without a session, in e-stop or battery critical the arm holds: no target elsewhere
      if (!ctl.session_open() || (faults & (fault::kEstop | fault::kBattCritical))) {
        FUZZ_CHECK(ctl.servo_target_ddeg(j) == ctl.servo_position_ddeg(j));
      }
    }
  }
};


uint8_t take(const uint8_t*& p, const uint8_t* end) { return p < end ? *p++ : 0; }

void run_structured(Rig& rig, const uint8_t* p, const uint8_t* end) {
  static const uint8_t kIds[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x82, 0x85, 0x3F};
  while (p < end) {
    const uint8_t op = take(p, end);
    switch (op % 6) {
      case 0:    // a valid frame of a chosen id and length
      case 4: {  // the same, one byte corrupted
        const uint8_t id = kIds[take(p, end) % sizeof kIds];
        const uint8_t len = static_cast<uint8_t>(take(p, end) % (kMaxPayload + 1));
        uint8_t payload[kMaxPayload];
        for (uint8_t i = 0; i < len; ++i) payload[i] = take(p, end);
        if (op & 0x40) rig.host_seq = static_cast<uint8_t>(rig.host_seq + (op >> 3));  // a gap
        uint8_t wire[kMaxWireFrame];
        const size_t n = encode_frame(id, rig.host_seq++, payload, len, wire, sizeof wire);
        if (op % 6 == 4 && n > 1) {
          const size_t at = take(p, end) % (n - 1);
          wire[at] = static_cast<uint8_t>(wire[at] ^ (take(p, end) | 1));
        }
        rig.feed(wire, n);
        break;
      }
      case 1: {  // time passes: control ticks at 200 Hz, sometimes jittered
        const uint8_t periods = take(p, end) % 64;
        if (rig.ticks > kTickBudget) {  // keep executions fast: one long step instead
          rig.tick(5000u * periods);
          break;
        }
        for (uint8_t i = 0; i < periods; ++i) rig.tick(op & 0x80 ? 5000u + 997u * i : 5000u);
        break;
      }
      case 2: {  // raw bytes
        const uint8_t n = static_cast<uint8_t>(take(p, end) % 64);
        const size_t avail = static_cast<size_t>(end - p);
        const size_t k = n < avail ? n : avail;
        rig.feed(p, k);
        p += k;
        break;
      }
      case 3: {  // battery sample
        const uint8_t lo = take(p, end);  // one statement each: evaluation order is fixed
        const uint8_t hi = take(p, end);
        const uint16_t adc = static_cast<uint16_t>((lo | (hi << 8)) % 1024);
        rig.now_us += 50000;
        rig.ctl.battery_sample(rig.now_us, adc);
        rig.check();
        break;
      }
      default: {  // common commands with fuzzed fields
        const uint8_t which = take(p, end);
        if (which % 4 == 0) {
          const int16_t left = static_cast<int16_t>(take(p, end) * 8 - 1000);
          const int16_t right = static_cast<int16_t>(take(p, end) * 8 - 1000);
          Drive d = {left, right};
          rig.send(d);
        } else if (which % 4 == 1) {
          Estop e;
          rig.send(e);
        } else if (which % 4 == 2) {
          const uint8_t lo = take(p, end);
          const uint8_t hi = take(p, end);
          Clear c = {static_cast<uint16_t>(lo | (hi << 8))};
          rig.send(c);
        } else {
          ParamSet s;
          s.param_id = static_cast<uint8_t>(take(p, end) % 20);
          uint32_t bits = 0;
          for (int i = 0; i < 4; ++i) bits |= static_cast<uint32_t>(take(p, end)) << (8 * i);
          memcpy(&s.value, &bits, sizeof s.value);
          rig.send(s);
        }
        break;
      }
    }
  }
}

void run_raw(Rig& rig, const uint8_t* p, const uint8_t* end, uint8_t knob) {
  const size_t chunk = (knob & 0x0F) + 1u;
  const uint32_t step_us = 1000u * ((knob >> 4) + 1u);
  while (p < end) {
    const size_t avail = static_cast<size_t>(end - p);
    const size_t n = chunk < avail ? chunk : avail;
    rig.feed(p, n);
    p += n;
    rig.tick(step_us);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t flags = data[0];
  const uint8_t knob = data[1];
  const ResetCause cause = static_cast<ResetCause>((flags >> 3) % 5);
  Rig rig((flags & 4) ? 60 : 4096, cause);
  if (flags & 1) {
    Hello hello = {kProtocolVersion, kSchemaHash};
    rig.send(hello);
    FUZZ_CHECK(rig.ctl.session_open());
  }
  if (flags & 2) {
    run_structured(rig, data + 2, data + size);
  } else {
    run_raw(rig, data + 2, data + size, knob);
  }
  // Silence ends every session and stops the motors.
  for (int i = 0; i < 21; ++i) rig.tick(100000);
  FUZZ_CHECK(!rig.ctl.session_open());
  FUZZ_CHECK(rig.ctl.motor_outputs().left_permille == 0 && rig.ctl.motor_outputs().right_permille == 0);
  return 0;
}
