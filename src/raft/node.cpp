#include "ticketd/raft/node.h"

#include <algorithm>

#include "ticketd/base/check.h"
#include "ticketd/raft/bugs.h"
#include "ticketd/raft/codec.h"

namespace ticketd::raft {

#ifdef TICKETD_RAFT_BUGS
namespace testing {
Bugs bugs;
}
#define TICKETD_BUG(name) (::ticketd::raft::testing::bugs.name)
#else
#define TICKETD_BUG(name) false
#endif

const char* to_string(Role r) {
  switch (r) {
    case Role::kFollower: return "follower";
    case Role::kPreCandidate: return "pre-candidate";
    case Role::kCandidate: return "candidate";
    case Role::kLeader: return "leader";
  }
  return "?";
}

const char* to_string(RoleChangeReason r) {
  switch (r) {
    case RoleChangeReason::kStart: return "start";
    case RoleChangeReason::kElectionTimeout: return "election timeout";
    case RoleChangeReason::kCampaignCalled: return "campaign at start";
    case RoleChangeReason::kPreVoteWon: return "pre-vote won";
    case RoleChangeReason::kTransfer: return "leadership transfer";
    case RoleChangeReason::kElectionWon: return "election won";
    case RoleChangeReason::kElectionLost: return "election lost";
    case RoleChangeReason::kHigherTerm: return "higher term seen";
    case RoleChangeReason::kLeaderHeard: return "leader heard";
    case RoleChangeReason::kLostQuorum: return "lost quorum";
    case RoleChangeReason::kRemoved: return "removed";
  }
  return "?";
}

const char* to_string(ProposeStatus s) {
  switch (s) {
    case ProposeStatus::kOk: return "ok";
    case ProposeStatus::kNotLeader: return "not leader";
    case ProposeStatus::kChangePending: return "configuration change pending";
    case ProposeStatus::kTransferInProgress: return "leadership transfer in progress";
    case ProposeStatus::kInvalid: return "invalid request";
  }
  return "?";
}

const char* to_string(ReadIndexStatus s) {
  switch (s) {
    case ReadIndexStatus::kOk: return "ok";
    case ReadIndexStatus::kNotLeader: return "not leader";
    case ReadIndexStatus::kTooManyReads: return "too many pending reads";
  }
  return "?";
}

const char* to_string(MessageType t) {
  switch (t) {
    case MessageType::kPreVote: return "PreVote";
    case MessageType::kPreVoteResp: return "PreVoteResp";
    case MessageType::kVote: return "Vote";
    case MessageType::kVoteResp: return "VoteResp";
    case MessageType::kAppend: return "Append";
    case MessageType::kAppendResp: return "AppendResp";
    case MessageType::kHeartbeat: return "Heartbeat";
    case MessageType::kHeartbeatResp: return "HeartbeatResp";
    case MessageType::kInstallSnapshot: return "InstallSnapshot";
    case MessageType::kTimeoutNow: return "TimeoutNow";
  }
  return "?";
}

const char* to_string(StepStatus s) {
  switch (s) {
    case StepStatus::kOk: return "ok";
    case StepStatus::kMalformed: return "malformed";
    case StepStatus::kOutsider: return "outsider";
    case StepStatus::kConflict: return "conflict";
  }
  return "?";
}

void Ready::clear() {
  hard_state.reset();
  snapshot.reset();
  truncate_from = 0;
  entries.clear();
  durable_mark.reset();
  messages.clear();
  persist_then_send.clear();
  committed_entries.clear();
  read_states.clear();
}

InitialState bootstrap(const Configuration& configuration) {
  InitialState st;
  st.hard_state = HardState{1, kNoId, 1};
  st.entries.push_back(Entry{1, 1, EntryType::kConfChange, encode_configuration(configuration)});
  return st;
}

InitialState bootstrap_single(uint64_t id, std::string context) {
  Configuration c;
  c.servers.push_back(Server{id, Suffrage::kVoter, std::move(context)});
  return bootstrap(c);
}

Configuration latest_configuration(const InitialState& st) {
  for (auto it = st.entries.rbegin(); it != st.entries.rend(); ++it) {
    Configuration c;
    if (it->type == EntryType::kConfChange && decode_configuration(it->data, &c)) return c;
  }
  return st.snapshot ? st.snapshot->configuration : Configuration{};
}

std::string force_new_cluster(InitialState* st, uint64_t id, std::string context,
                              const std::vector<std::string>& payloads) {
  if (id == kNoId) return "no node id";
  if (!st->snapshot && st->entries.empty()) {
    return "this node has no log and no snapshot: there is nothing to recover from";
  }
  if (latest_configuration(*st).find(id) == nullptr) {
    return "node " + std::to_string(id) + " is not in its own latest configuration (it was "
           "removed, or never joined): it cannot recover the cluster";
  }
  InitialState out = *st;
  uint64_t base = out.snapshot ? out.snapshot->index : 0;
  if (TICKETD_BUG(force_drops_uncommitted)) {
    uint64_t keep = std::max(out.hard_state.commit, base);
    std::erase_if(out.entries, [&](const Entry& e) { return e.index > keep; });
  }
  uint64_t last = out.entries.empty() ? base : out.entries.back().index;
  uint64_t last_term = out.entries.empty() ? (out.snapshot ? out.snapshot->term : 0)
                                           : out.entries.back().term;
  if (last > kMaxIndex - 1 - payloads.size()) return "the log is too long to extend";
  uint64_t term = std::max(out.hard_state.term, last_term) + 1;
  if (term > kMaxTerm) return "the stored term is too high";
  Configuration alone;
  alone.servers.push_back(Server{id, Suffrage::kVoter, std::move(context)});
  out.entries.push_back(Entry{term, ++last, EntryType::kConfChange, encode_configuration(alone)});
  for (const std::string& p : payloads) out.entries.push_back(Entry{term, ++last, EntryType::kNormal, p});
  out.hard_state = HardState{term, kNoId, last};
  *st = std::move(out);
  return "";
}

// ---------------------------------------------------------------------------------------------

Node::Node(const Config& cfg, InitialState st) : cfg_(cfg) {
  TICKETD_CHECK(cfg_.id != kNoId);
  TICKETD_CHECK(cfg_.election_ticks > cfg_.heartbeat_ticks && cfg_.heartbeat_ticks > 0);
  TICKETD_CHECK(cfg_.max_inflight_msgs > 0);
  TICKETD_CHECK(cfg_.max_pending_reads > 0);
  TICKETD_CHECK(cfg_.lease_ticks >= 0 && (cfg_.lease_ticks == 0 || cfg_.lease_ticks < cfg_.election_ticks - 1));
  rng_state_ = cfg_.seed * 0x9E3779B97F4A7C15ull + cfg_.id;
  snapshot_ = st.snapshot;
  log_ = RaftLog(st.snapshot, std::move(st.entries));
  term_ = st.hard_state.term;
  vote_ = st.hard_state.vote;
  if (log_.last_term() > term_) {
    // A torn write kept entries of a term whose hard state did not land. We must not go back
    // below a term our log already holds (we might reuse it for different entries); the vote
    // in that term is unknown, so we claim it for ourselves: refusing votes is always safe.
    term_ = log_.last_term();
    vote_ = cfg_.id;
  }
  // The commit hint may be ahead of a torn log tail; those entries are committed on a quorum
  // anyway, so forgetting that we knew is safe.
  commit_ = std::clamp(st.hard_state.commit, log_.snapshot_index(), log_.last_index());
  applied_ = log_.snapshot_index();
  last_hard_state_ = st.hard_state;
  // Everything we were started from is on disk already.
  stable_index_ = log_.last_index();
  unsent_from_ = log_.last_index() + 1;
  handed_last_ = log_.last_index();
  recompute_config();
  become_follower(term_, kNoId, RoleChangeReason::kStart);
}

uint64_t Node::next_random() {
  // splitmix64: tiny, deterministic on every platform.
  uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void Node::reset_randomized_timeout() {
  randomized_election_timeout_ =
      cfg_.election_ticks + static_cast<int>(next_random() % static_cast<uint64_t>(cfg_.election_ticks));
}

void Node::reset(uint64_t term) {
  if (term_ != term) {
    TICKETD_CHECK(term > term_);
    term_ = term;
    vote_ = kNoId;
  }
  leader_ = kNoId;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_timeout();
  votes_.clear();
  self_vote_pending_ = false;
  progress_.clear();
  transferee_ = kNoId;
  transfer_elapsed_ = 0;
  broadcast_pending_ = false;
  broadcast_commit_ = false;
  // Every role change passes here: reads queued while leading can no longer be confirmed,
  // and a lease is this term's and this role's only.
  fail_pending_reads();
  lease_ = Lease{};
  round_ticks_.clear();
}

void Node::note_role_change(RoleChange c) {
  if (role_changes_.size() >= kMaxRoleChanges) {
    role_changes_.pop_front();
    ++role_changes_dropped_;
  }
  role_changes_.push_back(c);
}

std::vector<RoleChange> Node::take_role_changes() {
  std::vector<RoleChange> out(role_changes_.begin(), role_changes_.end());
  role_changes_.clear();
  return out;
}

void Node::note_leader_heard(uint64_t from) {
  // A follower that learns its term's leader (after a higher-term vote request, say).
  if (leader_ == from) return;
  leader_ = from;
  note_role_change({role_, term_, leader_, RoleChangeReason::kLeaderHeard, from});
}

void Node::become_follower(uint64_t term, uint64_t leader, RoleChangeReason why, uint64_t peer) {
  reset(term);
  role_ = Role::kFollower;
  leader_ = leader;
  if (leader != kNoId) ticks_since_leader_ = 0;
  note_role_change({role_, term_, leader_, why, peer});
}

void Node::become_pre_candidate(RoleChangeReason why, uint64_t peer) {
  // A pre-candidate changes neither term nor vote: a partitioned node cannot inflate terms.
  votes_.clear();
  progress_.clear();
  role_ = Role::kPreCandidate;
  leader_ = kNoId;
  election_elapsed_ = 0;
  reset_randomized_timeout();
  note_role_change({role_, term_, leader_, why, peer});
}

void Node::become_candidate(RoleChangeReason why, uint64_t peer) {
  reset(term_ + 1);
  role_ = Role::kCandidate;
  vote_ = cfg_.id;
  note_role_change({role_, term_, leader_, why, peer, why == RoleChangeReason::kTransfer});
}

void Node::become_leader(uint64_t votes) {
  TICKETD_CHECK(role_ == Role::kCandidate);
  reset(term_);
  role_ = Role::kLeader;
  leader_ = cfg_.id;
  ticks_since_leader_ = 0;
  note_role_change({role_, term_, leader_, RoleChangeReason::kElectionWon, kNoId, false, votes,
                    config_.voter_count()});
  sync_progress_with_config();
  for (auto& [id, pr] : progress_) pr.recent_active = true;
  // The no-op commits this term, and with it every earlier entry (Raft §5.4.2, §8).
  append_local(EntryType::kNoop, std::string());
  broadcast_pending_ = true;
}

bool Node::promotable() const {
  if (config_.is_voter(cfg_.id)) return true;
  // A server whose own removal is appended but not committed (typically the old leader) must
  // still be able to campaign: otherwise, if it holds the longest log, the remaining voters can
  // never win its vote and the cluster deadlocks. It counts votes of the LATEST configuration
  // only (never its own), so election safety rests on the usual single-change quorum overlap.
  // The configuration the removal changed counts too, not only the committed one: this
  // node's commit index may lag (relearned after a restart), and the committed configuration
  // it knows may predate its promotion to voter (found by the simulator, seed 10183: the
  // self-removed leader crashed with the longest log, restarted with commit 723 < its
  // promotion, and the last other voter could never win its vote).
  return config_index_ > commit_ && (committed_configuration().is_voter(cfg_.id) ||
                                     config_at(config_index_ - 1).is_voter(cfg_.id));
}

void Node::campaign() {
  if (role_ == Role::kLeader || !promotable()) return;
  campaign_internal(cfg_.pre_vote, false, RoleChangeReason::kCampaignCalled);
}

void Node::campaign_internal(bool pre, bool transfer, RoleChangeReason why, uint64_t peer) {
  uint64_t vote_term;
  if (pre) {
    become_pre_candidate(why, peer);
    vote_term = term_ + 1;
  } else {
    become_candidate(why, peer);
    vote_term = term_;
  }
  if (pre) {
    votes_[cfg_.id] = true;
    int granted = 0, rejected = 0;
    tally_votes(&granted, &rejected);
    if (static_cast<size_t>(granted) >= quorum()) {
      campaign_internal(false, transfer, RoleChangeReason::kPreVoteWon);
      return;
    }
  } else {
    // Our own vote counts only once the new term and vote are durable (on_persisted): a lone
    // voter that led a term it then forgot in a crash would reuse that term for other entries
    // (and its appends to non-voters leave at once).
    self_vote_pending_ = true;
  }
  for (const Server& s : config_.servers) {
    if (s.id == cfg_.id || s.suffrage != Suffrage::kVoter) continue;
    Message m;
    m.type = pre ? MessageType::kPreVote : MessageType::kVote;
    m.to = s.id;
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.transfer = transfer;
    // A real vote request may leave only once our new term and self-vote are durable: a crash
    // before that could otherwise let us vote twice in this term.
    send(std::move(m), /*after_persist=*/!pre);
  }
}

int Node::tally_votes(int* granted, int* rejected) const {
  *granted = 0;
  *rejected = 0;
  for (const auto& [id, v] : votes_) {
    if (!config_.is_voter(id)) continue;
    (v ? *granted : *rejected) += 1;
  }
  return *granted;
}

void Node::send(Message m, bool after_persist) {
  m.from = cfg_.id;
  (after_persist ? msgs_after_persist_ : msgs_).push_back(std::move(m));
}

// ---------------------------------------------------------------------------------------------
// tick

void Node::tick() {
  ++now_ticks_;
  if (role_ != Role::kLeader) {
    ++ticks_since_leader_;
    ++election_elapsed_;
    if (promotable() && election_elapsed_ >= randomized_election_timeout_) {
      election_elapsed_ = 0;
      campaign_internal(cfg_.pre_vote, false, RoleChangeReason::kElectionTimeout);
    }
    return;
  }
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  for (auto& [id, pr] : progress_) ++pr.ticks_since_contact;
  if (transferee_ != kNoId && ++transfer_elapsed_ >= cfg_.election_ticks) {
    transferee_ = kNoId;  // the target did not take over in time: resume normal service
  }
  if (election_elapsed_ >= cfg_.election_ticks) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      size_t active = config_.is_voter(cfg_.id) ? 1 : 0;
      for (auto& [id, pr] : progress_) {
        if (pr.recent_active && config_.is_voter(id)) ++active;
        pr.recent_active = false;
      }
      if (active < quorum()) {
        // We cannot hear a quorum: someone else may be leading already; stop acting as leader.
        size_t voters = config_.voter_count();
        become_follower(term_, kNoId, RoleChangeReason::kLostQuorum);
        role_changes_.back().heard = active;
        role_changes_.back().voters = voters;
        return;
      }
    }
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
    heartbeat_elapsed_ = 0;
    broadcast_heartbeat(/*for_reads=*/false);
  }
  maybe_promote_nonvoters();
}

