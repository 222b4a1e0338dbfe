// Several durable WAL writes in flight side by side: every completion order and every crash
// point with 2-4 writes in flight, on a real file whose writes the test performs itself (a
// write "completes" when the test pwrite()s it and calls end_write; a crash drops the Wal with
// the rest unwritten, or one of them torn). The durable index must only ever cover the
// contiguous prefix of completed writes, and recovery must end the log at the first write that
// did not land, discarding later ones that did.
#include <gtest/gtest.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <numeric>

#include "ticketd/storage/scratch_dir.h"
#include "ticketd/storage/wal.h"

namespace ticketd::storage {
namespace {

using scratch::payload_for;
using scratch::ScratchDir;

WalOptions inflight_options(size_t k, bool refuse_direct) {
  WalOptions o;
  o.segment_bytes = 256 * 1024;
  o.max_write_bytes = 16 * 1024;
  o.spare_step_bytes = 64 * 1024;
  o.max_writes_in_flight = k;
  o.refuse_direct_io_for_testing = refuse_direct;
  return o;
}

// Writes op's first `bytes` bytes (all of it by default) durably, as the io_uring would.
int64_t perform(const WalWriteOp& op, size_t bytes) {
  iovec iov{const_cast<void*>(op.buf), bytes};
  ssize_t n = ::pwritev2(op.fd, &iov, 1, static_cast<off_t>(op.offset), op.dsync ? RWF_DSYNC : 0);
  if (n < 0) return -errno;
  if (op.needs_fdatasync && ::fdatasync(op.fd) != 0) return -errno;
  return bytes == op.len ? n : static_cast<int64_t>(op.len);  // a torn write "succeeds"
}

struct Case {
  size_t writes;               // 2..4 in flight
  std::vector<size_t> order;   // completion order (a permutation of 0..writes-1)
  size_t crash_after;          // completions before the crash (0..writes)
  bool torn_next;              // the next write in the order lands partially (its first block)
  bool refuse_direct;
};

std::string describe(const Case& c) {
  std::string s = std::to_string(c.writes) + " writes, order";
  for (size_t w : c.order) s += " " + std::to_string(w);
  s += ", crash after " + std::to_string(c.crash_after) + (c.torn_next ? " (+ torn)" : "") +
       (c.refuse_direct ? " buffered" : "");
  return s;
}

// One case: a durable prefix (1..5) with a partial tail block, then c.writes writes begun
// side by side (write w carries 3 records; odd writes span two blocks), completed in c.order.
void run_case(const Case& c) {
  SCOPED_TRACE(describe(c));
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  std::unique_ptr<Wal> wal;
  std::vector<WalRecord> recs;
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(c.writes, c.refuse_direct), &wal, nullptr,
                        &recs)
                  .is_ok());
  std::map<uint64_t, std::pair<uint64_t, size_t>> model;  // index -> term, len
  auto add = [&](uint64_t idx, uint64_t term, size_t len) {
    std::vector<std::byte> p = payload_for(idx, term, len);
    wal->append(1, term, idx, p);
    model[idx] = {term, len};
  };
  uint64_t next = 1;
  for (; next <= 5; ++next) add(next, 1, 100);
  ASSERT_TRUE(wal->sync_write().is_ok());
  ASSERT_EQ(wal->durable_index(), 5u);

  std::vector<WalWriteOp> ops;
  for (size_t w = 0; w < c.writes; ++w) {
    ASSERT_TRUE(wal->can_begin_write());
    size_t len = w % 2 == 1 ? 1800 : 200;  // odd writes: 3 x 1832 bytes, two blocks
    for (int r = 0; r < 3; ++r, ++next) add(next, 2, len);
    std::optional<WalWriteOp> op = wal->begin_write();
    ASSERT_TRUE(op.has_value());
    EXPECT_EQ(op->first_index, next - 3);
    EXPECT_EQ(op->last_index, next - 1);
    EXPECT_EQ(op->offset % kBlockBytes, 0u);
    // No write shares a block with another in flight.
    for (const WalWriteOp& o : ops) {
      EXPECT_TRUE(op->offset >= o.offset + o.len || o.offset >= op->offset + op->len);
    }
    ops.push_back(*op);
  }
  EXPECT_FALSE(wal->can_begin_write()) << "the bound is max_writes_in_flight";
  EXPECT_EQ(wal->writes_in_flight(), c.writes);

