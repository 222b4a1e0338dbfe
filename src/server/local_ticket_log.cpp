// The single-node ticket log: group commit of Allocate{n} records into the WAL on shard 0.
// Promises: at durability high no range is handed out before its record is fdatasync'ed;
// ranges are handed out in record order, and a restart resumes above every record found.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "node.h"
#include "ticketd/base/check.h"
#include "ticketd/storage/wal.h"

namespace ticketd::server {

namespace {

constexpr uint8_t kAllocateRecord = 0;  // the Raft log's Normal entry type: Allocate{n}
constexpr uint64_t kTerm = 1;
constexpr int64_t kBackgroundSyncNs = 200'000'000;  // medium/low: fdatasync every 200 ms

void put_u64(std::byte* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t get_u64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

class LocalTicketLog final : public TicketLog {
 public:
  explicit LocalTicketLog(Node& node) : node_(node), durability_(node.opts().durability) {}

  bool open(std::string* err) override {
    storage::WalOptions wo;
    wo.segment_bytes = node_.opts().wal_segment_bytes;
    wo.log = [this](std::string_view msg) { node_.log_line("wal: " + std::string(msg)); };
    storage::WalRecoveryReport report;
    std::vector<storage::WalRecord> records;
    storage::Status st = storage::Wal::open(node_.data_dir() + "/wal", wo, &wal_, &report, &records);
    if (!st) {
      *err = "cannot open the write-ahead log: " + st.message();
      return false;
    }
    uint64_t counter = 0;
    for (const storage::WalRecord& r : records) {
      if (r.type != kAllocateRecord || r.payload.size() != 8) {
        *err = "write-ahead log record " + std::to_string(r.index) +
               " is not a ticket allocation (data written by another mode?)";
        return false;
      }
      counter += get_u64(r.payload.data());
    }
    counter_ = counter;
    node_.log_line("recovered: " + report.describe() + "; last ticket " + std::to_string(counter_));
    LogStats& ls = node_.log_stats();
    ls.counter.store(counter_);
    ls.last_index.store(wal_->last_index());
    ls.durable_index.store(wal_->durable_index());
    ls.direct_io.store(wal_->direct_io());
    return true;
  }

  void attach(io::Loop* loop) override {
    loop_ = loop;
    write_c_.owner = this;
    write_c_.fn = [](io::Completion* c, int32_t res, uint32_t) {
      static_cast<LocalTicketLog*>(c->owner)->on_write_done(res);
    };
    fsync_after_write_c_.owner = this;
    fsync_after_write_c_.fn = [](io::Completion* c, int32_t res, uint32_t) {
      auto* self = static_cast<LocalTicketLog*>(c->owner);
      // The write itself succeeded in full; report its length unless the fdatasync failed.
      self->finish_write(res < 0 ? res : static_cast<int64_t>(self->op_.len));
    };
    sync_c_.owner = this;
    sync_c_.fn = [](io::Completion* c, int32_t res, uint32_t) {
      static_cast<LocalTicketLog*>(c->owner)->on_sync_done(res);
    };
    timer_c_.owner = this;
    timer_c_.fn = [](io::Completion* c, int32_t, uint32_t) {
      static_cast<LocalTicketLog*>(c->owner)->on_timer();
    };
    if (durability_ != Durability::kHigh) {
      timer_ts_.tv_sec = 0;
      timer_ts_.tv_nsec = kBackgroundSyncNs;
      loop_->timeout(&timer_ts_, &timer_c_);
    }
  }

  void submit(uint32_t shard, uint64_t n) override {
    staged_.push_back(Waiter{shard, n});
    staged_total_ += n;
  }

  void on_turn_end() override {
    if (staged_total_ == 0) {
      // Idle: zero-fill the next segment ahead of time, a step at a time.
      if (!writing_ && !wal_->spare_ready() && !wal_->failed()) wal_->prepare_spare_step();
      return;
    }
    if (wal_->failed()) {
      fail_all(staged_);
      staged_total_ = 0;
      return;
    }
    if (durability_ == Durability::kLow) {
      // Acknowledge from memory; the background timer writes and syncs.
      append_record(staged_total_);
      hand_out(staged_, BatchStatus::kOk);
      staged_total_ = 0;
      return;
    }
    if (writing_) return;  // group commit: everything staged meanwhile goes in the next write
    append_record(staged_total_);
    inflight_.swap(staged_);
    staged_.clear();
    staged_total_ = 0;
    start_write(durability_ == Durability::kHigh);
  }

  bool drained() const override {
    return staged_total_ == 0 && inflight_.empty() && !writing_ && !syncing_;
  }

  void close() override {
    // Make whatever was acknowledged from memory (low) or written (medium) durable.
    if (wal_ && !wal_->failed() && !writing_) {
      storage::Status st = wal_->sync_write(true);
      if (!st) node_.log_line("wal: final flush failed: " + st.message());
      if (auto op = wal_->begin_sync()) {
        int rc = ::fdatasync(op->fd);
        (void)wal_->end_sync(*op, rc < 0 ? -errno : 0);
      }
    }
  }

  bool snapshot_now(std::string* err) override {
    *err = "ERR snapshots need the cluster mode";
    return false;
  }

 private:
  struct Waiter {
    uint32_t shard;
    uint64_t n;
  };

  void append_record(uint64_t n) {
    std::byte payload[8];
    put_u64(payload, n);
    uint64_t index = wal_->last_index() + 1;
    wal_->append(kAllocateRecord, kTerm, index, payload);
    node_.log_stats().last_index.store(index, std::memory_order_relaxed);
    node_.log_stats().batched_tickets.fetch_add(n, std::memory_order_relaxed);
  }

  void start_write(bool durable) {
    auto op = wal_->begin_write(durable);
    if (!op) {
      node_.log_line("wal: cannot start a write: " + wal_->error().message());
      fail_all(inflight_);
      return;
    }
    op_ = *op;
    writing_ = true;
    write_started_us_ = now_us();
    node_.log_stats().writes.fetch_add(1, std::memory_order_relaxed);
    loop_->write(op_.fd, op_.buf, op_.len, op_.offset, op_.dsync, &write_c_);
  }

  void on_write_done(int32_t res) {
    if (res >= 0 && static_cast<size_t>(res) == op_.len && op_.needs_fdatasync) {
      node_.log_stats().syncs.fetch_add(1, std::memory_order_relaxed);
      loop_->fdatasync(op_.fd, &fsync_after_write_c_);
      return;
    }
    finish_write(res);
  }

  void finish_write(int64_t res) {
    writing_ = false;
    storage::Status st = wal_->end_write(res);
    LogStats& ls = node_.log_stats();
    ls.last_write_us.store(now_us() - write_started_us_, std::memory_order_relaxed);
    if (!st) {
      ls.write_errors.fetch_add(1, std::memory_order_relaxed);
      node_.log_line("wal: write failed, refusing tickets until restart: " + st.message());
      fail_all(inflight_);
      return;
    }
    ls.durable_index.store(wal_->durable_index(), std::memory_order_relaxed);
    if (durability_ == Durability::kLow) {
      // Written by the background timer: the ranges went out already; now sync.
      start_background_sync();
      return;
    }
    hand_out(inflight_, BatchStatus::kOk);
    // The next group may already be waiting.
    on_turn_end();
  }

  // Hands consecutive ranges to the waiters, in order, and sends them to their shards.
  void hand_out(std::vector<Waiter>& waiters, BatchStatus status) {
    for (const Waiter& w : waiters) {
      BatchResult r;
      r.total = w.n;
      r.status = status;
      r.start = counter_ + 1;
      // Even a failed batch consumes its range: its record may be on disk, so those
      // numbers must never be handed out later by this process.
      counter_ += w.n;
      deliver(w.shard, r);
    }
    waiters.clear();
    node_.log_stats().counter.store(counter_, std::memory_order_relaxed);
  }

  void fail_all(std::vector<Waiter>& waiters) { hand_out(waiters, BatchStatus::kLogFailed); }

  void deliver(uint32_t shard, const BatchResult& r) {
    if (shard == 0) {
      node_.shard(0).deliver_result(r);
    } else {
      node_.shard(shard).post_result(r, loop_);
    }
  }

  void on_timer() {
    if (durability_ == Durability::kLow && !writing_ && wal_->has_pending() && !wal_->failed()) {
      start_write(false);
    } else {
      start_background_sync();
    }
    loop_->timeout(&timer_ts_, &timer_c_);
  }

  void start_background_sync() {
    if (syncing_ || wal_->failed()) return;
    auto op = wal_->begin_sync();
    if (!op) return;
    sync_op_ = *op;
    syncing_ = true;
    node_.log_stats().syncs.fetch_add(1, std::memory_order_relaxed);
    loop_->fdatasync(sync_op_.fd, &sync_c_);
  }

  void on_sync_done(int32_t res) {
    syncing_ = false;
    storage::Status st = wal_->end_sync(sync_op_, res);
    if (!st) {
      node_.log_stats().write_errors.fetch_add(1, std::memory_order_relaxed);
      node_.log_line("wal: background fdatasync failed: " + st.message());
      return;
    }
    node_.log_stats().durable_index.store(wal_->durable_index(), std::memory_order_relaxed);
  }

  Node& node_;
  Durability durability_;
  io::Loop* loop_ = nullptr;
  std::unique_ptr<storage::Wal> wal_;
  uint64_t counter_ = 0;
  std::vector<Waiter> staged_;
  uint64_t staged_total_ = 0;
  std::vector<Waiter> inflight_;
  bool writing_ = false;
  bool syncing_ = false;
  storage::WalWriteOp op_;
  storage::WalSyncOp sync_op_;
  uint64_t write_started_us_ = 0;
  io::Completion write_c_;
  io::Completion fsync_after_write_c_;
  io::Completion sync_c_;
  io::Completion timer_c_;
  __kernel_timespec timer_ts_{};
};

}  // namespace

std::unique_ptr<TicketLog> make_local_ticket_log(Node& node) {
  return std::make_unique<LocalTicketLog>(node);
}

}  // namespace ticketd::server