uint64_t Node::ticks_since_leader_contact() const {
  return role_ == Role::kLeader ? 0 : ticks_since_leader_;
}

// ---------------------------------------------------------------------------------------------
// step

// Checks what can be checked from the message alone: O(entries), allocation-free. Returns
// nullptr if the message is well-formed, else why not.
const char* Node::validate(const Message& m) const {
  if (static_cast<uint8_t>(m.type) >= kMessageTypeCount) return "unknown message type";
  if (m.term > kMaxTerm || m.log_term > kMaxTerm || m.hint_term > kMaxTerm) {
    return "term above the limit (kMaxTerm)";
  }
  if (m.index > kMaxIndex || m.commit > kMaxIndex || m.hint_index > kMaxIndex) {
    return "index above the limit (kMaxIndex)";
  }
  if (!m.entries.empty() && m.type != MessageType::kAppend) return "entries on a message type without entries";
  if (m.snapshot.has_value() != (m.type == MessageType::kInstallSnapshot)) {
    return m.snapshot ? "snapshot on a message type without one" : "InstallSnapshot without a snapshot";
  }
  switch (m.type) {
    case MessageType::kPreVote:
    case MessageType::kVote:
      if (m.log_term > m.term) return "candidate's last log term is above its term";
      break;
    case MessageType::kAppend: {
      if (m.log_term > m.term) return "previous entry's term is above the message term";
      uint64_t prev_term = m.log_term;
      for (size_t k = 0; k < m.entries.size(); ++k) {
        const Entry& e = m.entries[k];
        if (e.index != m.index + 1 + k) return "entries do not follow the previous index one by one";
        if (e.term < prev_term) return "entry terms decrease";
        if (e.term > m.term) return "entry term is above the message term";
        if (static_cast<uint8_t>(e.type) > static_cast<uint8_t>(EntryType::kConfChange)) {
          return "unknown entry type";
        }
        if (e.type == EntryType::kConfChange && !valid_encoded_configuration(e.data)) {
          return "configuration entry does not decode";
        }
        prev_term = e.term;
      }
      break;
    }
    case MessageType::kAppendResp:
      if (m.reject && (m.hint_term > m.term || m.hint_index > m.index)) return "rejection hint is past the rejected entry";
      break;
    case MessageType::kInstallSnapshot: {
      const Snapshot& sn = *m.snapshot;
      if (sn.index == 0 || sn.index > kMaxIndex) return "snapshot index is 0 or above the limit";
      if (sn.term == 0 || sn.term > m.term) return "snapshot term is 0 or above the message term";
      if (!valid_configuration(sn.configuration)) return "snapshot configuration is invalid";
      if (cfg_.valid_snapshot_data && !cfg_.valid_snapshot_data(sn.data)) {
        return "snapshot data is not a state this application can restore";
      }
      break;
    }
    default:
      break;
  }
  return nullptr;
}

