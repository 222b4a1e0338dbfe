// driver::ReadyPipeline: the one implementation of raft::Node's Ready contract (raft/node.h),
// shared by the server (src/cluster/, over the io_uring WAL) and the deterministic simulator
// (tests/sim/, over a simulated disk), so the simulator runs the code the server runs.
// Pure like raft/: no sockets, files, threads or clocks; storage and the application sit
// behind the two small interfaces below.
//
// What it does with each Ready, in order (pump()):
//  1. takes it; its `messages` leave at once (Application::send), its `read_states` go to the
//     application at once (Application::read_states);
//  2. applies its committed entries at once when that is safe (they are durable on a quorum
//     already): not while an earlier Ready is unstaged or still holds committed entries, and
//     not if this Ready installs a snapshot or truncates (entries apply after what they follow);
//  3. stages it into storage, strictly in Ready order: hard state first (Storage decides what
//     of it must be synced before anything of the Ready leaves), then a snapshot install or a
//     truncation, which wait until every earlier Ready is released and storage is idle, then the
//     entries; a stage that fails (a full disk, say) is retried on the next pump();
//  4. lets storage start a write (group commit: one write carries everything staged meanwhile);
//  5. releases, in order, every staged Ready whose last entry is durable: on_persisted(mark),
//     then persist_then_send, then its remaining committed entries.
// Promises: Readys are staged and released in the order ready() returned them; nothing in
// persist_then_send leaves before its Ready's writes are durable; committed entries are applied
// exactly once each, in log order, and after any snapshot that precedes them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>

#include "ticketd/raft/node.h"

namespace ticketd::driver {

// The log's storage. Index values are the storage's own view of the log (a fresh log after a
// snapshot install may restart at 0); the pipeline only compares them with each other.
class Storage {
 public:
  virtual ~Storage() = default;
  // Every Ready's hard state, before anything else of it is staged. Whatever must be durable
  // before this Ready's votes leave (term and vote) is made durable now, synchronously.
  // False: cannot now (retried on the next pump; nothing after it is staged meanwhile).
  virtual bool save_hard_state(const raft::HardState& hs) = 0;
  // No write in flight and nothing staged but unwritten: a snapshot install or a truncation
  // may run (they rewrite what such a write would touch).
  virtual bool idle() const = 0;
  // A snapshot install may run now (e.g. the application's own snapshot save is not running).
  virtual bool may_install_snapshot() const { return true; }
  // Persists the snapshot, drops every stored entry, and restores the application's state
  // from snapshot.data. False: cannot now (retried). Called only when idle().
  virtual bool install_snapshot(const raft::Snapshot& s) = 0;
  // Drops stored entries >= index. Called only when idle().
  virtual void truncate_from(uint64_t index) = 0;
  // Stages one entry (no I/O yet).
  virtual void append(const raft::Entry& e) = 0;
  // The last entry staged, and the last one durable (at the node's durability level).
  virtual uint64_t last_index() const = 0;
  virtual uint64_t durable_index() const = 0;
  // A chance to start a write of what is staged (nothing if one is in flight). Its completion
  // makes durable_index() move; the driver then calls pump() again.
  virtual void start_write() = 0;
};

class Application {
 public:
  virtual ~Application() = default;
  virtual void send(const raft::Message& m) = 0;
  // A committed entry, in log order, each exactly once.
  virtual void apply(const raft::Entry& e) = 0;
  // After a batch of applied entries (e.g. to consider taking a snapshot).
  virtual void applied_batch() {}
  // Reads released by raft::Node::read_index, handed over as their Ready is taken (they need
  // no write). A confirmed one is answered once the applied index reaches its index, which
  // applying the committed entries of this or an earlier Ready does.
  virtual void read_states(const std::vector<raft::ReadState>& rs) { (void)rs; }
};

struct PipelineOptions {
  bool early_apply = true;  // step 2 above; false: apply only at release (persist, send, apply)
};

class ReadyPipeline {
 public:
  ReadyPipeline(raft::Node& node, Storage& storage, Application& app, PipelineOptions opt = {});

  // Runs steps 1-5 until the node has nothing more to hand out and nothing more is durable.
  // Call after every input to the node (tick, step, propose, ...) and every write completion.
  void pump();

  // Readys taken and not yet released.
  size_t size() const { return pending_.size(); }
  bool empty() const { return pending_.empty(); }
  // A stage failed and is waiting to be retried (storage trouble).
  bool stuck() const { return stuck_; }
  // Entries applied so far by this pipeline (the last one's index).
  uint64_t applied_index() const { return applied_; }
  // After the application restored a snapshot outside the pipeline (e.g. at start-up).
  void set_applied_index(uint64_t i) { applied_ = i; }

 private:
  struct Pending {
    raft::Ready rd;
    bool staged = false;
    uint64_t need = 0;  // storage index that must be durable before release
  };
  void take();          // steps 1-2
  void stage_all();     // step 3
  bool release_all();   // step 5; true if anything was released
  bool stage(Pending& p);
  void apply(const raft::Entry& e);

  raft::Node& node_;
  Storage& storage_;
  Application& app_;
  PipelineOptions opt_;
  std::deque<Pending> pending_;
  raft::Ready scratch_;
  bool stuck_ = false;
  uint64_t applied_ = 0;
};

}  // namespace ticketd::driver
