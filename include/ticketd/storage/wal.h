// The write-ahead log (the Raft log lives here): checksummed records in preallocated segment
// files, written in 4 KiB-aligned O_DIRECT blocks; recovery keeps exactly the valid prefix.
// It never performs the hot-path write itself (the caller submits WalWriteOp, e.g. via io_uring),
// never modifies a buffer while a write of it is in flight, and knows nothing of Raft messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/storage/posix_file.h"
#include "ticketd/storage/status.h"
#include "ticketd/storage/wal_record.h"

namespace ticketd::storage {

// On disk, in the WAL directory:
//   wal-<16 hex digits>.log  segments, named by the index of their first record, each
//                            preallocated (zero-filled) to segment_bytes; records never span
//                            two segments; zeros after the last record.
//   wal.spare                the next segment, zero-filled and synced, renamed into place at a
//                            switch; wal.spare.creating is a partial one (removed at open).
//   wal.lock                 flock'ed while a Wal has the directory open.
// Recovery rules: a segment's first record has the index in its name; each segment starts at
// the previous one's last index + 1; indexes are consecutive within a segment. The first
// violation (torn record, checksum mismatch, gap) ends the log there. An all-zero header in
// the middle of a 4 KiB block is the zero padding after a write's last record: the scan goes on
// at the next block (a write that began while another was in flight starts on a fresh block).
// An all-zero header at a block boundary is the end. Anything non-zero after the end (a later
// write that landed while an earlier one did not: a hole) is wiped: none of it was ever
// reported durable, because durable_index() only advances over the contiguous prefix.

// How a durable write is made durable. Measured on this machine (ext4 on virtio, 4 KiB O_DIRECT
// overwrite of a zero-filled preallocated file): RWF_DSYNC ~85 us, pwrite + fdatasync ~85 us.
// RWF_DSYNC is the default: one operation, no separate fsync op for io_uring to punt to a worker.
enum class WalSyncMethod { kRwfDsync, kFdatasync };

// How a new segment is preallocated. Measured here: overwriting blocks of a zero-filled file
// costs ~85 us per durable 4 KiB write; fallocate'd (unwritten-extent) blocks cost ~130 us,
// because the first write to each block converts the extent and journals metadata. Zero fill
// (~30 ms per 64 MiB segment, done ahead of time in steps, see prepare_spare_step) wins.
enum class WalPreallocate { kZeroFill, kFallocate };

struct WalOptions {
  uint64_t segment_bytes = 64ull << 20;  // multiple of kBlockBytes
  // Largest single write (the aligned buffer's size); one record must fit in it with a block
  // to spare, so the largest payload is max_write_bytes - kBlockBytes - kWalHeaderBytes.
  size_t max_write_bytes = 1u << 20;
  WalSyncMethod sync_method = WalSyncMethod::kRwfDsync;
  WalPreallocate preallocate = WalPreallocate::kZeroFill;
  size_t spare_step_bytes = 1u << 20;  // zeros written per prepare_spare_step() call
  // How many durable writes may be in flight side by side (1..kMaxWritesInFlight). With more
  // than one, a write begun while another is in flight starts on a fresh 4 KiB block (the
  // in-flight write's partial tail block is never rewritten), so each in-flight write owns
  // its blocks; completions may arrive in any order. See docs/BENCHMARKS.md for the choice.
  size_t max_writes_in_flight = 1;
  // Test hook: behave exactly as if the filesystem refused O_DIRECT (open returns EINVAL).
  bool refuse_direct_io_for_testing = false;
  // Notable events (buffered-I/O fallback, recovery truncation). May be empty.
  std::function<void(std::string_view)> log;
};

struct WalRecord {
  uint8_t type = 0;
  uint64_t term = 0;
  uint64_t index = 0;
  std::vector<std::byte> payload;
};

// What open() found and did; describe() is one line for the server's log.
struct WalRecoveryReport {
  size_t segments_scanned = 0;
  size_t records_recovered = 0;
  uint64_t first_index = 0;  // 0 when the log is empty
  uint64_t last_index = 0;
  bool direct_io = false;
  bool truncated = false;         // a torn/corrupt record or an index gap was cut off
  std::string truncated_segment;  // file name where the valid prefix ends
  uint64_t truncated_offset = 0;  // byte offset in it where the valid prefix ends
  std::string reason;             // why (e.g. "corrupt record at index 17")
  uint64_t bytes_zeroed = 0;      // span of stale/torn bytes wiped after the valid prefix
  std::vector<std::string> segments_deleted;  // later segments discarded because of a cut
  size_t temp_files_removed = 0;              // leftover partial spare files
  std::string describe() const;
};

// One write for the caller to perform. On success the caller reports the byte count to
// end_write(); if needs_fdatasync is set, it must fdatasync(fd) after the write completes and
// before calling end_write (a failed fdatasync is reported as its -errno).
struct WalWriteOp {
  int fd = -1;
  const void* buf = nullptr;  // kBlockBytes-aligned; untouched by the Wal until end_write
  size_t len = 0;             // a multiple of kBlockBytes
  uint64_t offset = 0;        // a multiple of kBlockBytes
  bool dsync = false;         // pass RWF_DSYNC (pwritev2 / io_uring_prep_writev2)
  bool needs_fdatasync = false;
  uint64_t last_index = 0;  // highest record index this write carries (the token)
  uint64_t first_index = 0;  // lowest record index this write carries
};

inline constexpr size_t kMaxWritesInFlight = 8;

// A lazy sync (durability levels below `high`): fdatasync(fd), then end_sync(result).
struct WalSyncOp {
  int fd = -1;
  uint64_t last_index = 0;  // durable_index() after a successful end_sync
  uint64_t epoch = 0;       // the Wal's truncation count at begin_sync
};

class Wal {
 public:
  // Opens (creating if needed) the WAL in `dir` (flock'ed: a second open of the same directory,
  // from this or another process, fails with kInvalid), recovers it, and fills `recovered` with
  // every valid record in index order (including records a compact_prefix left in the first
  // segment). A torn or corrupt record, or an index gap, ends the log: it and everything after
  // it are wiped durably (see WalRecoveryReport). `report` and `recovered` may be null.
  static Status open(const std::string& dir, const WalOptions& options, std::unique_ptr<Wal>* out,
                     WalRecoveryReport* report, std::vector<WalRecord>* recovered);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Stages one record in memory (no I/O). `index` must be last_index() + 1, or anything >= 1
  // when the log is empty. Amortised allocation-free (the staging buffer is reused).
  void append(uint8_t type, uint64_t term, uint64_t index, std::span<const std::byte> payload);
  bool has_pending() const { return pending_begin_ < pending_.size(); }
  bool write_in_flight() const { return !inflight_.empty(); }
  // Writes begun and not yet completed (a completed write that waits for an earlier one to
  // complete holds no buffer and does not count).
  size_t writes_in_flight() const;
  size_t max_writes_in_flight() const { return options_.max_writes_in_flight; }
  // Whether begin_write(durable) may be called now: fewer than max_writes_in_flight writes are
  // in flight, and if any is, they and the new one are all durable writes on a file with no
  // unsynced data (a plain write, or a durable one that needs an fdatasync, runs alone).
  // begin_write may still return nullopt when the next records need a new segment: a segment
  // switch waits until every write in flight has completed.
  bool can_begin_write(bool durable = true) const;

