// WAL tests: round trips, rollover, torn tails at every byte, bit flips, truncation,
// compaction, the buffered fallback and the asynchronous write API.
#include "ticketd/storage/wal.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <csignal>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <random>

#include "ticketd/storage/scratch_dir.h"

namespace ticketd::storage {
namespace {

using scratch::list_dir;
using scratch::read_bytes;
using scratch::ScratchDir;
using scratch::write_bytes;

using scratch::payload_for;

size_t len_for(uint64_t index) { return static_cast<size_t>((index * 37) % 300); }

struct Expected {
  uint64_t term;
  size_t len;
  uint8_t type;
};

enum class IoMode { kAuto, kRefuseDirect };

class WalTest : public ::testing::TestWithParam<IoMode> {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  WalOptions small_options() {
    WalOptions o;
    o.segment_bytes = 64 * 1024;
    o.max_write_bytes = 16 * 1024;
    o.spare_step_bytes = 16 * 1024;
    o.refuse_direct_io_for_testing = GetParam() == IoMode::kRefuseDirect;
    o.log = [this](std::string_view m) { log_.emplace_back(m); };
    return o;
  }

  std::unique_ptr<Wal> open_wal(const WalOptions& o, std::vector<WalRecord>* recs = nullptr,
                                WalRecoveryReport* rep = nullptr) {
    std::unique_ptr<Wal> wal;
    std::vector<WalRecord> local;
    Status s = Wal::open(dir_.path(), o, &wal, rep, recs ? recs : &local);
    EXPECT_TRUE(s.is_ok()) << s.message();
    return wal;
  }

  void append(Wal* wal, uint64_t index, uint64_t term, size_t len) {
    std::vector<std::byte> p = payload_for(index, term, len);
    uint8_t type = static_cast<uint8_t>(index % 3);
    wal->append(type, term, index, p);
    model_[index] = Expected{term, len, type};
  }

  // Recovered records must equal the model exactly over [first, last].
  void expect_records(const std::vector<WalRecord>& recs, uint64_t first, uint64_t last) {
    ASSERT_EQ(recs.size(), last - first + 1);
    for (size_t i = 0; i < recs.size(); ++i) {
      uint64_t idx = first + i;
      const Expected& e = model_.at(idx);
      ASSERT_EQ(recs[i].index, idx);
      ASSERT_EQ(recs[i].term, e.term) << "index " << idx;
      ASSERT_EQ(recs[i].type, e.type) << "index " << idx;
      ASSERT_EQ(recs[i].payload, payload_for(idx, e.term, e.len)) << "index " << idx;
    }
  }

  std::vector<std::string> segment_files() {
    std::vector<std::string> segs;
    for (const auto& n : list_dir(dir_.path())) {
      if (n.rfind("wal-", 0) == 0) segs.push_back(n);
    }
    std::sort(segs.begin(), segs.end());
    return segs;
  }

