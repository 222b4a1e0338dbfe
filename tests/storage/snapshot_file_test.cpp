// Snapshot file tests: round trip, missing, corrupt and truncated files, leftover temp file.
#include "ticketd/storage/snapshot_file.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>

#include "ticketd/storage/scratch_dir.h"

namespace ticketd::storage {
namespace {

using scratch::read_bytes;
using scratch::ScratchDir;
using scratch::write_bytes;

std::vector<std::byte> blob(size_t n, int seed) {
  std::vector<std::byte> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<std::byte>(seed * 13 + i * 7);
  return b;
}

class SnapshotFileTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  std::string path() const { return dir_.path() + "/snapshot"; }
  ScratchDir dir_;
};

TEST_F(SnapshotFileTest, RoundTripAndReplace) {
  ASSERT_TRUE(SnapshotFile::save(path(), blob(300, 1)).is_ok());
  std::vector<std::byte> got;
  ASSERT_TRUE(SnapshotFile::load(path(), &got).is_ok());
  EXPECT_EQ(got, blob(300, 1));
  ASSERT_TRUE(SnapshotFile::save(path(), blob(120, 2)).is_ok());
  ASSERT_TRUE(SnapshotFile::load(path(), &got).is_ok());
  EXPECT_EQ(got, blob(120, 2));
  ASSERT_TRUE(SnapshotFile::save(path(), {}).is_ok());
  ASSERT_TRUE(SnapshotFile::load(path(), &got).is_ok());
  EXPECT_TRUE(got.empty());
  EXPECT_FALSE(scratch::read_bytes(path()).empty());
}

TEST_F(SnapshotFileTest, MissingIsNotFound) {
  std::vector<std::byte> got;
  EXPECT_EQ(SnapshotFile::load(path(), &got).code(), Status::Code::kNotFound);
}

// A file of a later format (header intact) is refused, naming it.
TEST_F(SnapshotFileTest, AFileOfANewerFormatIsRefusedWithItsFormat) {
  ASSERT_TRUE(SnapshotFile::save(path(), blob(64, 5)).is_ok());
  auto data = read_bytes(path());
  EXPECT_EQ(static_cast<char>(data[7]), '1');
  data[7] = static_cast<std::byte>('2');
  uint64_t sum = XXH3_64bits_withSeed(data.data() + 24, data.size() - 24, XXH3_64bits(data.data(), 16));
  std::memcpy(data.data() + 16, &sum, 8);
  write_bytes(path(), data);
  std::vector<std::byte> got;
  Status s = SnapshotFile::load(path(), &got);
  EXPECT_EQ(s.code(), Status::Code::kCorrupt);
  EXPECT_NE(s.message().find("format 2, written by a newer release"), std::string::npos) << s.message();
}

TEST_F(SnapshotFileTest, AnyFlippedByteIsCorrupt) {
  ASSERT_TRUE(SnapshotFile::save(path(), blob(64, 3)).is_ok());
  auto data = read_bytes(path());
  for (size_t i = 0; i < data.size(); ++i) {
    auto bad = data;
    bad[i] ^= std::byte{0x04};
    write_bytes(path(), bad);
    std::vector<std::byte> got(3);
    Status s = SnapshotFile::load(path(), &got);
    EXPECT_EQ(s.code(), Status::Code::kCorrupt) << "byte " << i;
    EXPECT_TRUE(got.empty());
  }
  for (size_t cut : {size_t{0}, size_t{10}, size_t{24}, data.size() - 1}) {
    auto bad = data;
    bad.resize(cut);
    write_bytes(path(), bad);
    std::vector<std::byte> got;
    EXPECT_EQ(SnapshotFile::load(path(), &got).code(), Status::Code::kCorrupt) << "cut " << cut;
  }
}

TEST_F(SnapshotFileTest, LeftoverTempFileIsIgnored) {
  ASSERT_TRUE(SnapshotFile::save(path(), blob(200, 4)).is_ok());
  // A crash mid-save leaves a partial temp file next to the good snapshot.
  write_bytes(SnapshotFile::temp_path(path()), blob(50, 5));
  std::vector<std::byte> got;
  ASSERT_TRUE(SnapshotFile::load(path(), &got).is_ok());
  EXPECT_EQ(got, blob(200, 4));
  ASSERT_TRUE(SnapshotFile::save(path(), blob(210, 6)).is_ok());
  ASSERT_TRUE(SnapshotFile::load(path(), &got).is_ok());
  EXPECT_EQ(got, blob(210, 6));
}

}  // namespace
}  // namespace ticketd::storage
