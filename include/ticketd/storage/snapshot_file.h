// The snapshot file: one small opaque blob (the caller encodes last index, term, configuration,
// counter) saved crash-safely (temp file + fsync + rename + directory fsync) with a checksum.
// load() never returns bytes it has not verified; a leftover temp file is never read.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "ticketd/storage/status.h"

namespace ticketd::storage {

class SnapshotFile {
 public:
  static constexpr size_t kMaxBytes = 64u << 20;

  // Durable when it returns ok. Writes `path`.tmp first; the rename makes it visible atomically.
  static Status save(const std::string& path, std::span<const std::byte> data);
  // kNotFound when there is no snapshot; kCorrupt when it fails verification.
  static Status load(const std::string& path, std::vector<std::byte>* data);
  static std::string temp_path(const std::string& path) { return path + ".tmp"; }
};

}  // namespace ticketd::storage