StepResult Node::refuse(StepStatus s, const char* why) {
  ++refused_[static_cast<int>(s)];
  return StepResult{s, why};
}

bool Node::in_leader_lease() const {
  return leader_ != kNoId && election_elapsed_ < cfg_.election_ticks;
}

std::optional<RemovalNotice> Node::removal_notice() const {
  if (config_index_ != 0 && config_index_ <= commit_ && config_.find(cfg_.id) == nullptr) {
    return RemovalNotice{cfg_.id, config_index_};
  }
  // A peer's notice stands until our configuration changes (a re-added server hears of it).
  if (removal_notice_ && removal_notice_config_ == config_index_) return removal_notice_;
  return std::nullopt;
}

StepResult Node::step(const Message& m) {
  if (const char* why = validate(m)) return refuse(StepStatus::kMalformed, why);
  return step_validated(m);
}

StepResult Node::step_validated(const Message& m) {
  // Misrouted (e.g. meant for a previous server at this address) or self-addressed: ignore.
  if (m.from == cfg_.id || m.from == kNoId || m.to != cfg_.id) return {};
  bool vote_request = m.type == MessageType::kPreVote || m.type == MessageType::kVote;
  bool from_leader = m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
                     m.type == MessageType::kInstallSnapshot;
  // Only asked where it matters (votes, higher terms, TimeoutNow): the common same-term
  // append and its ack skip the configuration scan.
  auto outsider = [&] { return !config_.is_voter(m.from); };
  if ((m.type == MessageType::kPreVoteResp || m.type == MessageType::kVoteResp) && m.reject &&
      m.hint_index != 0 && config_.find(m.from) != nullptr) {
    // A server we count on says its committed configuration no longer holds us (whatever
    // its term: a removed server's term is beside the point).
    removal_notice_ = RemovalNotice{m.from, m.hint_index};
    removal_notice_config_ = config_index_;
  }
  if (vote_request && !is_up_to_date(m.index, m.log_term) && outsider()) {
    // A removed server (its log lacks its removal, or it would not campaign) or a stale one:
    // it may neither move our term nor win our vote. A server that is newer than our log
    // (added by entries we lack) always has a log at least as up to date as ours, so it
    // still gets here only when we would refuse the vote anyway.
    Message r;
    r.type = m.type == MessageType::kPreVote ? MessageType::kPreVoteResp : MessageType::kVoteResp;
    r.to = m.from;
    r.term = term_;
    r.reject = true;
    // Tell it it was removed if our latest configuration is committed and lacks it.
    if (config_index_ != 0 && config_index_ <= commit_ && config_.find(m.from) == nullptr) {
      r.hint_index = commit_;
    }
    send(std::move(r), false);
    return refuse(StepStatus::kOutsider, "vote request from outside our configuration with an older log");
  }
  if (m.term > term_) {
    if (from_leader && in_leader_lease() && outsider()) {
      // A newer leader we do not know yet (entries we lack added it) is believed once our
      // leader has been silent for an election timeout; a stray one cannot depose it.
      return refuse(StepStatus::kOutsider, "higher term from a leader outside our configuration while ours is live");
    }
    if (!from_leader && !vote_request && config_.find(m.from) == nullptr) {
      // Responses and TimeoutNow: we only ever send requests to members (a non-voter that
      // learnt a newer term still tells its leader, as before).
      return refuse(StepStatus::kOutsider, "higher-term response from outside our configuration");
    }
    if (vote_request) {
      // Leader lease: a server that heard from a live leader within the election timeout
      // ignores (pre)votes, so a rejoining node cannot disrupt a healthy cluster.
      // After a restart we may have acknowledged a leader's lease and forgotten it: the
      // guard covers the first election timeout (guard_votes_after_start).
      bool guard = cfg_.guard_votes_after_start && now_ticks_ < static_cast<uint64_t>(cfg_.election_ticks);
      bool in_lease = cfg_.check_quorum && (in_leader_lease() || guard);
      if (in_lease && !m.transfer) return {};
    }
    if (m.type == MessageType::kPreVote) {
      // Pre-votes never change our term.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // Granted pre-vote carries the future term; the term changes when we campaign.
    } else if (from_leader) {
      become_follower(m.term, m.from, RoleChangeReason::kHigherTerm, m.from);
    } else {
      become_follower(m.term, kNoId, RoleChangeReason::kHigherTerm, m.from);
      role_changes_.back().transfer = vote_request && m.transfer;
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat)) {
      // A stale leader (e.g. back from a partition) learns our term and steps down.
      Message r;
      r.type = MessageType::kAppendResp;
      r.to = m.from;
      r.term = term_;
      r.reject = true;
      // A term notice, not an answer about the stale leader's entries: no index (as etcd). The
      // sender may lead again in our term with a shorter log (its unsynced tail lost in a crash),
      // and an index past that log would read as a rejection it never asked for.
      r.index = 0;
      send(std::move(r), false);
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.term = term_;
      r.reject = true;
      send(std::move(r), false);
    }
    return {};
  } else if ((from_leader || m.type == MessageType::kTimeoutNow) && leader_ != kNoId &&
             leader_ != m.from) {
    // Election safety: one leader per term. (Our leader_ is set only by a message of this term.)
    return refuse(StepStatus::kConflict, "a second leader in our term");
  } else if (m.type == MessageType::kTimeoutNow && leader_ != m.from && outsider()) {
    return refuse(StepStatus::kOutsider, "TimeoutNow from outside our configuration");
  }

  if (vote_request) {
    handle_vote_request(m);
    return {};
  }
  switch (role_) {
    case Role::kLeader: return step_leader(m);
    case Role::kPreCandidate:
    case Role::kCandidate: step_candidate(m); break;
    case Role::kFollower: step_follower(m); break;
  }
  return {};
}

