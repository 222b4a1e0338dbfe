// Hard state tests: round trips, slot alternation, a corrupt slot falls back to the other,
// both corrupt is a clear error, the asynchronous save form.
#include "ticketd/storage/hard_state_file.h"

#include <gtest/gtest.h>
#include <sys/uio.h>
#include <xxhash.h>

#include <cstring>

#include "ticketd/storage/scratch_dir.h"

namespace ticketd::storage {
namespace {

using scratch::read_bytes;
using scratch::ScratchDir;
using scratch::write_bytes;

HardState make_state(uint64_t term, uint64_t vote, uint64_t commit, size_t blob_len) {
  HardState s;
  s.term = term;
  s.vote = vote;
  s.commit = commit;
  for (size_t i = 0; i < blob_len; ++i) s.blob.push_back(static_cast<std::byte>(term + i));
  return s;
}

class HardStateFileTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  std::string path() const { return dir_.path() + "/hardstate"; }
  std::unique_ptr<HardStateFile> open(HardState* st, bool* found, Status* status = nullptr) {
    std::unique_ptr<HardStateFile> f;
    Status s = HardStateFile::open(path(), &f, st, found, GetParam());
    if (status) {
      *status = s;
    } else {
      EXPECT_TRUE(s.is_ok()) << s.message();
    }
    return f;
  }
  // Two saves: terms 4 and 5, one in each slot.
  void save_twice() {
    HardState st;
    bool found;
    auto f = open(&st, &found);
    ASSERT_TRUE(f->save(make_state(4, 1, 0, 0)).is_ok());
    ASSERT_TRUE(f->save(make_state(5, 2, 0, 0)).is_ok());
  }
  ScratchDir dir_;
};

TEST_P(HardStateFileTest, MissingFileIsAFreshNode) {
  HardState st = make_state(9, 9, 9, 3);
  bool found = true;
  auto f = open(&st, &found);
  ASSERT_TRUE(f);
  EXPECT_FALSE(found);
  EXPECT_EQ(st, HardState{});
}

TEST_P(HardStateFileTest, SaveLoadRoundTripAcrossManySaves) {
  {
    HardState st;
    bool found;
    auto f = open(&st, &found);
    for (uint64_t t = 1; t <= 7; ++t) {
      ASSERT_TRUE(f->save(make_state(t, t % 3, t * 10, t * 30)).is_ok());
      EXPECT_EQ(f->sequence(), t);
    }
  }
  HardState st;
  bool found = false;
  auto f = open(&st, &found);
  EXPECT_TRUE(found);
  EXPECT_EQ(st, make_state(7, 1, 70, 210));
  EXPECT_EQ(f->sequence(), 7u);
  // Keeps alternating after a reopen.
  ASSERT_TRUE(f->save(make_state(8, 2, 80, HardStateFile::kMaxBlobBytes)).is_ok());
  f.reset();
  f = open(&st, &found);
  EXPECT_EQ(st, make_state(8, 2, 80, HardStateFile::kMaxBlobBytes));
}

TEST_P(HardStateFileTest, CorruptNewestSlotFallsBackToTheOther) {
  {
    HardState st;
    bool found;
    auto f = open(&st, &found);
    ASSERT_TRUE(f->save(make_state(4, 1, 0, 16)).is_ok());  // seq 1 -> slot 1
    ASSERT_TRUE(f->save(make_state(5, 2, 0, 16)).is_ok());  // seq 2 -> slot 0
  }
  auto data = read_bytes(path());
  ASSERT_EQ(data.size(), 2 * HardStateFile::kSlotBytes);
  for (size_t byte : {size_t{0}, size_t{9}, size_t{20}, size_t{50}, size_t{4000}, size_t{4090}}) {
    SCOPED_TRACE("byte " + std::to_string(byte));
    auto bad = data;
    bad[byte] ^= std::byte{0x10};  // the newest state (seq 2) is in slot 0
    write_bytes(path(), bad);
    HardState st;
    bool found = false;
    auto f = open(&st, &found);
    ASSERT_TRUE(f);
    EXPECT_TRUE(found);
    EXPECT_EQ(st, make_state(4, 1, 0, 16));
    EXPECT_EQ(f->sequence(), 1u);
  }
  // Corrupting the older slot changes nothing.
  auto bad = data;
  bad[HardStateFile::kSlotBytes + 17] ^= std::byte{1};
  write_bytes(path(), bad);
  HardState st;
  bool found = false;
  auto f = open(&st, &found);
  EXPECT_EQ(st, make_state(5, 2, 0, 16));
}

TEST_P(HardStateFileTest, SaveAfterFallbackKeepsTheGoodSlot) {
  {
    HardState st;
    bool found;
    auto f = open(&st, &found);
    ASSERT_TRUE(f->save(make_state(4, 1, 0, 0)).is_ok());  // slot 1
    ASSERT_TRUE(f->save(make_state(5, 2, 0, 0)).is_ok());  // slot 0
  }
  auto data = read_bytes(path());
  data[100] ^= std::byte{1};  // slot 0 (seq 2) damaged: seq 1 wins
  write_bytes(path(), data);
  HardState st;
  bool found;
  auto f = open(&st, &found);
  ASSERT_EQ(st, make_state(4, 1, 0, 0));
  ASSERT_TRUE(f->save(make_state(6, 3, 0, 0)).is_ok());  // seq 2 -> slot 0, slot 1 untouched
  f.reset();
  f = open(&st, &found);
  EXPECT_EQ(st, make_state(6, 3, 0, 0));
}

TEST_P(HardStateFileTest, BothSlotsCorruptIsAClearError) {
  save_twice();
  auto data = read_bytes(path());
  data[30] ^= std::byte{1};
  data[HardStateFile::kSlotBytes + 30] ^= std::byte{1};
  write_bytes(path(), data);
  HardState st;
  bool found = true;
  Status s;
  auto f = open(&st, &found, &s);
  EXPECT_FALSE(f);
  EXPECT_FALSE(found);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt);
  EXPECT_NE(s.message().find("both slots"), std::string::npos) << s.message();
  // A file cut short is also corrupt, not "fresh".
  data.resize(100);
  write_bytes(path(), data);
  f = open(&st, &found, &s);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt);
}

