// Codec unit tests: CRC, COBS, little-endian packing, framing, streaming decoder.
#include <gtest/gtest.h>

#include <string.h>

#include <vector>

#include "zima_core.h"
#include "zima_test_support.h"

using namespace zima;
using zima_test::wire_of;

namespace {

typedef std::vector<uint8_t> Bytes;

Bytes cobs(const Bytes& in) {
  Bytes out(cobs_max_encoded_len(in.size()));
  const size_t n = cobs_encode(in.data(), in.size(), out.data(), out.size());
  out.resize(n);
  return out;
}

struct Outcome {
  FrameDecoder::Event event;
  Reject reject;
  uint8_t msg_id;
  uint8_t seq;
};

std::vector<Outcome> feed(FrameDecoder& decoder, const Bytes& bytes) {
  std::vector<Outcome> out;
  for (uint8_t b : bytes) {
    const FrameDecoder::Event e = decoder.push(b);
    if (e != FrameDecoder::Event::kNone) {
      out.push_back(Outcome{e, decoder.reject(), decoder.frame().msg_id, decoder.frame().seq});
    }
  }
  return out;
}

// A frame whose raw bytes (id, seq, payload, crc) are given, CRC computed or not.
Bytes raw_frame(const Bytes& body, bool good_crc = true) {
  Bytes raw = body;
  uint16_t crc = crc16_ccitt_false(body.data(), body.size());
  if (!good_crc) crc ^= 0x0001;
  raw.push_back(static_cast<uint8_t>(crc & 0xFF));
  raw.push_back(static_cast<uint8_t>(crc >> 8));
  Bytes wire = cobs(raw);
  wire.push_back(0);
  return wire;
}

Reject single_reject(const Bytes& wire) {
  FrameDecoder d;
  const std::vector<Outcome> out = feed(d, wire);
  EXPECT_EQ(out.size(), 1u);
  if (out.size() != 1 || out[0].event != FrameDecoder::Event::kReject) return Reject::kNone;
  return out[0].reject;
}

}  // namespace

TEST(Crc16, CheckValueOf123456789) {
  const char* text = "123456789";
  EXPECT_EQ(crc16_ccitt_false(reinterpret_cast<const uint8_t*>(text), 9), 0x29B1);
  EXPECT_EQ(crc16_ccitt_false(nullptr, 0), 0xFFFF);
}

TEST(Cobs, KnownEncodings) {
  EXPECT_EQ(cobs(Bytes{}), (Bytes{0x01}));
  EXPECT_EQ(cobs(Bytes{0x00}), (Bytes{0x01, 0x01}));
  EXPECT_EQ(cobs(Bytes{0x00, 0x00}), (Bytes{0x01, 0x01, 0x01}));
  EXPECT_EQ(cobs(Bytes{0x11, 0x22, 0x00, 0x33}), (Bytes{0x03, 0x11, 0x22, 0x02, 0x33}));
  EXPECT_EQ(cobs(Bytes{0x11, 0x00, 0x00, 0x00}), (Bytes{0x02, 0x11, 0x01, 0x01, 0x01}));
}

TEST(Cobs, FullBlockOf254) {
  Bytes in(254);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i % 255 + 1);
  const Bytes enc = cobs(in);
  ASSERT_EQ(enc.size(), 256u);
  EXPECT_EQ(enc[0], 0xFF);
  EXPECT_EQ(enc[255], 0x01);
}

TEST(Cobs, RoundTripAndInPlaceDecode) {
  for (size_t len = 0; len < 60; ++len) {
    Bytes in(len);
    for (size_t i = 0; i < len; ++i) in[i] = static_cast<uint8_t>((i * 37) % 3 == 0 ? 0 : i);
    Bytes enc = cobs(in);
    for (uint8_t b : enc) ASSERT_NE(b, 0);
    size_t n = 0;
    ASSERT_TRUE(cobs_decode(enc.data(), enc.size(), enc.data(), &n));
    EXPECT_EQ(Bytes(enc.begin(), enc.begin() + n), in) << "len " << len;
  }
}

