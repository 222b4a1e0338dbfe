// Our own snapshots: when to take one, writing it off the loop, compacting after.
#include "raft_ticket_log.h"

#include "ticketd/base/check.h"
#include "ticketd/resp/writer.h"

namespace ticketd::cluster {

raft::Configuration RaftTicketLog::configuration_at(uint64_t index) const {
  // The latest configuration entry at or below `index`, else the snapshot's.
  const raft::RaftLog& log = raft_->log();
  for (uint64_t i = std::min(index, log.last_index()); i > log.snapshot_index(); --i) {
    const raft::Entry& e = log.at(i);
    if (e.type == raft::EntryType::kConfChange) {
      raft::Configuration c;
      TICKETD_CHECK(raft::decode_configuration(e.data, &c));
      return c;
    }
  }
  const raft::Snapshot* snap = raft_->snapshot();
  return snap ? snap->configuration : raft::Configuration{};
}

void RaftTicketLog::maybe_snapshot(bool force) {
  if (snapshot_saving_) return;
  if (!force && now_ms() < snapshot_retry_ms_) return;
  uint64_t every = node_.opts().snapshot_every;
  if (applied_index_ <= snapshot_index_) return;
  if (!force && applied_index_ - snapshot_index_ < every) return;
  // Snapshot only what is durable here too (the raft log below it is dropped).
  if (applied_index_ > wal_->durable_index() && durability_ == Durability::kHigh) return;
  auto term = raft_->term_at(applied_index_);
  if (!term) return;
  raft::Snapshot snap;
  snap.index = applied_index_;
  snap.term = *term;
  snap.configuration = configuration_at(applied_index_);
  snap.data = tickets_.encode_snapshot();
  snapshot_data_ = snap.data;
  // The file first (on the writer thread); raft drops its log prefix only once it is
  // durable (the core's contract for compact()).
  snapshot_saving_ = true;
  snapshot_writer_.save(snapshot_path_, encode_snapshot(snap), snap.index);
}

void RaftTicketLog::finish_snapshot() {
  if (!snapshot_saving_ || snapshot_writer_.busy()) return;
  snapshot_saving_ = false;
  std::vector<AdminRequest> waiters;
  waiters.swap(snapshot_waiters_);
  if (!snapshot_writer_.status().is_ok()) {
    node_.log_warning("snapshot save failed: " + snapshot_writer_.status().message() +
                   " (next try in 1 s)");
    snapshot_retry_ms_ = now_ms() + 1000;
    for (const AdminRequest& w : waiters) {
      reply_error(w, "ERR snapshot failed: " + snapshot_writer_.status().message());
    }
    return;
  }
  for (const AdminRequest& w : waiters) {
    std::string ok;
    resp::append_simple(ok, "OK");
    reply(w, std::move(ok));
  }
  uint64_t index = snapshot_writer_.index();
  // A snapshot installed from the leader meanwhile may have moved past this one.
  if (index <= snapshot_index_ || index <= raft_->snapshot_index()) return;
  raft_->compact(index, snapshot_data_);
  snapshot_index_ = index;
  storage::Status st = wal_->compact_prefix(snapshot_index_);
  if (!st) node_.log_warning("wal compaction failed: " + st.message());
  LogStats& ls = node_.log_stats();
  ls.snapshot_index.store(snapshot_index_);
  ls.snapshot_ms.store(now_ms());
  ls.snapshots.fetch_add(1);
}

}  // namespace ticketd::cluster
