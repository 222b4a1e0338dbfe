// raft::Node: the Raft consensus core as a pure, deterministic state machine (etcd-io/raft style).
// It promises Raft's safety given that the driver obeys the Ready contract below; it never
// touches a socket, a file, a thread or a clock: time is tick(), randomness a seeded generator.
//
// Usage (the driver owns disk, network and clock):
//
//   raft::Node node(cfg, state_from_disk);            // or raft::bootstrap_single(id, ctx)
//   every tick interval:        node.tick();
//   on a message from the wire: node.step(msg);
//   client wants a ticket:      auto r = node.propose(allocate_bytes); // remember r.index+r.term
//   client wants a read:        node.read_index(ctx);   // answered by a ReadState in a Ready
//   loop:
//     while (node.has_ready()) {
//       raft::Ready rd = node.ready();
//       send(rd.messages);                            // 1. may leave at once (leader appends)
//       if (rd.snapshot) disk.install(*rd.snapshot);  // 2. persist, in this order, as one batch:
//       if (rd.truncate_from) disk.truncate_from(rd.truncate_from);
//       disk.append(rd.entries);
//       if (rd.hard_state) disk.save(*rd.hard_state);
//       disk.sync();   // (may complete later; ready() may be called again meanwhile, see below)
//       -- when that batch is durable --
//       if (rd.durable_mark) node.on_persisted(rd.durable_mark->index, rd.durable_mark->term);
//       send(rd.persist_then_send);                   // 3. votes and acks, only once durable
//       app.apply(rd.committed_entries);              // 4. in order; reply to clients whose
//                                                     //    entry (index AND term) matches
//       for (auto& rs : rd.read_states)               // 5. reads: answer rs.ctx from the state
//         rs.ok ? answer_when_applied(rs) : fail(rs); //    once applied >= rs.index, or an error
//     }
//
// THE READY CONTRACT
//  * Readys are numbered by the order ready() returned them. The driver makes their writes
//    durable in that order (Ready k's writes never become durable before Ready k-1's), and may
//    call ready() again while earlier writes are still in flight (group commit, and the leader
//    writing its log in parallel with replication, Raft thesis §10.2.1).
//  * Writes of one Ready, in this order: snapshot (if set: store it and discard every stored log
//    entry), then "drop stored entries with index >= truncate_from" (if non-zero), then append
//    `entries` (contiguous, increasing), then hard_state LAST. A crash may tear the tail of this
//    batch; the core tolerates any prefix surviving. Why this order: hard_state.commit may
//    cover this Ready's entries, and a commit index that lands before the entries it names
//    (e.g. before a truncation replaced them) would apply the wrong entries after a restart.
//    The opposite hazard, entries of a term durable while the term is not, is handled by the
//    core: on restart it adopts its log's last term and votes for itself in it (refusing votes
//    is always safe), and a node never leads a term before that term is durable.
//    A driver that keeps term/vote in a separate file synced BEFORE the entries is also fine
//    if the commit it stores there is not this Ready's (store the commit of the last Ready
//    whose writes are all durable, or 0): commit is only a hint, learned again from the leader.
//  * After Ready k's writes (and so all earlier ones) are durable: call on_persisted with
//    durable_mark (if set; every mark must be reported, in order, or the node keeps waiting
//    for it and a lone voter never wins its election), then send persist_then_send. Never send persist_then_send earlier: a
//    vote or an append acknowledgement promises the state is on disk.
//  * `messages` may be sent immediately, in any order, or dropped (raft retries).
//  * committed_entries are committed on a quorum (on a quorum's DISKS: the leader counts itself
//    only for durable entries, followers ack only durable ones), so they may be applied as soon
//    as they are handed out, before this Ready's writes land. What matters is order: apply
//    every batch in Ready order, and if `snapshot` is set, first replace the state with
//    snapshot->data (state after snapshot->index). An early apply must therefore wait while an
//    earlier Ready's snapshot or committed entries are still held back. Simplest: persist,
//    send, apply. Every Normal entry is applied exactly once per
//    process lifetime; after a restart the node hands out again every committed entry after its
//    snapshot, so the application restarts from the snapshot.
//  * compact(i, data): call only after the application's snapshot at applied index i is durable.
//  * read_states: reads released by read_index (below). ok: answer the read from the applied
//    state once the applied index is >= index (index is never above the commit index handed
//    out in this or an earlier Ready, so applying this Ready's committed_entries suffices);
//    not ok: this node stopped leading before the read was confirmed, answer an error now.
//    They need no write and may be acted on at once, in any order relative to the writes.
//
// Linearizable reads (ReadIndex, Raft dissertation §6.4): read_index(ctx) records the commit
// index and queues the read; it is released only after a heartbeat round that STARTED after
// the read arrived has been answered by a quorum of voters in this term, which proves nobody
// else could have led (and committed) in a later term by then. Reads share rounds: every read
// waiting for a round joins the next one, started at the next ready() (or heartbeat tick);
// rounds pipeline (one may start while another is in flight); a response echoing round k
// confirms every round <= k. A leader that has not yet committed an entry of its own term
// (its commit index may lag what earlier leaders committed) QUEUES reads and records their
// index when that first commit happens. A cluster of one voter confirms at once. Every read
// ends in exactly one ReadState, except while the node keeps leading without hearing a quorum
// (then it stays queued; with check_quorum the node steps down within an election timeout).
// When the node stops leading (step down, term change, own removal) every queued read fails.
//
// Configuration: a node uses the LATEST configuration in its log (appended, not only committed),
// as the Raft dissertation prescribes for single-server changes. A server not in that
// configuration, or a non-voter, never campaigns; a node with an empty configuration (a --join
// node) waits to be added by the leader.
//
// Peer input: step() validates every message before it touches any state and refuses (returns
// a StepResult the driver logs, and counts) whatever no correct peer sends: entries that do not
// follow `index` one by one, entry terms that decrease or exceed the message term, a term above
// kMaxTerm, an undecodable configuration, a snapshot whose fields disagree, an acknowledgement
// of entries we never had, a second leader in our term. It never asserts on peer input.
// Outsiders (servers that are not voters in our latest configuration) are heard, since a newly
// added node hears from its leader before its log names either of them, but they may not move
// our term while we follow a live leader, nor by a vote request unless their log is at least as
// up to date as ours (then they may legitimately be a newer member), nor by a response from a
// server our configuration does not name at all (we only ever ask members).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ticketd/raft/raft_log.h"
#include "ticketd/raft/types.h"

