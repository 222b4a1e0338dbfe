// The snapshot file and its writer. The file holds raft's Snapshot {index, term,
// configuration, data = the ticket state machine's snapshot}. SnapshotWriter saves it off the
// loop thread. Promises: one save at a time; busy() turns false only after the save's result
// is published.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "ticketd/raft/types.h"
#include "ticketd/storage/snapshot_file.h"
#include "ticketd/storage/status.h"

namespace ticketd::cluster {

std::string encode_snapshot(const raft::Snapshot& s);
bool decode_snapshot(std::string_view in, raft::Snapshot* s);

// Writes snapshot files off the loop thread: a save is temp + fsync + rename + fsync dir, and
// on a busy disk an fsync can take long enough to stall every client of shard 0. One save
// at a time; the loop learns of its end through done() on its next tick.
class SnapshotWriter {
 public:
  SnapshotWriter() : thread_([this] { run(); }) {}
  ~SnapshotWriter() {
    {
      std::lock_guard<std::mutex> g(mu_);
      quit_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  bool busy() const { return busy_.load(std::memory_order_acquire); }
  void save(std::string path, std::string bytes, uint64_t index) {
    {
      std::lock_guard<std::mutex> g(mu_);
      path_ = std::move(path);
      bytes_ = std::move(bytes);
      index_ = index;
      pending_ = true;
      busy_.store(true, std::memory_order_release);
    }
    cv_.notify_one();
  }
  // After busy() turned false: the index saved, and the save's result.
  uint64_t index() const { return done_index_; }
  const storage::Status& status() const { return done_status_; }

 private:
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      cv_.wait(lk, [this] { return quit_ || pending_; });
      if (pending_) {
        pending_ = false;
        std::string path = path_, bytes = std::move(bytes_);
        uint64_t index = index_;
        lk.unlock();
        storage::Status st = storage::SnapshotFile::save(
            path, std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()),
                                             bytes.size()));
        lk.lock();
        done_index_ = index;
        done_status_ = st;
        busy_.store(false, std::memory_order_release);  // publishes done_* to the loop
        continue;
      }
      if (quit_) return;
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::string path_, bytes_;
  uint64_t index_ = 0;
  bool pending_ = false;
  bool quit_ = false;
  std::atomic<bool> busy_{false};
  uint64_t done_index_ = 0;
  storage::Status done_status_;
  std::thread thread_;
};

}  // namespace ticketd::cluster