// A slot of a later format (its frame intact) makes open refuse, naming it; one damaged in
// the magic's version byte is damage like any other (the other slot is used).
TEST_P(HardStateFileTest, ASlotOfANewerFormatIsRefusedADamagedOneIsNot) {
  save_twice();
  auto data = read_bytes(path());
  ASSERT_EQ(hard_state_slot_format(data.data()), kHardStateFormat);
  auto damaged = data;
  damaged[7] = static_cast<std::byte>('2');  // checksum not updated: damage
  write_bytes(path(), damaged);
  HardState st;
  bool found = false;
  Status s;
  auto f = open(&st, &found, &s);
  EXPECT_TRUE(s.is_ok()) << s.message();
  f.reset();
  auto newer = data;
  newer[7] = static_cast<std::byte>('2');
  uint64_t sum = XXH3_64bits(newer.data(), HardStateFile::kSlotBytes - 8);
  std::memcpy(newer.data() + HardStateFile::kSlotBytes - 8, &sum, 8);
  write_bytes(path(), newer);
  f = open(&st, &found, &s);
  EXPECT_FALSE(f);
  EXPECT_NE(s.message().find("format 2, written by a newer release"), std::string::npos) << s.message();
}

TEST_P(HardStateFileTest, AsyncSaveForm) {
  HardState st;
  bool found;
  auto f = open(&st, &found);
  HardStateWriteOp op;
  EXPECT_FALSE(f->begin_save(make_state(1, 1, 0, 0), &op).is_ok());  // the first save creates
  ASSERT_TRUE(f->save(make_state(1, 1, 0, 0)).is_ok());
  ASSERT_TRUE(f->begin_save(make_state(2, 3, 4, 5), &op).is_ok());
  EXPECT_EQ(op.len, HardStateFile::kSlotBytes);
  EXPECT_EQ(op.offset, 0u);  // seq 2 -> slot 0
  EXPECT_EQ(reinterpret_cast<uintptr_t>(op.buf) % kBlockBytes, 0u);
  iovec iov{const_cast<void*>(op.buf), op.len};
  ssize_t n = ::pwritev2(op.fd, &iov, 1, static_cast<off_t>(op.offset), RWF_DSYNC);
  ASSERT_TRUE(f->end_save(n).is_ok());
  EXPECT_EQ(f->sequence(), 2u);
  ASSERT_TRUE(f->begin_save(make_state(3, 3, 4, 5), &op).is_ok());
  EXPECT_FALSE(f->end_save(-5).is_ok());  // failed write: sequence does not advance
  EXPECT_EQ(f->sequence(), 2u);
  f.reset();
  f = open(&st, &found);
  EXPECT_EQ(st, make_state(2, 3, 4, 5));
}

TEST_P(HardStateFileTest, LeftoverTempFileFromInterruptedCreationIsIgnored) {
  write_bytes(path() + ".tmp", std::vector<std::byte>(77, std::byte{0x5a}));
  HardState st;
  bool found = true;
  auto f = open(&st, &found);
  EXPECT_FALSE(found);
  ASSERT_TRUE(f->save(make_state(1, 2, 3, 4)).is_ok());
  f.reset();
  f = open(&st, &found);
  EXPECT_TRUE(found);
  EXPECT_EQ(st, make_state(1, 2, 3, 4));
}

INSTANTIATE_TEST_SUITE_P(IoModes, HardStateFileTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? std::string("BufferedFallback") : std::string("Auto");
                         });

}  // namespace
}  // namespace ticketd::storage
