#include "ticketd/metrics/stats.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

namespace ticketd::metrics {
namespace {

TEST(LatencyHistogram, BucketsCoverEveryValueInOrder) {
  // Every bucket's range starts where the previous one ended, and a value lands in the
  // bucket whose range holds it.
  for (size_t i = 1; i < LatencyHistogram::kBuckets; ++i) {
    ASSERT_EQ(LatencyHistogram::bucket_low(i), LatencyHistogram::bucket_high(i - 1) + 1) << i;
  }
  std::mt19937_64 rng(7);
  for (int k = 0; k < 100000; ++k) {
    uint64_t v = rng() >> (rng() % 64);
    size_t b = LatencyHistogram::bucket_of(v);
    if (v >= (uint64_t{1} << 36)) {
      ASSERT_EQ(b, LatencyHistogram::kBuckets - 1);
      continue;
    }
    ASSERT_LE(LatencyHistogram::bucket_low(b), v) << v;
    ASSERT_GE(LatencyHistogram::bucket_high(b), v) << v;
    // At most ~3% wide above 64 ns.
    if (v >= 64) {
      ASSERT_LE(LatencyHistogram::bucket_high(b) - LatencyHistogram::bucket_low(b),
                LatencyHistogram::bucket_low(b) / 32) << v;
    }
  }
  EXPECT_EQ(LatencyHistogram::bucket_of(0), 0u);
  EXPECT_EQ(LatencyHistogram::bucket_of(63), 63u);
  EXPECT_EQ(LatencyHistogram::bucket_of(64), 64u);
  EXPECT_EQ(LatencyHistogram::bucket_of(65), 64u);
}

TEST(LatencyHistogram, PercentilesAreTheHighestValueOfTheirBucket) {
  LatencyHistogram h;
  for (int i = 1; i <= 1000; ++i) h.record(static_cast<uint64_t>(i) * 1000);  // 1..1000 us
  HistogramCounts c;
  c.add(h);
  EXPECT_EQ(c.total, 1000u);
  uint64_t p50 = c.value_at_percentile(50);
  uint64_t p99 = c.value_at_percentile(99);
  uint64_t p999 = c.value_at_percentile(99.9);
  EXPECT_GE(p50, 500000u);
  EXPECT_LE(p50, 500000u * 33 / 32);
  EXPECT_GE(p99, 990000u);
  EXPECT_LE(p99, 990000u * 33 / 32);
  EXPECT_GE(p999, 999000u);
  EXPECT_LE(p999, 1000000u * 33 / 32);
  EXPECT_LE(p50, p99);
  HistogramCounts empty;
  EXPECT_EQ(empty.value_at_percentile(50), 0u);
}

TEST(LatencyHistogram, CountsOfManyCallsAtOnce) {
  LatencyHistogram h;
  h.record(100, 15);
  h.record(5000, 5);
  HistogramCounts c;
  c.add(h);
  EXPECT_EQ(c.total, 20u);
  EXPECT_EQ(c.value_at_percentile(75), LatencyHistogram::bucket_high(LatencyHistogram::bucket_of(100)));
  EXPECT_EQ(c.value_at_percentile(76), LatencyHistogram::bucket_high(LatencyHistogram::bucket_of(5000)));
}

TEST(ErrorCounters, FirstWordOfTheReply) {
  EXPECT_EQ(ErrorCounters::error_word("-MOVED 5718 127.0.0.1:11001\r\n"), "MOVED");
  EXPECT_EQ(ErrorCounters::error_word("ERR unknown command"), "ERR");
  EXPECT_EQ(ErrorCounters::error_word("-CLUSTERDOWN\r\n"), "CLUSTERDOWN");
  EXPECT_EQ(ErrorCounters::error_word(std::string(100, 'X')).size(), ErrorCounters::kMaxName - 1);
  ErrorCounters e;
  e.add("MOVED", 3);
  e.add("ERR");
  e.add("MOVED");
  ASSERT_EQ(e.kinds(), 2u);
  EXPECT_EQ(e.name(0), "MOVED");
  EXPECT_EQ(e.count(0), 4u);
  EXPECT_EQ(e.count(1), 1u);
  EXPECT_EQ(e.total(), 5u);
  for (size_t i = 0; i < 100; ++i) e.add("E" + std::to_string(i));
  EXPECT_EQ(e.kinds(), ErrorCounters::kMaxKinds);
  EXPECT_EQ(e.total(), 105u);  // the kinds past the table are still counted in total
}

TEST(CommandStats, RedisFormats) {
  CommandStats s(3);
  s.record_call(0, 2000, 4, false);   // 4 calls of 2 us
  s.record_call(0, 10000, 1, true);   // one failed, 10 us
  s.record_rejected(0, 2);
  s.record_rejected(2, 1);            // rejected only: listed, no latency line
  s.errors().add("MOVED", 2);
  s.errors().add("ERR", 1);
  StatsView v(3);
  v.add(s);
  std::vector<std::string_view> names = {"ticket", "ping", "info"};
  std::string out;
  append_commandstats(out, v, names);
  EXPECT_EQ(out,
            "# Commandstats\r\n"
            "cmdstat_ticket:calls=5,usec=18,usec_per_call=3.60,rejected_calls=2,failed_calls=1\r\n"
            "cmdstat_info:calls=0,usec=0,usec_per_call=0.00,rejected_calls=1,failed_calls=0\r\n");
  out.clear();
  append_errorstats(out, v);
  EXPECT_EQ(out, "# Errorstats\r\nerrorstat_MOVED:count=2\r\nerrorstat_ERR:count=1\r\n");
  out.clear();
  append_latencystats(out, v, names);
  char want[128];
  double p50 = static_cast<double>(LatencyHistogram::bucket_high(LatencyHistogram::bucket_of(2000))) / 1000;
  double p99 = static_cast<double>(LatencyHistogram::bucket_high(LatencyHistogram::bucket_of(10000))) / 1000;
  std::snprintf(want, sizeof(want), "latency_percentiles_usec_ticket:p50=%.3f,p99=%.3f,p99.9=%.3f\r\n",
                p50, p99, p99);
  EXPECT_EQ(out, std::string("# Latencystats\r\n") + want);
}

TEST(StatsView, SumsShardsAndSubtractsAResetBaseline) {
  CommandStats a(2), b(2);
  a.record_call(1, 1000, 1, false);
  b.record_call(1, 3000, 2, false);
  b.errors().add("ERR");
  StatsView base(2);
  base.add(a);
  base.add(b);
  EXPECT_EQ(base.cmds[1].calls, 3u);
  EXPECT_EQ(base.cmds[1].ns, 7000u);
  EXPECT_EQ(base.cmds[1].hist.total, 3u);
  a.record_call(1, 1000, 1, false);
  a.errors().add("ERR");
  a.errors().add("MOVED");
  StatsView now(2);
  now.add(a);
  now.add(b);
  now.subtract(base);
  EXPECT_EQ(now.cmds[1].calls, 1u);
  EXPECT_EQ(now.cmds[1].ns, 1000u);
  EXPECT_EQ(now.cmds[1].hist.total, 1u);
  ASSERT_EQ(now.errors.size(), 2u);
  EXPECT_EQ(now.error_total, 2u);
}

TEST(CommandStats, OneWriterManyReadersSeeGrowingSums) {
  CommandStats s(1);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 200000; ++i) s.record_call(0, 1000, 1, false);
    done = true;
  });
  uint64_t last = 0;
  while (!done) {
    StatsView v(1);
    v.add(s);
    ASSERT_GE(v.cmds[0].calls, last);
    last = v.cmds[0].calls;
  }
  writer.join();
  StatsView v(1);
  v.add(s);
  EXPECT_EQ(v.cmds[0].calls, 200000u);
  EXPECT_EQ(v.cmds[0].hist.total, 200000u);
}

}  // namespace
}  // namespace ticketd::metrics
