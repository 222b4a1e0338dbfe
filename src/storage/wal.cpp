#include "ticketd/storage/wal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "ticketd/base/check.h"

namespace ticketd::storage {
namespace {

constexpr const char* kSpareName = "wal.spare";
constexpr const char* kSpareCreatingName = "wal.spare.creating";
constexpr const char* kProbeName = "wal.probe";
constexpr const char* kLockName = "wal.lock";

bool parse_segment_name(const char* name, uint64_t* first_index) {
  // wal-<16 hex>.log
  if (std::strlen(name) != 4 + 16 + 4) return false;
  if (std::strncmp(name, "wal-", 4) != 0 || std::strcmp(name + 20, ".log") != 0) return false;
  uint64_t v = 0;
  for (int i = 4; i < 20; ++i) {
    char c = name[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *first_index = v;
  return true;
}

uint32_t pending_len(const std::vector<std::byte>& p, size_t at) {
  uint32_t len;
  std::memcpy(&len, p.data() + at + kWalLengthOffset, 4);
  return len;
}

uint64_t pending_index(const std::vector<std::byte>& p, size_t at) {
  uint64_t idx;
  std::memcpy(&idx, p.data() + at + kWalIndexOffset, 8);
  return idx;
}

// One past the last non-zero byte at or after `from` (== from if all zero).
uint64_t nonzero_end(const std::vector<std::byte>& data, uint64_t from) {
  uint64_t end = data.size();
  while (end > from && data[end - 1] == std::byte{0}) --end;
  return end;
}

// Decodes the record at *scan. An all-zero header inside a block is the zero padding after a
// write's last record (a write begun while another was in flight starts on a fresh block): the
// record, if any, is at the next block boundary, and *scan moves there. An all-zero header at
// a block boundary is the end of the records.
WalDecode next_record(const std::vector<std::byte>& data, uint64_t* scan, size_t max_payload,
                      WalRecordView* v) {
  std::span<const std::byte> all(data);
  WalDecode dec = decode_wal_record(all.subspan(*scan), max_payload, v);
  if (dec != WalDecode::kEnd || *scan % kBlockBytes == 0) return dec;
  uint64_t next = round_up_block(*scan);
  if (next >= data.size()) return dec;
  *scan = next;
  return decode_wal_record(all.subspan(next), max_payload, v);
}

std::string base_name(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace

std::string WalRecoveryReport::describe() const {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "wal recovery: %zu segments scanned, %zu records [%" PRIu64 "..%" PRIu64
                "], %s I/O",
                segments_scanned, records_recovered, first_index, last_index,
                direct_io ? "O_DIRECT" : "buffered (O_DIRECT refused)");
  std::string s = buf;
  if (truncated) {
    std::snprintf(buf, sizeof buf, "; TRUNCATED at %s offset %" PRIu64 " (",
                  truncated_segment.c_str(), truncated_offset);
    s += buf;
    s += reason;
    s += ")";
  }
  if (bytes_zeroed > 0) {
    std::snprintf(buf, sizeof buf, "; %" PRIu64 " bytes wiped after the valid records",
                  bytes_zeroed);
    s += buf;
  }
  if (!segments_deleted.empty()) {
    s += "; deleted segments:";
    for (const auto& n : segments_deleted) s += " " + n;
  }
  if (temp_files_removed > 0) {
    std::snprintf(buf, sizeof buf, "; %zu temp files removed", temp_files_removed);
    s += buf;
  }
  return s;
}

std::string Wal::segment_name(uint64_t first_index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "wal-%016" PRIx64 ".log", first_index);
  return buf;
}

Wal::Wal(const std::string& dir, const WalOptions& options)
    : dir_(dir),
      options_(options),
      max_payload_(options.max_write_bytes - kBlockBytes - kWalHeaderBytes),
      tail_(kBlockBytes),
      zeros_(std::min<uint64_t>(options.spare_step_bytes, options.segment_bytes)) {}

Wal::~Wal() {
  if (fd_ >= 0) ::close(fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);    // releases the flock
  if (spare_fd_ >= 0) ::close(spare_fd_);  // recovery removes the partial spare
  if (retired_fd_ >= 0) ::close(retired_fd_);
}

void Wal::release_fd(int fd) {
  // An outstanding sync names this file: closing it now would let the next open reuse the
  // number, and the sync would then cover another file. It is closed by end_sync instead.
  if (sync_outstanding_ && fd == sync_fd_) {
    TICKETD_CHECK(retired_fd_ < 0);
    retired_fd_ = fd;
    return;
  }
  ::close(fd);
}

void Wal::note(const std::string& msg) {
  if (options_.log) options_.log(msg);
}

Status Wal::fail(Status s) {
  if (error_.is_ok()) {
    error_ = s;
    note("wal failed: " + s.message());
  }
  return error_;
}

Status Wal::open(const std::string& dir, const WalOptions& options, std::unique_ptr<Wal>* out,
                 WalRecoveryReport* report, std::vector<WalRecord>* recovered) {
  out->reset();
  if (options.segment_bytes % kBlockBytes != 0 || options.max_write_bytes % kBlockBytes != 0 ||
      options.max_write_bytes < 2 * kBlockBytes ||
      options.max_write_bytes > options.segment_bytes || options.spare_step_bytes == 0 ||
      options.spare_step_bytes % kBlockBytes != 0) {
    return Status::invalid(
        "wal options: segment_bytes, max_write_bytes and spare_step_bytes must be multiples of "
        "4096, with 8192 <= max_write_bytes <= segment_bytes");
  }
  if (options.max_writes_in_flight < 1 || options.max_writes_in_flight > kMaxWritesInFlight) {
    return Status::invalid("wal options: max_writes_in_flight must be 1.." +
                           std::to_string(kMaxWritesInFlight));
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Status::io("mkdir " + dir, errno);
  std::unique_ptr<Wal> wal(new Wal(dir, options));

  // One process per WAL directory: a second writer would interleave blocks with ours.
  std::string lock_path = dir + "/" + kLockName;
  wal->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (wal->lock_fd_ < 0) return Status::io("open " + lock_path, errno);
  if (::flock(wal->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status::invalid("wal directory " + dir + " is in use by another process or handle");
    }
    return Status::io("flock " + lock_path, errno);
  }

  // Probe once whether this filesystem takes O_DIRECT (open and one aligned write), so the
  // answer is known (and reported) before the first record is written.
  std::string probe = dir + "/" + kProbeName;
  int fd;
  bool direct;
  Status s = open_file(probe, O_RDWR | O_CREAT | O_TRUNC, true,
                       options.refuse_direct_io_for_testing, &fd, &direct);
  if (!s) return s;
  if (direct) {
    iovec iov{wal->zeros_.data(), kBlockBytes};
    if (::pwritev2(fd, &iov, 1, 0, 0) < 0) {
      int err = errno;
      if (err != EINVAL) {
        ::close(fd);
        return Status::io("write " + probe, err);
      }
      direct = false;  // open took O_DIRECT but the write refuses it
    }
  }
  ::close(fd);
  ::unlink(probe.c_str());
  wal->direct_io_ = direct;
  if (!direct) {
    wal->fallback_reported_ = true;
    wal->note("wal: the filesystem under " + dir +
              " refuses O_DIRECT; using buffered writes made durable with RWF_DSYNC/fdatasync");
  }

  WalRecoveryReport local_report;
  WalRecoveryReport* rep = report ? report : &local_report;
  *rep = WalRecoveryReport{};
  rep->direct_io = direct;
  s = wal->recover(rep, recovered);
  if (!s) return s;
  if (rep->truncated || rep->bytes_zeroed > 0) wal->note(rep->describe());
  *out = std::move(wal);
  return Status::ok();
}

Status Wal::open_segment_fd(const std::string& path, int* fd) {
  bool direct;
  Status s =
      open_file(path, O_RDWR, direct_io_, options_.refuse_direct_io_for_testing, fd, &direct);
  if (!s) return s;
  if (direct_io_ && !direct) {
    direct_io_ = false;
    if (!fallback_reported_) {
      fallback_reported_ = true;
      note("wal: " + path +
           " refuses O_DIRECT; using buffered writes made durable with "
           "RWF_DSYNC/fdatasync");
    }
  }
  return Status::ok();
}

Status Wal::unlink_segment(const Segment& seg) {
  if (::unlink(seg.path.c_str()) != 0 && errno != ENOENT) {
    return Status::io("unlink " + seg.path, errno);
  }
  // One directory fsync per unlink: the order in which unlinks become durable is what keeps a
  // crash from leaving a hole in the middle of the log.
  return sync_dir(dir_);
}

Status Wal::wipe_tail(int fd, const std::vector<std::byte>& data, uint64_t from, uint64_t to,
                      const std::string& what) {
  if (to <= from) return Status::ok();
  uint64_t base = round_down_block(from);
  // First block: keep the valid bytes before `from`, zero the rest.
  AlignedBuffer block(kBlockBytes);
  uint64_t keep = from - base;
  std::memcpy(block.data(), data.data() + base, keep);
  Status s = write_fully(fd, block.data(), kBlockBytes, base, false, what);
  if (!s) return s;
  uint64_t end = round_up_block(to);
  for (uint64_t off = base + kBlockBytes; off < end;) {
    uint64_t n = std::min<uint64_t>(zeros_.size(), end - off);
    s = write_fully(fd, zeros_.data(), n, off, false, what);
    if (!s) return s;
    off += n;
  }
  return fdatasync_fd(fd, what);
}

void Wal::load_tail_block(const std::byte* segment_data, uint64_t end) {
  buf_base_ = round_down_block(end);
  std::memset(tail_.data(), 0, kBlockBytes);
  // An empty segment has no data pointer at all: memcpy must not see it, even for 0 bytes.
  if (end > buf_base_) std::memcpy(tail_.data(), segment_data + buf_base_, end - buf_base_);
}

Status Wal::recover(WalRecoveryReport* rep, std::vector<WalRecord>* recovered) {
  if (recovered) recovered->clear();
  std::vector<Segment> found;
  DIR* d = ::opendir(dir_.c_str());
  if (d == nullptr) return Status::io("opendir " + dir_, errno);
  while (dirent* e = ::readdir(d)) {
    uint64_t first;
    std::string path = dir_ + "/" + e->d_name;
    if (parse_segment_name(e->d_name, &first)) {
      found.push_back({first, path});
    } else if (std::strcmp(e->d_name, kSpareCreatingName) == 0) {
      ::unlink(path.c_str());
      rep->temp_files_removed++;
    } else if (std::strcmp(e->d_name, kSpareName) == 0) {
      struct stat st {};
      if (::stat(path.c_str(), &st) == 0 &&
          static_cast<uint64_t>(st.st_size) == options_.segment_bytes) {
        spare_ready_ = true;  // complete: it was renamed into place only after its zero fill synced
      } else {
        ::unlink(path.c_str());
        rep->temp_files_removed++;
      }
    }
  }
  ::closedir(d);
  if (rep->temp_files_removed > 0) {
    Status s = sync_dir(dir_);
    if (!s) return s;
  }
  std::sort(found.begin(), found.end(),
            [](const Segment& a, const Segment& b) { return a.first_index < b.first_index; });

  std::vector<std::byte> data;
  uint64_t expected = 0;
  bool have_expected = false;
  for (size_t i = 0; i < found.size(); ++i) {
    const Segment& seg = found[i];
    rep->segments_scanned++;
    bool cut = false;
    if (have_expected && seg.first_index != expected) {
      // A hole (or overlap) between segments: the log ends before this segment.
      rep->truncated = true;
      rep->truncated_segment = base_name(seg.path);
      rep->truncated_offset = 0;
      rep->reason = "index gap: segment starts at " + std::to_string(seg.first_index) +
                    ", expected " + std::to_string(expected);
      for (size_t j = found.size(); j-- > i;) {
        Status s = unlink_segment(found[j]);
        if (!s) return s;
        rep->segments_deleted.push_back(base_name(found[j].path));
      }
      break;
    }
    Status s = read_whole_file(seg.path, &data);
    if (!s) return s;
    uint64_t off = 0;   // end of the valid records
    uint64_t scan = 0;  // where the next record is looked for (past padding: next_record)
    uint64_t idx = seg.first_index;
    WalDecode dec;
    for (;;) {
      WalRecordView v;
      dec = next_record(data, &scan, max_payload_, &v);
      if (dec == WalDecode::kNewerFormat) {
        // Never cut off: the log is intact, this build cannot read it.
        return Status::corrupt("wal segment " + seg.path + ": the record at index " +
                               std::to_string(idx) + " is in format " +
                               std::to_string(static_cast<unsigned>(data[scan + kWalFormatOffset])) +
                               ", written by a newer release; this build reads format " +
                               std::to_string(kWalFormat) + " (downgrades are not supported)");
      }
      if (dec != WalDecode::kOk) break;
      if (v.index != idx) {
        dec = WalDecode::kCorrupt;
        rep->reason = "record index " + std::to_string(v.index) + " where " + std::to_string(idx) +
                      " was expected";
        break;
      }
      if (recovered) {
        WalRecord r;
        r.type = v.type;
        r.term = v.term;
        r.index = v.index;
        r.payload.assign(v.payload.begin(), v.payload.end());
        recovered->push_back(std::move(r));
      }
      if (empty_) {
        empty_ = false;
        first_index_ = v.index;
      }
      last_index_ = v.index;
      rep->records_recovered++;
      scan += v.total_bytes;
      off = scan;
      ++idx;
    }
    if (dec == WalDecode::kTorn || dec == WalDecode::kCorrupt) {
      cut = true;
      rep->truncated = true;
      rep->truncated_segment = base_name(seg.path);
      rep->truncated_offset = off;
      if (rep->reason.empty()) {
        rep->reason = std::string(wal_decode_name(dec)) + " at index " + std::to_string(idx);
      }
      // Newest first, so a crash in the middle of this cleanup leaves a prefix of the log.
      for (size_t j = found.size(); j-- > i + 1;) {
        s = unlink_segment(found[j]);
        if (!s) return s;
        rep->segments_deleted.push_back(base_name(found[j].path));
      }
    }
    // Whatever follows the valid records must be zeros: a later block of a torn write, or of
    // a write that was never synced, could otherwise resurface after the next records.
    uint64_t nz = nonzero_end(data, off);
    if (nz > off) {
      int fd;
      s = open_segment_fd(seg.path, &fd);
      if (!s) return s;
      s = wipe_tail(fd, data, off, nz, seg.path);
      ::close(fd);
      if (!s) return s;
      rep->bytes_zeroed += nz - off;
    }
    segments_.push_back(seg);
    load_tail_block(data.data(), off);
    seg_end_ = off;
    seg_capacity_ = std::max<uint64_t>(round_up_block(data.size()), options_.segment_bytes);
    expected = idx;
    have_expected = true;
    if (cut) break;
  }

  if (empty_) {
    // No record survived: drop the (empty) segments so the next append may use any index.
    for (size_t j = segments_.size(); j-- > 0;) {
      Status s = unlink_segment(segments_[j]);
      if (!s) return s;
      rep->segments_deleted.push_back(base_name(segments_[j].path));
    }
    segments_.clear();
    seg_end_ = 0;
    buf_base_ = 0;
    first_index_ = last_index_ = 0;
  } else {
    Status s = open_segment_fd(segments_.back().path, &fd_);
    if (!s) return s;
  }
  written_index_ = durable_index_ = last_index_;
  rep->first_index = first_index();
  rep->last_index = last_index();
  return Status::ok();
}

void Wal::append(uint8_t type, uint64_t term, uint64_t index, std::span<const std::byte> payload) {
  TICKETD_CHECK(index >= 1);
  TICKETD_CHECK_MSG(payload.size() <= max_payload_, "wal record larger than max_payload()");
  if (empty_) {
    empty_ = false;
    first_index_ = index;
  } else {
    TICKETD_CHECK_MSG(index == last_index_ + 1, "wal indexes must be consecutive");
  }
  last_index_ = index;
  size_t at = pending_.size();
  pending_.resize(at + wal_record_bytes(payload.size()));
  encode_wal_record(pending_.data() + at, type, term, index, payload);
}

Status Wal::close_current_segment() {
  if (fd_ < 0) return Status::ok();
  if (seg_unsynced_) {
    // Written-but-unsynced records must be durable before later records go to a new file:
    // a sync of the new file says nothing about this one.
    Status s = fdatasync_fd(fd_, segments_.back().path);
    if (!s) return s;
    seg_unsynced_ = false;
    durable_index_ = written_index_;
  }
  release_fd(fd_);
  fd_ = -1;
  return Status::ok();
}

bool Wal::prepare_spare_step() {
  if (spare_ready_) return true;
  if (failed()) return false;
  // The spare is not part of the log: a failure here (a full disk, say) abandons this
  // attempt and leaves the Wal healthy; the caller tries again later.
  auto abandon = [&](const Status& why) {
    if (spare_fd_ >= 0) ::close(spare_fd_);
    spare_fd_ = -1;
    spare_filled_ = 0;
    ::unlink((dir_ + "/" + kSpareCreatingName).c_str());
    spare_error_ = why;
    // Once per spell of failures (the caller retries every second while the disk is full).
    if (!spare_trouble_noted_) note("spare segment not ready: " + why.message());
    spare_trouble_noted_ = true;
    return false;
  };
  std::string creating = dir_ + "/" + kSpareCreatingName;
  Status s;
  if (spare_fd_ < 0) {
    spare_error_ = Status::ok();  // a new attempt
    bool direct;
    s = open_file(creating, O_RDWR | O_CREAT | O_TRUNC, direct_io_,
                  options_.refuse_direct_io_for_testing, &spare_fd_, &direct);
    if (!s) return abandon(s);
    spare_filled_ = 0;
    if (options_.preallocate == WalPreallocate::kFallocate) {
      if (::fallocate(spare_fd_, 0, 0, static_cast<off_t>(options_.segment_bytes)) != 0) {
        return abandon(Status::io("fallocate " + creating, errno));
      }
      spare_filled_ = options_.segment_bytes;
    }
  }
  if (spare_filled_ < options_.segment_bytes) {
    uint64_t n = std::min<uint64_t>(zeros_.size(), options_.segment_bytes - spare_filled_);
    s = write_fully(spare_fd_, zeros_.data(), n, spare_filled_, false, creating);
    if (!s) return abandon(s);
    spare_filled_ += n;
    if (spare_filled_ < options_.segment_bytes) return false;
  }
  // The zero fill is durable before the rename, so a file named wal.spare is always complete.
  s = fdatasync_fd(spare_fd_, creating);
  if (!s) return abandon(s);
  ::close(spare_fd_);
  spare_fd_ = -1;
  std::string spare = dir_ + "/" + kSpareName;
  if (::rename(creating.c_str(), spare.c_str()) != 0) {
    return abandon(Status::io("rename " + creating, errno));
  }
  s = sync_dir(dir_);
  if (!s) {
    fail(s);
    return false;
  }
  spare_ready_ = true;
  spare_error_ = Status::ok();
  if (spare_trouble_noted_) note("spare segment ready again");
  spare_trouble_noted_ = false;
  return true;
}

bool Wal::finish_spare() {
  // Until the spare is ready, or this attempt is abandoned (spare_error_), or the Wal failed.
  // An abandoned attempt must end the loop: a full disk would otherwise spin here forever.
  while (!prepare_spare_step()) {
    if (failed() || !spare_error_.is_ok()) return false;
  }
  return true;
}

Status Wal::start_segment(uint64_t first_index) {
  TICKETD_CHECK(spare_ready_);
  Status s = close_current_segment();
  if (!s) return s;
  std::string path = dir_ + "/" + segment_name(first_index);
  std::string spare = dir_ + "/" + kSpareName;
  if (::rename(spare.c_str(), path.c_str()) != 0) return Status::io("rename " + spare, errno);
  spare_ready_ = false;
  // The new name must be durable before any record in the file is reported durable:
  // RWF_DSYNC / fdatasync on the file do not persist its directory entry.
  s = sync_dir(dir_);
  if (!s) return s;
  s = open_segment_fd(path, &fd_);
  if (!s) return s;
  segments_.push_back({first_index, path});
  seg_capacity_ = options_.segment_bytes;
  seg_end_ = 0;
  buf_base_ = 0;
  seg_unsynced_ = false;
  return Status::ok();
}

size_t Wal::writes_in_flight() const {
  size_t n = 0;
  for (const InFlight& w : inflight_) n += w.done ? 0 : 1;
  return n;
}

bool Wal::can_begin_write(bool durable) const {
  if (writes_in_flight() >= options_.max_writes_in_flight) return false;
  if (inflight_.empty()) return true;
  // Side by side only durable writes that are durable on their own (RWF_DSYNC, or a write
  // followed by its own fdatasync, with nothing unsynced before it in the file): each is then
  // durable when it completes, whatever the order, and the prefix rule below holds.
  if (!durable || seg_unsynced_) return false;
  for (const InFlight& w : inflight_) {
    if (!w.durable) return false;
  }
  return true;
}

std::optional<WalWriteOp> Wal::begin_write(bool durable) {
  TICKETD_CHECK_MSG(can_begin_write(durable), "begin_write while can_begin_write() is false");
  // An outstanding sync is no obstacle: a segment switch keeps its file open (release_fd).
  if (failed() || !has_pending()) return std::nullopt;
  // With no write in flight, the write starts at the tail block and rewrites its head (the
  // records already written there, identical bytes). With a write in flight, that block is
  // the in-flight write's: start on a fresh block instead (its padding stays zeros).
  bool share_tail = inflight_.empty();
  uint64_t start = fd_ < 0 ? 0 : share_tail ? buf_base_ : round_up_block(seg_end_);
  size_t head = fd_ >= 0 && share_tail ? static_cast<size_t>(seg_end_ - buf_base_) : 0;
  size_t slot;
  if (!free_bufs_.empty()) {
    slot = free_bufs_.back();
    free_bufs_.pop_back();
  } else {
    slot = bufs_.size();
    bufs_.emplace_back(options_.max_write_bytes);
  }
  std::byte* buf = bufs_[slot].data();
  size_t cap = bufs_[slot].size();
  size_t staged = 0;
  uint64_t first = 0;
  uint64_t last = 0;
  size_t p = pending_begin_;
  while (p < pending_.size()) {
    size_t rec = wal_record_bytes(pending_len(pending_, p));
    uint64_t idx = pending_index(pending_, p);
    if (fd_ < 0 || start + head + staged + rec > seg_capacity_) {
      if (staged > 0) break;  // this write ends the segment; the next one starts a new file
      if (!inflight_.empty()) {
        // A segment switch waits for the writes ahead of it (it syncs and closes the file
        // they write). Nothing changed: the caller tries again after their end_write.
        free_bufs_.push_back(slot);
        return std::nullopt;
      }
      // The spare first: if it cannot be made (a full disk), nothing has changed yet, so the
      // staged records simply wait for a later attempt.
      if (!finish_spare()) {
        if (!failed()) blocked_ = spare_error_;
        free_bufs_.push_back(slot);
        return std::nullopt;
      }
      Status s = start_segment(idx);
      if (!s) {
        fail(s);
        free_bufs_.push_back(slot);
        return std::nullopt;
      }
      start = 0;
      head = 0;
    }
    if (head + staged + rec > cap) break;
    std::memcpy(buf + head + staged, pending_.data() + p, rec);
    if (staged == 0) first = idx;
    staged += rec;
    p += rec;
    last = idx;
  }
  TICKETD_CHECK(staged > 0);
  if (head > 0) std::memcpy(buf, tail_.data(), head);
  if (!blocked_.is_ok()) blocked_ = Status::ok();
  pending_begin_ = p;
  if (pending_begin_ == pending_.size()) {
    pending_.clear();
    pending_begin_ = 0;
  } else if (pending_begin_ > pending_.size() / 2) {
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<ptrdiff_t>(pending_begin_));
    pending_begin_ = 0;
  }
  // Rewriting the head of the tail block is safe: those bytes are rewritten identical, so a
  // torn write leaves each sector either old or new and both agree on them.
  size_t end = head + staged;
  size_t padded = round_up_block(end);
  std::memset(buf + end, 0, padded - end);  // recovery skips the zero padding to the next block

  WalWriteOp op;
  op.fd = fd_;
  op.buf = buf;
  op.len = padded;
  op.offset = start;
  op.first_index = first;
  op.last_index = last;
  if (durable) {
    // RWF_DSYNC makes only this write durable; if earlier writes to this file were not synced
    // (lower durability levels), an fdatasync is needed to cover them too.
    if (options_.sync_method == WalSyncMethod::kRwfDsync && !seg_unsynced_) {
      op.dsync = true;
    } else {
      op.needs_fdatasync = true;
    }
  }
  // The next write continues after these records; keep the head of their last block.
  seg_end_ = start + end;
  buf_base_ = round_down_block(seg_end_);
  std::memset(tail_.data(), 0, kBlockBytes);
  std::memcpy(tail_.data(), buf + (buf_base_ - start), seg_end_ - buf_base_);
  inflight_.push_back(InFlight{op, slot, durable, false});
  return op;
}

Status Wal::end_write(int64_t result) {
  TICKETD_CHECK(!inflight_.empty());
  return end_write(inflight_.front().op.last_index, result);
}

Status Wal::end_write(uint64_t token, int64_t result) {
  size_t i = 0;
  while (i < inflight_.size() && inflight_[i].op.last_index != token) ++i;
  TICKETD_CHECK_MSG(i < inflight_.size() && !inflight_[i].done,
                    "end_write for a write that is not in flight");
  InFlight& w = inflight_[i];
  free_bufs_.push_back(w.buf);  // the write is over: its buffer may be reused
  if (result != static_cast<int64_t>(w.op.len)) {
    std::string what = "wal write of " + std::to_string(w.op.len) + " bytes at offset " +
                       std::to_string(w.op.offset) + " in " + segments_.back().path;
    inflight_.erase(inflight_.begin() + static_cast<ptrdiff_t>(i));
    if (result < 0) return fail(Status::io(what, static_cast<int>(-result)));
    return fail(Status::io(what + " was short (" + std::to_string(result) + " bytes)", EIO));
  }
  w.done = true;
  if (failed()) {
    inflight_.erase(inflight_.begin() + static_cast<ptrdiff_t>(i));
    return error_;
  }
  // Only the prefix of completed writes counts: a later write that completed first waits
  // for the earlier ones (a crash now could leave a hole before it; recovery cuts there).
  size_t n = 0;
  while (n < inflight_.size() && inflight_[n].done) {
    const InFlight& f = inflight_[n];
    written_index_ = f.op.last_index;
    if (f.durable) {
      durable_index_ = written_index_;
      seg_unsynced_ = false;
    } else {
      seg_unsynced_ = true;
    }
    ++n;
  }
  inflight_.erase(inflight_.begin(), inflight_.begin() + static_cast<ptrdiff_t>(n));
  return Status::ok();
}

Status Wal::sync_write(bool durable) {
  TICKETD_CHECK_MSG(inflight_.empty(), "sync_write with a wal write in flight");
  while (has_pending()) {
    std::optional<WalWriteOp> op = begin_write(durable);
    if (!op) return failed() ? error_ : blocked_;
    iovec iov{const_cast<void*>(op->buf), op->len};
    ssize_t n;
    do {
      n = ::pwritev2(op->fd, &iov, 1, static_cast<off_t>(op->offset), op->dsync ? RWF_DSYNC : 0);
    } while (n < 0 && errno == EINTR);
    int64_t result = n < 0 ? -errno : n;
    if (result == static_cast<int64_t>(op->len) && op->needs_fdatasync &&
        ::fdatasync(op->fd) != 0) {
      result = -errno;
    }
    Status s = end_write(op->last_index, result);
    if (!s) return s;
  }
  return failed() ? error_ : Status::ok();
}

std::optional<WalSyncOp> Wal::begin_sync() {
  if (failed() || sync_outstanding_ || fd_ < 0 || !seg_unsynced_ ||
      written_index_ <= durable_index_) {
    return std::nullopt;
  }
  sync_outstanding_ = true;
  sync_fd_ = fd_;
  return WalSyncOp{fd_, written_index_, sync_epoch_};
}

Status Wal::end_sync(const WalSyncOp& op, int result) {
  TICKETD_CHECK(sync_outstanding_ && op.fd == sync_fd_);
  sync_outstanding_ = false;
  sync_fd_ = -1;
  if (retired_fd_ >= 0) {
    ::close(retired_fd_);
    retired_fd_ = -1;
  }
  if (result < 0) return fail(Status::io("wal fdatasync", -result));
  // A truncation since begin_sync synced what it kept; the records this sync meant may be
  // gone, and others written at the same indexes are not covered by it.
  if (op.epoch != sync_epoch_) return Status::ok();
  if (op.last_index > durable_index_) durable_index_ = op.last_index;
  if (op.fd == fd_ && op.last_index == written_index_ && inflight_.empty()) seg_unsynced_ = false;
  return Status::ok();
}

Status Wal::sync_now() {
  if (failed()) return error_;
  if (fd_ < 0 || !seg_unsynced_) return Status::ok();
  uint64_t upto = written_index_;
  Status s = fdatasync_fd(fd_, segments_.back().path);
  if (!s) return fail(s);
  if (upto > durable_index_) durable_index_ = upto;
  if (inflight_.empty()) seg_unsynced_ = false;
  return Status::ok();
}

Status Wal::truncate_suffix(uint64_t index) {
  TICKETD_CHECK_MSG(inflight_.empty(), "truncate_suffix with a wal write in flight");
  if (failed()) return error_;
  if (empty_ || index > last_index_) return Status::ok();
  TICKETD_CHECK(index >= 1);

  // Staged records are only in memory: drop them there.
  for (size_t p = pending_begin_; p < pending_.size();
       p += wal_record_bytes(pending_len(pending_, p))) {
    if (pending_index(pending_, p) >= index) {
      pending_.resize(p);
      break;
    }
  }
  if (pending_begin_ == pending_.size()) {
    pending_.clear();
    pending_begin_ = 0;
  }
  if (index > written_index_) {  // nothing at or after `index` reached the file
    last_index_ = index - 1;
    if (index <= first_index_) {
      empty_ = true;
      first_index_ = last_index_ = 0;
    }
    return Status::ok();
  }

  if (index <= first_index_) {
    // Everything goes. Newest segment first: a crash part-way leaves a prefix of the log.
    if (fd_ >= 0) {
      release_fd(fd_);
      fd_ = -1;
    }
    ++sync_epoch_;
    for (size_t j = segments_.size(); j-- > 0;) {
      Status s = unlink_segment(segments_[j]);
      if (!s) return fail(s);
    }
    segments_.clear();
    pending_.clear();
    pending_begin_ = 0;
    empty_ = true;
    first_index_ = last_index_ = written_index_ = durable_index_ = 0;
    seg_end_ = buf_base_ = 0;
    seg_unsynced_ = false;
    return Status::ok();
  }

  size_t k = segments_.size() - 1;
  while (segments_[k].first_index > index) --k;  // segments_[0].first_index <= first_index_ < index
  if (k + 1 < segments_.size() && fd_ >= 0) {
    release_fd(fd_);
    fd_ = -1;
  }
  ++sync_epoch_;
  for (size_t j = segments_.size(); j-- > k + 1;) {
    Status s = unlink_segment(segments_[j]);
    if (!s) return fail(s);
  }
  segments_.resize(k + 1);
  if (fd_ < 0) {
    Status s = open_segment_fd(segments_[k].path, &fd_);
    if (!s) return fail(s);
  }

  // Find the byte offset of record `index` in segment k.
  std::vector<std::byte> data;  // rare path: reading the segment back is fine
  Status s = read_whole_file(segments_[k].path, &data);
  if (!s) return fail(s);
  uint64_t off = 0;
  uint64_t scan = 0;
  for (uint64_t idx = segments_[k].first_index; idx < index; ++idx) {
    WalRecordView v;
    WalDecode dec = next_record(data, &scan, max_payload_, &v);
    if (dec != WalDecode::kOk || v.index != idx) {
      return fail(Status::corrupt("wal segment " + segments_[k].path + " unreadable at index " +
                                  std::to_string(idx) + " during truncate_suffix"));
    }
    scan += v.total_bytes;
    off = scan;
  }
  // Zero from the cut to the last non-zero byte and sync: after this, recovery ends at `index`.
  s = wipe_tail(fd_, data, off, nonzero_end(data, off), segments_[k].path);
  if (!s) return fail(s);
  load_tail_block(data.data(), off);
  seg_end_ = off;
  seg_capacity_ = std::max<uint64_t>(round_up_block(data.size()), options_.segment_bytes);
  seg_unsynced_ = false;  // wipe_tail fdatasync'ed the whole file; older segments synced at roll
  last_index_ = written_index_ = durable_index_ = index - 1;
  return Status::ok();
}

Status Wal::compact_prefix(uint64_t index) {
  if (failed()) return error_;
  // segments_[0] holds only records <= index when the next segment starts at or before
  // index + 1 and actually holds a written record (an empty tail segment keeps its
  // predecessor, whose records give it its place in the log).
  while (segments_.size() >= 2 && segments_[1].first_index <= index + 1 &&
         segments_[1].first_index <= written_index_) {
    Status s = unlink_segment(segments_[0]);
    if (!s) return fail(s);
    segments_.erase(segments_.begin());
    first_index_ = segments_[0].first_index;
  }
  return Status::ok();
}

}  // namespace ticketd::storage