TEST(Cobs, RejectsPointerPastEndAndZero) {
  uint8_t out[8];
  size_t n = 0;
  const uint8_t past_end[] = {0x05, 0x11, 0x22};
  EXPECT_FALSE(cobs_decode(past_end, sizeof past_end, out, &n));
  const uint8_t has_zero[] = {0x03, 0x00, 0x22};
  EXPECT_FALSE(cobs_decode(has_zero, sizeof has_zero, out, &n));
  EXPECT_EQ(cobs_encode(past_end, 3, out, 3), 0u) << "output too small";
}

TEST(Wire, LittleEndianAndSignedValues) {
  uint8_t buf[16];
  WireWriter w(buf);
  w.u16(0x1234);
  w.i16(-2);
  w.u32(0xA1B2C3D4UL);
  w.i32(-123456789);
  w.f32(1.5f);
  ASSERT_EQ(w.size(), 16u);
  const uint8_t expected[] = {0x34, 0x12, 0xFE, 0xFF, 0xD4, 0xC3, 0xB2, 0xA1,
                              0xEB, 0x32, 0xA4, 0xF8, 0x00, 0x00, 0xC0, 0x3F};
  EXPECT_EQ(memcmp(buf, expected, sizeof expected), 0);
  WireReader r(buf);
  EXPECT_EQ(r.u16(), 0x1234);
  EXPECT_EQ(r.i16(), -2);
  EXPECT_EQ(r.u32(), 0xA1B2C3D4UL);
  EXPECT_EQ(r.i32(), -123456789);
  EXPECT_EQ(r.f32(), 1.5f);
  uint8_t extremes[6];
  WireWriter we(extremes);
  we.i16(INT16_MIN);
  we.i32(INT32_MIN);
  WireReader re(extremes);
  EXPECT_EQ(re.i16(), INT16_MIN);
  EXPECT_EQ(re.i32(), INT32_MIN);
}

TEST(Messages, SizesMatchProtocol) {
  uint8_t lo = 0, hi = 0;
  const struct { uint8_t id; uint8_t size; } table[] = {
      {0x01, 5}, {0x02, 4}, {0x03, 4}, {0x04, 24}, {0x05, 5}, {0x06, 1}, {0x07, 0},
      {0x08, 2}, {0x81, 17}, {0x82, 37}, {0x83, 3}, {0x84, 5}, {0x86, 12}};
  for (const auto& row : table) {
    ASSERT_TRUE(message_size_range(row.id, &lo, &hi)) << int(row.id);
    EXPECT_EQ(lo, row.size);
    EXPECT_EQ(hi, row.size);
  }
  ASSERT_TRUE(message_size_range(0x85, &lo, &hi));
  EXPECT_EQ(lo, 1);
  EXPECT_EQ(hi, 49);
  EXPECT_FALSE(message_size_range(0x00, &lo, &hi));
  EXPECT_FALSE(message_size_range(0x09, &lo, &hi));
  EXPECT_FALSE(message_size_range(0x87, &lo, &hi));
}

TEST(Messages, TelemetryRoundTripsEveryField) {
  Telemetry t;
  t.mcu_time_ms = 0xFFFFFFFFUL;
  t.enc_left_ticks = INT32_MIN;
  t.enc_right_ticks = INT32_MAX;
  t.vel_left_mm_s = -1;
  t.vel_right_mm_s = 2;
  t.target_left_mm_s = -3;
  t.target_right_mm_s = 4;
  t.out_left_permille = -1000;
  t.out_right_permille = 1000;
  t.battery_mv = 12345;
  t.state = 4;
  t.faults = 0x00FF;
  t.rx_frames = 1;
  t.rx_rejected = 2;
  t.rx_dropped = 3;
  t.tx_dropped = 65535;
  uint8_t buf[kMaxPayload];
  ASSERT_EQ(pack(t, buf), 37u);
  Telemetry u;
  ASSERT_TRUE(unpack(buf, 37, &u));
  EXPECT_EQ(u.mcu_time_ms, t.mcu_time_ms);
  EXPECT_EQ(u.enc_left_ticks, t.enc_left_ticks);
  EXPECT_EQ(u.enc_right_ticks, t.enc_right_ticks);
  EXPECT_EQ(u.out_left_permille, -1000);
  EXPECT_EQ(u.battery_mv, 12345);
  EXPECT_EQ(u.state, 4);
  EXPECT_EQ(u.faults, 0x00FF);
  EXPECT_EQ(u.tx_dropped, 65535);
  EXPECT_FALSE(unpack(buf, 36, &u));
}