namespace ticketd::raft {

struct Config {
  uint64_t id = kNoId;
  int election_ticks = 10;       // election timeout is random in [election, 2*election)
  int heartbeat_ticks = 2;       // leader heartbeat interval
  int max_inflight_msgs = 4;     // appends in flight per follower in replicate mode
  uint64_t max_msg_bytes = 64 * 1024;  // soft cap on entry bytes per append (>= 1 entry sent)
  bool pre_vote = true;
  bool check_quorum = true;
  uint64_t seed = 1;             // seeds the election-timeout generator
  // Optional: checks the application data of a snapshot a peer sends; false refuses the
  // InstallSnapshot as malformed (this follower stays behind rather than restore a state it
  // cannot read). Entry payloads get no such hook on purpose: a committed entry the
  // application cannot read must be skipped at apply time by every node alike, since
  // followers refusing it would stall the log behind it for ever.
  bool (*valid_snapshot_data)(std::string_view data) = nullptr;
  // Reads queued by read_index plus released ones not yet handed out in a Ready; past it
  // read_index answers kTooManyReads. 24 bytes each.
  size_t max_pending_reads = 4096;
  // Leader lease (issue 15's --lease; 0: none). A leader whose heartbeat round a quorum of
  // voters answered holds a lease for lease_ticks of its own ticks counted from the tick
  // BEFORE that round was sent (so from before the send). Followers ignore (pre)votes while
  // they heard from a leader within election_ticks (check_quorum), so no other leader can be
  // elected before the lease ends, provided lease_ticks * (fastest clock rate) <=
  // (election_ticks - 1) * (slowest clock rate): must be < election_ticks - 1 (checked).
  // Node::lease() reads it; lease_holds() turns it into real time for the caller.
  int lease_ticks = 0;
  // Ignore (pre)votes for the first election_ticks ticks after start, as if a leader had just
  // been heard: a follower that restarted forgot it acknowledged a lease. The server sets it
  // on every node (leases or not: a mixed cluster stays safe); unit tests leave it off.
  bool guard_votes_after_start = false;
};

// A leader's lease: it runs `ticks` tick lengths from the moment of tick number `from_tick`
// (the tick before the confirmed heartbeat round was sent). ticks == 0: none.
struct Lease {
  uint64_t from_tick = 0;
  uint64_t ticks = 0;
};

// Whether `lease` still holds at `now`, given `from_tick_at`: when the caller made tick number
// lease.from_tick (Node::now_ticks() after that tick()), on a monotonic clock, with ticks at
// least `tick_len` apart (all in that clock's unit). Measured on the clock, not by counting
// ticks: a process that was paused counted none while the time went on.
inline bool lease_holds(const Lease& lease, uint64_t from_tick_at, uint64_t now, uint64_t tick_len) {
  return lease.ticks > 0 && now >= from_tick_at && now - from_tick_at < lease.ticks * tick_len;
}

struct InitialState {
  HardState hard_state;
  std::optional<Snapshot> snapshot;
  std::vector<Entry> entries;  // contiguous, starting right after the snapshot (or at 1)
};

// A brand-new single-node cluster: self as the sole voter, carried by a committed ConfChange
// entry at index 1, term 1. Only a node with no state and no --join may use it.
InitialState bootstrap_single(uint64_t id, std::string context);
// Same for a fixed initial configuration (tests and the simulator start multi-node clusters
// this way; every node must get the same configuration).
InitialState bootstrap(const Configuration& configuration);

// Recovery from a lost majority (etcd's --force-new-cluster): rewrites the stored state of a
// survivor so it restarts as the only voter of its cluster. Everything it has is kept: its
// snapshot and its whole log, committed or not (for a counter, applying an entry the lost
// majority may never have committed only raises it; dropping one this node acknowledged
// could hand its tickets out again). After the last entry come, in a new term T (above every
// term it holds or voted in): a ConfChange naming `id` alone as a voter with `context`, then
// one Normal entry per `payloads` item (the application's own entries, e.g. ticket floors).
// hard_state = {T, no vote, commit = the last of them}: the node elects itself and commits the
// whole log behind its first entry of T (the commit hint need not survive). The caller
// persists `*st` (the new entries appended after its stored log, then the hard state) before
// it starts the node. Returns "" or why it refused (and leaves *st as it was): no stored
// state, or `id` not in its own latest configuration. A pure function: no files, no clocks.
std::string force_new_cluster(InitialState* st, uint64_t id, std::string context,
                              const std::vector<std::string>& payloads = {});
// The configuration in force after the last entry of `st` (its last ConfChange, else the
// snapshot's); empty if it has neither.
Configuration latest_configuration(const InitialState& st);

std::string encode_configuration(const Configuration& c);
bool decode_configuration(std::string_view data, Configuration* out);
// A configuration a peer may send: at most kMaxServers servers, ids non-zero and distinct.
// The string form checks encoded bytes without allocating (a ConfChange entry's data).
bool valid_configuration(const Configuration& c);
bool valid_encoded_configuration(std::string_view data);

struct LogPosition {
  uint64_t index = 0;
  uint64_t term = 0;
  bool operator==(const LogPosition&) const = default;
};

// The outcome of one read_index call (see "Linearizable reads" above).
struct ReadState {
  uint64_t ctx = 0;    // the driver's id for the request, as given to read_index
  uint64_t index = 0;  // ok: answer from the state once the applied index is >= index
  bool ok = false;     // false: leadership was lost before the read was confirmed: answer an error
  bool operator==(const ReadState&) const = default;
};

struct Ready {
  std::optional<HardState> hard_state;  // persist if set (term/vote changed, or commit moved)
  std::optional<Snapshot> snapshot;     // persist and install (a leader sent InstallSnapshot)
  uint64_t truncate_from = 0;           // if non-zero: drop stored entries >= it first
  std::vector<Entry> entries;           // append after the truncation
  std::optional<LogPosition> durable_mark;  // once durable: on_persisted(index, term)
                                            // (set whenever this Ready has anything to write)
  std::vector<Message> messages;            // may be sent at once
  std::vector<Message> persist_then_send;   // only after this Ready's writes are durable
  std::vector<Entry> committed_entries;     // apply in order (after the writes are durable)
  std::vector<ReadState> read_states;       // reads released (confirmed or failed), in arrival order

