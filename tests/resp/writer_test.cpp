// Tests of the RESP2 reply encoder: every reply compared byte for byte.
#include "ticketd/resp/writer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "ticketd/resp/parser.h"

namespace ticketd::resp {
namespace {

using namespace std::string_literals;

TEST(RespWriter, Simple) {
  std::string out;
  append_simple(out, "OK");
  EXPECT_EQ(out, "+OK\r\n");
  append_simple(out, "");
  EXPECT_EQ(out, "+OK\r\n+\r\n");
}

TEST(RespWriter, SimpleAndErrorNeverBreakFraming) {
  std::string out;
  append_simple(out, "a\r\nb\nc\r");
  EXPECT_EQ(out, "+a  b c \r\n");
  out.clear();
  append_error(out, "ERR bad\r\n+OK");
  EXPECT_EQ(out, "-ERR bad  +OK\r\n");
}

TEST(RespWriter, Error) {
  std::string out = "prefix";
  append_error(out, "ERR unknown command 'x'");
  EXPECT_EQ(out, "prefix-ERR unknown command 'x'\r\n");
  out.clear();
  append_error(out, "MOVED 0 127.0.0.1:7001");
  EXPECT_EQ(out, "-MOVED 0 127.0.0.1:7001\r\n");
}

TEST(RespWriter, ParserErrorTextsRoundTrip) {
  // A parser error text with a raw byte in it (the "got 'X'" one) stays one line.
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.parse("*1\r\n\r\n", &consumed), ParseStatus::kError);
  std::string out;
  append_error(out, parser.error());
  EXPECT_EQ(out, "-ERR Protocol error: expected '$', got ' '\r\n");
}

TEST(RespWriter, Integer) {
  std::string out;
  append_integer(out, 0);
  append_integer(out, 42);
  append_integer(out, -7);
  append_integer(out, std::numeric_limits<int64_t>::max());
  append_integer(out, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(out, ":0\r\n:42\r\n:-7\r\n:9223372036854775807\r\n:-9223372036854775808\r\n");
}

TEST(RespWriter, Bulk) {
  std::string out;
  append_bulk(out, "hello");
  append_bulk(out, "");
  append_bulk(out, "a\r\n\0b"s);
  EXPECT_EQ(out, "$5\r\nhello\r\n$0\r\n\r\n$5\r\na\r\n\0b\r\n"s);
  out.clear();
  const std::string big(1000, 'z');
  append_bulk(out, big);
  EXPECT_EQ(out, "$1000\r\n" + big + "\r\n");
}

TEST(RespWriter, NullsAndArrays) {
  std::string out;
  append_null(out);
  append_null_array(out);
  append_array_header(out, 0);
  append_array_header(out, 3);
  append_array_header(out, 1234567);
  EXPECT_EQ(out, "$-1\r\n*-1\r\n*0\r\n*3\r\n*1234567\r\n");
}

TEST(RespWriter, TicketReply) {
  std::string out;
  append_simple_u64(out, 0);
  append_simple_u64(out, 1);
  append_simple_u64(out, 1234567890123ULL);
  append_simple_u64(out, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(out, "+0\r\n+1\r\n+1234567890123\r\n+18446744073709551615\r\n");
}

TEST(RespWriter, UnsignedIntegerReply) {
  // TICKET.BLOCK answers [first, last] as integers; a ticket may pass 2^63-1.
  std::string out;
  append_integer_u64(out, 0);
  append_integer_u64(out, 42);
  append_integer_u64(out, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(out, ":0\r\n:42\r\n:18446744073709551615\r\n");
}

TEST(RespWriter, ArrayOfRepliesParsesBack) {
  // What the writer produces as an array of bulks is a valid request for the parser:
  // an independent check that lengths and terminators agree.
  std::string out;
  append_array_header(out, 3);
  append_bulk(out, "SET");
  append_bulk(out, "k\r\n");
  append_bulk(out, "");
  Parser parser;
  size_t consumed = 0;
  ASSERT_EQ(parser.parse(out, &consumed), ParseStatus::kOk);
  EXPECT_EQ(consumed, out.size());
  ASSERT_EQ(parser.args().size(), 3u);
  EXPECT_EQ(parser.args()[0], "SET");
  EXPECT_EQ(parser.args()[1], "k\r\n");
  EXPECT_EQ(parser.args()[2], "");
}

TEST(RespWriter, NoGrowthWhenReserved) {
  std::string out;
  out.reserve(4096);
  const char* before = out.data();
  for (uint64_t t = 1; t <= 100; ++t) append_simple_u64(out, t * 1000003);
  EXPECT_EQ(out.data(), before);  // appended in place: no reallocation
}

}  // namespace
}  // namespace ticketd::resp