  std::vector<bool> done(c.writes, false);
  for (size_t i = 0; i < c.crash_after; ++i) {
    size_t w = c.order[i];
    ASSERT_TRUE(wal->end_write(ops[w].last_index, perform(ops[w], ops[w].len)).is_ok());
    done[w] = true;
    // The durable index covers exactly the contiguous prefix of completed writes.
    uint64_t expect = 5;
    for (size_t j = 0; j < c.writes && done[j]; ++j) expect = ops[j].last_index;
    ASSERT_EQ(wal->durable_index(), expect) << "after completing write " << w;
    ASSERT_EQ(wal->written_index(), expect);
  }
  uint64_t acknowledged = wal->durable_index();
  bool torn_any = false;
  size_t torn = c.writes;
  if (c.torn_next && c.crash_after < c.writes) {
    torn = c.order[c.crash_after];
    size_t part = ops[torn].len > kBlockBytes ? kBlockBytes : 512;
    perform(ops[torn], part);
    torn_any = true;
  }
  // The crash: the Wal goes away with the rest in flight (never written).
  wal.reset();

  // Recovery keeps the writes that landed up to the first that did not (a torn one may keep
  // some of its first records), and nothing after it.
  size_t m = 0;
  while (m < c.writes && done[m]) ++m;
  uint64_t lo = m == 0 ? 5 : ops[m - 1].last_index;
  uint64_t hi = (torn_any && torn == m) ? ops[m].last_index - 1 : lo;
  WalRecoveryReport rep;
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(c.writes, c.refuse_direct), &wal, &rep, &recs)
                  .is_ok());
  ASSERT_FALSE(recs.empty());
  uint64_t last = recs.back().index;
  EXPECT_GE(last, acknowledged) << "an acknowledged record was lost";
  EXPECT_GE(last, lo);
  EXPECT_LE(last, hi) << "a record after a hole survived: " << rep.describe();
  ASSERT_EQ(recs.size(), last);
  for (const WalRecord& r : recs) {
    auto [term, len] = model.at(r.index);
    ASSERT_EQ(r.term, term);
    ASSERT_EQ(r.payload, payload_for(r.index, term, len)) << "index " << r.index;
  }
  // The log goes on after the cut: new records (another term) at the discarded indexes, and
  // no discarded record may resurface behind them.
  for (uint64_t i = last + 1; i <= last + 12; ++i) add(i, 3, 300);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(c.writes, c.refuse_direct), &wal, &rep, &recs)
                  .is_ok());
  ASSERT_EQ(recs.size(), last + 12) << rep.describe();
  for (const WalRecord& r : recs) {
    auto [term, len] = model.at(r.index);
    ASSERT_EQ(r.term, term) << "index " << r.index;
    ASSERT_EQ(r.payload, payload_for(r.index, term, len)) << "index " << r.index;
  }
  EXPECT_FALSE(rep.truncated) << rep.describe();
}

