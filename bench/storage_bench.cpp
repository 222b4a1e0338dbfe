// Storage micro-benchmarks: WAL record encode + checksum throughput, and the latency of one
// durable 4 KiB write (RWF_DSYNC vs write + fdatasync; zero-filled vs fallocate'd vs extending
// file), several durable writes in flight at once (three local nodes on one disk), and a
// whole WAL group commit. Disk figures use $TICKETD_STORAGE_TEST_DIR or /tmp.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <liburing.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "ticketd/storage/posix_file.h"
#include "ticketd/storage/scratch_dir.h"
#include "ticketd/storage/wal.h"
#include "ticketd/storage/wal_record.h"

namespace {

using ticketd::storage::AlignedBuffer;
using ticketd::storage::kBlockBytes;
using ticketd::storage::scratch::ScratchDir;

void BM_WalEncodeChecksum(benchmark::State& state) {
  const size_t len = static_cast<size_t>(state.range(0));
  std::vector<std::byte> payload(len, std::byte{0x5a});
  std::vector<std::byte> out(ticketd::storage::wal_record_bytes(len));
  uint64_t index = 1;
  for (auto _ : state) {
    size_t n = ticketd::storage::encode_wal_record(out.data(), 1, 7, index++, payload);
    benchmark::DoNotOptimize(out.data());
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_WalEncodeChecksum)->Arg(16)->Arg(64)->Arg(256)->Arg(4096);

void BM_WalDecodeVerify(benchmark::State& state) {
  const size_t len = static_cast<size_t>(state.range(0));
  std::vector<std::byte> payload(len, std::byte{0x5a});
  std::vector<std::byte> rec(ticketd::storage::wal_record_bytes(len));
  ticketd::storage::encode_wal_record(rec.data(), 1, 7, 1, payload);
  ticketd::storage::WalRecordView v;
  for (auto _ : state) {
    auto d = ticketd::storage::decode_wal_record(rec, 1 << 20, &v);
    benchmark::DoNotOptimize(d);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rec.size()));
}
BENCHMARK(BM_WalDecodeVerify)->Arg(16)->Arg(256);

constexpr uint64_t kBenchFileBytes = 64ull << 20;

// Creates dir/bench.dat for O_DIRECT writes; prep 0 zero-fills it (synced), 1 fallocates it,
// 2 leaves it empty (extending writes). Returns the fd, or -1 after SkipWithError.
int open_bench_file(benchmark::State& state, const ScratchDir& dir, int prep, AlignedBuffer& buf,
                    bool* direct) {
  if (!dir.ok()) {
    state.SkipWithError("mkdtemp failed");
    return -1;
  }
  std::string path = dir.path() + "/bench.dat";
  int fd = -1;
  auto s = ticketd::storage::open_file(path, O_RDWR | O_CREAT | O_TRUNC, true, false, &fd, direct);
  if (!s) {
    state.SkipWithError(s.message().c_str());
    return -1;
  }
  if (prep == 0) {
    for (uint64_t off = 0; off < kBenchFileBytes; off += buf.size()) {
      (void)ticketd::storage::write_fully(fd, buf.data(), buf.size(), off, false, path);
    }
  } else if (prep == 1 && ::fallocate(fd, 0, 0, static_cast<off_t>(kBenchFileBytes)) != 0) {
    state.SkipWithError("fallocate failed");
    ::close(fd);
    return -1;
  }
  ::fdatasync(fd);
  return fd;
}

// range(0): 0 = RWF_DSYNC, 1 = pwrite + fdatasync.
// range(1): 0 = file zero-filled ahead, 1 = fallocate'd (unwritten extents), 2 = extending.
void BM_Durable4KWrite(benchmark::State& state) {
  const bool dsync = state.range(0) == 0;
  const int prep = static_cast<int>(state.range(1));
  ScratchDir dir;
  AlignedBuffer buf(1 << 20);
  bool direct = false;
  int fd = open_bench_file(state, dir, prep, buf, &direct);
  if (fd < 0) return;
  const uint64_t file_bytes = kBenchFileBytes;
  uint64_t off = 0;
  uint8_t fill = 1;
  for (auto _ : state) {
    std::memset(buf.data(), fill++, kBlockBytes);
    iovec iov{buf.data(), kBlockBytes};
    if (::pwritev2(fd, &iov, 1, static_cast<off_t>(off), dsync ? RWF_DSYNC : 0) !=
        static_cast<ssize_t>(kBlockBytes)) {
      state.SkipWithError("write failed");
      break;
    }
    if (!dsync) ::fdatasync(fd);
    off += kBlockBytes;  // each write lands on a fresh block, as a WAL moving forward does
    if (off >= file_bytes) off = 0;
  }
  state.counters["direct_io"] = direct ? 1 : 0;
  ::close(fd);
}
BENCHMARK(BM_Durable4KWrite)
    ->ArgsProduct({{0, 1}, {0, 1, 2}})
    ->ArgNames({"fdatasync", "prep"})
    ->Iterations(2000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// range(0) durable 4 KiB writes (O_DIRECT, RWF_DSYNC, zero-filled file, distinct blocks)
// submitted together through io_uring; one iteration lasts until all are durable. What a
// 3-node cluster on one machine does to its one disk: three nodes write at the same moment.
void BM_DurableConcurrent4KWrites(benchmark::State& state) {
  const int depth = static_cast<int>(state.range(0));
  ScratchDir dir;
  AlignedBuffer buf(1 << 20);
  bool direct = false;
  int fd = open_bench_file(state, dir, 0, buf, &direct);
  if (fd < 0) return;
  const uint64_t file_bytes = kBenchFileBytes;
  io_uring ring;
  if (io_uring_queue_init(16, &ring, 0) != 0) {
    state.SkipWithError("io_uring_queue_init failed");
    ::close(fd);
    return;
  }
  std::vector<iovec> iov(static_cast<size_t>(depth));
  for (size_t i = 0; i < iov.size(); ++i) iov[i] = iovec{buf.data() + i * kBlockBytes, kBlockBytes};
  uint64_t off = 0;
  for (auto _ : state) {
    for (int i = 0; i < depth; ++i) {
      io_uring_sqe* sqe = io_uring_get_sqe(&ring);
      io_uring_prep_writev2(sqe, fd, &iov[static_cast<size_t>(i)], 1, off, RWF_DSYNC);
      off = (off + kBlockBytes) % file_bytes;
    }
    io_uring_submit(&ring);
    bool failed = false;
    for (int i = 0; i < depth; ++i) {
      io_uring_cqe* cqe = nullptr;
      if (io_uring_wait_cqe(&ring, &cqe) != 0 || cqe->res != static_cast<int>(kBlockBytes)) {
        failed = true;
      }
      if (cqe != nullptr) io_uring_cqe_seen(&ring, cqe);
    }
    if (failed) {
      state.SkipWithError("write failed");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * depth);
  state.counters["direct_io"] = direct ? 1 : 0;
  io_uring_queue_exit(&ring);
  ::close(fd);
}
BENCHMARK(BM_DurableConcurrent4KWrites)
    ->Arg(1)
    ->Arg(2)
    ->Arg(3)
    ->ArgNames({"in_flight"})
    ->Iterations(2000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

// One group commit through the Wal: range(0) records of 24 bytes, then one durable write.
void BM_WalGroupCommit(benchmark::State& state) {
  ScratchDir dir;
  ticketd::storage::WalOptions o;
  o.segment_bytes = 16ull << 20;
  std::unique_ptr<ticketd::storage::Wal> wal;
  auto s = ticketd::storage::Wal::open(dir.path(), o, &wal, nullptr, nullptr);
  if (!s) {
    state.SkipWithError(s.message().c_str());
    return;
  }
  while (!wal->prepare_spare_step()) {
  }
  std::vector<std::byte> payload(24, std::byte{1});
  uint64_t index = 1;
  for (auto _ : state) {
    for (int64_t i = 0; i < state.range(0); ++i) wal->append(1, 1, index++, payload);
    if (!wal->sync_write().is_ok()) {
      state.SkipWithError("sync_write failed");
      break;
    }
    if (!wal->spare_ready()) {
      state.PauseTiming();
      while (!wal->prepare_spare_step()) {
      }
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * state.range(0)));
  state.counters["direct_io"] = wal->direct_io() ? 1 : 0;
}
BENCHMARK(BM_WalGroupCommit)
    ->Arg(1)
    ->Arg(64)
    ->Arg(1024)
    ->Iterations(2000)
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
