// The Ready pipeline (see the contract in raft/node.h) and the WAL writes under it.
#include "raft_ticket_log.h"

#include <cstdlib>

#include "ticketd/base/check.h"
#include "ticketd/driver/ready_pipeline.h"

#include "../server/trace.h"
#include "ticketd/storage/snapshot_file.h"

namespace ticketd::cluster {

void RaftTicketLog::pump() {
  if (closed_) return;
  // The shared driver (driver/ready_pipeline.h) takes every Ready, sends, applies early,
  // stages into the WAL through the Storage hooks below, and releases what is durable.
  pipeline_->pump();
  // No longer leader: what is not committed may never be (see fail_uncommitted_proposals).
  if (raft_->role() != raft::Role::kLeader) {
    fail_uncommitted_proposals();
    window_.set_leader(0);  // window batches not released fail (window_serving.cpp)
    window_released();
  }
  node_.log_stats().last_index.store(wal_->last_index(), std::memory_order_relaxed);
  if (storage_trouble_ && !pipeline_->stuck()) {
    node_.log_line("storage writable again");
    storage_trouble_ = false;
  }
  publish();
  sync_peers();
}

// ---- driver::Storage over the WAL, the hard state file and the snapshot file

bool RaftTicketLog::save_hard_state(const raft::HardState& hs) {
  // Term and vote must be on disk before any vote or ack of this Ready leaves; a commit-only
  // change is not written (see write_hard_state). If the file cannot be written (disk full),
  // the Ready waits and is retried: nothing after it is acknowledged meanwhile, so no vote is
  // ever given twice.
  if (hs.term == saved_hs_.term && hs.vote == saved_hs_.vote) return true;
  if (!write_hard_state(hs)) {
    note_storage_trouble("cannot save term/vote");
    return false;
  }
  return true;
}

bool RaftTicketLog::idle() const { return !writing() && !wal_->has_pending(); }

// Installing a snapshot rewrites the snapshot file: never while our own save runs.
bool RaftTicketLog::may_install_snapshot() const { return !snapshot_writer_.busy(); }

void RaftTicketLog::truncate_from(uint64_t index) {
  if (wal_->last_index() >= index && !wal_->truncate_suffix(index)) {
    stop_on_wal_failure("log truncation failed");
  }
}

void RaftTicketLog::append(const raft::Entry& e) {
  wal_->append(static_cast<uint8_t>(e.type), e.term, e.index,
               std::span<const std::byte>(reinterpret_cast<const std::byte*>(e.data.data()),
                                          e.data.size()));
}

uint64_t RaftTicketLog::last_index() const { return wal_->last_index(); }

uint64_t RaftTicketLog::durable_index() const {
  switch (durability_) {
    case Durability::kHigh: return wal_->durable_index();
    case Durability::kMedium: return wal_->written_index();
    // Low acknowledges from memory, but not past a stalled WAL (note_wal_stall): a follower
    // would otherwise take the leader's entries into memory without bound.
    case Durability::kLow: return wal_stalled_ ? wal_->written_index() : wal_->last_index();
  }
  return 0;
}

void RaftTicketLog::start_write() {
  // Up to --wal-writes-in-flight writes side by side; everything staged while none can start
  // goes into the next (group commit). Each write is durable on its own; the WAL's durable
  // index, and so every acknowledgement (to clients, or a follower's to the leader), covers
  // only the contiguous prefix of completed writes. At durability low the tick writes.
  if (durability_ == Durability::kLow || !may_start_write()) return;
  // Replication first: queue the AppendEntries sends ahead of the write, so they leave
  // before the disk submission (a virtio kick) in the same io_uring_enter.
  transport_->flush();
  while (may_start_write() && begin_wal_write()) {
  }
}

// ---- driver::Application

void RaftTicketLog::send(const raft::Message& m) {
  TICKETD_TRACE_EV("send", trace_peer(m, m.to), trace_index(m));
#ifdef TICKETD_TRACE
  // tools/latency-trace --window: a heartbeat (response) names its ReadIndex round.
  if (m.type == raft::MessageType::kHeartbeat || m.type == raft::MessageType::kHeartbeatResp) {
    TICKETD_TRACE_EV("hbsend", trace_peer(m, m.to), m.hint_index);
  }
#endif
  transport_->send(m);
}

void RaftTicketLog::applied_batch() { maybe_snapshot(false); }

bool RaftTicketLog::install_snapshot(const raft::Snapshot& s) {
  // The leader's ticket state is checked before anything is written: a snapshot that does
  // not decode is refused (nothing further is acknowledged; a restart asks again).
  tickets::StateMachine next(tickets_options());
  std::string bad = next.decode_snapshot(s.data, s.index);
  if (!bad.empty()) {
    note_storage_trouble("refusing the leader's snapshot at index " + std::to_string(s.index) +
                         ": its ticket state does not decode: " + bad);
    return false;
  }
  std::string bytes = encode_snapshot(s);
  storage::Status st = storage::SnapshotFile::save(
      snapshot_path_, std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()),
                                                 bytes.size()));
  if (!st) {
    // A full disk, say: acknowledge nothing further until the save succeeds (retried on
    // every tick), rather than stop the process or lose anything.
    note_storage_trouble("cannot save the installed snapshot: " + st.message());
    return false;
  }
  // The log restarts after the snapshot (a restart checks the two agree).
  if (wal_->last_index() != 0 && !wal_->truncate_suffix(wal_->first_index())) {
    stop_on_wal_failure("log reset for the installed snapshot failed");
  }
  // Safe to apply now: a snapshot is only staged when everything before it is released.
  tickets_ = std::move(next);
  // Proposals of ours inside the snapshot: we cannot tell whether they committed, so their
  // clients get an error (their ranges, if committed, are simply never handed out).
  while (!proposals_.empty() && proposals_.front().index <= s.index) {
    fail_waiters(proposals_.front().waiters, BatchStatus::kLeadershipLost);
    proposals_.pop_front();
  }
  applied_index_ = snapshot_index_ = s.index;
  node_.log_stats().counter.store(last_ticket());
  node_.log_stats().snapshot_index.store(snapshot_index_);
  node_.log_stats().snapshot_ms.store(now_ms());
  publish_sequence_stats();  // INFO keyspace reflects the installed state at once
  node_.log_line("installed snapshot at index " + std::to_string(s.index) + " (last ticket " +
                 std::to_string(last_ticket()) + ")");
  return true;
}