void run_all(size_t writes, bool refuse_direct) {
  std::vector<size_t> order(writes);
  std::iota(order.begin(), order.end(), 0);
  do {
    for (size_t crash = 0; crash <= writes; ++crash) {
      for (bool torn : {false, true}) {
        if (torn && crash == writes) continue;
        run_case(Case{writes, order, crash, torn, refuse_direct});
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(WalInFlight, EveryOrderAndCrashPointTwoWrites) { run_all(2, false); }
TEST(WalInFlight, EveryOrderAndCrashPointThreeWrites) { run_all(3, false); }
TEST(WalInFlight, EveryOrderAndCrashPointFourWrites) { run_all(4, false); }
TEST(WalInFlight, EveryOrderAndCrashPointBuffered) { run_all(3, true); }

// A write begun while another is in flight starts on a fresh block; with none in flight the
// next write rewrites the tail block as before (no padding cost at one write in flight).
TEST(WalInFlight, FreshBlockOnlyBesideAWriteInFlight) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(2, false), &wal, nullptr, nullptr).is_ok());
  std::vector<std::byte> p(100, std::byte{7});
  wal->append(1, 1, 1, p);
  auto a = wal->begin_write();
  ASSERT_TRUE(a);
  EXPECT_EQ(a->offset, 0u);
  wal->append(1, 1, 2, p);
  auto b = wal->begin_write();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->offset, kBlockBytes) << "beside a write in flight: a fresh block";
  ASSERT_TRUE(wal->end_write(b->last_index, perform(*b, b->len)).is_ok());
  EXPECT_EQ(wal->durable_index(), 0u) << "write 2 is durable but write 1 is not";
  ASSERT_TRUE(wal->end_write(a->last_index, perform(*a, a->len)).is_ok());
  EXPECT_EQ(wal->durable_index(), 2u);
  wal->append(1, 1, 3, p);
  auto c = wal->begin_write();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->offset, kBlockBytes) << "nothing in flight: the tail block is rewritten";
  EXPECT_EQ(c->len, kBlockBytes);
  ASSERT_TRUE(wal->end_write(perform(*c, c->len)).is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(2, false), &wal, nullptr, &recs).is_ok());
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[2].index, 3u);
}

// Only durable writes go side by side; a plain write (durability below high) runs alone.
TEST(WalInFlight, PlainWritesRunAlone) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(4, false), &wal, nullptr, nullptr).is_ok());
  std::vector<std::byte> p(50, std::byte{9});
  wal->append(1, 1, 1, p);
  auto a = wal->begin_write(false);
  ASSERT_TRUE(a);
  wal->append(1, 1, 2, p);
  EXPECT_FALSE(wal->can_begin_write(true));
  EXPECT_FALSE(wal->can_begin_write(false));
  ASSERT_TRUE(wal->end_write(perform(*a, a->len)).is_ok());
  EXPECT_EQ(wal->written_index(), 1u);
  EXPECT_EQ(wal->durable_index(), 0u);
  // Unsynced data in the file: the durable write needs an fdatasync, and runs alone too.
  auto b = wal->begin_write(true);
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->needs_fdatasync);
  wal->append(1, 1, 3, p);
  EXPECT_FALSE(wal->can_begin_write(true));
  ASSERT_TRUE(wal->end_write(perform(*b, b->len)).is_ok());
  EXPECT_EQ(wal->durable_index(), 2u);
  EXPECT_TRUE(wal->can_begin_write(true));
  auto c = wal->begin_write(true);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->dsync);
  wal->append(1, 1, 4, p);
  EXPECT_TRUE(wal->can_begin_write(true));
  EXPECT_FALSE(wal->can_begin_write(false));
  ASSERT_TRUE(wal->end_write(perform(*c, c->len)).is_ok());
}