bool Node::is_up_to_date(uint64_t last_index, uint64_t last_term) const {
  return last_term > log_.last_term() ||
         (last_term == log_.last_term() && last_index >= log_.last_index());
}

void Node::handle_vote_request(const Message& m) {
  bool pre = m.type == MessageType::kPreVote;
  bool can_vote = vote_ == m.from || (vote_ == kNoId && leader_ == kNoId) || (pre && m.term > term_);
  bool up_to_date = is_up_to_date(m.index, m.log_term) || TICKETD_BUG(vote_without_log_check);
  Message r;
  r.type = pre ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  r.to = m.from;
  if (can_vote && up_to_date) {
    r.term = m.term;
    if (!pre) {
      vote_ = m.from;
      election_elapsed_ = 0;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  // A granted vote is a promise: it may leave only once the vote is durable.
  send(std::move(r), /*after_persist=*/!pre);
}

void Node::step_candidate(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      become_follower(m.term, m.from, RoleChangeReason::kLeaderHeard, m.from);
      handle_append(m);
      return;
    case MessageType::kHeartbeat:
      become_follower(m.term, m.from, RoleChangeReason::kLeaderHeard, m.from);
      handle_heartbeat(m);
      return;
    case MessageType::kInstallSnapshot:
      become_follower(m.term, m.from, RoleChangeReason::kLeaderHeard, m.from);
      handle_snapshot(m);
      return;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp: {
      bool pre_resp = m.type == MessageType::kPreVoteResp;
      if (pre_resp != (role_ == Role::kPreCandidate)) return;
      votes_.emplace(m.from, !m.reject);
      int granted = 0, rejected = 0;
      tally_votes(&granted, &rejected);
      if (static_cast<size_t>(granted) >= quorum()) {
        if (role_ == Role::kPreCandidate) {
          campaign_internal(false, false, RoleChangeReason::kPreVoteWon);
        } else {
          become_leader(static_cast<uint64_t>(granted));
        }
      } else if (static_cast<size_t>(rejected) >= quorum()) {
        become_follower(term_, kNoId, RoleChangeReason::kElectionLost);
      }
      return;
    }
    default:
      return;
  }
}

void Node::step_follower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      ticks_since_leader_ = 0;
      note_leader_heard(m.from);
      handle_append(m);
      return;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      ticks_since_leader_ = 0;
      note_leader_heard(m.from);
      handle_heartbeat(m);
      return;
    case MessageType::kInstallSnapshot:
      election_elapsed_ = 0;
      ticks_since_leader_ = 0;
      note_leader_heard(m.from);
      handle_snapshot(m);
      return;
    case MessageType::kTimeoutNow:
      // Leadership transfer: campaign at once, skipping pre-vote, and ask voters to ignore
      // their lease on the old leader (which is the one asking us).
      if (promotable()) campaign_internal(false, true, RoleChangeReason::kTransfer, m.from);
      return;
    default:
      return;
  }
}

void Node::handle_append(const Message& m) {
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  r.term = term_;
  if (m.index < commit_) {
    // Everything up to commit_ matches the leader already (committed entries never change).
    r.index = commit_;
    send(std::move(r), true);
    return;
  }
  if (log_.matches(m.index, m.log_term)) {
    uint64_t last_new = m.index + m.entries.size();
    size_t k = 0;
    for (; k < m.entries.size(); ++k) {
      const Entry& e = m.entries[k];
      if (e.index > log_.last_index()) break;
      if (*log_.term_at(e.index) != e.term) {
        // Conflict: our suffix from here was never committed (the leader has every committed
        // entry), so it may be replaced.
        TICKETD_CHECK(e.index > commit_);
        truncate_log(e.index);
        break;
      }
    }
    for (; k < m.entries.size(); ++k) {
      TICKETD_CHECK(m.entries[k].index == log_.last_index() + 1);
      log_.append(m.entries[k]);
      on_log_appended(m.entries[k]);
    }
    set_commit(std::min(m.commit, last_new));
    r.index = last_new;
    // An acknowledgement promises the entries are durable: it waits for this Ready's writes.
    send(std::move(r), !TICKETD_BUG(ack_before_persist));
    return;
  }
  // Rejection with a fast-backtracking hint: the last index whose term is <= the leader's
  // term at m.index; the leader skips a whole conflicting term per round trip.
  r.reject = true;
  r.index = m.index;
  r.hint_index = log_.find_conflict_by_term(std::min(m.index, log_.last_index()), m.log_term);
  r.hint_term = log_.term_at(r.hint_index).value_or(0);
  send(std::move(r), true);
}