  ScratchDir dir_;
  std::map<uint64_t, Expected> model_;
  std::vector<std::string> log_;
};

TEST_P(WalTest, EmptyDirectoryOpensEmpty) {
  WalRecoveryReport rep;
  std::vector<WalRecord> recs;
  auto wal = open_wal(small_options(), &recs, &rep);
  ASSERT_TRUE(wal);
  EXPECT_TRUE(recs.empty());
  EXPECT_EQ(wal->first_index(), 0u);
  EXPECT_EQ(wal->last_index(), 0u);
  EXPECT_FALSE(rep.truncated);
  EXPECT_EQ(wal->direct_io(), GetParam() == IoMode::kAuto ? rep.direct_io : false);
}

TEST_P(WalTest, AppendAndRecoverRoundTrip) {
  {
    auto wal = open_wal(small_options());
    for (uint64_t i = 1; i <= 100; ++i) append(wal.get(), i, 1 + i / 40, len_for(i));
    EXPECT_EQ(wal->durable_index(), 0u);
    ASSERT_TRUE(wal->sync_write().is_ok());
    EXPECT_EQ(wal->durable_index(), 100u);
    EXPECT_EQ(wal->written_index(), 100u);
  }
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  auto wal = open_wal(small_options(), &recs, &rep);
  expect_records(recs, 1, 100);
  EXPECT_FALSE(rep.truncated);
  EXPECT_EQ(rep.bytes_zeroed, 0u);
  EXPECT_EQ(wal->first_index(), 1u);
  EXPECT_EQ(wal->last_index(), 100u);
  // The log continues where it stopped.
  append(wal.get(), 101, 5, 10);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  wal = open_wal(small_options(), &recs);
  expect_records(recs, 1, 101);
}

TEST_P(WalTest, FirstRecordMayStartAnywhere) {
  {
    auto wal = open_wal(small_options());
    for (uint64_t i = 1000; i < 1010; ++i) append(wal.get(), i, 3, 20);
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  std::vector<WalRecord> recs;
  auto wal = open_wal(small_options(), &recs);
  expect_records(recs, 1000, 1009);
  EXPECT_EQ(segment_files(), std::vector<std::string>{Wal::segment_name(1000)});
}

TEST_P(WalTest, GroupCommitIsOneWrite) {
  auto wal = open_wal(small_options());
  for (uint64_t i = 1; i <= 50; ++i) append(wal.get(), i, 1, 40);
  auto op = wal->begin_write();
  ASSERT_TRUE(op.has_value());
  EXPECT_EQ(op->last_index, 50u);
  EXPECT_EQ(op->offset, 0u);
  EXPECT_EQ(op->len % kBlockBytes, 0u);
  EXPECT_GE(op->len, 50u * (kWalHeaderBytes + 40));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(op->buf) % kBlockBytes, 0u);
  EXPECT_FALSE(wal->has_pending());
  ssize_t n =
      ::pwritev2(op->fd, std::array<iovec, 1>{iovec{const_cast<void*>(op->buf), op->len}}.data(), 1,
                 static_cast<off_t>(op->offset), op->dsync ? RWF_DSYNC : 0);
  if (op->needs_fdatasync) {
    ASSERT_EQ(::fdatasync(op->fd), 0);
  }
  ASSERT_TRUE(wal->end_write(n).is_ok());
  EXPECT_EQ(wal->durable_index(), 50u);
}

// Records appended while a write is in flight are staged apart: the in-flight bytes never change.
TEST_P(WalTest, AppendsDuringInFlightWriteDoNotTouchItsBuffer) {
  auto wal = open_wal(small_options());
  for (uint64_t i = 1; i <= 10; ++i) append(wal.get(), i, 1, 100);
  ASSERT_TRUE(wal->sync_write().is_ok());  // leaves a partial tail block to be rewritten
  append(wal.get(), 11, 1, 100);
  auto op = wal->begin_write();
  ASSERT_TRUE(op);
  EXPECT_EQ(op->last_index, 11u);
  EXPECT_EQ(op->offset, 0u);  // the partial block is rewritten from its start
  std::vector<std::byte> before(static_cast<const std::byte*>(op->buf),
                                static_cast<const std::byte*>(op->buf) + op->len);
  for (uint64_t i = 12; i <= 60; ++i) append(wal.get(), i, 2, 200);
  EXPECT_TRUE(wal->has_pending());
  EXPECT_TRUE(wal->write_in_flight());
  std::vector<std::byte> after(static_cast<const std::byte*>(op->buf),
                               static_cast<const std::byte*>(op->buf) + op->len);
  EXPECT_EQ(before, after);
  ssize_t n = ::pwrite(op->fd, op->buf, op->len, static_cast<off_t>(op->offset));
  ASSERT_EQ(::fdatasync(op->fd), 0);
  ASSERT_TRUE(wal->end_write(n).is_ok());
  EXPECT_EQ(wal->durable_index(), 11u);
  ASSERT_TRUE(wal->sync_write().is_ok());
  EXPECT_EQ(wal->durable_index(), 60u);
  wal.reset();
  std::vector<WalRecord> recs;
  wal = open_wal(small_options(), &recs);
  expect_records(recs, 1, 60);
}

TEST_P(WalTest, FailedWriteFailsTheWal) {
  auto wal = open_wal(small_options());
  append(wal.get(), 1, 1, 10);
  auto op = wal->begin_write();
  ASSERT_TRUE(op);
  Status s = wal->end_write(-5 /* EIO */);
  EXPECT_FALSE(s.is_ok());
  EXPECT_TRUE(wal->failed());
  EXPECT_EQ(wal->durable_index(), 0u);
  append(wal.get(), 2, 1, 10);
  EXPECT_FALSE(wal->begin_write().has_value());
  EXPECT_FALSE(wal->sync_write().is_ok());
  EXPECT_FALSE(wal->truncate_suffix(1).is_ok());
}

TEST_P(WalTest, ShortWriteFailsTheWal) {
  auto wal = open_wal(small_options());
  append(wal.get(), 1, 1, 10);
  auto op = wal->begin_write();
  ASSERT_TRUE(op);
  EXPECT_FALSE(wal->end_write(static_cast<int64_t>(op->len) - 512).is_ok());
  EXPECT_TRUE(wal->failed());
}

TEST_P(WalTest, LazySyncAdvancesDurableIndex) {
  auto wal = open_wal(small_options());
  for (uint64_t i = 1; i <= 5; ++i) append(wal.get(), i, 1, 10);
  ASSERT_TRUE(wal->sync_write(/*durable=*/false).is_ok());
  EXPECT_EQ(wal->written_index(), 5u);
  EXPECT_EQ(wal->durable_index(), 0u);
  auto sop = wal->begin_sync();
  ASSERT_TRUE(sop);
  EXPECT_EQ(sop->last_index, 5u);
  ASSERT_TRUE(wal->end_sync(*sop, ::fdatasync(sop->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), 5u);
  EXPECT_FALSE(wal->begin_sync().has_value());
  // A durable write after unsynced writes must sync the whole file, not just itself.
  append(wal.get(), 6, 1, 10);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  append(wal.get(), 7, 1, 10);
  auto op = wal->begin_write(true);
  ASSERT_TRUE(op);
  EXPECT_TRUE(op->needs_fdatasync);
  EXPECT_FALSE(op->dsync);
  ssize_t n = ::pwrite(op->fd, op->buf, op->len, static_cast<off_t>(op->offset));
  ASSERT_EQ(::fdatasync(op->fd), 0);
  ASSERT_TRUE(wal->end_write(n).is_ok());
  EXPECT_EQ(wal->durable_index(), 7u);
}

TEST_P(WalTest, ManyRecordsAcrossRolloverRecoverAfterEachBatch) {
  WalOptions o = small_options();
  std::mt19937_64 rng(42);
  uint64_t next = 1;
  for (int batch = 0; batch < 12; ++batch) {
    {
      auto wal = open_wal(o);
      ASSERT_EQ(wal->last_index(), next - 1);
      int n = 1 + static_cast<int>(rng() % 400);
      for (int i = 0; i < n; ++i) {
        append(wal.get(), next, 1 + batch, rng() % 500);
        ++next;
        if (rng() % 50 == 0) {
          ASSERT_TRUE(wal->sync_write().is_ok());
        }
      }
      ASSERT_TRUE(wal->sync_write().is_ok());
      EXPECT_EQ(wal->durable_index(), next - 1);
      wal->prepare_spare_step();  // partial spare: recovery must discard it
    }
    std::vector<WalRecord> recs;
    WalRecoveryReport rep;
    auto wal = open_wal(o, &recs, &rep);
    expect_records(recs, 1, next - 1);
    EXPECT_FALSE(rep.truncated) << rep.describe();
  }
  EXPECT_GT(segment_files().size(), 5u);
  // Each segment starts at the index in its name: rollover never splits a record.
  for (const auto& name : segment_files()) {
    uint64_t first = std::stoull(name.substr(4, 16), nullptr, 16);
    auto data = read_bytes(dir_.path() + "/" + name);
    uint64_t idx;
    std::memcpy(&idx, data.data() + kWalIndexOffset, 8);
    EXPECT_EQ(idx, first) << name;
    EXPECT_EQ(data.size(), o.segment_bytes) << name;  // preallocated
  }
}

TEST_P(WalTest, SpareSegmentIsPreparedInSteps) {
  WalOptions o = small_options();
  auto wal = open_wal(o);
  int steps = 0;
  while (!wal->prepare_spare_step()) ++steps;
  EXPECT_EQ(steps + 1, static_cast<int>(o.segment_bytes / o.spare_step_bytes));
  EXPECT_TRUE(wal->spare_ready());
  auto data = read_bytes(dir_.path() + "/wal.spare");
  EXPECT_EQ(data.size(), o.segment_bytes);
  EXPECT_TRUE(std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; }));
  append(wal.get(), 1, 1, 10);
  ASSERT_TRUE(wal->sync_write().is_ok());
  EXPECT_FALSE(wal->spare_ready());  // consumed by the first segment
  EXPECT_EQ(segment_files().size(), 1u);
}

TEST_P(WalTest, FallocatePreallocationAlsoRoundTrips) {
  WalOptions o = small_options();
  o.preallocate = WalPreallocate::kFallocate;
  {
    auto wal = open_wal(o);
    for (uint64_t i = 1; i <= 600; ++i) append(wal.get(), i, 1, 200);
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  std::vector<WalRecord> recs;
  auto wal = open_wal(o, &recs);
  expect_records(recs, 1, 600);
  EXPECT_GT(segment_files().size(), 1u);
}

// Cuts the last record at every byte (file cut short, or its tail zeroed in place): recovery
// keeps exactly the complete records before it, and a new record can take its place.
TEST_P(WalTest, TornLastRecordAtEveryByte) {
  WalOptions o = small_options();
  const uint64_t n = 20;
  std::vector<uint64_t> starts;
  uint64_t end = 0;
  for (uint64_t i = 1; i <= n; ++i) {
    starts.push_back(end);
    end += kWalHeaderBytes + (i == n ? 150 : len_for(i));
  }
  {
    auto wal = open_wal(o);
    for (uint64_t i = 1; i <= n; ++i) append(wal.get(), i, 2, i == n ? 150 : len_for(i));
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  const std::string seg = dir_.path() + "/" + Wal::segment_name(1);
  const std::vector<std::byte> pristine = read_bytes(seg);
  for (int mode = 0; mode < 2; ++mode) {  // 0: file cut short, 1: tail zeroed in place
    for (uint64_t cut = starts[n - 1]; cut < end; ++cut) {
      SCOPED_TRACE("mode " + std::to_string(mode) + " cut at byte " + std::to_string(cut));
      std::vector<std::byte> torn = pristine;
      if (mode == 0) {
        torn.resize(cut);
      } else {
        std::fill(torn.begin() + static_cast<ptrdiff_t>(cut),
                  torn.begin() + static_cast<ptrdiff_t>(end), std::byte{0});
      }
      write_bytes(seg, torn);
      std::vector<WalRecord> recs;
      WalRecoveryReport rep;
      auto wal = open_wal(o, &recs, &rep);
      ASSERT_TRUE(wal);
      expect_records(recs, 1, n - 1);
      EXPECT_EQ(wal->last_index(), n - 1);
      EXPECT_EQ(rep.truncated, cut > starts[n - 1]) << rep.describe();
      if (rep.truncated) {
        EXPECT_EQ(rep.truncated_offset, starts[n - 1]);
      }
      // A new record n with another term and length takes the torn one's place.
      model_[n] = Expected{3, 7, static_cast<uint8_t>(n % 3)};
      wal->append(model_[n].type, 3, n, payload_for(n, 3, 7));
      ASSERT_TRUE(wal->sync_write().is_ok());
      wal.reset();
      wal = open_wal(o, &recs, &rep);
      expect_records(recs, 1, n);
      EXPECT_FALSE(rep.truncated);
      model_[n] = Expected{2, 150, static_cast<uint8_t>(n % 3)};
    }
  }
}

// Flips every bit of a middle record's header and some payload bits: recovery keeps exactly
// the records before it, and the records after it never come back, even when a new record of
// the same size takes its place.
TEST_P(WalTest, BitFlipInMiddleRecordTruncatesThere) {
  WalOptions o = small_options();
  const uint64_t n = 12, bad = 6;
  uint64_t bad_off = 0;
  {
    auto wal = open_wal(o);
    for (uint64_t i = 1; i <= n; ++i) {
      if (i < bad) bad_off += kWalHeaderBytes + 24;
      append(wal.get(), i, 1, 24);
    }
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  const std::string seg = dir_.path() + "/" + Wal::segment_name(1);
  const std::vector<std::byte> pristine = read_bytes(seg);
  const size_t bits = (kWalHeaderBytes + 24) * 8;
  for (size_t bit = 0; bit < bits; ++bit) {
    SCOPED_TRACE("bit " + std::to_string(bit));
    std::vector<std::byte> flipped = pristine;
    flipped[bad_off + bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
    write_bytes(seg, flipped);
    std::vector<WalRecord> recs;
    WalRecoveryReport rep;
    auto wal = open_wal(o, &recs, &rep);
    ASSERT_TRUE(wal);
    expect_records(recs, 1, bad - 1);
    EXPECT_TRUE(rep.truncated);
    EXPECT_EQ(rep.truncated_offset, bad_off);
    EXPECT_GT(rep.bytes_zeroed, 0u);
    // Same-size replacement: without the wipe, old records 7..12 would line up behind it.
    wal->append(static_cast<uint8_t>(bad % 3), 1, bad, payload_for(bad, 1, 24));
    ASSERT_TRUE(wal->sync_write().is_ok());
    wal.reset();
    wal = open_wal(o, &recs, &rep);
    expect_records(recs, 1, bad);
    EXPECT_FALSE(rep.truncated);
  }
}

// Downgrades: a record of a later format (intact: its checksum holds) stops the open with a
// message naming it, and the log is left exactly as it was, never cut off as damage.
TEST_P(WalTest, ARecordOfANewerFormatIsRefusedNotTruncated) {
  WalOptions o = small_options();
  {
    auto wal = open_wal(o);
    for (uint64_t i = 1; i <= 8; ++i) append(wal.get(), i, 1, 24);
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  const std::string seg = dir_.path() + "/" + Wal::segment_name(1);
  std::vector<std::byte> data = read_bytes(seg);
  size_t off = 5 * (kWalHeaderBytes + 24);  // record 6
  data[off + kWalFormatOffset] = std::byte{1};
  uint64_t sum = wal_record_checksum(data.data() + off,
                                     std::span<const std::byte>(data.data() + off + kWalHeaderBytes, 24));
  std::memcpy(data.data() + off + kWalChecksumOffset, &sum, 8);
  write_bytes(seg, data);
  std::unique_ptr<Wal> wal;
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  Status s = Wal::open(dir_.path(), o, &wal, &rep, &recs);
  EXPECT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("index 6 is in format 1, written by a newer release"), std::string::npos)
      << s.message();
  EXPECT_EQ(read_bytes(seg), data) << "nothing was cut or zeroed";
  WalRecordView v;
  EXPECT_EQ(decode_wal_record(std::span<const std::byte>(data).subspan(off), 1 << 20, &v),
            WalDecode::kNewerFormat);
  // The same byte changed without the checksum is damage, cut off as before.
  data[off + kWalChecksumOffset] ^= std::byte{1};
  EXPECT_EQ(decode_wal_record(std::span<const std::byte>(data).subspan(off), 1 << 20, &v),
            WalDecode::kCorrupt);
}

TEST_P(WalTest, CorruptionInEarlySegmentDiscardsLaterSegments) {
  WalOptions o = small_options();
  {
    auto wal = open_wal(o);
    for (uint64_t i = 1; i <= 1000; ++i) append(wal.get(), i, 1, 300);
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  auto segs = segment_files();
  ASSERT_GE(segs.size(), 4u);
  uint64_t second_first = std::stoull(segs[1].substr(4, 16), nullptr, 16);
  // Corrupt the payload of the third record of segment 2.
  std::string path = dir_.path() + "/" + segs[1];
  auto data = read_bytes(path);
  data[2 * (kWalHeaderBytes + 300) + kWalHeaderBytes + 5] ^= std::byte{0x40};
  write_bytes(path, data);
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  auto wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, second_first + 1);
  EXPECT_TRUE(rep.truncated);
  EXPECT_EQ(rep.truncated_segment, segs[1]);
  EXPECT_EQ(rep.segments_deleted.size(), segs.size() - 2);
  EXPECT_EQ(segment_files().size(), 2u);
  EXPECT_NE(rep.describe().find("TRUNCATED"), std::string::npos);
  EXPECT_FALSE(log_.empty());  // the truncation was reported through the log callback
}

TEST_P(WalTest, MissingMiddleSegmentEndsTheLogAtTheGap) {
  WalOptions o = small_options();
  {
    auto wal = open_wal(o);
    for (uint64_t i = 1; i <= 1000; ++i) append(wal.get(), i, 1, 300);
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  auto segs = segment_files();
  ASSERT_GE(segs.size(), 4u);
  uint64_t third_first = std::stoull(segs[2].substr(4, 16), nullptr, 16);
  ASSERT_EQ(::unlink((dir_.path() + "/" + segs[2]).c_str()), 0);
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  auto wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, third_first - 1);
  EXPECT_TRUE(rep.truncated);
  EXPECT_EQ(segment_files().size(), 2u);
  // Appending continues in a fresh segment right after the gap.
  append(wal.get(), third_first, 2, 10);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, third_first);
}

// A block that landed after a lost one (an unsynced or torn multi-block write) must not
// resurface behind later records.
TEST_P(WalTest, StaleRecordAfterZeroGapIsWiped) {
  WalOptions o = small_options();
  {
    auto wal = open_wal(o);
    for (uint64_t i = 1; i <= 10; ++i) append(wal.get(), i, 1, 50);
    ASSERT_TRUE(wal->sync_write().is_ok());
  }
  const std::string seg = dir_.path() + "/" + Wal::segment_name(1);
  auto data = read_bytes(seg);
  const uint64_t end = 10 * (kWalHeaderBytes + 50);
  // Record 12 (old term) sitting where it would be if record 11 had been exactly up to 8192.
  std::vector<std::byte> old12(kWalHeaderBytes + 50);
  encode_wal_record(old12.data(), 0, 1, 12, payload_for(12, 1, 50));
  std::copy(old12.begin(), old12.end(), data.begin() + 8192);
  write_bytes(seg, data);
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  auto wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, 10);
  EXPECT_EQ(rep.bytes_zeroed, 8192 + old12.size() - end);
  // Record 11 of exactly the size that makes it end at byte 8192.
  size_t len11 = 8192 - end - kWalHeaderBytes;
  append(wal.get(), 11, 2, len11);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, 11);
  EXPECT_EQ(wal->last_index(), 11u);
}

TEST_P(WalTest, TruncateSuffixThenAppendThenRecover) {
  WalOptions o = small_options();
  auto wal = open_wal(o);
  for (uint64_t i = 1; i <= 800; ++i) append(wal.get(), i, 1, 200);
  ASSERT_TRUE(wal->sync_write().is_ok());
  size_t segs_before = segment_files().size();
  ASSERT_GE(segs_before, 3u);
  ASSERT_TRUE(wal->truncate_suffix(300).is_ok());
  EXPECT_EQ(wal->last_index(), 299u);
  EXPECT_EQ(wal->durable_index(), 299u);
  EXPECT_LT(segment_files().size(), segs_before);
  // Durable before returning: a reopen right now sees exactly 1..299.
  wal.reset();
  {
    std::vector<WalRecord> recs;
    WalRecoveryReport rep;
    wal = open_wal(o, &recs, &rep);
    expect_records(recs, 1, 299);
    EXPECT_FALSE(rep.truncated);
    EXPECT_EQ(rep.bytes_zeroed, 0u);
  }
  // Same-size records first: the old 300..800 must never reappear.
  for (uint64_t i = 300; i <= 310; ++i) append(wal.get(), i, 2, 200);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, 310);
  EXPECT_FALSE(rep.truncated);
}

TEST_P(WalTest, TruncateSuffixAtSegmentStartAndOfStagedRecords) {
  WalOptions o = small_options();
  auto wal = open_wal(o);
  for (uint64_t i = 1; i <= 800; ++i) append(wal.get(), i, 1, 200);
  ASSERT_TRUE(wal->sync_write().is_ok());
  auto segs = segment_files();
  uint64_t second_first = std::stoull(segs[1].substr(4, 16), nullptr, 16);
  ASSERT_TRUE(wal->truncate_suffix(second_first).is_ok());
  EXPECT_EQ(wal->last_index(), second_first - 1);
  // Staged-only records are dropped in memory.
  for (uint64_t i = second_first; i < second_first + 5; ++i) append(wal.get(), i, 2, 100);
  ASSERT_TRUE(wal->truncate_suffix(second_first + 2).is_ok());
  EXPECT_EQ(wal->last_index(), second_first + 1);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  wal = open_wal(o, &recs);
  expect_records(recs, 1, second_first + 1);
}

TEST_P(WalTest, TruncateEverythingLetsTheLogRestartAnywhere) {
  WalOptions o = small_options();
  auto wal = open_wal(o);
  for (uint64_t i = 1; i <= 500; ++i) append(wal.get(), i, 1, 200);
  ASSERT_TRUE(wal->sync_write().is_ok());
  ASSERT_TRUE(wal->truncate_suffix(1).is_ok());
  EXPECT_EQ(wal->first_index(), 0u);
  EXPECT_EQ(wal->last_index(), 0u);
  EXPECT_TRUE(segment_files().empty());
  for (uint64_t i = 7000; i <= 7010; ++i) append(wal.get(), i, 9, 30);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  wal = open_wal(o, &recs);
  expect_records(recs, 7000, 7010);
}

TEST_P(WalTest, CompactPrefixDeletesOldSegmentsAndRecoveryStillWorks) {
  WalOptions o = small_options();
  auto wal = open_wal(o);
  for (uint64_t i = 1; i <= 1000; ++i) append(wal.get(), i, 1, 300);
  ASSERT_TRUE(wal->sync_write().is_ok());
  auto segs = segment_files();
  ASSERT_GE(segs.size(), 4u);
  uint64_t third_first = std::stoull(segs[2].substr(4, 16), nullptr, 16);
  // Index third_first - 1 is the last record of segment 2: segments 1 and 2 go.
  ASSERT_TRUE(wal->compact_prefix(third_first - 2).is_ok());
  EXPECT_EQ(segment_files().size(), segs.size() - 1);
  EXPECT_EQ(wal->first_index(), std::stoull(segs[1].substr(4, 16), nullptr, 16));
  ASSERT_TRUE(wal->compact_prefix(third_first - 1).is_ok());
  EXPECT_EQ(segment_files().size(), segs.size() - 2);
  EXPECT_EQ(wal->first_index(), third_first);
  ASSERT_TRUE(wal->compact_prefix(1000000).is_ok());  // never deletes the segment being written
  EXPECT_EQ(segment_files().size(), 1u);
  EXPECT_EQ(wal->last_index(), 1000u);
  uint64_t first = wal->first_index();
  for (uint64_t i = 1001; i <= 1100; ++i) append(wal.get(), i, 2, 300);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  wal = open_wal(o, &recs, &rep);
  expect_records(recs, first, 1100);
  EXPECT_FALSE(rep.truncated);
}

TEST_P(WalTest, EmptyTrailingSegmentAfterRolloverIsKept) {
  WalOptions o = small_options();
  uint64_t last = 0;
  {
    auto wal = open_wal(o);
    // Fill until a write would need a new segment, then stop right after the switch.
    for (uint64_t i = 1; i <= 400; ++i) append(wal.get(), i, 1, 300);
    ASSERT_TRUE(wal->sync_write().is_ok());
    last = 400;
  }
  auto segs = segment_files();
  // Simulate a crash between the spare's rename and the first write into it.
  uint64_t next_name = last + 1;
  std::vector<std::byte> zeros(o.segment_bytes);
  write_bytes(dir_.path() + "/" + Wal::segment_name(next_name), zeros);
  std::vector<WalRecord> recs;
  WalRecoveryReport rep;
  auto wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, last);
  EXPECT_FALSE(rep.truncated);
  append(wal.get(), last + 1, 1, 10);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  wal = open_wal(o, &recs, &rep);
  expect_records(recs, 1, last + 1);
  EXPECT_EQ(segment_files().size(), segs.size() + 1);
}

