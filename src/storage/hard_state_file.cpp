#include "ticketd/storage/hard_state_file.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>

#include "ticketd/base/check.h"

namespace ticketd::storage {
namespace {

// "TTKDHSv1" little-endian: format version 1 is the last byte. Every format keeps the slot's
// frame (the magic's first 7 bytes, the XXH3 of the slot's first kSlotBytes-8 bytes at its
// end), so a slot of a newer release is told from a damaged one.
constexpr uint64_t kMagic = 0x31765348444b5454ull;
constexpr size_t kSeqOffset = 8;
constexpr size_t kTermOffset = 16;
constexpr size_t kVoteOffset = 24;
constexpr size_t kCommitOffset = 32;
constexpr size_t kBlobLenOffset = 40;
constexpr size_t kBlobOffset = 48;
constexpr size_t kChecksumOffset = HardStateFile::kSlotBytes - 8;
constexpr size_t kFileBytes = 2 * HardStateFile::kSlotBytes;

uint64_t load_u64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

void store_u64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }

}  // namespace

int hard_state_slot_format(const std::byte* slot) {
  if (std::memcmp(slot, &kMagic, 7) != 0) return 0;
  if (load_u64(slot + kChecksumOffset) != XXH3_64bits(slot, kChecksumOffset)) return 0;
  char v = static_cast<char>(slot[7]);
  return v >= '1' && v <= '9' ? v - '0' : 0;
}

bool decode_hard_state_slot(const std::byte* slot, uint64_t* sequence, HardState* state) {
  if (load_u64(slot) != kMagic) return false;
  if (load_u64(slot + kChecksumOffset) != XXH3_64bits(slot, kChecksumOffset)) return false;
  uint32_t blob_len;
  std::memcpy(&blob_len, slot + kBlobLenOffset, 4);
  if (blob_len > HardStateFile::kMaxBlobBytes) return false;
  *sequence = load_u64(slot + kSeqOffset);
  state->term = load_u64(slot + kTermOffset);
  state->vote = load_u64(slot + kVoteOffset);
  state->commit = load_u64(slot + kCommitOffset);
  state->blob.assign(slot + kBlobOffset, slot + kBlobOffset + blob_len);
  return true;
}

HardStateFile::HardStateFile(const std::string& path, bool refuse_direct)
    : path_(path), refuse_direct_(refuse_direct), slot_(kSlotBytes) {}

HardStateFile::~HardStateFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status HardStateFile::open(const std::string& path, std::unique_ptr<HardStateFile>* out,
                           HardState* state, bool* found, bool refuse_direct_io_for_testing) {
  out->reset();
  *state = HardState{};
  *found = false;
  std::unique_ptr<HardStateFile> f(new HardStateFile(path, refuse_direct_io_for_testing));
  std::vector<std::byte> data;
  Status s = read_whole_file(path, &data);
  if (s.code() == Status::Code::kNotFound) {
    *out = std::move(f);
    return Status::ok();
  }
  if (!s) return s;
  if (data.size() != kFileBytes) {
    return Status::corrupt("hard state " + path + " has " + std::to_string(data.size()) +
                           " bytes, expected " + std::to_string(kFileBytes));
  }
  for (size_t i = 0; i < 2; ++i) {
    int format = hard_state_slot_format(data.data() + i * kSlotBytes);
    if (format > kHardStateFormat) {
      return Status::corrupt("hard state " + path + " is in format " + std::to_string(format) +
                             ", written by a newer release; this build reads format " +
                             std::to_string(kHardStateFormat) + " (downgrades are not supported)");
    }
  }
  uint64_t best_seq = 0;
  bool have = false;
  for (size_t i = 0; i < 2; ++i) {
    uint64_t seq;
    HardState st;
    if (decode_hard_state_slot(data.data() + i * kSlotBytes, &seq, &st) &&
        (!have || seq > best_seq)) {
      have = true;
      best_seq = seq;
      *state = std::move(st);
    }
  }
  if (!have) {
    return Status::corrupt("hard state " + path +
                           ": both slots fail their checksum; refusing to start without the "
                           "saved term and vote");
  }
  f->sequence_ = best_seq;
  s = open_file(path, O_RDWR, true, refuse_direct_io_for_testing, &f->fd_, &f->direct_);
  if (!s) return s;
  *found = true;
  *out = std::move(f);
  return Status::ok();
}