  // Moves as many staged records as fit (one segment, one buffer) into an aligned buffer of
  // its own and returns the write covering them. Requires can_begin_write(durable). Returns
  // nullopt when nothing is staged, on failure (see failed()), or when a segment switch must
  // wait for the writes in flight (neither failed() nor blocked(): try again after end_write).
  // May switch to a new segment (synchronous rename + directory fsync, once per segment).
  // `durable` = false asks for a plain write (durability levels below `high`): the records then
  // count as written, not durable, until a sync (begin_sync/end_sync).
  // When a new segment is needed and its spare cannot be made (a full disk), returns nullopt
  // without failing the Wal and without changing anything: see blocked().
  std::optional<WalWriteOp> begin_write(bool durable = true);
  // Reports the result of the op from begin_write whose last_index is `token`: bytes written,
  // or -errno. Completions may come in any order; written_index() and durable_index() advance
  // only over the writes completed without a gap before them. Anything but the full length
  // fails the Wal for good: after a failed write the on-disk state of those blocks is unknown,
  // so the process must restart and let recovery decide.
  Status end_write(uint64_t token, int64_t result);
  // The same for the oldest write in flight (callers that keep one write in flight).
  Status end_write(int64_t result);
  // Convenience for tests, tools and shutdown: begin_write + pwritev2 (+ fdatasync) + end_write,
  // looping until nothing is staged. Returns blocked() if a write could not start. Requires
  // !write_in_flight().
  Status sync_write(bool durable = true);
  // Why the last begin_write could not start: a new segment was needed and no spare could be
  // made (spare_error()). Ok when it could. Nothing is lost or changed: the staged records
  // wait, and the write goes through once prepare_spare_step() succeeds. Not a failure.
  const Status& blocked() const { return blocked_; }

  // Lazy durability: returns the fdatasync needed to make written records durable, if any
  // (nullopt while an earlier one is outstanding: one at a time). It covers written_index() at
  // this call. Writes, segment switches, truncate_suffix and sync_now may all run before its
  // end_sync: the file it names stays open until then, and a truncation meanwhile makes it
  // claim nothing (the truncation syncs what it keeps).
  std::optional<WalSyncOp> begin_sync();
  Status end_sync(const WalSyncOp& op, int result);
  // A synchronous fdatasync of everything written (shutdown). Allowed with a write or a sync
  // in flight: it covers written_index() at the call.
  Status sync_now();

