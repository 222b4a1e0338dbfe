// Thin POSIX file primitives for the storage module: aligned buffers, O_DIRECT opening with an
// explicit buffered fallback, full writes/reads and directory fsync. They report every error;
// they never retry a failed fsync (after a failed fsync the page state is unknown).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ticketd/storage/status.h"

namespace ticketd::storage {

// The unit of O_DIRECT I/O: every direct write starts and ends on this boundary.
inline constexpr size_t kBlockBytes = 4096;

inline constexpr uint64_t round_down_block(uint64_t x) { return x & ~uint64_t{kBlockBytes - 1}; }
inline constexpr uint64_t round_up_block(uint64_t x) {
  return round_down_block(x + kBlockBytes - 1);
}

// A zero-initialised, kBlockBytes-aligned heap buffer (what O_DIRECT needs). Move-only.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Opens `path` with `flags` (plus O_CLOEXEC). With `try_direct`, asks for O_DIRECT first; if
// the filesystem refuses it (EINVAL) or `refuse_direct` simulates that refusal, opens buffered
// and sets *direct = false. The caller must then make writes durable with fdatasync/RWF_DSYNC.
Status open_file(const std::string& path, int flags, bool try_direct, bool refuse_direct, int* fd,
                 bool* direct);

// pwritev2 of exactly `len` bytes at `offset`, looping on short writes; `dsync` adds RWF_DSYNC.
Status write_fully(int fd, const void* buf, size_t len, uint64_t offset, bool dsync,
                   const std::string& what);
Status read_fully(int fd, void* buf, size_t len, uint64_t offset, const std::string& what);
// Reads a whole (buffered) file into `out`.
Status read_whole_file(const std::string& path, std::vector<std::byte>* out);
Status fdatasync_fd(int fd, const std::string& what);
Status fsync_fd(int fd, const std::string& what);
// fsync of a directory: makes creations, renames and unlinks inside it durable.
Status sync_dir(const std::string& dir);
std::string parent_dir(const std::string& path);
bool file_exists(const std::string& path);

}  // namespace ticketd::storage