TEST_P(WalTest, SecondOpenOfTheSameDirectoryFails) {
  auto wal = open_wal(small_options());
  std::unique_ptr<Wal> other;
  Status s = Wal::open(dir_.path(), small_options(), &other, nullptr, nullptr);
  EXPECT_EQ(s.code(), Status::Code::kInvalid) << s.message();
  EXPECT_FALSE(other);
  wal.reset();
  EXPECT_TRUE(Wal::open(dir_.path(), small_options(), &other, nullptr, nullptr).is_ok());
}

TEST_P(WalTest, FallbackIsReportedOnce) {
  WalOptions o = small_options();
  auto wal = open_wal(o);
  for (uint64_t i = 1; i <= 300; ++i) append(wal.get(), i, 1, 300);
  ASSERT_TRUE(wal->sync_write().is_ok());
  size_t mentions = 0;
  for (const auto& m : log_) mentions += m.find("O_DIRECT") != std::string::npos;
  if (GetParam() == IoMode::kRefuseDirect) {
    EXPECT_FALSE(wal->direct_io());
    EXPECT_EQ(mentions, 1u);
  } else if (wal->direct_io()) {
    EXPECT_EQ(mentions, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(IoModes, WalTest, ::testing::Values(IoMode::kAuto, IoMode::kRefuseDirect),
                         [](const ::testing::TestParamInfo<IoMode>& i) {
                           return i.param == IoMode::kAuto ? std::string("Auto")
                                                           : std::string("BufferedFallback");
                         });

TEST(WalTmpfs, WorksOnTmpfs) {
  ScratchDir dir("/dev/shm");
  if (!dir.ok()) GTEST_SKIP() << "no /dev/shm";
  WalOptions o;
  o.segment_bytes = 64 * 1024;
  o.max_write_bytes = 16 * 1024;
  o.spare_step_bytes = 16 * 1024;
  std::unique_ptr<Wal> wal;
  ASSERT_TRUE(Wal::open(dir.path(), o, &wal, nullptr, nullptr).is_ok());
  std::vector<std::byte> p(100, std::byte{7});
  for (uint64_t i = 1; i <= 1000; ++i) wal->append(1, 1, i, p);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  ASSERT_TRUE(Wal::open(dir.path(), o, &wal, nullptr, &recs).is_ok());
  ASSERT_EQ(recs.size(), 1000u);
  EXPECT_EQ(recs.back().index, 1000u);
}

TEST(WalOptionsTest, RejectsMisalignedSizes) {
  ScratchDir dir;
  WalOptions o;
  o.segment_bytes = 10000;
  std::unique_ptr<Wal> wal;
  Status s = Wal::open(dir.path(), o, &wal, nullptr, nullptr);
  EXPECT_EQ(s.code(), Status::Code::kInvalid);
  EXPECT_FALSE(wal);
}

TEST(WalRecordTest, EncodeDecodeAndChecksumCoversEveryField) {
  std::vector<std::byte> payload = payload_for(5, 6, 40);
  std::vector<std::byte> buf(wal_record_bytes(payload.size()));
  ASSERT_EQ(encode_wal_record(buf.data(), 9, 6, 5, payload), buf.size());
  WalRecordView v;
  ASSERT_EQ(decode_wal_record(buf, 1 << 20, &v), WalDecode::kOk);
  EXPECT_EQ(v.type, 9);
  EXPECT_EQ(v.term, 6u);
  EXPECT_EQ(v.index, 5u);
  EXPECT_EQ(std::vector<std::byte>(v.payload.begin(), v.payload.end()), payload);
  for (size_t i = 0; i < buf.size(); ++i) {
    auto bad = buf;
    bad[i] ^= std::byte{1};
    EXPECT_NE(decode_wal_record(bad, 1 << 20, &v), WalDecode::kOk) << "byte " << i;
  }
  std::vector<std::byte> zeros(64);
  EXPECT_EQ(decode_wal_record(zeros, 1 << 20, &v), WalDecode::kEnd);
  EXPECT_EQ(decode_wal_record(std::span<const std::byte>(buf).first(20), 1 << 20, &v),
            WalDecode::kTorn);
  EXPECT_EQ(decode_wal_record(buf, 10, &v), WalDecode::kCorrupt);  // length above the bound
}

}  // namespace
}  // namespace ticketd::storage

namespace ticketd::storage {
namespace {

// Found by fuzz_wal_recovery: an empty segment file made recovery memcpy from a null
// pointer (undefined behaviour, caught by UBSan). It must recover as an empty log.
TEST_P(WalTest, EmptySegmentFileRecoversEmpty) {
  {
    std::string path = dir_.path() + "/" + Wal::segment_name(1);
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fclose(f);
  }
  std::vector<WalRecord> recs;
  auto wal = open_wal(small_options(), &recs);
  ASSERT_TRUE(wal);
  EXPECT_TRUE(recs.empty());
  EXPECT_EQ(wal->last_index(), 0u);
  append(wal.get(), 1, 1, 10);
  ASSERT_TRUE(wal->sync_write().is_ok());
  wal.reset();
  auto again = open_wal(small_options(), &recs);
  ASSERT_TRUE(again);
  expect_records(recs, 1, 1);
}

}  // namespace
}  // namespace ticketd::storage

namespace ticketd::storage {
namespace {

// A full disk while the next segment is being zero-filled must not fail the log: the spare
// is not part of it. (Before, a failed spare write failed the Wal for good, so a node whose
// disk filled up stopped acknowledging until restarted.) RLIMIT_FSIZE stands in for a full
// disk: writes past the limit fail with EFBIG.
TEST_P(WalTest, FailedSpareLeavesTheWalHealthy) {
  auto wal = open_wal(small_options());
  ASSERT_TRUE(wal);
  for (uint64_t i = 1; i <= 3; ++i) append(wal.get(), i, 1, 100);
  ASSERT_TRUE(wal->sync_write().is_ok());
  ::signal(SIGXFSZ, SIG_IGN);
  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit tight = old;
  tight.rlim_cur = 16 * 1024;  // below one segment (64 KiB here), above nothing we rewrite
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &tight), 0);
  bool ready = false;
  for (int i = 0; i < 20 && !ready; ++i) ready = wal->prepare_spare_step();
  EXPECT_FALSE(ready);
  EXPECT_FALSE(wal->spare_error().is_ok());
  EXPECT_FALSE(wal->failed());
  append(wal.get(), 4, 1, 100);
  Status s = wal->sync_write();
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &old), 0);
  EXPECT_TRUE(s.is_ok()) << s.message();
  for (int i = 0; i < 100 && !ready; ++i) ready = wal->prepare_spare_step();
  EXPECT_TRUE(ready);
  EXPECT_TRUE(wal->spare_error().is_ok());
  wal.reset();
  std::vector<WalRecord> recs;
  auto again = open_wal(small_options(), &recs);
  ASSERT_TRUE(again);
  expect_records(recs, 1, 4);
}