  bool empty() const {
    return !hard_state && !snapshot && entries.empty() && messages.empty() &&
           persist_then_send.empty() && committed_entries.empty() && read_states.empty();
  }
  void clear();
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* to_string(Role r);

// Why this node's role, term or known leader changed: for the operator's log (the driver
// takes them with Node::take_role_changes()). The core decides nothing by them.
enum class RoleChangeReason : uint8_t {
  kStart,            // constructed from its stored state: a follower, no leader known
  kElectionTimeout,  // heard no leader within its election timeout: campaigns (pre-vote first)
  kCampaignCalled,   // the driver called campaign() (a cluster of one at start)
  kPreVoteWon,       // a quorum would vote for it: the real election (a new term) starts
  kTransfer,         // TimeoutNow from the leader (`peer`): a leadership transfer, campaigns at once
  kElectionWon,      // a quorum voted for it (`heard` of `voters`)
  kElectionLost,     // a quorum refused its (pre-)vote
  kHigherTerm,       // a message of a higher term from `peer` (`transfer`: a transfer's vote request)
  kLeaderHeard,      // the leader of its term (`peer`) reached it
  kLostQuorum,       // CheckQuorum: as leader it heard from only `heard` of `voters` voters
                     // within an election timeout, so it stepped down
  kRemoved,          // as leader, its own removal committed: it stepped down
};
const char* to_string(RoleChangeReason r);

struct RoleChange {
  Role role = Role::kFollower;  // after the change
  uint64_t term = 0;            // after the change
  uint64_t leader = kNoId;      // after the change (kNoId: none known)
  RoleChangeReason reason = RoleChangeReason::kStart;
  uint64_t peer = kNoId;        // the node whose message caused it, if one did
  bool transfer = false;
  uint64_t heard = 0;           // kElectionWon: votes; kLostQuorum: voters heard from
  uint64_t voters = 0;
  bool operator==(const RoleChange&) const = default;
};

enum class ProposeStatus : uint8_t {
  kOk,
  kNotLeader,           // leader_hint says whom to ask (kNoId: unknown)
  kChangePending,       // a configuration change is not committed yet
  kTransferInProgress,  // leadership transfer running: proposals paused
  kInvalid,             // e.g. adding an existing server, removing an unknown one
};
const char* to_string(ProposeStatus s);

struct ProposeResult {
  ProposeStatus status = ProposeStatus::kNotLeader;
  uint64_t index = 0;  // with term, identifies the entry: answer the client only if the entry
  uint64_t term = 0;   // committed at `index` has this term
  uint64_t leader_hint = kNoId;
  bool ok() const { return status == ProposeStatus::kOk; }
};

enum class ReadIndexStatus : uint8_t {
  kOk,            // queued: exactly one ReadState with this ctx follows in a later Ready
  kNotLeader,     // leader_hint says whom to ask (kNoId: unknown)
  kTooManyReads,  // Config::max_pending_reads reads are waiting already: try later
};
const char* to_string(ReadIndexStatus s);

struct ReadIndexResult {
  ReadIndexStatus status = ReadIndexStatus::kNotLeader;
  uint64_t leader_hint = kNoId;
  bool ok() const { return status == ReadIndexStatus::kOk; }
};

struct ConfChangeRequest {
  // kSetContext replaces a member's opaque context (its addresses, say) and keeps its
  // suffrage: a configuration change like any other, so every node sees it in log order.
  enum class Kind : uint8_t { kAddNonVoter, kPromote, kRemove, kSetContext };
  Kind kind = Kind::kAddNonVoter;
  uint64_t id = kNoId;
  std::string context;  // for kAddNonVoter and kSetContext
};

// What step() did with a message. Anything but kOk means the message was refused before it
// touched any state (and is counted in Node::refused()); `why` is a static text for the log.
enum class StepStatus : uint8_t {
  kOk,         // handled (which includes ignoring a stale or misrouted message, as Raft does)
  kMalformed,  // fields that contradict each other or the protocol (a buggy or hostile peer)
  kOutsider,   // from a server outside our configuration, which may not move our term now
  kConflict,   // contradicts our state: a second leader in our term, acks beyond our log
};
inline constexpr int kStepStatusCount = 4;
const char* to_string(StepStatus s);

struct StepResult {
  StepStatus status = StepStatus::kOk;
  const char* why = "";
  bool ok() const { return status == StepStatus::kOk; }
};

// A peer said this node is not in its committed configuration (see kPreVoteResp), or our own
// committed configuration no longer holds us: we were removed.
struct RemovalNotice {
  uint64_t from = kNoId;    // who said so (our own id: our committed log says so)
  uint64_t at_index = 0;    // the commit index of that peer when it said so
  bool operator==(const RemovalNotice&) const = default;
};

enum class ProgressState : uint8_t { kProbe, kReplicate, kSnapshot };

// The leader's view of one peer (RAFT.STATS).
struct PeerProgress {
  uint64_t id = kNoId;
  uint64_t match = 0;
  uint64_t next = 1;
  ProgressState state = ProgressState::kProbe;
  uint64_t ticks_since_contact = 0;
  bool recent_active = false;  // heard from within the current check-quorum window
  bool probe_sent = false;     // probe mode: one append outstanding
  uint64_t pending_snapshot = 0;
  std::deque<uint64_t> inflight;  // last index of each append in flight (replicate mode)
  uint64_t catchup_target = 0;    // non-voter: promoted once match reaches this (then re-armed)
  uint64_t read_round = 0;        // highest heartbeat round it echoed in this term (ReadIndex)
};

class Node {
 public:
  Node(const Config& cfg, InitialState st);