TEST(Messages, ArmInterleavesTargetAndSpeed) {
  Arm arm;
  for (uint8_t j = 0; j < kJointCount; ++j) {
    arm.target_ddeg[j] = static_cast<uint16_t>(0x100 + j);
    arm.speed_ddeg_s[j] = static_cast<uint16_t>(0x200 + j);
  }
  uint8_t buf[kMaxPayload];
  ASSERT_EQ(pack(arm, buf), 24u);
  EXPECT_EQ(buf[0], 0x00);  // target0 low byte
  EXPECT_EQ(buf[1], 0x01);
  EXPECT_EQ(buf[2], 0x00);  // speed0 low byte
  EXPECT_EQ(buf[3], 0x02);
  EXPECT_EQ(buf[4], 0x01);  // target1
}

TEST(Messages, LogTextIsVariable) {
  Log log;
  log.level = 2;
  log.text_len = 3;
  memcpy(log.text, "abc", 3);
  uint8_t buf[kMaxPayload];
  ASSERT_EQ(pack(log, buf), 4u);
  Log back;
  ASSERT_TRUE(unpack(buf, 4, &back));
  EXPECT_EQ(back.text_len, 3);
  EXPECT_EQ(memcmp(back.text, "abc", 3), 0);
  EXPECT_TRUE(unpack(buf, 1, &back));
  EXPECT_EQ(back.text_len, 0);
  EXPECT_FALSE(unpack(buf, 0, &back));
  EXPECT_FALSE(unpack(buf, 50, &back));
}

TEST(Framing, HeartbeatWorkedExample) {
  // PROTOCOL.md section 7: HEARTBEAT host_time_ms=1000 seq=7.
  Heartbeat hb;
  hb.host_time_ms = 1000;
  const uint8_t body[] = {0x02, 0x07, 0xE8, 0x03, 0x00, 0x00};
  EXPECT_EQ(crc16_ccitt_false(body, sizeof body), 0xBAFD);
  const Bytes expected = {0x05, 0x02, 0x07, 0xE8, 0x03, 0x01, 0x03, 0xFD, 0xBA, 0x00};
  EXPECT_EQ(wire_of(hb, 7), expected);
}

TEST(Framing, LargestFrameIs55WireBytes) {
  Log log;
  log.level = 1;
  log.text_len = kLogTextMax;
  memset(log.text, 'x', kLogTextMax);
  uint8_t buf[kMaxWireFrame];
  EXPECT_EQ(encode_message(log, 0, buf, sizeof buf), 55u);
  EXPECT_EQ(encode_message(log, 0, buf, sizeof buf - 1), 0u) << "capacity is checked";
  uint8_t payload[kMaxPayload + 1] = {0};
  EXPECT_EQ(encode_frame(0x85, 0, payload, kMaxPayload + 1, buf, sizeof buf), 0u);

  FrameDecoder d;
  const std::vector<Outcome> out = feed(d, Bytes(buf, buf + encode_message(log, 9, buf, sizeof buf)));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].event, FrameDecoder::Event::kFrame);
  EXPECT_EQ(d.frame().payload_len, 49);
}

TEST(Decoder, DecodesBackToBackFramesAndIgnoresEmptyFrames) {
  Bytes stream = {0x00, 0x00};
  for (uint8_t seq = 0; seq < 5; ++seq) {
    const Bytes w = wire_of(zima_test::drive_msg(static_cast<int16_t>(seq * 100), -5), seq);
    stream.insert(stream.end(), w.begin(), w.end());
    stream.push_back(0x00);
  }
  FrameDecoder d;
  const std::vector<Outcome> out = feed(d, stream);
  ASSERT_EQ(out.size(), 5u);
  for (uint8_t i = 0; i < 5; ++i) {
    EXPECT_EQ(out[i].event, FrameDecoder::Event::kFrame);
    EXPECT_EQ(out[i].msg_id, msg_id::kDrive);
    EXPECT_EQ(out[i].seq, i);
  }
}

