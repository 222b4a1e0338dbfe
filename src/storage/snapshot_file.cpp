#include "ticketd/storage/snapshot_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>

#include "ticketd/storage/posix_file.h"

namespace ticketd::storage {
namespace {

// "TKDSNAP1" little-endian: format version 1 is the last byte. Every format keeps the 24-byte
// header (magic, length, checksum over the first 16 header bytes and the body), so a file of
// a newer release is told from a damaged one.
constexpr uint64_t kMagic = 0x3150414e53444b54ull;
constexpr int kFormat = 1;
constexpr size_t kHeaderBytes = 24;                 // magic, length, checksum

uint64_t snapshot_checksum(const std::byte* header16, std::span<const std::byte> data) {
  return XXH3_64bits_withSeed(data.data(), data.size(), XXH3_64bits(header16, 16));
}

}  // namespace

Status SnapshotFile::save(const std::string& path, std::span<const std::byte> data) {
  if (data.size() > kMaxBytes) return Status::invalid("snapshot too large");
  std::vector<std::byte> image(kHeaderBytes + data.size());
  uint64_t len = data.size();
  std::memcpy(image.data(), &kMagic, 8);
  std::memcpy(image.data() + 8, &len, 8);
  uint64_t sum = snapshot_checksum(image.data(), data);
  std::memcpy(image.data() + 16, &sum, 8);
  if (!data.empty()) std::memcpy(image.data() + kHeaderBytes, data.data(), data.size());

  // Temp file, fsync, rename, fsync dir: the name `path` only ever refers to a complete,
  // synced snapshot, old or new.
  std::string tmp = temp_path(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io("open " + tmp, errno);
  Status s = write_fully(fd, image.data(), image.size(), 0, false, tmp);
  if (s) s = fsync_fd(fd, tmp);
  ::close(fd);
  if (!s) return s;
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::io("rename " + tmp, errno);
  return sync_dir(parent_dir(path));
}

Status SnapshotFile::load(const std::string& path, std::vector<std::byte>* data) {
  data->clear();
  std::vector<std::byte> image;
  Status s = read_whole_file(path, &image);
  if (!s) return s;
  if (image.size() < kHeaderBytes) return Status::corrupt("snapshot " + path + " is truncated");
  uint64_t magic, len, sum;
  std::memcpy(&magic, image.data(), 8);
  std::memcpy(&len, image.data() + 8, 8);
  std::memcpy(&sum, image.data() + 16, 8);
  bool same_frame = std::memcmp(&magic, &kMagic, 7) == 0;
  if (!same_frame) return Status::corrupt("snapshot " + path + " has a bad magic number");
  if (len != image.size() - kHeaderBytes) {
    return Status::corrupt("snapshot " + path + " length mismatch");
  }
  std::span<const std::byte> body(image.data() + kHeaderBytes, len);
  if (snapshot_checksum(image.data(), body) != sum) {
    return Status::corrupt("snapshot " + path + " fails its checksum");
  }
  if (magic != kMagic) {
    char v = static_cast<char>(image[7]);
    return Status::corrupt("snapshot " + path + " is in format " + std::string(1, v) +
                           ", written by a newer release; this build reads format " +
                           std::to_string(kFormat) + " (downgrades are not supported)");
  }
  data->assign(body.begin(), body.end());
  return Status::ok();
}

}  // namespace ticketd::storage
