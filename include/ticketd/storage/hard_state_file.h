// The Raft hard state {term, vote, commit} plus a small opaque blob (incarnation / cluster id),
// kept crash-safely in two checksummed 4 KiB slots written alternately: a torn write can only
// damage the slot being written, never the last state that was saved successfully.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ticketd/storage/posix_file.h"
#include "ticketd/storage/status.h"

namespace ticketd::storage {

struct HardState {
  uint64_t term = 0;
  uint64_t vote = 0;            // node id voted for in `term`; 0 = none
  uint64_t commit = 0;          // optional hint; 0 = unknown
  std::vector<std::byte> blob;  // at most HardStateFile::kMaxBlobBytes
  bool operator==(const HardState&) const = default;
};

// A slot write for the caller to perform (pwritev2 with RWF_DSYNC), then end_save(result).
struct HardStateWriteOp {
  int fd = -1;
  const void* buf = nullptr;
  size_t len = 0;
  uint64_t offset = 0;
  bool dsync = true;
};

class HardStateFile {
 public:
  static constexpr size_t kMaxBlobBytes = 256;
  static constexpr size_t kSlotBytes = kBlockBytes;

  // Opens the file at `path`. A missing file is not an error: *found = false and *state is
  // default (a fresh node); the first save creates it (temp file + fsync + rename + dir fsync).
  // A file whose slots are both invalid is Status::kCorrupt: the node must not start as if it
  // had never voted.
  static Status open(const std::string& path, std::unique_ptr<HardStateFile>* out, HardState* state,
                     bool* found, bool refuse_direct_io_for_testing = false);
  ~HardStateFile();
  HardStateFile(const HardStateFile&) = delete;
  HardStateFile& operator=(const HardStateFile&) = delete;

  // Synchronous, durable when it returns ok.
  Status save(const HardState& state);
  // Asynchronous form (once the file exists; the very first save is always synchronous):
  // encodes the next slot and returns the write; end_save() with the bytes written or -errno.
  // One save at a time.
  Status begin_save(const HardState& state, HardStateWriteOp* op);
  Status end_save(int64_t result);

  uint64_t sequence() const { return sequence_; }  // of the last saved (or loaded) state
  bool direct_io() const { return direct_; }

 private:
  HardStateFile(const std::string& path, bool refuse_direct);
  Status create_file(const HardState& state);
  void encode_slot(const HardState& state, uint64_t seq);

  std::string path_;
  bool refuse_direct_;
  int fd_ = -1;
  bool direct_ = false;
  uint64_t sequence_ = 0;
  bool save_in_flight_ = false;
  uint64_t inflight_sequence_ = 0;
  AlignedBuffer slot_;
};

// Exposed for tests: whether a slot image is valid, and its decoded contents.
bool decode_hard_state_slot(const std::byte* slot, uint64_t* sequence, HardState* state);
// The format this build writes and reads; a slot of a later one makes open() refuse.
inline constexpr int kHardStateFormat = 1;
// A slot's format version if its frame is intact (magic prefix and checksum), else 0.
int hard_state_slot_format(const std::byte* slot);

}  // namespace ticketd::storage