void RaftTicketLog::note_storage_trouble(const std::string& what) {
  // Said once per trouble spell, not on every retry.
  if (!storage_trouble_) node_.log_warning(what + " (retrying; nothing is acknowledged meanwhile)");
  storage_trouble_ = true;
}

bool RaftTicketLog::may_start_write() const {
  // While stalled, only once the spare segment could be made (on_tick retries it every
  // second): each attempt in between would be a blocking write that is bound to fail.
  // After close() no write starts: no loop turn would complete it.
  return !closed_ && wal_->has_pending() && wal_->can_begin_write(durability_ == Durability::kHigh) &&
         (!wal_stalled_ || wal_->spare_ready());
}

bool RaftTicketLog::begin_wal_write() {
  auto op = wal_->begin_write(durability_ == Durability::kHigh);
  if (!op) {
    // Else a segment switch waits for the writes in flight: their completion pumps again.
    if (wal_->failed()) stop_on_wal_failure("cannot write");
    if (!wal_->blocked().is_ok()) note_wal_stall();
    return false;
  }
  if (wal_stalled_) {
    wal_stalled_ = false;
    node_.log_stats().wal_stalled.store(false, std::memory_order_relaxed);
    node_.log_line("wal: a new segment was started; writing and acknowledging again");
  }
  WriteSlot* w = nullptr;
  for (WriteSlot& s : slots_) {
    if (!s.busy) {
      w = &s;
      break;
    }
  }
  TICKETD_CHECK(w != nullptr);  // the WAL allows at most kMaxWritesInFlight
  w->busy = true;
  w->op = *op;
  TICKETD_TRACE_EV("wstart", w->op.last_index, w->op.len);
  ++writes_in_flight_;
  w->started_us = now_us();
  LogStats& ls = node_.log_stats();
  ls.writes.fetch_add(1, std::memory_order_relaxed);
  ls.writes_in_flight.store(writes_in_flight_, std::memory_order_relaxed);
  if (writes_in_flight_ > 1) ls.overlapped_writes.fetch_add(1, std::memory_order_relaxed);
  if (tickets_since_write_ > 0) {
    // The tickets of the entries proposed since the last write began: this write's.
    ls.write_tickets.record(tickets_since_write_);
    ls.write_tickets_sum.add(tickets_since_write_);
    tickets_since_write_ = 0;
  }
  loop_->write(w->op.fd, w->op.buf, w->op.len, w->op.offset, w->op.dsync, &w->write_c);
  return true;
}