  // ---- inputs
  void tick();
  // Validates m, then handles it; never asserts on what a peer sent (see "Peer input" above).
  StepResult step(const Message& m);
  ProposeResult propose(std::string data);
  ProposeResult propose_conf_change(const ConfChangeRequest& req);
  // Leader only: hands leadership to `id` (a voter) via TimeoutNow once it is caught up.
  // Aborted after an election timeout. Returns false if not leader or id is not a voter.
  bool transfer_leadership(uint64_t id);
  // The application durably snapshotted its state after applying `applied_index`.
  void compact(uint64_t applied_index, std::string snapshot_data);
  // Ready writes up to (index, term) are durable (see the contract above).
  void on_persisted(uint64_t index, uint64_t term);
  // Starts an election now (tests; also what TimeoutNow does, without the lease bypass).
  void campaign();
  // Leader only: a linearizable read, answered by a ReadState{ctx, ...} in a later Ready (see
  // "Linearizable reads" above). ctx is opaque to raft (the driver's request id). Allocates
  // nothing but its queue entry.
  ReadIndexResult read_index(uint64_t ctx);

  // ---- output
  bool has_ready() const;
  Ready ready();
  void ready(Ready* out);  // same, reusing out's capacity

  // ---- queries
  uint64_t id() const { return cfg_.id; }
  Role role() const { return role_; }
  uint64_t term() const { return term_; }
  uint64_t vote() const { return vote_; }
  uint64_t leader_id() const { return leader_; }
  uint64_t commit_index() const { return commit_; }
  uint64_t applied_index() const { return applied_; }
  uint64_t last_index() const { return log_.last_index(); }
  uint64_t last_term() const { return log_.last_term(); }
  uint64_t snapshot_index() const { return log_.snapshot_index(); }
  uint64_t snapshot_term() const { return log_.snapshot_term(); }
  uint64_t durable_index() const { return stable_index_; }
  std::optional<uint64_t> term_at(uint64_t index) const { return log_.term_at(index); }
  const RaftLog& log() const { return log_; }
  const Configuration& configuration() const { return config_; }   // latest in the log
  uint64_t configuration_index() const { return config_index_; }
  Configuration committed_configuration() const;
  bool conf_change_pending() const { return config_index_ > commit_; }
  uint64_t transfer_target() const { return transferee_; }
  // Ticks since this node last heard from a leader (0 on the leader itself).
  uint64_t ticks_since_leader_contact() const;
  // Leader only: one entry per other server in the latest configuration.
  std::vector<PeerProgress> progress() const;
  const Snapshot* snapshot() const { return snapshot_ ? &*snapshot_ : nullptr; }
  // Messages step() refused, by status (index: StepStatus; [kOk] stays 0).
  uint64_t refused(StepStatus s) const { return refused_[static_cast<int>(s)]; }
  // Reads queued and not yet released (the leader's; 0 on any other node).
  size_t pending_reads() const { return pending_reads_.size(); }
  uint64_t heartbeat_round() const { return read_round_; }  // latest round started
  // Leader with a lease (Config::lease_ticks): the lease of its latest confirmed round (none:
  // not leading, no round confirmed, a transfer under way (a TimeoutNow ends the lease for
  // good), or already past it by the tick count). Check it with lease_holds().
  Lease lease() const;
  uint64_t now_ticks() const { return now_ticks_; }  // tick() calls since construction
  // Set once we know we were removed: our committed configuration lacks us, or a peer sent a
  // removal notice. A report for the operator only (the node keeps obeying the protocol: a
  // removal notice from one peer is not proof, and a re-added server learns it from its log).
  std::optional<RemovalNotice> removal_notice() const;
  // Role, term and leader changes since the last call, oldest first (at most
  // kMaxRoleChanges kept: older ones are dropped and counted in role_changes_dropped()).
  std::vector<RoleChange> take_role_changes();
  uint64_t role_changes_dropped() const { return role_changes_dropped_; }
  static constexpr size_t kMaxRoleChanges = 64;