void Node::handle_heartbeat(const Message& m) {
  // m.commit <= what the leader knows we match in this term, so it is safe to adopt.
  set_commit(std::min(m.commit, log_.last_index()));
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.term = term_;
  r.hint_index = m.hint_index;  // the round (ReadIndex), echoed as is
  send(std::move(r), false);
}

void Node::handle_snapshot(const Message& m) {
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  r.term = term_;
  if (!m.snapshot) return;
  const Snapshot& s = *m.snapshot;
  if (s.index <= commit_) {
    r.index = commit_;
    send(std::move(r), true);
    return;
  }
  if (log_.matches(s.index, s.term)) {
    // Our log already holds the snapshot's prefix: just learn the commit.
    set_commit(s.index);
    r.index = s.index;
    send(std::move(r), true);
    return;
  }
  log_.reset_to(s.index, s.term);
  snapshot_ = s;
  snapshot_unsent_ = true;
  commit_ = s.index;
  applied_ = s.index;  // the application restores the snapshot before applying anything else
  unsent_from_ = s.index + 1;
  handed_last_ = s.index;
  stable_index_ = 0;  // the snapshot write discards every stored entry
  recompute_config();
  r.index = s.index;
  send(std::move(r), true);
}

StepResult Node::step_leader(const Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return {};
  PeerProgress& pr = it->second;
  if (m.type == MessageType::kAppendResp && m.index > log_.last_index()) {
    // A rejection past our log is a term notice an older peer sent in answer to one of our
    // appends from an earlier term (before a crash cut our unsynced tail): stale, ignored. An
    // acceptance is not: we never sent an append past our log in this term (and a leader's log
    // never shrinks while it leads).
    if (m.reject) return {};
    return refuse(StepStatus::kConflict, "append response for entries past our log");
  }
  if (m.type == MessageType::kHeartbeatResp && m.hint_index > read_round_) {
    // Rounds are numbered by us and never reused (not even across terms).
    return refuse(StepStatus::kConflict, "heartbeat response for a round we never started");
  }
  pr.recent_active = true;
  pr.ticks_since_contact = 0;
  switch (m.type) {
    case MessageType::kAppendResp:
      handle_append_resp(m, pr);
      return {};
    case MessageType::kHeartbeatResp:
      // Echoing round k answers every round <= k (each was sent before k, in this term).
      if (m.hint_index > pr.read_round) {
        pr.read_round = m.hint_index;
        release_confirmed_reads();
        extend_lease();
      }
      if (m.hint_index & 1) return {};  // a round started for reads: it confirms reads only
      if (pr.state == ProgressState::kReplicate && pr.inflight.size() >= static_cast<size_t>(cfg_.max_inflight_msgs)) {
        pr.inflight.pop_front();  // an append was probably lost: let one more through
      }
      if (pr.state == ProgressState::kProbe) pr.probe_sent = false;
      // A lost InstallSnapshot would pause the peer forever: retry via probe (snapshots are
      // tiny here, and a duplicate install is acknowledged without effect).
      if (pr.state == ProgressState::kSnapshot) become_probe(pr);
      // Behind: an empty append at pr.next exposes a lost append (the follower rejects the
      // gap and we fall back to probing).
      if (pr.match < log_.last_index()) send_append(pr, true);
      return {};
    default:
      return {};
  }
}

void Node::become_probe(PeerProgress& pr) {
  if (pr.state == ProgressState::kSnapshot) {
    pr.next = std::max(pr.match + 1, pr.pending_snapshot + 1);
  } else {
    pr.next = pr.match + 1;
  }
  pr.state = ProgressState::kProbe;
  pr.probe_sent = false;
  pr.pending_snapshot = 0;
  pr.inflight.clear();
}

void Node::become_replicate(PeerProgress& pr) {
  pr.state = ProgressState::kReplicate;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.pending_snapshot = 0;
  pr.inflight.clear();
}

bool Node::is_paused(const PeerProgress& pr) const {
  switch (pr.state) {
    case ProgressState::kProbe: return pr.probe_sent;
    case ProgressState::kReplicate: return pr.inflight.size() >= static_cast<size_t>(cfg_.max_inflight_msgs);
    case ProgressState::kSnapshot: return true;
  }
  return true;
}

void Node::handle_append_resp(const Message& m, PeerProgress& pr) {
  if (m.reject) {
    uint64_t rejected = m.index;
    uint64_t hint = m.hint_index;
    if (m.hint_term > 0) hint = log_.find_conflict_by_term(m.hint_index, m.hint_term);
    bool decreased = false;
    if (pr.state == ProgressState::kReplicate) {
      if (rejected > pr.match) {
        become_probe(pr);
        pr.next = std::max(std::min(rejected, hint + 1), pr.match + 1);
        decreased = true;
      }
    } else if (pr.next - 1 == rejected) {  // otherwise a stale rejection of an older probe
      pr.next = std::max(std::min(rejected, hint + 1), pr.match + 1);
      pr.probe_sent = false;
      if (pr.state == ProgressState::kSnapshot) become_probe(pr);
      decreased = true;
    }
    if (decreased) send_append(pr, true);
    return;
  }
  bool was_paused = is_paused(pr);
  bool updated = false;
  if (m.index > pr.match) {
    pr.match = m.index;
    updated = true;
  }
  if (pr.next < m.index + 1) pr.next = m.index + 1;
  while (!pr.inflight.empty() && pr.inflight.front() <= m.index) pr.inflight.pop_front();
  if (pr.state == ProgressState::kProbe) {
    become_replicate(pr);
  } else if (pr.state == ProgressState::kSnapshot && pr.match >= pr.pending_snapshot) {
    become_replicate(pr);
  }
  if (updated && maybe_commit()) {
    broadcast_pending_ = true;
    broadcast_commit_ = true;
  }
  if (role_ != Role::kLeader) return;  // maybe_commit may have committed our own removal
  if (updated || was_paused) {
    while (send_append(pr, false)) {
    }
  }
  if (m.from == transferee_ && pr.match == log_.last_index()) send_timeout_now(m.from);
  maybe_promote_nonvoters();
}

