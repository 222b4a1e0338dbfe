#include "raft_ticket_log.h"

#include "../server/trace.h"
#include "ticketd/base/check.h"

namespace ticketd::cluster {

// ------------------------------------------------------------------------------------------
// Staging: shard batches wait here for the next Allocate entry.

void RaftTicketLog::submit(uint32_t shard, const BatchRequest& b) {
  if (shard >= outcomes_.size()) outcomes_.resize(shard + 1);
  if (split_submit(shard, b)) return;  // it has window parts (window_serving.cpp)
  ShardOutcomes& o = outcomes_[shard];
  o.results.push_back(BatchResult{});
  o.resolved.push_back(false);
  stage(Waiter{shard, b.total, b.named, o.next_seq++});
}

void RaftTicketLog::stage(const Waiter& w) {
  if (!staging_.fits(w.named)) {
    // The entry is full: it goes now (a shard batch holds at most kMaxBatchSequences names,
    // so this one fits into the next). A transfer in progress takes no proposal: refuse.
    propose_staged(true);
    if (!staged_.empty()) fail_staged(BatchStatus::kLeadershipLost);
  }
  if (staged_.empty()) staged_since_ms_ = now_ms();
  staged_.push_back(w);
  staging_.add(w.n, w.named);
  staged_total_ = staging_.total();
}

void RaftTicketLog::fail_staged(BatchStatus st) {
  fail_waiters(staged_, st);
  staged_total_ = 0;
  staging_.clear();
}

// ------------------------------------------------------------------------------------------
// The loop turn.

void RaftTicketLog::on_turn_end() {
  window_turn();
  propose_staged();
  pump();
  if (transport_) transport_->flush();
}

void RaftTicketLog::on_tick() {
  if (closed_) return;
  ++ticks_;
  uint64_t at = now_us();  // before the tick: no round of it can have been sent earlier
  raft_->tick();
  tick_at_us_[raft_->now_ticks() % tick_at_us_.size()] = at;
  expire_proposals();
  expire_reads();
  if (join_ && join_->cluster_id() != 0 && cluster_id_ == 0) {
    cluster_id_ = join_->cluster_id();
    transport_->set_cluster_id(cluster_id_);
    write_hard_state(saved_hs_);
    node_.log_line("joined cluster " + hex(cluster_id_));
  }
  if (durability_ != Durability::kHigh && ticks_ % sync_every_ticks_ == 0) {
    // Low: write what is staged (finish_write goes on until it is all out, then syncs).
    // Both levels: sync what is written; a write may overlap the sync (the WAL allows it).
    if (durability_ == Durability::kLow) {
      low_flush_to_ = wal_->last_index();
      if (may_start_write()) begin_wal_write();
    }
    start_background_sync();
  }
  if (wal_stalled_) hand_over_while_stalled();
  finish_snapshot();
  // Zero-fill the next WAL segment ahead of time, one 1 MiB step per tick, so a segment
  // switch never waits for it. Only between writes: it is a short blocking write.
  // A failed attempt (a full disk) leaves the log healthy; try again a second later.
  if (!writing() && !wal_->spare_ready() && !wal_->failed() && now_ms() >= spare_retry_ms_) {
    if (!wal_->prepare_spare_step() && !wal_->spare_error().is_ok()) {
      spare_retry_ms_ = now_ms() + 1000;
    }
  }
  update_member_addresses();
  if (ticks_ % 10 == 0) publish_replication();  // INFO replication (cluster_commands.cpp)
  check_awaited_members();
  note_removal();
  // Periodic snapshot even when the load is light, so the log stays short.
  if (ticks_ % 1000 == 0) maybe_snapshot(true);
  if (shutting_down_ && now_ms() > shutdown_deadline_ms_) shutting_down_ = false;
  loop_->timeout(&tick_ts_, &tick_c_);
  pump();
  transport_->flush();
}

void RaftTicketLog::propose_staged(bool full) {
  if (staged_total_ == 0) return;
  if (raft_->role() != raft::Role::kLeader) {
    // No leader known yet (an election): wait for one, briefly. Once one is known the
    // tickets leave as -MOVED to it (or are proposed here, if it is us). Nothing was
    // proposed, so nothing can be handed out twice; the wait is bounded and so is what
    // waits (each shard keeps at most kMaxOutstandingBatches in flight).
    // A refusal names the leader the shards were told (the published role), so only what
    // they were told to redirect leaves now; a leader that stepped down a moment ago, or a
    // leader the shards do not know yet, waits with the rest.
    bool member = raft_->configuration().find(node_.opts().id) != nullptr;
    bool hold = published_role_ != ClusterRole::kFollower && !shutting_down_ && member &&
                now_ms() < staged_since_ms_ + kElectionHoldMs;
    if (hold) return;
    fail_staged(raft_->leader_id() == raft::kNoId ? BatchStatus::kNoLeader
                                                  : BatchStatus::kNotLeader);
    return;
  }
  // Batching: while no further log write can start (--wal-writes-in-flight are in flight),
  // tickets keep gathering; they are proposed as ONE entry the moment the next write can
  // start (finish_write), so every write carries everything that arrived meanwhile. (At
  // durability low nothing waits on writes.)
  if (writing() && !wal_->can_begin_write(durability_ == Durability::kHigh) &&
      durability_ != Durability::kLow && !full) {
    return;
  }
  if (wal_stalled_) {
    // Our log cannot take more (note_wal_stall): refuse rather than queue without bound.
    fail_staged(BatchStatus::kLogFailed);
    return;
  }
  raft::ProposeResult r = raft_->propose(staging_.payload());
  if (r.status == raft::ProposeStatus::kTransferInProgress) return;  // retry next turn
  if (!r.ok()) {
    fail_staged(r.leader_hint == raft::kNoId ? BatchStatus::kNoLeader : BatchStatus::kNotLeader);
    return;
  }
  // apply() answers proposals front to back by index (see fail_uncommitted_proposals).
  TICKETD_CHECK(proposals_.empty() || proposals_.back().index < r.index);
  Proposal p{r.index, r.term, staged_total_, staging_.default_total(), staging_.named_items(),
             now_ms(), {}, server::mono_ns()};
  tickets_since_write_ += staged_total_;
  p.waiters.swap(staged_);
  staged_total_ = 0;
  staging_.clear();
  TICKETD_TRACE_EV("propose", p.index, p.total);
  proposals_.push_back(std::move(p));
  node_.log_stats().batched_tickets.fetch_add(proposals_.back().total, std::memory_order_relaxed);
}

void RaftTicketLog::apply(const raft::Entry& e) {
  TICKETD_TRACE_EV("apply", e.index, 0);
  if (e.index <= applied_index_) return;  // covered by a snapshot we installed
  // Ranges come from the applied state, in log order, on every node alike. The entry came
  // from a leader, possibly a buggy or hostile one: one that does not decode, or that
  // would wrap a counter, allocates nothing (the state machine's rules depend only on the
  // entry and the state, so every node refuses alike), and is never handed out.
  tickets::Command cmd;
  tickets::ApplyResult res;
  bool applied = false;  // a command that decoded (and so changed the state, or refused alike)
  if (e.type == raft::EntryType::kNormal) {
    std::string bad = tickets::decode(e.data, &cmd);
    if (bad.empty()) {
      res = tickets_.apply(e.index, cmd);
      applied = true;
      window_.applied(e.index, e.term, cmd, res, tickets_);
      for (const tickets::ItemResult& ir : res.items) {
        if (ir.status == tickets::Status::kExhausted) bad = tickets::to_string(ir.status);
      }
    }
    if (!bad.empty()) {
      node_.log_warning("log entry " + std::to_string(e.index) + " allocates nothing" +
                     (applied ? " for some sequence: " : ": ") + bad);
    }
  }
  applied_index_ = e.index;
  // Answer the proposals at or below this index: ours only if index AND term match.
  while (!proposals_.empty() && proposals_.front().index <= e.index) {
    Proposal& p = proposals_.front();
    if (p.index == e.index && p.term == e.term && e.type == raft::EntryType::kNormal) {
      if (!applied || cmd.kind != tickets::Command::Kind::kAllocate) {
        fail_waiters(p.waiters, BatchStatus::kExhausted);  // not ours after all: never here
      } else {
        LogStats& ls = node_.log_stats();
        uint64_t took = server::mono_ns() - p.created_ns;  // proposed -> applied, once per entry
        ls.commit_ns.record(took);
        ls.commit_ns_sum.add(took);
        hand_out(p, res);
      }
    } else {
      // Another leader's entry took this index: ours was overwritten and never applies.
      fail_waiters(p.waiters, BatchStatus::kLeadershipLost);
    }
    proposals_.pop_front();
  }
  for (size_t i = 0; i < admin_waiters_.size();) {
    AdminWaiter& w = admin_waiters_[i];
    if (w.index <= e.index) {
      if (w.index == e.index && w.term == e.term) {
        if (w.confirm_id != 0) {
          await_contact(std::move(w));
        } else if (w.command) {
          reply(w.req, sequence_reply(*w.command, applied ? &res : nullptr));
        } else {
          reply(w.req, w.ok_reply);
        }
      } else {
        reply_error(w.req, "ERR leadership lost before the change committed; try again");
      }
      admin_waiters_[i] = std::move(admin_waiters_.back());
      admin_waiters_.pop_back();
    } else {
      ++i;
    }
  }
  publish_sequence_stats();
  window_released();  // a committed reservation may have let waiting window batches go
}

void RaftTicketLog::hand_out(const Proposal& p, const tickets::ApplyResult& r) {
  // Each item's range is cut per request in submission order: waiter by waiter here, and
  // within a waiter (one shard batch) the shard cuts each slot's range per request alike.
  RangeCutter cut(r, p.default_total > 0, p.named_items);
  for (const Waiter& w : p.waiters) resolve(w, cut.next(w.n, w.named));
}

void RaftTicketLog::fail_waiters(std::vector<Waiter>& ws, BatchStatus st) {
  for (const Waiter& w : ws) {
    if (w.named != nullptr) {
      for (NamedBatch::Slot& sl : w.named->slots) sl.status = st;
    }
    resolve(w, BatchResult{0, w.n, st, w.named});
  }
  ws.clear();
}

void RaftTicketLog::resolve(const Waiter& w, const BatchResult& r) {
  if (w.split != 0) {
    merge_dense(w, r);
    return;
  }
  ShardOutcomes& o = outcomes_[w.shard];
  TICKETD_CHECK(w.seq >= o.base_seq && w.seq - o.base_seq < o.results.size());
  size_t i = static_cast<size_t>(w.seq - o.base_seq);
  o.results[i] = r;
  o.resolved[i] = true;
  while (!o.resolved.empty() && o.resolved.front()) {
    deliver(w.shard, o.results.front());
    o.results.pop_front();
    o.resolved.pop_front();
    o.base_seq++;
  }
}

void RaftTicketLog::deliver(uint32_t shard, const BatchResult& r) {
  TICKETD_TRACE_EV("deliver", shard, r.total);
  if (shard == 0) {
    node_.shard(0).deliver_result(r);
  } else {
    node_.shard(shard).post_result(r, loop_);
  }
}

void RaftTicketLog::fail_uncommitted_proposals() {
  // No longer leader: what is not committed yet may never be, and waiting for the 5 s
  // timeout only delays the client's retry. Answered now (CLUSTERDOWN, so clients retry);
  // if such an entry commits later anyway, its range is skipped. Committed ones stay: they
  // are answered from their entry. This also keeps proposals_ sorted by index, which
  // apply() relies on: a node that leads again later proposes above its commit index, and
  // without this an old, higher-indexed proposal could sit in front of a new one and make
  // apply() fail the new one although it committed.
  while (!proposals_.empty() && proposals_.back().index > raft_->commit_index()) {
    fail_waiters(proposals_.back().waiters, BatchStatus::kLeadershipLost);
    proposals_.pop_back();
  }
}

void RaftTicketLog::expire_proposals() {
  // A leader cut off from its quorum (or paused) cannot commit: its clients get an error
  // instead of waiting forever. If the entry commits later anyway, its range is skipped.
  uint64_t now = now_ms();
  while (!proposals_.empty() && proposals_.front().created_ms + kProposalTimeoutMs < now) {
    fail_waiters(proposals_.front().waiters, BatchStatus::kLeadershipLost);
    proposals_.pop_front();
  }
  for (size_t i = 0; i < admin_waiters_.size();) {
    if (admin_waiters_[i].created_ms + 2 * kProposalTimeoutMs < now) {
      reply_error(admin_waiters_[i].req,
                  admin_waiters_[i].command
                      ? "ERR the change did not commit in time here; check TICKET.INFO"
                      : "ERR the change did not commit in time here; check RAFT.CONFIGURATION");
      admin_waiters_[i] = std::move(admin_waiters_.back());
      admin_waiters_.pop_back();
    } else {
      ++i;
    }
  }
}

bool RaftTicketLog::drained() const {
  // The hand-over is over once this node stepped down, or the core gave the transfer up
  // (or its 2 s bound passed: on_tick clears shutting_down_). Waiting out the bound after
  // a transfer that finished in milliseconds only delayed the exit.
  bool handing_over = shutting_down_ && raft_->role() == raft::Role::kLeader &&
                      raft_->transfer_target() != raft::kNoId;
  return staged_total_ == 0 && proposals_.empty() && !writing() && !syncing_ && !handing_over &&
         splits_.empty();
}

void RaftTicketLog::begin_shutdown() {
  // A leader hands over before it goes, so clients see a short pause, not an election timeout.
  if (raft_->role() != raft::Role::kLeader) return;
  uint64_t best = raft::kNoId;
  uint64_t best_match = 0;
  for (const raft::PeerProgress& p : raft_->progress()) {
    if (raft_->configuration().is_voter(p.id) && p.match >= best_match && p.recent_active) {
      best = p.id;
      best_match = p.match;
    }
  }
  if (best == raft::kNoId) return;
  if (raft_->transfer_leadership(best)) {
    node_.log_line("shutting down: transferring leadership to node " + std::to_string(best));
    shutting_down_ = true;
    shutdown_deadline_ms_ = now_ms() + 2000;
    pump();
    transport_->flush();
  }
}

void RaftTicketLog::close() {
  // The transport first: its shutdown runs loop turns, which may complete our last write;
  // closed_ makes every callback of ours a no-op beyond bookkeeping from here on.
  closed_ = true;
  if (transport_) transport_->shutdown();
  if (wal_ && !wal_->failed()) {
    // What is staged goes out (not past a write still in flight: its buffer is in use), then
    // one fdatasync covers every written record, whatever background sync is outstanding.
    storage::Status st = writing() ? storage::Status::ok() : wal_->sync_write(true);
    if (!st) node_.log_warning("wal: final flush failed: " + st.message());
    st = wal_->sync_now();  // also after a refused write (a stalled WAL): what is written
    if (!st) node_.log_warning("wal: final fdatasync failed: " + st.message());
  }
  if (join_) join_->stop();
}


}  // namespace ticketd::cluster

namespace ticketd::server {

std::unique_ptr<TicketLog> make_raft_ticket_log(Node& node) {
  return std::make_unique<cluster::RaftTicketLog>(node);
}

}  // namespace ticketd::server