void HardStateFile::encode_slot(const HardState& state, uint64_t seq) {
  TICKETD_CHECK_MSG(state.blob.size() <= kMaxBlobBytes, "hard state blob too large");
  std::byte* p = slot_.data();
  std::memset(p, 0, kSlotBytes);
  store_u64(p, kMagic);
  store_u64(p + kSeqOffset, seq);
  store_u64(p + kTermOffset, state.term);
  store_u64(p + kVoteOffset, state.vote);
  store_u64(p + kCommitOffset, state.commit);
  uint32_t blob_len = static_cast<uint32_t>(state.blob.size());
  std::memcpy(p + kBlobLenOffset, &blob_len, 4);
  if (blob_len > 0) std::memcpy(p + kBlobOffset, state.blob.data(), blob_len);
  store_u64(p + kChecksumOffset, XXH3_64bits(p, kChecksumOffset));
}

Status HardStateFile::create_file(const HardState& state) {
  // The file appears under its real name only complete and synced, so a crash during creation
  // looks like "no hard state yet" (nothing was ever saved), never like corruption.
  std::string tmp = path_ + ".tmp";
  AlignedBuffer image(kFileBytes);
  encode_slot(state, 1);
  std::memcpy(image.data() + (1 % 2) * kSlotBytes, slot_.data(), kSlotBytes);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::io("open " + tmp, errno);
  Status s = write_fully(fd, image.data(), kFileBytes, 0, false, tmp);
  if (s) s = fsync_fd(fd, tmp);
  ::close(fd);
  if (!s) return s;
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return Status::io("rename " + tmp, errno);
  s = sync_dir(parent_dir(path_));
  if (!s) return s;
  s = open_file(path_, O_RDWR, true, refuse_direct_, &fd_, &direct_);
  if (!s) return s;
  sequence_ = 1;
  return Status::ok();
}

Status HardStateFile::begin_save(const HardState& state, HardStateWriteOp* op) {
  TICKETD_CHECK_MSG(!save_in_flight_, "one hard state save at a time");
  if (fd_ < 0) return Status::invalid("hard state file " + path_ + " does not exist yet");
  uint64_t seq = sequence_ + 1;
  encode_slot(state, seq);
  // Slot seq % 2 is the one NOT holding the newest valid state (that one is sequence_ % 2).
  op->fd = fd_;
  op->buf = slot_.data();
  op->len = kSlotBytes;
  op->offset = (seq % 2) * kSlotBytes;
  op->dsync = true;
  save_in_flight_ = true;
  inflight_sequence_ = seq;
  return Status::ok();
}

Status HardStateFile::end_save(int64_t result) {
  TICKETD_CHECK(save_in_flight_);
  save_in_flight_ = false;
  if (result != static_cast<int64_t>(kSlotBytes)) {
    if (result < 0) return Status::io("hard state write " + path_, static_cast<int>(-result));
    return Status::io("hard state write " + path_ + " was short", EIO);
  }
  sequence_ = inflight_sequence_;
  return Status::ok();
}

Status HardStateFile::save(const HardState& state) {
  if (fd_ < 0) return create_file(state);
  HardStateWriteOp op;
  Status s = begin_save(state, &op);
  if (!s) return s;
  s = write_fully(op.fd, op.buf, op.len, op.offset, op.dsync, path_);
  Status done = end_save(s ? static_cast<int64_t>(op.len) : -EIO);
  return s ? done : s;  // keep the real errno text
}

}  // namespace ticketd::storage