  // Drops every record with index >= `index` (a Raft log conflict), durably before returning:
  // later segments are unlinked newest first, then the cut segment's tail is zeroed and synced.
  // A crash part-way leaves a prefix of the old log that still contains every record below
  // `index`. Requires !write_in_flight(). Cutting at or below first_index() empties the log;
  // the next append may then use any index (how the caller resets the log to a snapshot; after
  // a crash during that, the caller must check the log against its snapshot on restart).
  // Allowed with a sync outstanding (see begin_sync).
  Status truncate_suffix(uint64_t index);
  // Records <= `index` are no longer needed: unlinks whole segments holding only such records,
  // oldest first with a directory fsync after each, so a crash leaves a contiguous suffix.
  // Never removes the segment being written. first_index() may stay <= index afterwards.
  // Allowed while a write is in flight.
  Status compact_prefix(uint64_t index);

  // Writes up to options.spare_step_bytes of the next segment's zero fill; returns true once
  // the spare segment is ready. Call it when idle so a segment switch never waits for the fill.
  // Blocking I/O (one step ~0.5 ms for 1 MiB here).
  bool prepare_spare_step();
  bool spare_ready() const { return spare_ready_; }
  // Why the last prepare_spare_step() attempt was abandoned (ok if it was not). A failed
  // spare never fails the Wal: the spare is not part of the log.
  const Status& spare_error() const { return spare_error_; }

  // 0 when the log is empty. last_index() includes staged records.
  uint64_t first_index() const { return empty_ ? 0 : first_index_; }
  uint64_t last_index() const { return empty_ ? 0 : last_index_; }
  uint64_t written_index() const { return written_index_; }  // completed writes
  uint64_t durable_index() const { return durable_index_; }  // completed and synced
  bool direct_io() const { return direct_io_; }
  bool failed() const { return !error_.is_ok(); }
  const Status& error() const { return error_; }
  size_t segment_count() const { return segments_.size(); }
  size_t max_payload() const { return max_payload_; }
  const std::string& dir() const { return dir_; }
  static std::string segment_name(uint64_t first_index);

 private:
  struct Segment {
    uint64_t first_index;  // index of its first record (or of the next record, if empty)
    std::string path;
  };

  Wal(const std::string& dir, const WalOptions& options);
  Status recover(WalRecoveryReport* report, std::vector<WalRecord>* recovered);
  Status open_segment_fd(const std::string& path, int* fd);
  Status start_segment(uint64_t first_index);
  Status close_current_segment();
  bool finish_spare();
  void release_fd(int fd);
  Status unlink_segment(const Segment& seg);
  Status wipe_tail(int fd, const std::vector<std::byte>& data, uint64_t from, uint64_t to,
                   const std::string& what);
  void load_tail_block(const std::byte* segment_data, uint64_t end);
  bool must_wait_for_switch() const;
  void note(const std::string& msg);
  Status fail(Status s);

  std::string dir_;
  WalOptions options_;
  size_t max_payload_ = 0;
  bool direct_io_ = true;
  bool fallback_reported_ = false;
  Status error_;

  std::vector<Segment> segments_;  // sorted; back() is the current segment when fd_ >= 0
  int fd_ = -1;
  int lock_fd_ = -1;  // flock'ed wal.lock: one open Wal per directory
  bool sync_outstanding_ = false;
  int sync_fd_ = -1;          // the file the outstanding sync names
  int retired_fd_ = -1;       // sync_fd_ after a switch/truncation closed it: closed at end_sync
  uint64_t sync_epoch_ = 0;   // bumped by a truncation of written records
  Status blocked_;
  uint64_t seg_capacity_ = 0;  // bytes usable in the current segment
  uint64_t seg_end_ = 0;       // end of completely written records in the current segment
  bool seg_unsynced_ = false;  // written but not yet fdatasync'ed data in the current segment

  // seg_end_ is the end of the records of every write begun in the current segment (in
  // flight or completed). tail_ holds the head of its block, [buf_base_, seg_end_) with
  // buf_base_ = round_down_block(seg_end_): with no write in flight the next write starts at
  // buf_base_ and rewrites it (identical bytes); with a write in flight it starts at
  // round_up_block(seg_end_) instead, so it never shares a block with an in-flight write.
  AlignedBuffer tail_;
  uint64_t buf_base_ = 0;
  std::vector<AlignedBuffer> bufs_;  // one per write in flight, reused
  std::vector<size_t> free_bufs_;

  std::vector<std::byte> pending_;  // encoded records not yet staged into buf_
  size_t pending_begin_ = 0;

  bool empty_ = true;
  uint64_t first_index_ = 0;
  uint64_t last_index_ = 0;
  uint64_t written_index_ = 0;
  uint64_t durable_index_ = 0;

  struct InFlight {
    WalWriteOp op;
    size_t buf = 0;   // index into bufs_
    bool durable = false;
    bool done = false;  // completed, waiting for an earlier write to complete
  };
  std::vector<InFlight> inflight_;  // in begin order (= index order = offset order)

  // The next segment, zero-filled ahead of time under a temporary name.
  AlignedBuffer zeros_;
  int spare_fd_ = -1;
  uint64_t spare_filled_ = 0;
  bool spare_ready_ = false;
  Status spare_error_;
  bool spare_trouble_noted_ = false;  // the log heard of this spell of spare failures
};

}  // namespace ticketd::storage
