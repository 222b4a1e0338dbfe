// The Raft figures /metrics shows (src/server/metrics_endpoint.cpp), taken on shard 0 and
// published every 100 ms with INFO replication's view: the metrics thread never asks the
// Raft node anything itself.
#include "raft_ticket_log.h"
#include "server_context.h"

namespace ticketd::cluster {

server::RaftMetricsView RaftTicketLog::raft_metrics_view() const {
  server::RaftMetricsView v;
  v.published = true;
  std::string role = raft::to_string(raft_->role());
  if (role == "pre-candidate") role = "precandidate";  // a label value Prometheus users can type
  v.role = role;
  v.term = raft_->term();
  v.leader_id = raft_->leader_id() == raft::kNoId ? 0 : raft_->leader_id();
  v.leader_changes = leader_changes_;
  v.commit_index = raft_->commit_index();
  v.applied_index = applied_index_;
  v.last_index = raft_->last_index();
  v.snapshot_index = raft_->snapshot_index();
  std::vector<raft::PeerProgress> progress;
  if (raft_->role() == raft::Role::kLeader) progress = raft_->progress();
  for (const raft::Server& s : raft_->configuration().servers) {
    bool voter = s.suffrage == raft::Suffrage::kVoter;
    if (s.id == node_.opts().id) {
      v.voter = voter;
      continue;
    }
    server::RaftMetricsView::Peer p;
    p.id = s.id;
    p.raft_addr = decode_context(s.context).raft_addr;
    p.voter = voter;
    p.link_up = transport_ != nullptr && transport_->connected(s.id);
    for (const raft::PeerProgress& pp : progress) {
      if (pp.id != s.id) continue;
      p.progress = true;
      p.match = pp.match;
      p.last_contact_ms = pp.ticks_since_contact * static_cast<uint64_t>(kTickNs / 1'000'000);
    }
    v.peers.push_back(std::move(p));
  }
  return v;
}

}  // namespace ticketd::cluster