bool Node::send_append(PeerProgress& pr, bool send_if_empty) {
  if (is_paused(pr)) return false;
  uint64_t prev = pr.next - 1;
  auto prev_term = log_.term_at(prev);
  if (!prev_term) {
    // The follower needs entries we compacted away: send the snapshot instead.
    if (!snapshot_) return false;
    Message m;
    m.type = MessageType::kInstallSnapshot;
    m.to = pr.id;
    m.term = term_;
    m.snapshot = *snapshot_;
    pr.state = ProgressState::kSnapshot;
    pr.pending_snapshot = snapshot_->index;
    pr.inflight.clear();
    send(std::move(m), false);
    return true;
  }
  Message m;
  m.type = MessageType::kAppend;
  m.to = pr.id;
  m.term = term_;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = commit_;
  uint64_t bytes = 0;
  for (uint64_t i = pr.next; i <= log_.last_index(); ++i) {
    const Entry& e = log_.at(i);
    if (!m.entries.empty() && bytes + e.data.size() > cfg_.max_msg_bytes) break;
    bytes += e.data.size() + 24;
    m.entries.push_back(e);
  }
  if (m.entries.empty() && !send_if_empty) return false;
  if (pr.state == ProgressState::kReplicate) {
    if (!m.entries.empty()) {
      // Pipelining: optimistically advance next; the window bounds how far we run ahead.
      pr.next = m.entries.back().index + 1;
      pr.inflight.push_back(pr.next - 1);
    }
  } else {
    pr.probe_sent = true;
  }
  send(std::move(m), false);
  return true;
}

void Node::send_heartbeat(const PeerProgress& pr) {
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = pr.id;
  m.term = term_;
  // Never tell a follower to commit past what we know it holds from us.
  m.commit = std::min(pr.match, commit_);
  m.hint_index = read_round_;
  send(std::move(m), false);
}

void Node::broadcast_heartbeat(bool for_reads) {
  // Every broadcast starts a round numbered above all before it: odd if started early for
  // waiting reads, even if periodic. Both confirm reads; only answers to periodic ones drive
  // the flow-control recovery in step_leader, so reads cannot loosen the in-flight window.
  read_round_ += (read_round_ & 1) != (for_reads ? 1u : 0u) ? 1 : 2;
  read_round_wanted_ = false;
  if (cfg_.lease_ticks > 0) {
    // Bounded: a round a quorum never answers is dropped once a later one is confirmed
    // (extend_lease), and the oldest go first if answers stop for long.
    if (round_ticks_.size() >= 64) round_ticks_.pop_front();
    round_ticks_.emplace_back(read_round_, now_ticks_);
  }
  for (auto& [id, pr] : progress_) {
    if (for_reads && !config_.is_voter(id)) continue;  // only voters' answers confirm reads
    send_heartbeat(pr);
  }
  release_confirmed_reads();  // a quorum of one (ourselves) confirms at once
  extend_lease();
}

void Node::extend_lease() {
  if (cfg_.lease_ticks == 0 || round_ticks_.empty()) return;
  uint64_t confirmed = confirmed_read_round();
  // The latest confirmed round started at tick t: no voter of that quorum votes for anyone
  // else before election_ticks of its ticks after it heard that round, which was after t.
  uint64_t started = 0;
  bool any = false;
  while (!round_ticks_.empty() && round_ticks_.front().first <= confirmed) {
    started = round_ticks_.front().second;
    any = true;
    round_ticks_.pop_front();
  }
  if (!any) return;
  uint64_t len = TICKETD_BUG(lease_outlives_election) ? 4 * static_cast<uint64_t>(cfg_.election_ticks)
                                                      : static_cast<uint64_t>(cfg_.lease_ticks);
  if (started >= lease_.from_tick) lease_ = Lease{started, len};
}

Lease Node::lease() const {
  if (role_ != Role::kLeader || cfg_.lease_ticks == 0 || transferee_ != kNoId) return Lease{};
  if (lease_.ticks == 0 || now_ticks_ >= lease_.from_tick + lease_.ticks) return Lease{};
  return lease_;
}

// ---------------------------------------------------------------------------------------------
// linearizable reads (ReadIndex)

ReadIndexResult Node::read_index(uint64_t ctx) {
  ReadIndexResult r;
  r.leader_hint = leader_;
  if (role_ != Role::kLeader) {
    r.status = ReadIndexStatus::kNotLeader;
    return r;
  }
  if (pending_reads_.size() + read_states_.size() >= cfg_.max_pending_reads) {
    r.status = ReadIndexStatus::kTooManyReads;
    return r;
  }
  r.status = ReadIndexStatus::kOk;
  if (TICKETD_BUG(read_without_quorum)) {
    read_states_.push_back(ReadState{ctx, commit_, true});
    return r;
  }
  // Until this leader has committed an entry of its own term, its commit index may lag what an
  // earlier leader committed (and answered): the index is recorded at that commit instead
  // (maybe_commit), which is later than the read's arrival and so covers all it must.
  uint64_t index = log_.term_at(commit_) == term_ ? commit_ : 0;
  pending_reads_.push_back(PendingRead{ctx, index, read_round_});
  read_round_wanted_ = true;
  return r;
}

// The highest round that a quorum of voters of the latest configuration has answered in this
// term (we answer every round we started). Allocation-free: O(voters^2), voters <= kMaxServers.
uint64_t Node::confirmed_read_round() const {
  auto answered = [&](uint64_t id) -> uint64_t {
    if (id == cfg_.id) return read_round_;
    auto it = progress_.find(id);
    return it == progress_.end() ? 0 : it->second.read_round;
  };
  const size_t need = quorum();
  uint64_t best = 0;
  for (const Server& a : config_.servers) {
    if (a.suffrage != Suffrage::kVoter) continue;
    uint64_t k = answered(a.id);
    if (k <= best) continue;
    size_t n = 0;
    for (const Server& b : config_.servers) n += b.suffrage == Suffrage::kVoter && answered(b.id) >= k;
    if (n >= need) best = k;
  }
  return best;
}

void Node::release_confirmed_reads() {
  if (pending_reads_.empty()) return;
  const PendingRead& front = pending_reads_.front();
  if (front.index == 0 || front.after >= read_round_) return;  // nothing can be ready yet
  // A quorum answered a heartbeat of this term sent after the read arrived. No later term can
  // have had a leader before those answers (it needs a vote from that quorum, and a voter that
  // had moved on would not have answered us), so whatever was committed before the read arrived
  // was committed in our term or earlier: in our log, at or below the read's index.
  uint64_t confirmed = confirmed_read_round();
  while (!pending_reads_.empty()) {
    const PendingRead& r = pending_reads_.front();
    if (r.index == 0 || confirmed <= r.after) break;
    read_states_.push_back(ReadState{r.ctx, r.index, true});
    pending_reads_.pop_front();
  }
}

void Node::fail_pending_reads() {
  for (const PendingRead& r : pending_reads_) read_states_.push_back(ReadState{r.ctx, 0, false});
  pending_reads_.clear();
  read_round_wanted_ = false;
}

void Node::broadcast_append() {
  for (auto& [id, pr] : progress_) {
    bool sent = send_append(pr, broadcast_commit_);
    while (sent && pr.state == ProgressState::kReplicate && send_append(pr, false)) {
    }
  }
  broadcast_pending_ = false;
  broadcast_commit_ = false;
}

void Node::send_timeout_now(uint64_t to) {
  // The target campaigns at once, past its peers' lease check (m.transfer): our lease ends
  // here, for good (an aborted transfer confirms leadership by rounds again).
  lease_ = Lease{};
  round_ticks_.clear();
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  m.term = term_;
  send(std::move(m), false);
}

