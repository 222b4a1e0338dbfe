// The leadership log: one line per change of leadership, saying why, from the reasons the
// raft core records (raft::Node::take_role_changes). Steps that change no leadership (a
// pre-vote, an election lost, a term seen while no leader is known) are verbose.
#include "raft_ticket_log.h"

namespace ticketd::cluster {

namespace {

std::string node_name(uint64_t id) { return "node " + std::to_string(id); }

std::string why(const raft::RoleChange& c) {
  using R = raft::RoleChangeReason;
  switch (c.reason) {
    case R::kStart: return "started";
    case R::kElectionTimeout: return "election timeout: no leader heard within it";
    case R::kCampaignCalled: return "the only voter campaigns at start";
    case R::kPreVoteWon: return "pre-vote won";
    case R::kTransfer: return "leadership transfer from " + node_name(c.peer);
    case R::kElectionWon:
      return "won the election with " + std::to_string(c.heard) + " of " +
             std::to_string(c.voters) + " votes";
    case R::kElectionLost: return "election lost";
    case R::kHigherTerm:
      return "higher term seen from " + node_name(c.peer) +
             (c.transfer ? " (it asks for votes in a leadership transfer)" : "");
    case R::kLeaderHeard: return "heard from the leader";
    case R::kLostQuorum:
      return "lost quorum: heard from " + std::to_string(c.heard) + " of " +
             std::to_string(c.voters) + " voters within an election timeout";
    case R::kRemoved: return "its own removal from the configuration committed";
  }
  return "?";
}

}  // namespace

void RaftTicketLog::log_role_changes() {
  uint64_t self = node_.opts().id;
  for (const raft::RoleChange& c : raft_->take_role_changes()) {
    std::string term = "term " + std::to_string(c.term);
    std::string w = why(c);
    if (c.role == raft::Role::kPreCandidate) campaign_why_ = w;
    if (c.role == raft::Role::kCandidate && c.reason != raft::RoleChangeReason::kPreVoteWon) {
      campaign_why_ = w;
    }
    std::string was;
    if (named_leader_ != raft::kNoId && named_leader_ != c.leader) {
      was = " (was " + (named_leader_ == self ? std::string("this node")
                                              : node_name(named_leader_)) + ")";
    }
    if (c.role == raft::Role::kLeader) {
      node_.log_line("leadership: this node leads " + term + " (" + w +
                     (campaign_why_.empty() ? "" : "; campaign began on: " + campaign_why_) + ")");
    } else if (logged_role_ == raft::Role::kLeader) {
      node_.log_line("leadership: stepped down in " + term + " (" + w + ")" +
                     (c.leader != raft::kNoId ? "; " + node_name(c.leader) + " leads" : ""));
      drop_why_ = w;
    } else if (c.role == raft::Role::kCandidate) {
      node_.log_line("leadership: campaigning for " + term + " (" + campaign_why_ + ")");
    } else if (c.leader != raft::kNoId && c.leader != logged_leader_ && c.leader != self) {
      std::string after = c.reason == raft::RoleChangeReason::kLeaderHeard ? drop_why_ : w;
      node_.log_line("leadership: " + node_name(c.leader) + " leads " + term + was +
                     (after.empty() ? "" : ", after: " + after));
    } else if (c.leader == raft::kNoId && logged_leader_ != raft::kNoId &&
               c.reason != raft::RoleChangeReason::kHigherTerm) {
      // (A higher term from a candidate: an election is on, the next line names its winner.)
      node_.log_line("leadership: no leader known in " + term + was + ": " + w);
      drop_why_ = w;
    } else {
      if (c.leader == raft::kNoId && c.reason != raft::RoleChangeReason::kStart) drop_why_ = w;
      node_.log(logging::Level::kVerbose, std::string("leadership: ") + raft::to_string(c.role) +
                                              " in " + term + " (" + w + ")");
    }
    if (c.leader != raft::kNoId) {
      drop_why_.clear();
      named_leader_ = c.leader;
    }
    logged_role_ = c.role;
    logged_leader_ = c.leader;
  }
  if (uint64_t dropped = raft_->role_changes_dropped(); dropped != role_changes_dropped_logged_) {
    node_.log(logging::Level::kVerbose, "leadership: " +
                                            std::to_string(dropped - role_changes_dropped_logged_) +
                                            " role changes were not logged (too many at once)");
    role_changes_dropped_logged_ = dropped;
  }
}

}  // namespace ticketd::cluster
