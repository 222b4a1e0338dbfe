// The pure parts of the sequence commands: Redis-style integer arguments and COMMAND DOCS.
#include "../../src/server/sequence_commands.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "ticketd/resp/reply_reader.h"

namespace ticketd::server::sequences {
namespace {

TEST(SequenceCommands, ParseI64AsRedisReadsIntegers) {
  int64_t v = 0;
  EXPECT_TRUE(parse_i64("0", &v));
  EXPECT_EQ(v, 0);
  EXPECT_TRUE(parse_i64("42", &v));
  EXPECT_EQ(v, 42);
  EXPECT_TRUE(parse_i64("-7", &v));
  EXPECT_EQ(v, -7);
  EXPECT_TRUE(parse_i64("9223372036854775807", &v));
  EXPECT_EQ(v, std::numeric_limits<int64_t>::max());
  EXPECT_TRUE(parse_i64("-9223372036854775808", &v));
  EXPECT_EQ(v, std::numeric_limits<int64_t>::min());
  for (const char* bad : {"", "-", "+1", " 1", "1 ", "01", "-0", "1e3", "0x10", "abc",
                          "9223372036854775808", "-9223372036854775809",
                          "18446744073709551616", "99999999999999999999999"}) {
    EXPECT_FALSE(parse_i64(bad, &v)) << bad;
  }
}

TEST(SequenceCommands, DocsAreWellFormedRespForEveryTicketCommand) {
  EXPECT_GE(docs_count(), 8u);
  for (size_t i = 0; i < docs_count(); ++i) {
    std::string out;
    ASSERT_TRUE(append_docs(out, docs_name(i)));
    // Name, then one map: the reader must take each as exactly one complete reply.
    resp::ReplyReader rr;
    resp::ReplyResult name = rr.Parse(out);
    ASSERT_EQ(name.status, resp::ReplyStatus::kOk) << docs_name(i);
    EXPECT_EQ(name.reply.text, docs_name(i));
    std::string_view rest = std::string_view(out).substr(name.consumed);
    resp::ReplyResult doc = rr.Parse(rest);
    ASSERT_EQ(doc.status, resp::ReplyStatus::kOk) << docs_name(i);
    EXPECT_EQ(doc.reply.type, resp::ReplyType::kArray);
    EXPECT_EQ(doc.reply.elements.size() % 2, 0u);
    EXPECT_EQ(doc.consumed, rest.size()) << "nothing left over";
  }
  std::string out;
  EXPECT_FALSE(append_docs(out, "ping"));
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(append_docs(out, "TICKET.BLOCK")) << "names are case-insensitive";
}

}  // namespace
}  // namespace ticketd::server::sequences