 private:
  struct PendingRead {
    uint64_t ctx;
    uint64_t index;  // commit index at arrival; 0 while the leader has not committed in its term
    uint64_t after;  // read_round_ at arrival: confirmed by a quorum echo of any round > after
  };
  struct PendingWrite {
    LogPosition last;          // durable_mark handed out with this write
    uint64_t truncate_from;    // 0 if the write truncates nothing
    uint64_t self_vote_term;   // non-zero: this write carries our vote for ourselves in that term
  };

  // roles (each records a RoleChange with the reason given)
  void become_follower(uint64_t term, uint64_t leader, RoleChangeReason why, uint64_t peer = kNoId);
  void become_pre_candidate(RoleChangeReason why, uint64_t peer);
  void become_candidate(RoleChangeReason why, uint64_t peer);
  void become_leader(uint64_t votes);
  void campaign_internal(bool pre, bool transfer, RoleChangeReason why, uint64_t peer = kNoId);
  void note_role_change(RoleChange c);
  void note_leader_heard(uint64_t from);
  void reset(uint64_t term);
  void reset_randomized_timeout();

  // message handling
  const char* validate(const Message& m) const;
  StepResult refuse(StepStatus s, const char* why);
  StepResult step_validated(const Message& m);
  bool in_leader_lease() const;
  StepResult step_leader(const Message& m);
  void step_candidate(const Message& m);
  void step_follower(const Message& m);
  void handle_vote_request(const Message& m);
  void handle_append(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  void handle_append_resp(const Message& m, PeerProgress& pr);
  int tally_votes(int* granted, int* rejected) const;

  // leader replication
  void broadcast_append();
  void broadcast_heartbeat(bool for_reads);
  bool send_append(PeerProgress& pr, bool send_if_empty);
  void send_heartbeat(const PeerProgress& pr);
  uint64_t confirmed_read_round() const;
  void release_confirmed_reads();
  void fail_pending_reads();
  void send_timeout_now(uint64_t to);
  bool maybe_commit();
  void append_local(EntryType type, std::string data);
  void maybe_promote_nonvoters();
  void sync_progress_with_config();
  void become_probe(PeerProgress& pr);
  void become_replicate(PeerProgress& pr);
  bool is_paused(const PeerProgress& pr) const;

  // log and configuration
  void set_commit(uint64_t commit);
  void truncate_log(uint64_t from);
  void recompute_config();
  Configuration config_at(uint64_t index) const;
  bool propose_configuration(Configuration next);
  void on_log_appended(const Entry& e);
  bool is_up_to_date(uint64_t last_index, uint64_t last_term) const;
  bool promotable() const;
  size_t quorum() const { return config_.voter_count() / 2 + 1; }
  void send(Message m, bool after_persist);
  uint64_t next_random();

  Config cfg_;
  RaftLog log_;
  std::optional<Snapshot> snapshot_;        // latest snapshot (own compaction or installed)
  bool snapshot_unsent_ = false;            // installed snapshot not yet handed out in a Ready
  Role role_ = Role::kFollower;
  uint64_t term_ = 0;
  uint64_t vote_ = kNoId;
  uint64_t leader_ = kNoId;
  uint64_t commit_ = 0;
  uint64_t applied_ = 0;         // last committed index handed out in a Ready
  HardState last_hard_state_;    // last HardState handed out (or loaded)

  Configuration config_;
  uint64_t config_index_ = 0;

  // durability tracking
  uint64_t unsent_from_ = 1;     // first log index not yet handed out in a Ready
  uint64_t handed_last_ = 0;     // last log index handed out in a Ready (before truncations)
  uint64_t stable_index_ = 0;    // entries <= this are durable (as far as this node knows)
  std::deque<PendingWrite> pending_writes_;

  // timers
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  uint64_t ticks_since_leader_ = 0;
  uint64_t rng_state_ = 0;

  // candidate
  std::map<uint64_t, bool> votes_;
  bool self_vote_pending_ = false;  // our own vote counts only once it is durable

  // leader
  std::map<uint64_t, PeerProgress> progress_;
  uint64_t transferee_ = kNoId;
  int transfer_elapsed_ = 0;

  bool broadcast_pending_ = false;  // leader: new entries or commit to replicate at ready()
  bool broadcast_commit_ = false;   // leader: commit advanced, send even empty appends

  // ReadIndex. read_round_ numbers heartbeat rounds across the node's life (never reset, so a
  // peer echoing a higher one contradicts us): odd rounds start early for waiting reads, even
  // ones are the periodic heartbeats, which confirm reads too (a lost odd round is retried).
  uint64_t read_round_ = 0;
  // Leader lease: the tick count (never reset), each round's tick when it was started (this
  // term, oldest first, rounds not yet confirmed), and the latest confirmed round's lease.
  uint64_t now_ticks_ = 0;
  std::deque<std::pair<uint64_t, uint64_t>> round_ticks_;
  Lease lease_;
  void extend_lease();
  bool read_round_wanted_ = false;  // a queued read waits for a round that has not started
  std::deque<PendingRead> pending_reads_;  // arrival order: `after` and `index` non-decreasing
  std::vector<ReadState> read_states_;     // released, for the next Ready

  std::vector<Message> msgs_;
  std::vector<Message> msgs_after_persist_;

  uint64_t refused_[kStepStatusCount] = {};
  std::optional<RemovalNotice> removal_notice_;  // from a peer (our own log is checked live)
  uint64_t removal_notice_config_ = 0;           // config_index_ when the notice came
  std::deque<RoleChange> role_changes_;          // for take_role_changes (bounded)
  uint64_t role_changes_dropped_ = 0;
};

}  // namespace ticketd::raft
