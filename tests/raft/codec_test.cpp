// Codec tests: every message type round-trips; every truncation, random bit flips and random
// bytes are rejected with an error (never a crash, never a bogus success).
#include "ticketd/raft/codec.h"

#include <gtest/gtest.h>

#include <xxhash.h>

#include <random>

#include "ticketd/raft/node.h"

namespace ticketd::raft {
namespace {

Message sample(MessageType t) {
  Message m;
  m.type = t;
  m.from = 3;
  m.to = 0x1122334455667788ull;
  m.term = 77;
  m.log_term = 76;
  m.index = 1000;
  m.commit = 999;
  m.reject = static_cast<int>(t) % 2 == 1;
  m.transfer = t == MessageType::kVote;
  m.hint_index = 17;
  m.hint_term = 5;
  if (t == MessageType::kAppend) {
    m.entries.push_back(Entry{76, 1001, EntryType::kNormal, std::string("\x05\0\0\0\0\0\0\0", 8)});
    m.entries.push_back(Entry{77, 1002, EntryType::kNoop, ""});
    Configuration c{{Server{1, Suffrage::kVoter, "a"}, Server{2, Suffrage::kNonVoter, "b"}}};
    m.entries.push_back(Entry{77, 1003, EntryType::kConfChange, encode_configuration(c)});
  }
  if (t == MessageType::kInstallSnapshot) {
    Snapshot s;
    s.index = 900;
    s.term = 70;
    s.configuration.servers = {Server{1, Suffrage::kVoter, "127.0.0.1:7001|127.0.0.1:6379|inc"},
                               Server{9, Suffrage::kNonVoter, ""}};
    s.data = std::string(8, '\x7f');
    m.snapshot = s;
  }
  return m;
}

TEST(RaftCodec, RoundTripsEveryMessageType) {
  for (int t = 0; t < kMessageTypeCount; ++t) {
    Message m = sample(static_cast<MessageType>(t));
    std::string buf;
    encode(m, &buf);
    EXPECT_EQ(static_cast<uint8_t>(buf[0]), kCodecVersion);
    Message out;
    ASSERT_EQ(decode(buf, &out), "") << to_string(m.type);
    EXPECT_EQ(out, m) << to_string(m.type);
    // The span overload agrees.
    Message out2;
    ASSERT_EQ(decode(std::span<const std::byte>(reinterpret_cast<const std::byte*>(buf.data()), buf.size()), &out2), "");
    EXPECT_EQ(out2, m);
  }
}

TEST(RaftCodec, EncodeAppendsToExistingBuffer) {
  std::string buf = "prefix";
  encode(sample(MessageType::kHeartbeat), &buf);
  Message out;
  EXPECT_EQ(decode(std::string_view(buf).substr(6), &out), "");
  EXPECT_EQ(out, sample(MessageType::kHeartbeat));
}

TEST(RaftCodec, RejectsEveryTruncation) {
  for (int t = 0; t < kMessageTypeCount; ++t) {
    std::string buf;
    encode(sample(static_cast<MessageType>(t)), &buf);
    for (size_t len = 0; len < buf.size(); ++len) {
      Message out;
      EXPECT_NE(decode(std::string_view(buf).substr(0, len), &out), "") << "type " << t << " len " << len;
    }
    Message out;
    EXPECT_NE(decode(buf + "x", &out), "");
  }
}

TEST(RaftCodec, RejectsBitFlips) {
  std::mt19937_64 rng(7);
  for (int t = 0; t < kMessageTypeCount; ++t) {
    std::string buf;
    encode(sample(static_cast<MessageType>(t)), &buf);
    for (int i = 0; i < 2000; ++i) {
      std::string bad = buf;
      int flips = 1 + static_cast<int>(rng() % 3);
      for (int f = 0; f < flips; ++f) bad[rng() % bad.size()] ^= static_cast<char>(1u << (rng() % 8));
      if (bad == buf) continue;
      Message out;
      EXPECT_NE(decode(bad, &out), "");
    }
  }
}

TEST(RaftCodec, RandomBytesNeverCrash) {
  std::mt19937_64 rng(11);
  int accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 200, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    if (!junk.empty() && rng() % 2) junk[0] = static_cast<char>(kCodecVersion);
    Message out;
    accepted += decode(junk, &out).empty();
  }
  EXPECT_EQ(accepted, 0);
}

// Structurally hostile input with a VALID checksum: the bounds checks, not the checksum,
// must reject it.
std::string with_checksum(std::string body) {
  uint64_t h = XXH3_64bits(body.data(), body.size());
  for (int i = 0; i < 8; ++i) body.push_back(static_cast<char>(h >> (8 * i)));
  return body;
}

TEST(RaftCodec, RejectsOversizedCountsAndLengthsEvenWithValidChecksum) {
  Message m = sample(MessageType::kAppend);
  std::string buf;
  encode(m, &buf);
  // Entry count field sits after 3 + 8*8 bytes.
  std::string body = buf.substr(0, buf.size() - 8);
  std::string huge = body;
  huge[67] = '\xff';
  huge[68] = '\xff';
  huge[69] = '\xff';
  huge[70] = '\x7f';
  Message out;
  EXPECT_NE(decode(with_checksum(huge), &out), "");
  // Unknown type and flags.
  std::string bad_type = body;
  bad_type[1] = 42;
  EXPECT_EQ(decode(with_checksum(bad_type), &out), "unknown message type");
  std::string bad_flags = body;
  bad_flags[2] = static_cast<char>(0x80);
  EXPECT_EQ(decode(with_checksum(bad_flags), &out), "unknown flags");
  std::string bad_version = body;
  bad_version[0] = 9;
  EXPECT_EQ(decode(with_checksum(bad_version), &out), "unsupported codec version");
  // Random mutations with a fixed-up checksum: never crash, and anything accepted re-encodes.
  std::mt19937_64 rng(3);
  for (int i = 0; i < 5000; ++i) {
    std::string b = body;
    for (int f = 0; f < 3; ++f) b[rng() % b.size()] = static_cast<char>(rng());
    b[0] = static_cast<char>(kCodecVersion);
    std::string enc = with_checksum(b);
    if (decode(enc, &out).empty()) {
      std::string again;
      encode(out, &again);
      EXPECT_EQ(again, enc);
    }
  }
}

TEST(RaftCodec, ConfigurationRoundTripAndRejectsGarbage) {
  Configuration c{{Server{1, Suffrage::kVoter, "x"}, Server{2, Suffrage::kNonVoter, ""}}};
  Configuration out;
  ASSERT_TRUE(decode_configuration(encode_configuration(c), &out));
  EXPECT_EQ(out, c);
  std::string enc = encode_configuration(c);
  for (size_t len = 0; len < enc.size(); ++len) EXPECT_FALSE(decode_configuration(enc.substr(0, len), &out));
  EXPECT_FALSE(decode_configuration(enc + "z", &out));
}

}  // namespace
}  // namespace ticketd::raft