// Durability medium: the background fdatasync and the next write overlap (the write must not
// wait for the sync). Before, begin_write aborted the process ("begin_write between begin_sync
// and end_sync") within a second of load.
TEST_P(WalTest, WritesMayStartWhileASyncIsOutstanding) {
  auto wal = open_wal(small_options());
  for (uint64_t i = 1; i <= 5; ++i) append(wal.get(), i, 1, 100);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  auto sop = wal->begin_sync();
  ASSERT_TRUE(sop);
  EXPECT_EQ(sop->last_index, 5u);
  EXPECT_FALSE(wal->begin_sync().has_value());  // one outstanding sync at a time
  for (uint64_t i = 6; i <= 9; ++i) append(wal.get(), i, 1, 100);
  auto op = wal->begin_write(false);
  ASSERT_TRUE(op);
  ssize_t n = ::pwrite(op->fd, op->buf, op->len, static_cast<off_t>(op->offset));
  ASSERT_TRUE(wal->end_write(n).is_ok());
  EXPECT_EQ(wal->written_index(), 9u);
  ASSERT_TRUE(wal->end_sync(*sop, ::fdatasync(sop->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), 5u);  // the sync covers what was written when it began
  auto again = wal->begin_sync();       // 6..9 still need one
  ASSERT_TRUE(again);
  EXPECT_EQ(again->last_index, 9u);
  ASSERT_TRUE(wal->end_sync(*again, ::fdatasync(again->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), 9u);
  EXPECT_FALSE(wal->begin_sync().has_value());
  wal.reset();
  std::vector<WalRecord> recs;
  wal = open_wal(small_options(), &recs);
  expect_records(recs, 1, 9);
}

// A segment switch while a sync is outstanding must not close the file the sync names (its
// number could be reused by the next open, and the sync would then cover another file).
TEST_P(WalTest, SegmentSwitchKeepsTheOutstandingSyncsFileOpen) {
  WalOptions o = small_options();
  auto wal = open_wal(o);
  uint64_t next = 1;
  for (; next <= 20; ++next) append(wal.get(), next, 1, 300);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  auto sop = wal->begin_sync();
  ASSERT_TRUE(sop);
  EXPECT_EQ(wal->segment_count(), 1u);
  while (wal->segment_count() < 3) {
    append(wal.get(), next++, 1, 300);
    ASSERT_TRUE(wal->sync_write(false).is_ok());
  }
  EXPECT_NE(::fcntl(sop->fd, F_GETFD), -1) << "the outstanding sync's fd was closed";
  struct stat st {};
  ASSERT_EQ(::fstat(sop->fd, &st), 0);
  struct stat first {};
  ASSERT_EQ(::stat((dir_.path() + "/" + Wal::segment_name(1)).c_str(), &first), 0);
  EXPECT_EQ(st.st_ino, first.st_ino) << "the fd must still name the first segment";
  // The switches synced the older segments themselves.
  uint64_t before = wal->durable_index();
  EXPECT_GE(before, 20u);
  ASSERT_TRUE(wal->end_sync(*sop, ::fdatasync(sop->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), before);
  auto last = wal->begin_sync();
  ASSERT_TRUE(last);
  EXPECT_EQ(last->last_index, next - 1);
  ASSERT_TRUE(wal->end_sync(*last, ::fdatasync(last->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), next - 1);
  wal.reset();
  std::vector<WalRecord> recs;
  wal = open_wal(o, &recs);
  expect_records(recs, 1, next - 1);
}

// A log conflict (or a snapshot install) while a sync is outstanding: the truncation syncs
// itself, and the old sync must not then claim the new records at the same indexes durable.
TEST_P(WalTest, TruncateWhileASyncIsOutstanding) {
  auto wal = open_wal(small_options());
  for (uint64_t i = 1; i <= 10; ++i) append(wal.get(), i, 1, 100);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  auto sop = wal->begin_sync();
  ASSERT_TRUE(sop);
  ASSERT_TRUE(wal->truncate_suffix(5).is_ok());
  EXPECT_EQ(wal->durable_index(), 4u);
  for (uint64_t i = 5; i <= 12; ++i) append(wal.get(), i, 2, 100);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  ASSERT_TRUE(wal->end_sync(*sop, ::fdatasync(sop->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), 4u) << "a sync begun before the cut covers nothing after it";
  auto again = wal->begin_sync();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->last_index, 12u);
  ASSERT_TRUE(wal->end_sync(*again, ::fdatasync(again->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), 12u);
  // Emptying the log (a snapshot install) with a sync outstanding.
  auto third = wal->begin_sync();
  EXPECT_FALSE(third.has_value());
  for (uint64_t i = 13; i <= 14; ++i) append(wal.get(), i, 2, 100);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  third = wal->begin_sync();
  ASSERT_TRUE(third);
  ASSERT_TRUE(wal->truncate_suffix(wal->first_index()).is_ok());
  EXPECT_EQ(wal->last_index(), 0u);
  model_.clear();
  for (uint64_t i = 100; i <= 103; ++i) append(wal.get(), i, 3, 100);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  ASSERT_TRUE(wal->end_sync(*third, ::fdatasync(third->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), 0u);
  wal.reset();
  std::vector<WalRecord> recs;
  wal = open_wal(small_options(), &recs);
  expect_records(recs, 100, 103);
}

// Shutdown (RaftTicketLog::close): one synchronous fdatasync covers everything written, with a
// background sync still outstanding and a write in flight; the late end_sync is harmless.
TEST_P(WalTest, SyncNowCoversWhatIsWrittenWhateverIsOutstanding) {
  auto wal = open_wal(small_options());
  for (uint64_t i = 1; i <= 4; ++i) append(wal.get(), i, 1, 100);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  auto sop = wal->begin_sync();
  ASSERT_TRUE(sop);
  for (uint64_t i = 5; i <= 6; ++i) append(wal.get(), i, 1, 100);
  ASSERT_TRUE(wal->sync_write(false).is_ok());
  append(wal.get(), 7, 1, 100);
  auto op = wal->begin_write(false);
  ASSERT_TRUE(op);
  ASSERT_TRUE(wal->sync_now().is_ok());
  EXPECT_EQ(wal->durable_index(), 6u);  // not the record still in flight
  ssize_t n = ::pwrite(op->fd, op->buf, op->len, static_cast<off_t>(op->offset));
  ASSERT_TRUE(wal->end_write(n).is_ok());
  ASSERT_TRUE(wal->end_sync(*sop, ::fdatasync(sop->fd)).is_ok());
  EXPECT_EQ(wal->durable_index(), 6u);
  ASSERT_TRUE(wal->sync_now().is_ok());
  EXPECT_EQ(wal->durable_index(), 7u);
  EXPECT_FALSE(wal->begin_sync().has_value());
}

// A full disk exactly at a segment switch: the next segment cannot be made. Before, the write
// looped on prepare_spare_step forever (a failed spare never fails the Wal), so shard 0 spun.
// Now the write is refused with the reason, nothing changes, and it goes through once a spare
// can be made. A directory in the spare's place stands in for the full disk.
TEST_P(WalTest, NoSpareAtASegmentSwitchWaitsInsteadOfSpinning) {
  ::alarm(30);  // the old code never returns: fail by SIGALRM instead of hanging
  WalOptions o = small_options();
  auto wal = open_wal(o);
  uint64_t next = 1;
  append(wal.get(), next++, 1, 300);
  ASSERT_TRUE(wal->sync_write().is_ok());  // the first segment used the spare made for it
  std::string blocker = dir_.path() + "/wal.spare.creating";
  ASSERT_EQ(::mkdir(blocker.c_str(), 0755), 0);
  Status s;
  while (wal->segment_count() == 1) {
    append(wal.get(), next++, 1, 300);
    s = wal->sync_write();
    if (!s) break;
  }
  EXPECT_FALSE(s.is_ok()) << "the write that needs a new segment is refused";
  EXPECT_FALSE(wal->failed()) << "a missing spare is not a log failure";
  EXPECT_EQ(wal->segment_count(), 1u);
  EXPECT_TRUE(wal->has_pending());
  uint64_t written = wal->written_index();
  EXPECT_EQ(wal->durable_index(), written);
  EXPECT_EQ(written, next - 2);  // everything but the record that needs the new segment
  // Asking again does not spin either, and still changes nothing.
  append(wal.get(), next++, 1, 300);
  EXPECT_FALSE(wal->begin_write().has_value());
  EXPECT_FALSE(wal->failed());
  EXPECT_EQ(wal->written_index(), written);
  // Space returns: the spare is made, the staged records go out.
  ASSERT_EQ(::rmdir(blocker.c_str()), 0);
  bool ready = false;
  for (int i = 0; i < 100 && !ready; ++i) ready = wal->prepare_spare_step();
  ASSERT_TRUE(ready);
  ASSERT_TRUE(wal->sync_write().is_ok());
  EXPECT_EQ(wal->durable_index(), next - 1);
  EXPECT_EQ(wal->segment_count(), 2u);
  wal.reset();
  std::vector<WalRecord> recs;
  wal = open_wal(o, &recs);
  expect_records(recs, 1, next - 1);
  ::alarm(0);
}

}  // namespace
}  // namespace ticketd::storage