// A segment switch waits for the writes in flight; so does a truncation (the caller's idle()).
TEST(WalInFlight, SegmentSwitchWaitsForWritesInFlight) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  WalOptions o = inflight_options(3, false);
  o.segment_bytes = 16 * 1024;
  o.max_write_bytes = 8 * 1024;
  o.spare_step_bytes = 16 * 1024;
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::open(dir.path(), o, &wal, nullptr, nullptr).is_ok());
  std::vector<std::byte> p(3000, std::byte{5});
  uint64_t idx = 1;
  std::vector<WalWriteOp> ops;
  // Four one-block writes fill the 16 KiB segment; three may be in flight.
  for (int w = 0; w < 3; ++w) {
    wal->append(1, 1, idx++, p);
    auto op = wal->begin_write();
    ASSERT_TRUE(op);
    ops.push_back(*op);
  }
  ASSERT_TRUE(wal->end_write(ops[0].last_index, perform(ops[0], ops[0].len)).is_ok());
  wal->append(1, 1, idx++, p);
  auto d = wal->begin_write();
  ASSERT_TRUE(d);  // the last block of the segment
  ops.push_back(*d);
  ASSERT_TRUE(wal->end_write(ops[2].last_index, perform(ops[2], ops[2].len)).is_ok());
  wal->append(1, 1, idx++, p);
  ASSERT_TRUE(wal->can_begin_write());
  EXPECT_FALSE(wal->begin_write().has_value()) << "the switch must wait";
  EXPECT_FALSE(wal->failed());
  EXPECT_TRUE(wal->blocked().is_ok());
  EXPECT_TRUE(wal->has_pending());
  EXPECT_EQ(wal->segment_count(), 1u);
  ASSERT_TRUE(wal->end_write(ops[3].last_index, perform(ops[3], ops[3].len)).is_ok());
  EXPECT_EQ(wal->durable_index(), 1u) << "write 2 has not completed";
  ASSERT_TRUE(wal->end_write(ops[1].last_index, perform(ops[1], ops[1].len)).is_ok());
  EXPECT_EQ(wal->durable_index(), 4u);
  auto e = wal->begin_write();
  ASSERT_TRUE(e);
  EXPECT_EQ(wal->segment_count(), 2u);
  EXPECT_EQ(e->offset, 0u);
  ASSERT_TRUE(wal->end_write(perform(*e, e->len)).is_ok());
  // A truncation once nothing is in flight.
  ASSERT_TRUE(wal->truncate_suffix(3).is_ok());
  EXPECT_EQ(wal->last_index(), 2u);
  wal.reset();
  std::vector<WalRecord> recs;
  ASSERT_TRUE(Wal::open(dir.path(), o, &wal, nullptr, &recs).is_ok());
  ASSERT_EQ(recs.size(), 2u);
}

// Truncation finds its cut behind padded writes.
TEST(WalInFlight, TruncateSuffixSkipsPadding) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(2, false), &wal, nullptr, nullptr).is_ok());
  std::vector<std::byte> p(100, std::byte{3});
  uint64_t idx = 1;
  for (int round = 0; round < 4; ++round) {
    wal->append(1, 1, idx++, p);
    auto a = wal->begin_write();
    wal->append(1, 1, idx++, p);
    auto b = wal->begin_write();
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(wal->end_write(b->last_index, perform(*b, b->len)).is_ok());
    ASSERT_TRUE(wal->end_write(a->last_index, perform(*a, a->len)).is_ok());
  }
  ASSERT_EQ(wal->durable_index(), 8u);
  ASSERT_TRUE(wal->truncate_suffix(6).is_ok());
  wal->append(1, 2, 6, p);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  ASSERT_TRUE(Wal::open(dir.path(), inflight_options(2, false), &wal, &rep, &recs).is_ok());
  ASSERT_EQ(recs.size(), 6u) << rep.describe();
  EXPECT_EQ(recs[5].term, 2u);
  EXPECT_FALSE(rep.truncated);
}

TEST(WalInFlight, BoundIsValidated) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  std::unique_ptr<Wal> wal;
  EXPECT_FALSE(Wal::open(dir.path(), inflight_options(0, false), &wal, nullptr, nullptr).is_ok());
  EXPECT_FALSE(Wal::open(dir.path(), inflight_options(kMaxWritesInFlight + 1, false), &wal,
                         nullptr, nullptr)
                   .is_ok());
}

}  // namespace
}  // namespace ticketd::storage
