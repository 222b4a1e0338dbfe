// The log line format and the levels (Redis's names and markers).
#include "ticketd/base/log.h"

#include <gtest/gtest.h>

namespace ticketd::logging {
namespace {

TEST(Log, LineHasUtcMillisecondsNodeAndMarker) {
  // 2021-03-04T05:06:07.089Z
  uint64_t ms = 1614834367089ull;
  EXPECT_EQ(format_line(ms, 3, Level::kNotice, "serving"),
            "2021-03-04T05:06:07.089Z ticketd[3] * serving");
  EXPECT_EQ(format_line(ms, 3, Level::kWarning, "x"), "2021-03-04T05:06:07.089Z ticketd[3] # x");
  EXPECT_EQ(format_line(ms, 3, Level::kVerbose, "x"), "2021-03-04T05:06:07.089Z ticketd[3] - x");
  EXPECT_EQ(format_line(ms, 3, Level::kDebug, "x"), "2021-03-04T05:06:07.089Z ticketd[3] . x");
  EXPECT_EQ(format_line(0, 0, Level::kNotice, "x"), "1970-01-01T00:00:00.000Z ticketd[-] * x");
}

TEST(Log, OneCallIsOneLine) {
  EXPECT_EQ(format_line(0, 1, Level::kNotice, "a\nb\r\nc"),
            "1970-01-01T00:00:00.000Z ticketd[1] * a b  c");
}

TEST(Log, LevelsByRedisNames) {
  Level l = Level::kNotice;
  ASSERT_TRUE(parse_level("debug", &l));
  EXPECT_EQ(l, Level::kDebug);
  ASSERT_TRUE(parse_level("VERBOSE", &l));
  EXPECT_EQ(l, Level::kVerbose);
  ASSERT_TRUE(parse_level("Warning", &l));
  EXPECT_EQ(l, Level::kWarning);
  ASSERT_TRUE(parse_level("notice", &l));
  EXPECT_EQ(l, Level::kNotice);
  EXPECT_FALSE(parse_level("info", &l));
  EXPECT_FALSE(parse_level("", &l));
  EXPECT_FALSE(parse_level("noticex", &l));
  for (Level x : {Level::kDebug, Level::kVerbose, Level::kNotice, Level::kWarning}) {
    Level back;
    ASSERT_TRUE(parse_level(level_name(x), &back));
    EXPECT_EQ(back, x);
  }
}

TEST(Log, ThresholdDropsLowerLevels) {
  set_level(Level::kWarning);
  EXPECT_FALSE(enabled(Level::kNotice));
  EXPECT_TRUE(enabled(Level::kWarning));
  set_level(Level::kDebug);
  EXPECT_TRUE(enabled(Level::kDebug));
  set_level(Level::kNotice);
  EXPECT_FALSE(enabled(Level::kVerbose));
  EXPECT_TRUE(enabled(Level::kNotice));
}

}  // namespace
}  // namespace ticketd::logging