void RaftTicketLog::on_write_done(WriteSlot* w, int32_t res) {
  if (res >= 0 && static_cast<size_t>(res) == w->op.len && w->op.needs_fdatasync) {
    node_.log_stats().syncs.fetch_add(1, std::memory_order_relaxed);
    loop_->fdatasync(w->op.fd, &w->fsync_c);
    return;
  }
  finish_write(w, res);
}

void RaftTicketLog::finish_write(WriteSlot* w, int64_t res) {
  TICKETD_TRACE_EV("wdone", res, w->op.last_index);
  w->busy = false;
  --writes_in_flight_;
  // Completions come in any order: the WAL advances its durable index over the prefix only.
  storage::Status s = wal_->end_write(w->op.last_index, res);
  LogStats& ls = node_.log_stats();
  uint64_t took_us = now_us() - w->started_us;
  ls.last_write_us.store(took_us, std::memory_order_relaxed);
  ls.wal_write_ns.record(took_us * 1000);
  ls.wal_write_ns_sum.add(took_us * 1000);
  ls.writes_in_flight.store(writes_in_flight_, std::memory_order_relaxed);
  if (!s) stop_on_wal_failure("write failed");
  ls.durable_index.store(wal_->durable_index(), std::memory_order_relaxed);
  if (durability_ == Durability::kLow) {
    // The tick's flush goes on until everything staged before it is out (a write carries at
    // most one buffer), then syncs; what staged since waits for the next tick.
    if (wal_->written_index() < low_flush_to_ && may_start_write()) {
      (void)begin_wal_write();
    } else {
      start_background_sync();
    }
  }
  // What gathered during the write becomes one entry, written by the write pump() starts.
  propose_staged();
  pump();
}

void RaftTicketLog::note_wal_stall() {
  // The WAL needs a new segment and cannot make one (a full disk). Nothing is lost: the staged
  // records wait in memory, and go out once on_tick's spare retry succeeds (stage -> write ->
  // release resumes by itself). Meanwhile nothing of ours becomes durable, so nothing is
  // acknowledged; new tickets are refused (propose_staged), which keeps memory bounded; a
  // leader hands over to a follower that can still write (hand_over_while_stalled).
  if (!wal_stalled_) {
    wal_stalled_ = true;
    node_.log_stats().wal_stalled.store(true, std::memory_order_relaxed);
    node_.log_warning("wal: cannot start a new segment (" + wal_->blocked().message() +
                   "); acknowledging nothing and refusing tickets until it can (retried every "
                   "second)");
  }
}

void RaftTicketLog::hand_over_while_stalled() {
  // Called every tick while stalled: a transfer that timed out is tried again.
  if (raft_->role() != raft::Role::kLeader || raft_->transfer_target() != raft::kNoId) return;
  uint64_t best = raft::kNoId;
  uint64_t best_match = 0;
  for (const raft::PeerProgress& p : raft_->progress()) {
    if (raft_->configuration().is_voter(p.id) && p.recent_active && p.match >= best_match) {
      best = p.id;
      best_match = p.match;
    }
  }
  if (best != raft::kNoId && raft_->transfer_leadership(best)) {
    node_.log_line("wal stalled: handing leadership to node " + std::to_string(best));
  }
}

[[noreturn]] void RaftTicketLog::stop_on_wal_failure(const std::string& what) {
  // After a failed write or sync the state of those blocks on disk is unknown, and nothing
  // written since can be trusted to be durable. Going on would mean either acknowledging
  // without durability or queueing every Ready forever while still leading. Stop at once,
  // before this loop turn can acknowledge anything more; a restart's recovery keeps exactly
  // the valid prefix, and the node catches up from the cluster.
  node_.log_stats().write_errors.fetch_add(1, std::memory_order_relaxed);
  node_.log_warning("wal: " + what + ": " + wal_->error().message() +
                 "; stopping now (exit status " + std::to_string(kExitWalFailed) +
                 ") so that nothing more is acknowledged; restart the node to recover");
  std::_Exit(kExitWalFailed);
}

void RaftTicketLog::start_background_sync() {
  if (syncing_ || wal_->failed()) return;
  auto op = wal_->begin_sync();
  if (!op) return;
  sync_op_ = *op;
  syncing_ = true;
  node_.log_stats().syncs.fetch_add(1, std::memory_order_relaxed);
  loop_->fdatasync(sync_op_.fd, &sync_c_);
}

}  // namespace ticketd::cluster
