#include "ticketd/resp/reply_reader.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace ticketd::resp {
namespace {

// A canonical text form of a reply so tests compare whole trees at once.
std::string Describe(const Reply& r) {
  switch (r.type) {
    case ReplyType::kSimpleString:
      return "+" + std::string(r.text);
    case ReplyType::kError:
      return "-" + std::string(r.text);
    case ReplyType::kInteger:
      return ":" + std::to_string(r.integer);
    case ReplyType::kBulkString:
      return "$" + std::string(r.text);
    case ReplyType::kNullBulk:
      return "$nil";
    case ReplyType::kNullArray:
      return "*nil";
    case ReplyType::kArray: {
      std::string s = "[";
      for (size_t i = 0; i < r.elements.size(); ++i) {
        if (i) s += ",";
        s += Describe(r.elements[i]);
      }
      return s + "]";
    }
  }
  return "?";
}

struct Case {
  std::string wire;
  std::string expected;
};

const std::vector<Case>& ValidCases() {
  static const std::vector<Case> cases = {
      {"+OK\r\n", "+OK"},
      {"+\r\n", "+"},
      {"+12345\r\n", "+12345"},
      {"-ERR unknown command 'x'\r\n", "-ERR unknown command 'x'"},
      {"-MOVED 0 127.0.0.1:7001\r\n", "-MOVED 0 127.0.0.1:7001"},
      {":0\r\n", ":0"},
      {":-17\r\n", ":-17"},
      {":9223372036854775807\r\n", ":9223372036854775807"},
      {":-9223372036854775808\r\n", ":-9223372036854775808"},
      {"$3\r\nabc\r\n", "$abc"},
      {"$0\r\n\r\n", "$"},
      {"$4\r\na\r\nb\r\n", "$a\r\nb"},  // bulk strings may hold CRLF
      {"$-1\r\n", "$nil"},
      {"*0\r\n", "[]"},
      {"*-1\r\n", "*nil"},
      {"*3\r\n:1\r\n+two\r\n$5\r\nthree\r\n", "[:1,+two,$three]"},
      {"*2\r\n*2\r\n:1\r\n*1\r\n$-1\r\n*0\r\n", "[[:1,[$nil]],[]]"},
      {"*3\r\n*-1\r\n-E\r\n*2\r\n$1\r\nx\r\n:5\r\n", "[*nil,-E,[$x,:5]]"},
  };
  return cases;
}

TEST(ReplyReader, ParsesEveryType) {
  ReplyReader reader;
  for (const Case& c : ValidCases()) {
    ReplyResult r = reader.Parse(c.wire);
    ASSERT_EQ(r.status, ReplyStatus::kOk) << c.wire << " " << r.error;
    EXPECT_EQ(r.consumed, c.wire.size()) << c.wire;
    EXPECT_EQ(Describe(r.reply), c.expected) << c.wire;
  }
}

TEST(ReplyReader, TextPointsIntoTheInput) {
  ReplyReader reader;
  std::string wire = "*2\r\n+hello\r\n$5\r\nworld\r\n";
  ReplyResult r = reader.Parse(wire);
  ASSERT_EQ(r.status, ReplyStatus::kOk);
  ASSERT_EQ(r.reply.elements.size(), 2u);
  EXPECT_EQ(r.reply.elements[0].text.data(), wire.data() + 5);
  EXPECT_EQ(r.reply.elements[1].text.data(), wire.data() + 16);
}

TEST(ReplyReader, ConsumesOnlyTheFirstReply) {
  ReplyReader reader;
  for (const Case& c : ValidCases()) {
    std::string wire = c.wire + "+next\r\n:1";
    ReplyResult r = reader.Parse(wire);
    ASSERT_EQ(r.status, ReplyStatus::kOk) << c.wire;
    EXPECT_EQ(r.consumed, c.wire.size()) << c.wire;
    EXPECT_EQ(Describe(r.reply), c.expected);
  }
}

TEST(ReplyReader, EveryProperPrefixNeedsMore) {
  ReplyReader reader;
  for (const Case& c : ValidCases()) {
    for (size_t k = 0; k < c.wire.size(); ++k) {
      ReplyResult r = reader.Parse(std::string_view(c.wire).substr(0, k));
      ASSERT_EQ(r.status, ReplyStatus::kNeedMore)
          << "wire " << c.wire << " prefix " << k << " error " << r.error;
      // The hint never overshoots the real reply and always asks for progress.
      EXPECT_GT(r.needed, k) << c.wire << " prefix " << k;
      EXPECT_LE(r.needed, c.wire.size()) << c.wire << " prefix " << k;
    }
  }
}

TEST(ReplyReader, StreamSplitAtEveryByteBoundary) {
  std::string all;
  std::vector<std::string> expected;
  for (const Case& c : ValidCases()) {
    all += c.wire;
    expected.push_back(c.expected);
  }
  for (size_t split = 0; split <= all.size(); ++split) {
    ReplyReader reader;
    std::vector<std::string> got;
    auto drain = [&] {
      for (;;) {
        ReplyResult r = reader.Next();
        if (r.status != ReplyStatus::kOk) {
          ASSERT_EQ(r.status, ReplyStatus::kNeedMore) << r.error;
          return;
        }
        got.push_back(Describe(r.reply));
      }
    };
    reader.Feed(std::string_view(all).substr(0, split));
    drain();
    reader.Feed(std::string_view(all).substr(split));
    drain();
    ASSERT_EQ(got, expected) << "split at " << split;
    EXPECT_EQ(reader.Buffered(), 0u);
  }
}

TEST(ReplyReader, StreamOneByteAtATime) {
  std::string all;
  std::vector<std::string> expected;
  for (const Case& c : ValidCases()) {
    all += c.wire;
    expected.push_back(c.expected);
  }
  ReplyReader reader;
  std::vector<std::string> got;
  for (char ch : all) {
    reader.Feed(std::string_view(&ch, 1));
    for (;;) {
      ReplyResult r = reader.Next();
      ASSERT_NE(r.status, ReplyStatus::kError) << r.error;
      if (r.status == ReplyStatus::kNeedMore) break;
      got.push_back(Describe(r.reply));
    }
  }
  EXPECT_EQ(got, expected);
}

TEST(ReplyReader, MalformedInputsAreErrors) {
  const std::vector<std::string> bad = {
      "?\r\n",                    // unknown type
      "OK\r\n",                   // inline text is not a reply
      "+OK\rX",                   // CR without LF
      "+O\nK\r\n",                // bare LF
      ":\r\n",                    // empty integer
      ":12a\r\n",                 // junk in integer
      ":-\r\n",                   // sign only
      ":9223372036854775808\r\n", // overflow
      ":+5\r\n",                  // plus sign not allowed
      "$-2\r\n",                  // negative bulk length
      "$3\r\nabcd\r\n",           // bulk longer than announced
      "$3\r\nab\r\n\r\n",         // terminator in the wrong place
      "$x\r\n",                   // non-numeric length
      "*-2\r\n",                  // negative array length
      "*1\r\n?\r\n",              // bad element
      "*2\r\n:1\r\n:x\r\n",       // bad second element
      "$ 3\r\nabc\r\n",           // space in length
  };
  ReplyReader reader;
  for (const std::string& wire : bad) {
    ReplyResult r = reader.Parse(wire);
    EXPECT_EQ(r.status, ReplyStatus::kError) << wire;
    EXPECT_FALSE(r.error.empty()) << wire;
    // No prefix of a malformed reply may be accepted as a whole reply.
    for (size_t k = 0; k < wire.size(); ++k) {
      ReplyResult p = reader.Parse(std::string_view(wire).substr(0, k));
      EXPECT_NE(p.status, ReplyStatus::kOk) << wire << " prefix " << k;
    }
  }
}

TEST(ReplyReader, GarbageIntegerFailsBeforeTheLineEnds) {
  ReplyReader reader;
  EXPECT_EQ(reader.Parse(":12x").status, ReplyStatus::kError);
  EXPECT_EQ(reader.Parse("$abc").status, ReplyStatus::kError);
  EXPECT_EQ(reader.Parse("*1\r\n:1-").status, ReplyStatus::kError);
  EXPECT_EQ(reader.Parse(":123").status, ReplyStatus::kNeedMore);
}

TEST(ReplyReader, EnforcesLimits) {
  ReplyLimits limits;
  limits.max_depth = 3;
  limits.max_bulk = 10;
  limits.max_elements = 8;
  limits.max_line = 16;
  ReplyReader reader(limits);
  EXPECT_EQ(reader.Parse("*1\r\n*1\r\n*1\r\n:1\r\n").status, ReplyStatus::kOk);
  EXPECT_EQ(reader.Parse("*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").status, ReplyStatus::kError);
  EXPECT_EQ(reader.Parse("$10\r\n0123456789\r\n").status, ReplyStatus::kOk);
  EXPECT_EQ(reader.Parse("$11\r\n").status, ReplyStatus::kError);  // before any data
  EXPECT_EQ(reader.Parse("*7\r\n").status, ReplyStatus::kNeedMore);
  EXPECT_EQ(reader.Parse("*8\r\n").status, ReplyStatus::kError);  // 1 root + 8 > 8
  EXPECT_EQ(reader.Parse("*2\r\n*3\r\n*3\r\n").status, ReplyStatus::kError);
  EXPECT_EQ(reader.Parse("+0123456789abcdef\r\n").status, ReplyStatus::kOk);
  EXPECT_EQ(reader.Parse("+0123456789abcdefg").status, ReplyStatus::kError);
  EXPECT_EQ(reader.Parse("+0123456789abcdef").status, ReplyStatus::kNeedMore);
}

TEST(ReplyReader, LargeBulkNeedsHintAvoidsRescans) {
  ReplyReader reader;
  std::string wire = "$100000\r\n" + std::string(100000, 'x') + "\r\n";
  ReplyResult r = reader.Parse(std::string_view(wire).substr(0, 20));
  ASSERT_EQ(r.status, ReplyStatus::kNeedMore);
  EXPECT_EQ(r.needed, wire.size());
  r = reader.Parse(wire);
  ASSERT_EQ(r.status, ReplyStatus::kOk);
  EXPECT_EQ(r.reply.text.size(), 100000u);
}

TEST(ReplyReader, StreamIsPoisonedAfterAnError) {
  ReplyReader reader;
  reader.Feed("+ok\r\n?bad\r\n+later\r\n");
  ReplyResult r = reader.Next();
  ASSERT_EQ(r.status, ReplyStatus::kOk);
  EXPECT_EQ(Describe(r.reply), "+ok");
  EXPECT_EQ(reader.Next().status, ReplyStatus::kError);
  reader.Feed("+more\r\n");
  EXPECT_EQ(reader.Next().status, ReplyStatus::kError);
}

TEST(ReplyReader, IntegerParser) {
  int64_t v = 0;
  EXPECT_TRUE(ParseReplyInteger("0", v));
  EXPECT_EQ(v, 0);
  EXPECT_TRUE(ParseReplyInteger("-9223372036854775808", v));
  EXPECT_EQ(v, INT64_MIN);
  EXPECT_TRUE(ParseReplyInteger("9223372036854775807", v));
  EXPECT_EQ(v, INT64_MAX);
  EXPECT_FALSE(ParseReplyInteger("9223372036854775808", v));
  EXPECT_FALSE(ParseReplyInteger("-9223372036854775809", v));
  EXPECT_FALSE(ParseReplyInteger("", v));
  EXPECT_FALSE(ParseReplyInteger("-", v));
  EXPECT_FALSE(ParseReplyInteger("1 ", v));
}

// Random mutations of valid replies and random bytes: the reader must never crash,
// never claim more bytes than it was given, and agree with itself on a re-parse.
TEST(ReplyReader, FuzzNeverCrashes) {
  std::mt19937_64 rng(20261126);
  ReplyLimits limits;
  limits.max_elements = 64;
  limits.max_bulk = 64;
  ReplyReader reader(limits);
  const char alphabet[] = "+-:$*\r\n0123456789-abc";
  for (int iter = 0; iter < 20000; ++iter) {
    std::string wire;
    if (iter % 2 == 0) {
      const auto& cases = ValidCases();
      wire = cases[rng() % cases.size()].wire + cases[rng() % cases.size()].wire;
      int edits = 1 + static_cast<int>(rng() % 3);
      for (int e = 0; e < edits && !wire.empty(); ++e) {
        size_t at = rng() % wire.size();
        switch (rng() % 3) {
          case 0: wire[at] = alphabet[rng() % (sizeof(alphabet) - 1)]; break;
          case 1: wire.erase(at, 1); break;
          default: wire.insert(at, 1, alphabet[rng() % (sizeof(alphabet) - 1)]); break;
        }
      }
    } else {
      size_t len = rng() % 24;
      for (size_t i = 0; i < len; ++i) wire += alphabet[rng() % (sizeof(alphabet) - 1)];
    }
    ReplyResult r = reader.Parse(wire);
    if (r.status == ReplyStatus::kOk) {
      ASSERT_LE(r.consumed, wire.size());
      std::string first = Describe(r.reply);
      ReplyResult again = reader.Parse(std::string_view(wire).substr(0, r.consumed));
      ASSERT_EQ(again.status, ReplyStatus::kOk);
      EXPECT_EQ(Describe(again.reply), first);
    } else if (r.status == ReplyStatus::kNeedMore) {
      ASSERT_GT(r.needed, wire.size());
    } else {
      ASSERT_FALSE(r.error.empty());
    }
  }
}

}  // namespace
}  // namespace ticketd::resp

namespace ticketd::resp {
namespace {

// Found by fuzz_reply_reader: an integer with leading zeros was accepted whole but rejected
// when fed byte by byte. Whole and streamed reads must agree, whatever the input.
TEST(ReplyReader, WholeAndStreamedAgreeOnOverlongIntegers) {
  for (std::string wire : {std::string(":") + std::string(21, '0') + "1\r\n",
                           std::string("$") + std::string(21, '0') + "1\r\nx\r\n",
                           std::string(":") + std::string(19, '0') + "1\r\n"}) {
    ReplyReader whole;
    ReplyStatus w = whole.Parse(wire).status;
    ReplyReader streamed;
    ReplyStatus s = ReplyStatus::kNeedMore;
    for (char ch : wire) {
      streamed.Feed(std::string_view(&ch, 1));
      ReplyResult r = streamed.Next();
      s = r.status;
      if (s != ReplyStatus::kNeedMore) break;
    }
    EXPECT_EQ(w, s) << wire;
  }
}

}  // namespace
}  // namespace ticketd::resp