bool Node::maybe_commit() {
  if (role_ != Role::kLeader) return false;
  std::vector<uint64_t> matches;
  for (const Server& s : config_.servers) {
    if (s.suffrage != Suffrage::kVoter) continue;
    if (s.id == cfg_.id) {
      // The leader counts itself only for entries it has made durable (thesis §10.2.1).
      matches.push_back(stable_index_);
    } else {
      auto it = progress_.find(s.id);
      matches.push_back(it == progress_.end() ? 0 : it->second.match);
    }
  }
  if (matches.empty()) return false;
  std::sort(matches.begin(), matches.end(), std::greater<uint64_t>());
  uint64_t candidate = matches[quorum() - 1];
  if (candidate <= commit_) return false;
  // Raft §5.4.2: only an entry of the current term is committed by counting replicas.
  if (log_.term_at(candidate) != term_ && !TICKETD_BUG(commit_old_term_by_counting)) return false;
  set_commit(candidate);
  if (!pending_reads_.empty() && pending_reads_.front().index == 0 && log_.term_at(commit_) == term_) {
    // Our term's first commit: reads that arrived before it get its index (they are at the front).
    for (PendingRead& r : pending_reads_) {
      if (r.index != 0) break;
      r.index = commit_;
    }
    release_confirmed_reads();
  }
  if (!config_.find(cfg_.id) && commit_ >= config_index_) {
    // Our own removal is committed: tell the followers, hand over to an up-to-date voter, and
    // step down (we are no longer part of the cluster).
    broadcast_commit_ = true;
    broadcast_append();
    for (auto& [id, pr] : progress_) {
      if (config_.is_voter(id) && pr.match == log_.last_index()) {
        send_timeout_now(id);
        break;
      }
    }
    become_follower(term_, kNoId, RoleChangeReason::kRemoved);
  }
  return true;
}

void Node::set_commit(uint64_t commit) {
  if (commit > commit_) {
    TICKETD_CHECK(commit <= log_.last_index());
    commit_ = commit;
  }
}

// ---------------------------------------------------------------------------------------------
// proposals and configuration

void Node::append_local(EntryType type, std::string data) {
  Entry e{term_, log_.last_index() + 1, type, std::move(data)};
  log_.append(e);
  on_log_appended(log_.at(e.index));
  broadcast_pending_ = true;
}

ProposeResult Node::propose(std::string data) {
  ProposeResult r;
  r.leader_hint = leader_;
  if (role_ != Role::kLeader) {
    r.status = ProposeStatus::kNotLeader;
    return r;
  }
  if (transferee_ != kNoId) {
    r.status = ProposeStatus::kTransferInProgress;
    return r;
  }
  append_local(EntryType::kNormal, std::move(data));
  r.status = ProposeStatus::kOk;
  r.index = log_.last_index();
  r.term = term_;
  return r;
}

bool Node::propose_configuration(Configuration next) {
  append_local(EntryType::kConfChange, encode_configuration(next));
  return true;
}

ProposeResult Node::propose_conf_change(const ConfChangeRequest& req) {
  ProposeResult r;
  r.leader_hint = leader_;
  if (role_ != Role::kLeader) {
    r.status = ProposeStatus::kNotLeader;
    return r;
  }
  if (transferee_ != kNoId) {
    r.status = ProposeStatus::kTransferInProgress;
    return r;
  }
  // One change at a time, and only after this leader committed an entry of its own term
  // (otherwise an uncommitted change of an earlier leader could combine with ours unsafely).
  if (conf_change_pending() || log_.term_at(commit_) != term_) {
    r.status = ProposeStatus::kChangePending;
    return r;
  }
  Configuration next = config_;
  const Server* existing = next.find(req.id);
  switch (req.kind) {
    case ConfChangeRequest::Kind::kAddNonVoter:
      if (existing || req.id == kNoId) {
        r.status = ProposeStatus::kInvalid;
        return r;
      }
      next.servers.push_back(Server{req.id, Suffrage::kNonVoter, req.context});
      break;
    case ConfChangeRequest::Kind::kPromote:
      if (!existing || existing->suffrage == Suffrage::kVoter) {
        r.status = ProposeStatus::kInvalid;
        return r;
      }
      for (Server& s : next.servers)
        if (s.id == req.id) s.suffrage = Suffrage::kVoter;
      break;
    case ConfChangeRequest::Kind::kRemove:
      if (!existing) {
        r.status = ProposeStatus::kInvalid;
        return r;
      }
      std::erase_if(next.servers, [&](const Server& s) { return s.id == req.id; });
      if (next.voter_count() == 0) {
        r.status = ProposeStatus::kInvalid;
        return r;
      }
      break;
    case ConfChangeRequest::Kind::kSetContext:
      if (!existing || existing->context == req.context) {
        r.status = ProposeStatus::kInvalid;
        return r;
      }
      for (Server& s : next.servers)
        if (s.id == req.id) s.context = req.context;
      break;
  }
  // Whatever is proposed must decode again when appended (here and on every follower):
  // refuse a configuration past the codec's limits instead of appending it.
  if (next.servers.size() > kMaxServers ||
      std::any_of(next.servers.begin(), next.servers.end(),
                  [](const Server& s) { return s.context.size() > kMaxContextBytes; })) {
    r.status = ProposeStatus::kInvalid;
    return r;
  }
  propose_configuration(std::move(next));
  r.status = ProposeStatus::kOk;
  r.index = log_.last_index();
  r.term = term_;
  return r;
}

void Node::maybe_promote_nonvoters() {
  if (role_ != Role::kLeader || transferee_ != kNoId || conf_change_pending() ||
      log_.term_at(commit_) != term_) {
    return;
  }
  for (auto& [id, pr] : progress_) {
    const Server* s = config_.find(id);
    if (!s || s->suffrage != Suffrage::kNonVoter) continue;
    // Catch-up in rounds (thesis §4.2.1): promote once the non-voter reached the leader's last
    // index as of the previous check, so it can take part in quorums without stalling commits.
    if (pr.catchup_target != 0 && pr.match >= pr.catchup_target) {
      ConfChangeRequest req;
      req.kind = ConfChangeRequest::Kind::kPromote;
      req.id = id;
      propose_conf_change(req);
      return;
    }
    if (pr.catchup_target == 0 || pr.match >= pr.catchup_target) pr.catchup_target = log_.last_index();
  }
}

void Node::on_log_appended(const Entry& e) {
  if (e.type != EntryType::kConfChange) return;
  Configuration c;
  TICKETD_CHECK(decode_configuration(e.data, &c));
  config_ = std::move(c);
  config_index_ = e.index;
  if (role_ == Role::kLeader) sync_progress_with_config();
}

void Node::sync_progress_with_config() {
  for (const Server& s : config_.servers) {
    if (s.id == cfg_.id || progress_.count(s.id)) continue;
    PeerProgress pr;
    pr.id = s.id;
    pr.next = log_.last_index() + 1;
    pr.recent_active = true;
    progress_.emplace(s.id, std::move(pr));
  }
  std::erase_if(progress_, [&](const auto& kv) { return config_.find(kv.first) == nullptr; });
  if (transferee_ != kNoId && !config_.is_voter(transferee_)) transferee_ = kNoId;
}

