// libFuzzer target for WAL recovery over arbitrary file contents (plus the hard-state and
// snapshot files' loaders). Each run uses a fresh temp directory (under $TICKETD_FUZZ_TMP, else
// /dev/shm, else /tmp) and removes it afterwards.
//
// Input: [flags u8] then up to 4 segment chunks, each [u16 LE length][i8 name delta][bytes]
// (the last chunk takes whatever remains). A chunk becomes the file Wal::segment_name(N) where
// N = the index field of the chunk's first record header (1 if shorter) + the name delta.
// flags: bit0 rewrite each record's checksum (so mutations get past it), bit1 add a complete
// wal.spare, bit2 add a partial wal.spare.creating, bit3 append one record after recovery and
// check it survives a reopen, bit4 16 KiB segments instead of 8 KiB, bit5 also open the bytes
// after the flags as a hard-state file, bit6 also load them as a snapshot file.
//
// Traps on: a crash (by the sanitizers), recovered indexes that are not consecutive, a recovered
// record whose encoding is not byte-for-byte at its place in the segment it came from (so its
// checksum was valid), a second open that recovers different records or still finds something
// to cut, and a hard-state/snapshot load that reports success with contents that do not survive
// a save and reload.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ticketd/storage/hard_state_file.h"
#include "ticketd/storage/scratch_dir.h"
#include "ticketd/storage/snapshot_file.h"
#include "ticketd/storage/wal.h"
#include "ticketd/storage/wal_record.h"

namespace {

using namespace ticketd::storage;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

std::string temp_base() {
  if (const char* env = std::getenv("TICKETD_FUZZ_TMP"); env != nullptr && env[0] != '\0') {
    return env;
  }
  struct stat st {};
  if (::stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && ::access("/dev/shm", W_OK) == 0) {
    return "/dev/shm";
  }
  return "/tmp";
}

void write_file(const std::string& path, const std::byte* data, size_t len) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  require(fd >= 0);
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::write(fd, data + done, len - done);
    require(n > 0);
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

uint64_t load64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

bool zero_header(const std::byte* h) {
  for (size_t i = 0; i < kWalHeaderBytes; ++i) {
    if (h[i] != std::byte{0}) return false;
  }
  return true;
}

// Rewrites the checksum of every record that fits, walking the chunk as recovery would (an
// all-zero header inside a block is padding: the next record is at the next block).
void fix_checksums(std::vector<std::byte>* seg, size_t max_payload) {
  size_t off = 0;
  while (off + kWalHeaderBytes <= seg->size()) {
    std::byte* h = seg->data() + off;
    if (zero_header(h)) {
      if (off % kBlockBytes == 0) return;
      off = round_up_block(off);
      continue;
    }
    uint32_t len;
    std::memcpy(&len, h + kWalLengthOffset, 4);
    if (len > max_payload || seg->size() - off - kWalHeaderBytes < len) return;
    uint64_t sum = wal_record_checksum(h, std::span<const std::byte>(h + kWalHeaderBytes, len));
    std::memcpy(h + kWalChecksumOffset, &sum, 8);
    off += kWalHeaderBytes + len;
  }
}

bool same_records(const std::vector<WalRecord>& a, const std::vector<WalRecord>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].type != b[i].type || a[i].term != b[i].term || a[i].index != b[i].index ||
        a[i].payload != b[i].payload) {
      return false;
    }
  }
  return true;
}

void check_hard_state(const std::string& dir, const std::byte* data, size_t len) {
  std::string path = dir + "/hard_state";
  write_file(path, data, len);
  std::unique_ptr<HardStateFile> f;
  HardState st;
  bool found = false;
  Status s = HardStateFile::open(path, &f, &st, &found, true);
  if (!s) return;
  require(found);
  require(st.blob.size() <= HardStateFile::kMaxBlobBytes);
  // Whatever was accepted must survive a save and reload unchanged.
  HardState next = st;
  next.term += 1;
  require(f->save(next).is_ok());
  f.reset();
  HardState back;
  s = HardStateFile::open(path, &f, &back, &found, true);
  require(s.is_ok() && found);
  require(back == next);
}

void check_snapshot(const std::string& dir, const std::byte* data, size_t len) {
  std::string path = dir + "/snapshot";
  write_file(path, data, len);
  std::vector<std::byte> got;
  Status s = SnapshotFile::load(path, &got);
  if (!s) {
    require(s.code() != Status::Code::kOk);
    return;
  }
  require(got.size() <= SnapshotFile::kMaxBytes);
  require(SnapshotFile::save(path, got).is_ok());
  std::vector<std::byte> again;
  require(SnapshotFile::load(path, &again).is_ok());
  require(again == got);
}