TEST(Decoder, EachRejectReason) {
  EXPECT_EQ(single_reject(Bytes{0x05, 0x11, 0x00}), Reject::kBadCobs);
  EXPECT_EQ(single_reject(Bytes{0x04, 0x02, 0x07, 0x01, 0x00}), Reject::kTooShort);
  EXPECT_EQ(single_reject(Bytes{0x01, 0x00}), Reject::kTooShort) << "one zero byte";
  EXPECT_EQ(single_reject(raw_frame(Bytes{0x02, 0x07, 1, 2, 3, 4}, false)), Reject::kBadCrc);
  EXPECT_EQ(single_reject(raw_frame(Bytes{0x09, 0x07})), Reject::kUnknownId);
  EXPECT_EQ(single_reject(raw_frame(Bytes{0x02, 0x07, 1, 2, 3})), Reject::kBadLength);
  EXPECT_EQ(single_reject(raw_frame(Bytes{0x85, 0x07})), Reject::kBadLength) << "LOG without level";
  Bytes long_run(60, 0x42);
  long_run.push_back(0x00);
  EXPECT_EQ(single_reject(long_run), Reject::kOversize);
}

TEST(Decoder, RejectWithValidCrcNamesTheFrame) {
  FrameDecoder d;
  const std::vector<Outcome> out = feed(d, raw_frame(Bytes{0x3F, 0x2A}));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].reject, Reject::kUnknownId);
  EXPECT_EQ(out[0].msg_id, 0x3F);
  EXPECT_EQ(out[0].seq, 0x2A);
}

TEST(Decoder, BufferHolds54EncodedBytesAndNoMore) {
  // 54 non-zero bytes then a delimiter: not oversize (it is a bad frame of another kind).
  Bytes exactly(54, 0x01);
  exactly.push_back(0x00);
  EXPECT_NE(single_reject(exactly), Reject::kOversize);
  Bytes one_more(55, 0x01);
  one_more.push_back(0x00);
  EXPECT_EQ(single_reject(one_more), Reject::kOversize);
}

TEST(Decoder, ResynchronisesAfterGarbageAndOversize) {
  Bytes stream(200, 0x55);  // oversize garbage, no delimiter yet
  const Bytes good = wire_of(zima_test::drive_msg(1, 2), 3);
  stream.insert(stream.end(), good.begin(), good.end());  // glued to the garbage: lost
  stream.insert(stream.end(), good.begin(), good.end());  // whole frame: decoded
  stream.push_back(0x01);                                 // short garbage: decodes to nothing
  stream.push_back(0x00);
  stream.insert(stream.end(), good.begin(), good.end());
  FrameDecoder d;
  const std::vector<Outcome> out = feed(d, stream);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].reject, Reject::kOversize);
  EXPECT_EQ(out[1].event, FrameDecoder::Event::kFrame);
  EXPECT_EQ(out[2].reject, Reject::kTooShort);
  EXPECT_EQ(out[3].event, FrameDecoder::Event::kFrame);
}

TEST(Decoder, ChunkingDoesNotMatter) {
  // Byte-by-byte is the decoder's only interface; check a truncated frame
  // followed by a full one costs exactly one reject.
  const Bytes good = wire_of(zima_test::drive_msg(10, 20), 1);
  Bytes stream(good.begin(), good.begin() + 4);
  stream.push_back(0x00);
  stream.insert(stream.end(), good.begin(), good.end());
  FrameDecoder d;
  const std::vector<Outcome> out = feed(d, stream);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].event, FrameDecoder::Event::kReject);
  EXPECT_EQ(out[1].event, FrameDecoder::Event::kFrame);
}

TEST(SeqTracker, CountsGapsNotDuplicatesOrRestarts) {
  SeqTracker t;
  EXPECT_EQ(t.on_frame(200), 0) << "first frame taken as is";
  EXPECT_EQ(t.on_frame(201), 0);
  EXPECT_EQ(t.on_frame(204), 2);
  EXPECT_EQ(t.on_frame(204), 0) << "duplicate";
  EXPECT_EQ(t.on_frame(3), 54) << "across the wrap: 205..255, 0..2 lost";
  EXPECT_EQ(t.on_frame(0), 0) << "restarted peer (gap 252)";
  EXPECT_EQ(t.on_frame(128), 127) << "largest counted gap";
  EXPECT_EQ(t.on_frame(1), 0) << "gap 128 is not counted";
}

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