Configuration Node::config_at(uint64_t index) const {
  for (uint64_t i = std::min(index, log_.last_index()); i > log_.snapshot_index(); --i) {
    const Entry& e = log_.at(i);
    if (e.type == EntryType::kConfChange) {
      Configuration c;
      TICKETD_CHECK(decode_configuration(e.data, &c));
      return c;
    }
  }
  return snapshot_ ? snapshot_->configuration : Configuration{};
}

void Node::recompute_config() {
  config_index_ = snapshot_ ? snapshot_->index : 0;
  config_ = snapshot_ ? snapshot_->configuration : Configuration{};
  for (uint64_t i = log_.last_index(); i > log_.snapshot_index(); --i) {
    const Entry& e = log_.at(i);
    if (e.type == EntryType::kConfChange) {
      TICKETD_CHECK(decode_configuration(e.data, &config_));
      config_index_ = i;
      break;
    }
  }
  if (role_ == Role::kLeader) sync_progress_with_config();
}

Configuration Node::committed_configuration() const { return config_at(commit_); }

void Node::truncate_log(uint64_t from) {
  log_.truncate_from(from);
  if (unsent_from_ > from) unsent_from_ = from;
  // Entries from `from` on are gone from memory and will be dropped on disk: whatever we knew
  // about their durability is void.
  if (stable_index_ >= from) stable_index_ = from - 1;
  if (config_index_ >= from) recompute_config();
}

bool Node::transfer_leadership(uint64_t id) {
  if (role_ != Role::kLeader || id == cfg_.id || !config_.is_voter(id)) return false;
  auto it = progress_.find(id);
  if (it == progress_.end()) return false;
  transferee_ = id;
  transfer_elapsed_ = 0;
  if (it->second.match == log_.last_index()) {
    send_timeout_now(id);
  } else {
    send_append(it->second, true);
  }
  return true;
}

void Node::compact(uint64_t applied_index, std::string snapshot_data) {
  TICKETD_CHECK(applied_index <= applied_);
  if (applied_index <= log_.snapshot_index()) return;
  auto term = log_.term_at(applied_index);
  TICKETD_CHECK(term.has_value());
  Snapshot s;
  s.index = applied_index;
  s.term = *term;
  s.configuration = config_at(applied_index);
  s.data = std::move(snapshot_data);
  log_.compact_to(applied_index, *term);
  snapshot_ = std::move(s);
  // The application's snapshot is durable and covers every entry <= applied_index; pending
  // truncations only ever touch uncommitted entries, which lie above it.
  stable_index_ = std::max(stable_index_, applied_index);
}

void Node::on_persisted(uint64_t index, uint64_t term) {
  auto it = std::find_if(pending_writes_.begin(), pending_writes_.end(),
                         [&](const PendingWrite& w) { return w.last == LogPosition{index, term}; });
  if (it == pending_writes_.end()) return;  // stale or unknown report
  bool self_vote_durable = false;
  for (auto w = pending_writes_.begin(); w != it + 1; ++w)
    self_vote_durable |= w->self_vote_term == term_ && w->self_vote_term != 0;
  pending_writes_.erase(pending_writes_.begin(), it + 1);
  if (self_vote_durable && role_ == Role::kCandidate && self_vote_pending_) {
    self_vote_pending_ = false;
    votes_[cfg_.id] = true;
    int granted = 0, rejected = 0;
    tally_votes(&granted, &rejected);
    if (static_cast<size_t>(granted) >= quorum()) become_leader(static_cast<uint64_t>(granted));
  }
  // A later write still in flight may truncate below `index` (the ABA case of an entry that was
  // overwritten and re-appended): until that write lands too, only the prefix below it counts.
  uint64_t durable = index;
  for (const PendingWrite& w : pending_writes_)
    if (w.truncate_from != 0) durable = std::min(durable, w.truncate_from - 1);
  // An in-memory truncation not yet handed out voids the entries above it the same way.
  if (unsent_from_ <= handed_last_) durable = std::min(durable, unsent_from_ - 1);
  durable = std::min(durable, log_.last_index());
  if (durable == index && index > log_.snapshot_index() && !log_.matches(index, term)) return;
  stable_index_ = std::max(stable_index_, durable);
  if (role_ == Role::kLeader && maybe_commit()) {
    broadcast_pending_ = true;
    broadcast_commit_ = true;
  }
}

// ---------------------------------------------------------------------------------------------
// Ready

bool Node::has_ready() const {
  if (!msgs_.empty() || !msgs_after_persist_.empty() || snapshot_unsent_) return true;
  if (unsent_from_ <= log_.last_index() || handed_last_ > log_.last_index()) return true;
  if (commit_ > applied_) return true;
  if (role_ == Role::kLeader && (broadcast_pending_ || read_round_wanted_)) return true;
  if (!read_states_.empty()) return true;
  return HardState{term_, vote_, commit_} != last_hard_state_;
}

Ready Node::ready() {
  Ready rd;
  ready(&rd);
  return rd;
}

void Node::ready(Ready* out) {
  out->clear();
  if (role_ == Role::kLeader && broadcast_pending_) broadcast_append();
  // Every read that arrived since the last round started joins this one (single voter: done).
  if (role_ == Role::kLeader && read_round_wanted_) broadcast_heartbeat(/*for_reads=*/true);
  HardState hs{term_, vote_, commit_};
  uint64_t self_vote_term = 0;
  if (hs != last_hard_state_) {
    last_hard_state_ = hs;
    if (role_ == Role::kCandidate && self_vote_pending_ && vote_ == cfg_.id) self_vote_term = term_;
    if (TICKETD_BUG(forget_to_persist_vote)) hs.vote = kNoId;
    out->hard_state = hs;
  }
  uint64_t truncate = 0;
  if (snapshot_unsent_) {
    out->snapshot = *snapshot_;
    snapshot_unsent_ = false;
    truncate = 1;  // installing a snapshot discards every stored entry
  } else if (unsent_from_ <= handed_last_) {
    truncate = unsent_from_;
    out->truncate_from = truncate;
  }
  for (uint64_t i = unsent_from_; i <= log_.last_index(); ++i) out->entries.push_back(log_.at(i));
  if (out->snapshot || out->hard_state || !out->entries.empty() || out->truncate_from != 0) {
    LogPosition mark{log_.last_index(), log_.last_term()};
    out->durable_mark = mark;
    pending_writes_.push_back(PendingWrite{mark, truncate, self_vote_term});
  }
  unsent_from_ = log_.last_index() + 1;
  handed_last_ = log_.last_index();
  for (uint64_t i = applied_ + 1; i <= commit_; ++i) out->committed_entries.push_back(log_.at(i));
  applied_ = commit_;
  out->messages.swap(msgs_);
  out->persist_then_send.swap(msgs_after_persist_);
  out->read_states.swap(read_states_);
  msgs_.clear();
  msgs_after_persist_.clear();
  read_states_.clear();
}

std::vector<PeerProgress> Node::progress() const {
  std::vector<PeerProgress> out;
  for (const auto& [id, pr] : progress_) out.push_back(pr);
  return out;
}

}  // namespace ticketd::raft