void run(const std::string& dir, const uint8_t* raw, size_t size) {
  const uint8_t flags = raw[0];
  const std::byte* data = reinterpret_cast<const std::byte*>(raw + 1);
  const size_t len = size - 1;

  WalOptions opts;
  opts.segment_bytes = (flags & 0x10) ? 16384 : 8192;
  opts.max_write_bytes = 8192;
  opts.spare_step_bytes = 4096;
  opts.refuse_direct_io_for_testing = true;
  const size_t max_payload = opts.max_write_bytes - kBlockBytes - kWalHeaderBytes;

  // Split into segment chunks.
  std::map<uint64_t, std::vector<std::byte>> segs;  // by name index
  size_t pos = 0;
  for (int i = 0; i < 4 && pos < len; ++i) {
    size_t n = len - pos;
    int8_t delta = 0;
    if (n >= 3) {
      uint16_t l;
      std::memcpy(&l, data + pos, 2);
      delta = static_cast<int8_t>(data[pos + 2]);
      pos += 3;
      n = std::min<size_t>(l, len - pos);
      if (i == 3) n = len - pos;
    } else {
      pos += n;  // too short for a header: no chunk
      break;
    }
    std::vector<std::byte> seg(data + pos, data + pos + n);
    pos += n;
    if (flags & 1) fix_checksums(&seg, max_payload);
    uint64_t first = seg.size() >= kWalHeaderBytes ? load64(seg.data() + kWalIndexOffset) : 1;
    segs[first + static_cast<uint64_t>(static_cast<int64_t>(delta))] = std::move(seg);
  }
  std::string wal_dir = dir + "/wal";
  require(::mkdir(wal_dir.c_str(), 0755) == 0);
  for (const auto& [first, bytes] : segs) {
    write_file(wal_dir + "/" + Wal::segment_name(first), bytes.data(), bytes.size());
  }
  if (flags & 2) {
    std::vector<std::byte> zeros(opts.segment_bytes);
    write_file(wal_dir + "/wal.spare", zeros.data(), zeros.size());
  }
  if (flags & 4) {
    std::byte junk[100] = {std::byte{1}};
    write_file(wal_dir + "/wal.spare.creating", junk, sizeof(junk));
  }

  std::vector<WalRecord> first_pass;
  {
    std::unique_ptr<Wal> wal;
    WalRecoveryReport rep;
    Status s = Wal::open(wal_dir, opts, &wal, &rep, &first_pass);
    if (!s) return;  // refusing to open is allowed; crashing is not
    require(rep.records_recovered == first_pass.size());
    if (first_pass.empty()) {
      require(wal->first_index() == 0 && wal->last_index() == 0);
    } else {
      require(wal->first_index() == first_pass.front().index);
      require(wal->last_index() == first_pass.back().index);
    }
    // Every record sits, byte for byte, at its place in the segment it came from.
    std::vector<std::byte> enc;
    auto seg_it = segs.end();
    size_t seg_off = 0;
    for (size_t i = 0; i < first_pass.size(); ++i) {
      const WalRecord& r = first_pass[i];
      if (i > 0) require(r.index == first_pass[i - 1].index + 1);
      require(r.payload.size() <= max_payload);
      enc.resize(wal_record_bytes(r.payload.size()));
      encode_wal_record(enc.data(), r.type, r.term, r.index, r.payload);
      // The record continues the current segment (right after the previous one, or at the next
      // block after zero padding), or starts the segment named by its index.
      auto sits_at = [&](size_t off) {
        return seg_it != segs.end() && off + enc.size() <= seg_it->second.size() &&
               std::memcmp(seg_it->second.data() + off, enc.data(), enc.size()) == 0;
      };
      bool continues = sits_at(seg_off);
      if (!continues && seg_it != segs.end() && seg_off % kBlockBytes != 0 &&
          seg_off + kWalHeaderBytes <= seg_it->second.size() &&
          zero_header(seg_it->second.data() + seg_off) && sits_at(round_up_block(seg_off))) {
        seg_off = round_up_block(seg_off);
        continues = true;
      }
      if (!continues) {
        seg_it = segs.find(r.index);
        seg_off = 0;
      }
      require(seg_it != segs.end());
      require(seg_off + enc.size() <= seg_it->second.size());
      require(std::memcmp(seg_it->second.data() + seg_off, enc.data(), enc.size()) == 0);
      seg_off += enc.size();
    }
  }

  // Recovery is idempotent: what the first open kept, the second finds intact.
  std::vector<WalRecord> second_pass;
  {
    std::unique_ptr<Wal> wal;
    WalRecoveryReport rep;
    Status s = Wal::open(wal_dir, opts, &wal, &rep, &second_pass);
    require(s.is_ok());
    require(same_records(first_pass, second_pass));
    require(!rep.truncated);
    require(rep.bytes_zeroed == 0);
    if (flags & 8) {
      // The log goes on from the recovered tail (which may share a block with the new record).
      uint64_t next = wal->last_index() == 0 ? 1 : wal->last_index() + 1;
      if (next != 0) {  // an index of UINT64_MAX cannot be followed
        std::byte payload[40];
        for (size_t i = 0; i < sizeof(payload); ++i) payload[i] = static_cast<std::byte>(i * 7 + flags);
        wal->append(3, 9, next, payload);
        require(wal->sync_write().is_ok());
        WalRecord added;
        added.type = 3;
        added.term = 9;
        added.index = next;
        added.payload.assign(payload, payload + sizeof(payload));
        second_pass.push_back(std::move(added));
      }
    }
  }
  if (flags & 8) {
    std::vector<WalRecord> third_pass;
    std::unique_ptr<Wal> wal;
    WalRecoveryReport rep;
    require(Wal::open(wal_dir, opts, &wal, &rep, &third_pass).is_ok());
    require(same_records(second_pass, third_pass));
    require(!rep.truncated);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw, size_t size) {
  if (size < 1) return 0;
  scratch::ScratchDir dir(temp_base());
  require(dir.ok());
  if (raw[0] & 0x20) {
    check_hard_state(dir.path(), reinterpret_cast<const std::byte*>(raw + 1), size - 1);
  }
  if (raw[0] & 0x40) {
    check_snapshot(dir.path(), reinterpret_cast<const std::byte*>(raw + 1), size - 1);
  }
  run(dir.path(), raw, size);
  return 0;
}
