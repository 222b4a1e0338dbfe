// RAFT.ADDVOTER answers +OK only for a node that really joins. Its configuration entry commits
// first (as for any change); then the leader waits until the new node answers (it acknowledged
// an append: it is running and accepts this cluster). If instead it refuses our link (it founded
// a cluster of its own, so it can never join ours) or nothing answers within kContactTimeoutMs,
// the client gets an error that says what to do, and the node is removed again so the
// configuration does not list, for ever, a member that is not one.
#include "raft_ticket_log.h"

namespace ticketd::cluster {

namespace {
constexpr uint64_t kContactTimeoutMs = 5000;
}  // namespace

void RaftTicketLog::await_contact(AdminWaiter&& w) {
  refused_by_.erase(w.confirm_id);  // only a refusal from now on counts
  awaited_members_.push_back(
      AwaitedMember{std::move(w.req), w.confirm_id, std::move(w.ok_reply), now_ms() + kContactTimeoutMs});
}

void RaftTicketLog::note_refused_by(uint64_t peer, std::string_view reason) {
  // Only kept for nodes we wait for (bounded by the configuration's size).
  for (const AwaitedMember& a : awaited_members_) {
    if (a.id == peer) refused_by_[peer] = std::string(reason);
  }
}

void RaftTicketLog::check_awaited_members() {
  // Nodes that never answered leave again, one change at a time, while we lead.
  if (!undo_adds_.empty() && raft_->role() == raft::Role::kLeader) {
    uint64_t id = undo_adds_.back();
    const raft::Server* s = raft_->configuration().find(id);
    if (s == nullptr || s->suffrage == raft::Suffrage::kVoter) {
      undo_adds_.pop_back();  // gone already, or it did join after all: leave it
    } else {
      raft::ConfChangeRequest cc;
      cc.kind = raft::ConfChangeRequest::Kind::kRemove;
      cc.id = id;
      raft::ProposeResult r = raft_->propose_conf_change(cc);
      if (r.ok() || r.status == raft::ProposeStatus::kInvalid) undo_adds_.pop_back();
      if (r.ok()) node_.log_line("removing node " + std::to_string(id) + ": it did not join");
    }
  }
  if (awaited_members_.empty()) return;
  uint64_t now = now_ms();
  bool leading = raft_->role() == raft::Role::kLeader;
  std::vector<raft::PeerProgress> progress = leading ? raft_->progress() : std::vector<raft::PeerProgress>{};
  for (size_t i = 0; i < awaited_members_.size();) {
    AwaitedMember& a = awaited_members_[i];
    std::string error;
    bool answered = false;
    const raft::Server* s = raft_->configuration().find(a.id);
    if (!leading) {
      error = "ERR leadership moved while node " + std::to_string(a.id) +
              " was being added; check RAFT.CONFIGURATION";
    } else if (s == nullptr) {
      error = "ERR node " + std::to_string(a.id) + " left the configuration while being added";
    } else {
      for (const raft::PeerProgress& p : progress) answered = answered || (p.id == a.id && p.match > 0);
      std::string addr = decode_context(s->context).raft_addr;
      auto refused = refused_by_.find(a.id);
      if (answered) {
        // It is running and took our entries: the core promotes it once it has caught up.
      } else if (refused != refused_by_.end()) {
        error = "ERR node " + std::to_string(a.id) + " at " + addr + " refused to join (" +
                refused->second + "): it belongs to another cluster (started without --join or "
                "--no-bootstrap, it founded its own); stop it, empty its data directory, start it "
                "with --no-bootstrap and RAFT.ADDVOTER again. It was removed from the configuration";
      } else if (now >= a.deadline_ms) {
        error = "ERR node " + std::to_string(a.id) + " at " + addr + " did not answer within " +
                std::to_string(kContactTimeoutMs / 1000) + " s: start it with --no-bootstrap (an "
                "empty data directory) and RAFT.ADDVOTER again. It was removed from the configuration";
      } else {
        ++i;
        continue;  // still waiting
      }
    }
    if (answered) {
      reply(a.req, a.ok_reply);
    } else {
      reply_error(a.req, error);
      if (leading && s != nullptr) undo_adds_.push_back(a.id);
    }
    refused_by_.erase(a.id);
    awaited_members_[i] = std::move(awaited_members_.back());
    awaited_members_.pop_back();
  }
}

}  // namespace ticketd::cluster
