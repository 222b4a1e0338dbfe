// Window mode on the leader (issue 15). Which ticket a client gets and when it may be told
// is decided by tickets::WindowServer (tickets/window.h, the code the simulator checks);
// this file only wires it to the loop: the role and term into it, its Reserve entries into
// the log, one ReadIndex round for the batches that arrived since the last one started (at
// most kWindowRoundsInFlight out at a time: the batches that arrive meanwhile share the next)
// or, with --lease, the leader's lease while it holds, and what it released back to the
// shards. A shard batch with both window and dense parts is split: the dense part is staged
// for the next Allocate entry as a batch of its own, and the shard gets one result once both
// parts answered (results still leave in the shard's submission order: resolve()).
#include "raft_ticket_log.h"

#include "../server/trace.h"

namespace ticketd::cluster {

namespace {

BatchStatus window_status(tickets::Status st) {
  switch (st) {
    case tickets::Status::kOk: return BatchStatus::kOk;
    case tickets::Status::kNoSuchSequence: return BatchStatus::kNoSuchSequence;
    case tickets::Status::kExhausted: return BatchStatus::kExhausted;
    // kInvalid: the sequence changed mode (dropped and created again) while the batch
    // waited: the client tries again.
    default: return BatchStatus::kLeadershipLost;
  }
}

}  // namespace

bool RaftTicketLog::split_submit(uint32_t shard, const BatchRequest& b) {
  bool default_window = b.total > 0 && is_window(tickets::kDefaultSequence);
  bool any = default_window;
  if (b.named != nullptr) {
    for (const NamedBatch::Slot& sl : b.named->slots) any = any || (sl.total > 0 && is_window(sl.name));
  }
  if (!any) return false;
  ShardOutcomes& o = outcomes_[shard];
  o.results.push_back(BatchResult{});
  o.resolved.push_back(false);
  uint64_t id = next_split_++;
  Split& sp = splits_[id];
  sp.w = Waiter{shard, b.total, b.named, o.next_seq++};
  sp.result = BatchResult{0, b.total, BatchStatus::kOk, b.named};
  std::vector<tickets::Command::Item> items;
  if (default_window) {
    items.push_back({std::string(tickets::kDefaultSequence), b.total});
    sp.window_slots.push_back(kDefaultSlot);
  }
  sp.dense_default = b.total > 0 && !default_window;
  if (b.named != nullptr) {
    for (size_t i = 0; i < b.named->slots.size(); ++i) {
      const NamedBatch::Slot& sl = b.named->slots[i];
      if (sl.total > 0 && is_window(sl.name)) {
        items.push_back({sl.name, sl.total});
        sp.window_slots.push_back(i);
      } else {
        if (!sp.dense_named) sp.dense_named = std::make_unique<NamedBatch>();
        NamedBatch::Slot copy;
        copy.name = sl.name;
        copy.total = sl.total;
        sp.dense_named->slots.push_back(std::move(copy));
        sp.dense_slots.push_back(i);
      }
    }
  }
  bool dense = sp.dense_default || sp.dense_named != nullptr;
  sp.parts_left = dense ? 2 : 1;
  NamedBatch* dense_named = sp.dense_named.get();
  window_.set_leader(raft_->role() == raft::Role::kLeader ? raft_->term() : 0);
  TICKETD_TRACE_EV("wsubmit", id, shard);
  window_.submit(id, std::move(items), tickets_);  // may answer at once (not leading)
  if (lease_holds_now()) {  // --lease: no round to wait for
    TICKETD_TRACE_EV("wlease", id, 0);
    confirm_by_lease();
  }
  if (dense) stage(Waiter{shard, sp.dense_default ? b.total : 0, dense_named, 0, id});
  window_released();
  return true;
}

void RaftTicketLog::merge_dense(const Waiter& w, const BatchResult& r) {
  auto it = splits_.find(w.split);
  if (it == splits_.end()) return;
  Split& sp = it->second;
  if (sp.dense_default) {
    sp.result.start = r.start;
    sp.result.status = r.status;
  }
  if (sp.dense_named) {
    for (size_t k = 0; k < sp.dense_slots.size(); ++k) {
      NamedBatch::Slot& to = sp.w.named->slots[sp.dense_slots[k]];
      const NamedBatch::Slot& from = sp.dense_named->slots[k];
      to.first = from.first;
      to.status = from.status;
    }
  }
  part_done(it);
}

void RaftTicketLog::part_done(std::unordered_map<uint64_t, Split>::iterator it) {
  if (--it->second.parts_left > 0) return;
  Waiter shard_w = it->second.w;
  BatchResult res = it->second.result;
  splits_.erase(it);
  resolve(shard_w, res);
}

void RaftTicketLog::window_released() {
  for (tickets::WindowRelease& rel : window_.take_released()) {
    auto it = splits_.find(rel.id);
    if (it == splits_.end()) continue;
    Split& sp = it->second;
    TICKETD_TRACE_EV("wrelease", rel.id, rel.ok);
    // Not released: leadership was lost (or never held) before its round confirmed. Like a
    // dense batch: -MOVED to a known leader, else -CLUSTERDOWN, so the client tries again.
    BatchStatus lost = raft_->role() == raft::Role::kLeader ? BatchStatus::kLeadershipLost
                       : raft_->leader_id() == raft::kNoId  ? BatchStatus::kNoLeader
                                                            : BatchStatus::kNotLeader;
    for (size_t k = 0; k < sp.window_slots.size(); ++k) {
      BatchStatus st = rel.ok && k < rel.items.size() ? window_status(rel.items[k].status)
                                                       : lost;
      uint64_t first = rel.ok && k < rel.items.size() ? rel.items[k].first : 0;
      if (sp.window_slots[k] == kDefaultSlot) {
        sp.result.start = first;
        sp.result.status = st;
      } else {
        NamedBatch::Slot& sl = sp.w.named->slots[sp.window_slots[k]];
        sl.first = first;
        sl.status = st;
      }
    }
    part_done(it);
  }
}

void RaftTicketLog::window_turn() {
  bool leader = raft_->role() == raft::Role::kLeader;
  window_.set_leader(leader ? raft_->term() : 0);
  if (leader && !wal_stalled_) {
    for (const tickets::Command& c : window_.reservations(tickets_, now_ms())) {
      raft::ProposeResult r = raft_->propose(tickets::encode(c));
      if (!r.ok()) break;  // a transfer in progress, say: asked again next turn
      TICKETD_TRACE_EV("reserve", r.index, c.value);
      window_.proposed(c, r.index, r.term, tickets_);
    }
  }
  if (window_.waiting() > 0 && lease_holds_now()) {
    TICKETD_TRACE_EV("wlease", 0, 1);
    confirm_by_lease();
  } else if (std::optional<uint64_t> round = window_.round_to_start()) {
    node_.log_stats().window_rounds.fetch_add(1, std::memory_order_relaxed);
    if (!raft_->read_index(kWindowRoundCtx | *round).ok()) {
      window_.round_done(*round, false);
    } else {
      // tools/latency-trace: the round's ctx, and the heartbeat round it waits beyond (the
      // first heartbeat round above it that a quorum echoes confirms it).
      TICKETD_TRACE_EV("wround", *round, raft_->heartbeat_round());
    }
  }
  window_released();
}

bool RaftTicketLog::lease_holds_now() const {
  // --lease: the raft node's lease, measured on the monotonic clock from the moment of the
  // tick it counts from (a paused process wakes up with a stale tick count: the clock is not
  // stale). Without --lease the node never has one.
  raft::Lease le = raft_->lease();
  if (le.ticks == 0) return false;
  return raft::lease_holds(le, tick_at_us_[le.from_tick % tick_at_us_.size()], now_us(),
                           static_cast<uint64_t>(kTickNs / 1000));
}

void RaftTicketLog::confirm_by_lease() {
  node_.log_stats().window_lease_confirms.fetch_add(1, std::memory_order_relaxed);
  window_.lease_confirms();
}

}  // namespace ticketd::cluster
