// The replicated ticket log: drives raft::Node on shard 0's loop. Proposals are Allocate
// entries summing every TICKET that arrived while the previous entry was in flight; ranges
// come from the applied state, in log order, and a request is answered only by the entry it
// proposed (same index AND term). The WAL is the Raft log; hard state and snapshots live
// beside it. The peer transport runs on the same loop.
//
// One idea per file: startup.cpp (load, bootstrap, join, attach), raft_ticket_log.cpp (the
// loop turn, proposals and answers, shutdown), log_pipeline.cpp (the Ready pipeline and the
// WAL writes), snapshots.cpp, peers.cpp (links, hellos, member addresses, the published
// role), admin.cpp (RAFT.* and INFO raft).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "../server/node.h"
#include "allocate_batch.h"
#include "join_client.h"
#include "peer_transport.h"
#include "server_context.h"
#include "snapshot_writer.h"
#include "ticketd/driver/ready_pipeline.h"
#include "ticketd/io/loop.h"
#include "ticketd/raft/codec.h"
#include "ticketd/raft/node.h"
#include "ticketd/resp/writer.h"
#include "ticketd/storage/hard_state_file.h"
#include "ticketd/storage/wal.h"
#include "ticketd/tickets/state_machine.h"
#include "ticketd/tickets/window.h"

namespace ticketd::cluster {

using server::AdminRequest;
using server::BatchRequest;
using server::BatchResult;
using server::BatchStatus;
using server::ClusterRole;
using server::Durability;
using server::LogStats;
using server::NamedBatch;
using server::Node;
using server::ServerOptions;
using server::TicketLog;
using server::now_ms;
using server::now_us;

constexpr int64_t kTickNs = 10'000'000;         // one raft tick = 10 ms
constexpr int kElectionTicks = 25;              // election timeout 250..500 ms
constexpr int kHeartbeatTicks = 5;              // heartbeat every 50 ms
// --lease: 200 ms from the tick before a confirmed round, against the followers' vote guard
// of at least (kElectionTicks - 1) ticks = 240 ms after they heard it (timers never fire early).
constexpr int kLeaseTicks = 20;
// Window mode's quorum rounds out at a time: one. Measured against unbounded (a round per loop
// turn, pipelined) on a 3-node window cluster, redis-benchmark c50 P1 interleaved rounds:
// +10% ticket-bench, +20% redis-benchmark (docs/BENCHMARKS.md): every round wakes every voter.
constexpr uint64_t kWindowRoundsInFlight = 1;
constexpr uint64_t kProposalTimeoutMs = 5000;   // a proposal never committed fails after this
// While a member knows no leader (an election), its TICKETs wait this long for one before
// they fail -CLUSTERDOWN: twice the longest election timeout, so a failover or a transfer
// costs cluster clients a pause, not an error (most hand -CLUSTERDOWN to the application).
constexpr uint64_t kElectionHoldMs = 1000;

constexpr int64_t kBackgroundSyncNs = 200'000'000;
constexpr uint16_t kPeerBufGroup = 2;
// The exit status after a WAL write/sync failure (a supervisor restarts; recovery decides).
constexpr int kExitWalFailed = 3;

// tools/latency-trace's message fields: type << 8 | peer id, and the last index it carries.
[[maybe_unused]] inline uint64_t trace_peer(const raft::Message& m, uint64_t peer) {
  return static_cast<uint64_t>(m.type) << 8 | peer;
}
[[maybe_unused]] inline uint64_t trace_index(const raft::Message& m) {
  return m.entries.empty() ? m.index : m.entries.back().index;
}

// It is the driver's Storage (the WAL, the hard state and snapshot files) and Application
// (the peer transport, the ticket state machine and its waiting clients).
class RaftTicketLog final : public TicketLog, private driver::Storage, private driver::Application {
 public:
  explicit RaftTicketLog(Node& node)
      : node_(node), durability_(node.opts().durability), tickets_(tickets_options()) {}
  ~RaftTicketLog() override {
    if (join_) join_->stop();
  }

  bool open(std::string* err) override;
  void attach(io::Loop* loop) override;
  void submit(uint32_t shard, const BatchRequest& b) override;
  void on_turn_end() override;
  bool drained() const override;
  void close() override;
  void admin(AdminRequest&& req) override;
  void begin_shutdown() override;

 private:
  struct Waiter {
    uint32_t shard;
    uint64_t n;          // tickets of the default sequence
    NamedBatch* named;   // the named part (the shard's; handed back with the result), or null
    uint64_t seq;        // position in the shard's submission order
    uint64_t split = 0;  // the dense part of a batch with window parts (splits_), or 0
  };
  // A shard matches results to its requests by order, so each shard's results leave in
  // the order its batches came in, even when a later batch fails before an earlier one
  // commits (a proposal in flight while leadership is lost).
  struct ShardOutcomes {
    uint64_t next_seq = 0;
    uint64_t base_seq = 0;  // seq of results.front()
    std::deque<BatchResult> results;
    std::deque<bool> resolved;
  };
  // One Allocate entry in flight, laid out as EntryStaging staged it: item 0 is `default`
  // if default_total > 0, then `named_items` named sequences (NamedBatch::Slot::item).
  struct Proposal {
    uint64_t index;
    uint64_t term;
    uint64_t total;          // every ticket in it, all sequences
    uint64_t default_total;  // of which the default sequence's
    size_t named_items;
    uint64_t created_ms;
    std::vector<Waiter> waiters;
    uint64_t created_ns = 0;  // /metrics' commit latency ends when it is applied
  };
  // An admin command answered once the entry it proposed is applied (same index and term):
  // with ok_reply, or (a sequence command) from how its command applied.
  struct AdminWaiter {
    uint64_t index;
    uint64_t term;
    AdminRequest req;
    std::string ok_reply;
    uint64_t created_ms;
    uint64_t confirm_id = 0;  // RAFT.ADDVOTER: answered once that node answers (member_contact.cpp)
    std::optional<tickets::Command> command = std::nullopt;  // a sequence command's, see apply
  };
  // A node added by RAFT.ADDVOTER whose entry committed: +OK once it answers us, else -ERR and
  // it is removed again (it founded a cluster of its own, or nothing answers at its address).
  struct AwaitedMember {
    AdminRequest req;
    uint64_t id;
    std::string ok_reply;
    uint64_t deadline_ms;
  };
  // storage
  bool check_own_addresses(std::string* err);
  bool load_state(raft::InitialState* st, bool* fresh, std::string* err);
  // Writes st's entries after index `after` to the WAL, synced, then its hard state.
  bool persist_initial(const raft::InitialState& st, uint64_t after, std::string* err);
  // --force-new-cluster: rewrites *st (raft::force_new_cluster, with the --floor entries) and
  // persists what it added.
  bool force_new_cluster(raft::InitialState* st, std::string* err);
  bool write_hard_state(const raft::HardState& hs);  // term, vote, incarnation, cluster id
  void maybe_snapshot(bool force);
  void finish_snapshot();
  raft::Configuration configuration_at(uint64_t index) const;

  // driver::Storage (log_pipeline.cpp)
  bool save_hard_state(const raft::HardState& hs) override;
  bool idle() const override;
  bool may_install_snapshot() const override;
  bool install_snapshot(const raft::Snapshot& s) override;
  void truncate_from(uint64_t index) override;
  void append(const raft::Entry& e) override;
  uint64_t last_index() const override;
  uint64_t durable_index() const override;
  void start_write() override;
  // driver::Application
  void send(const raft::Message& m) override;
  void apply(const raft::Entry& e) override;
  void applied_batch() override;
  void read_done(const raft::ReadState& rs) override;  // sequence_reads.cpp

  // the Ready pipeline
  void pump();
  void note_storage_trouble(const std::string& what);
  struct WriteSlot;
  bool begin_wal_write();
  void on_write_done(WriteSlot* w, int32_t res);
  void finish_write(WriteSlot* w, int64_t res);
  void start_background_sync();
  bool may_start_write() const;
  void note_wal_stall();
  void hand_over_while_stalled();
  [[noreturn]] void stop_on_wal_failure(const std::string& what);

  // proposals and answers
  void propose_staged(bool full = false);  // full: the entry is full; propose even while writing
  void fail_staged(BatchStatus st);
  void fail_waiters(std::vector<Waiter>& ws, BatchStatus st);
  void hand_out(const Proposal& p, const tickets::ApplyResult& r);
  void resolve(const Waiter& w, const BatchResult& r);
  void deliver(uint32_t shard, const BatchResult& r);
  void expire_proposals();
  void fail_uncommitted_proposals();
  void publish();
  void sync_peers();
  void on_peer_hello(const PeerHello& h);
  void note_refusal(const raft::Message& m, const raft::StepResult& r);
  void note_removal();
  // leadership_log.cpp: one log line per leadership change, saying why (raft::RoleChange).
  void log_role_changes();
  // member_contact.cpp
  void await_contact(AdminWaiter&& w);
  void note_refused_by(uint64_t peer, std::string_view reason);
  void check_awaited_members();
  void update_member_addresses();

  // admin
  void reply(const AdminRequest& req, std::string bytes) { node_.reply_admin(req, std::move(bytes)); }
  void reply_error(const AdminRequest& req, std::string_view msg) {
    std::string out;
    resp::append_error(out, msg);
    reply(req, std::move(out));
  }
  bool redirect_if_follower(const AdminRequest& req);
  // confirm: answer only once the added node answered us (RAFT.ADDVOTER; see AwaitedMember).
  void admin_membership(AdminRequest&& req, raft::ConfChangeRequest cc, std::string ok,
                        bool confirm = false);
  void admin_join(AdminRequest&& req);
  void admin_addvoter(AdminRequest&& req);
  void add_member(AdminRequest&& req, uint64_t id, const ServerContext& ctx, std::string ok,
                  bool confirm);
  void admin_removeserver(AdminRequest&& req);
  std::string check_new_member(uint64_t id, const std::string& raft_addr,
                               const std::string& service_addr) const;
  std::string address_taken(uint64_t id, const std::string& raft_addr,
                            const std::string& service_addr) const;
  std::string stats_reply();
  std::string configuration_reply();
  std::string info_raft();
  std::string service_addr_of(uint64_t id) const;
  // TICKET.CREATE/DROP/FLOOR/LIST/INFO (sequences_admin.cpp)
  static bool is_sequence_command(std::string_view cmd);
  void admin_sequence(AdminRequest&& req);
  void propose_sequence_command(AdminRequest&& req, tickets::Command cmd);
  static std::string sequence_reply(const tickets::Command& cmd, const tickets::ApplyResult* r);
  void publish_sequence_stats();
  // TICKET.LAST (sequence_reads.cpp): a ReadIndex read, answered from the applied state when
  // the driver says it is done (confirmed, and its index applied).
  void admin_last(AdminRequest&& req);
  void expire_reads();
  struct PendingRead {
    AdminRequest req;
    std::string name;
    uint64_t created_ms;
  };
  std::map<uint64_t, PendingRead> reads_;  // by ctx (read_index's id), oldest first
  uint64_t next_read_ctx_ = 1;

  // CLUSTER and ROLE (cluster_commands.cpp): this cluster as ONE Redis Cluster shard owning
  // every slot, its master the leader (or, while none is known, the last one known) and its
  // replicas the followers, each at its client address; and INFO replication's figures.
  struct ShardMember {
    uint64_t id = 0;
    std::string host;
    uint16_t port = 0;
    uint16_t bus_port = 0;  // its raft port, shown where Redis shows the cluster bus port
    bool master = false;
    bool myself = false;
    bool link_up = false;   // myself, or our link to it is up
    uint64_t offset = 0;    // what we know of its log: our last index, a follower's match
  };
  static bool is_cluster_command(std::string_view cmd);
  void admin_cluster(AdminRequest&& req);
  std::vector<ShardMember> shard_members() const;
  std::string cluster_node_id(uint64_t id) const;  // the stable 40-hex node id CLUSTER NODES shows
  std::string cluster_nodes_text(const std::vector<ShardMember>& members) const;
  std::string cluster_info_text(const std::vector<ShardMember>& members) const;
  server::ReplicationView replication_view() const;
  void publish_replication();  // and the Raft view of /metrics (metrics_view.cpp)
  server::RaftMetricsView raft_metrics_view() const;
  uint64_t tickets_since_write_ = 0;  // proposed since the last WAL write began (/metrics)
  uint64_t known_leader_ = raft::kNoId;  // the last leader this node knew of (peers.cpp)

  void on_tick();

  // Window mode (window_serving.cpp, issue 15): the window-sequence parts of a batch go to
  // window_ (tickets/window.h: which ticket, and when it may be released); the dense parts,
  // if any, to the Allocate staging as a batch of their own; the shard gets one result once
  // both answered.
  struct Split {
    Waiter w;                 // the shard's batch
    BatchResult result;       // being filled in
    int parts_left = 0;
    std::unique_ptr<NamedBatch> dense_named;  // the dense named slots (a copy), or null
    std::vector<size_t> dense_slots;          // dense_named slot k is w.named slot dense_slots[k]
    std::vector<size_t> window_slots;         // window item k: w.named slot, or kDefaultSlot
    bool dense_default = false;               // the default part went the dense way
  };
  static constexpr size_t kDefaultSlot = SIZE_MAX;
  static constexpr uint64_t kWindowRoundCtx = uint64_t{1} << 62;  // read ctxs of window rounds
  bool split_submit(uint32_t shard, const BatchRequest& b);  // false: no window part
  void stage(const Waiter& w);
  void merge_dense(const Waiter& w, const BatchResult& r);
  void part_done(std::unordered_map<uint64_t, Split>::iterator it);  // both parts: to the shard
  void window_turn();
  void window_released();
  bool is_window(std::string_view name) const {
    const tickets::Sequence* s = tickets_.find(name);
    return s != nullptr && s->mode == tickets::Mode::kWindow;
  }
  tickets::WindowServer window_;
  std::unordered_map<uint64_t, Split> splits_;
  uint64_t next_split_ = 1;

  Node& node_;
  Durability durability_;
  io::Loop* loop_ = nullptr;
  std::unique_ptr<raft::Node> raft_;
  std::unique_ptr<storage::Wal> wal_;
  std::unique_ptr<storage::HardStateFile> hs_file_;
  std::string snapshot_path_;
  std::unique_ptr<PeerTransport> transport_;
  std::unique_ptr<JoinClient> join_;
  bool joined_ = false;

  uint64_t incarnation_ = 0;
  uint64_t cluster_id_ = 0;
  std::string raft_addr_;
  std::string service_addr_;
  raft::HardState saved_hs_;

  // --default-mode / --default-window: the default sequence's mode where the state starts.
  tickets::Options tickets_options() const {
    tickets::Options o;
    o.default_mode = node_.opts().default_window_mode ? tickets::Mode::kWindow : tickets::Mode::kDense;
    o.default_window = node_.opts().default_window;
    return o;
  }
  tickets::StateMachine tickets_;  // the replicated state: sequences and their counters
  uint64_t last_ticket() const { return tickets_.find(tickets::kDefaultSequence)->last; }
  uint64_t applied_index_ = 0;
  uint64_t snapshot_index_ = 0;
  SnapshotWriter snapshot_writer_;
  bool snapshot_saving_ = false;
  bool storage_trouble_ = false;
  uint64_t spare_retry_ms_ = 0;
  uint64_t snapshot_retry_ms_ = 0;  // after a failed save, not before this
  std::vector<AdminRequest> snapshot_waiters_;  // RAFT.SNAPSHOT callers
  std::string snapshot_data_;  // the state machine data of the snapshot being saved

  // Staged for the next Allocate entry: the waiters, and their sums (staged_total_: every
  // ticket in staged_, all sequences; 0 iff nothing is staged).
  std::vector<Waiter> staged_;
  uint64_t staged_total_ = 0;
  uint64_t staged_since_ms_ = 0;  // when the oldest staged batch came (the election hold)
  EntryStaging staging_;
  std::vector<ShardOutcomes> outcomes_;
  std::deque<Proposal> proposals_;
  std::vector<AdminWaiter> admin_waiters_;
  std::vector<AwaitedMember> awaited_members_;
  std::unordered_map<uint64_t, std::string> refused_by_;  // peer -> why it refused our link
  std::vector<uint64_t> undo_adds_;  // added nodes that never answered: removed when possible
  std::unique_ptr<driver::ReadyPipeline> pipeline_;  // after raft_: it holds a reference
  std::unordered_map<uint64_t, std::string> hello_service_addr_;  // learned from peers
  std::unordered_map<uint64_t, ServerContext> hello_seen_;  // members' own word on their addresses
  struct RefusalLog {
    uint64_t count = 0;
    uint64_t logged_ms = 0;
  };
  std::map<std::pair<uint64_t, uint8_t>, RefusalLog> refusal_log_;  // (peer, StepStatus)
  std::optional<raft::RemovalNotice> logged_removal_;
  uint64_t peers_config_index_ = UINT64_MAX;
  std::unordered_set<uint64_t> known_peers_;  // the configuration's other servers
  std::vector<uint64_t> departed_;  // left the configuration; links dropped once it commits
  uint64_t departed_at_ = 0;        // the configuration index that removed them

  // One slot per durable write in flight (up to --wal-writes-in-flight side by side; the WAL
  // decides which may start, see storage::Wal::can_begin_write). A slot's completions are
  // only rearmed once its write is over.
  struct WriteSlot {
    RaftTicketLog* self = nullptr;
    bool busy = false;
    storage::WalWriteOp op;
    uint64_t started_us = 0;
    io::Completion write_c, fsync_c;
  };
  std::array<WriteSlot, storage::kMaxWritesInFlight> slots_;
  size_t writes_in_flight_ = 0;
  bool writing() const { return writes_in_flight_ > 0; }
  bool syncing_ = false;
  bool wal_stalled_ = false;     // no new segment could be started (full disk); see note_wal_stall
  uint64_t low_flush_to_ = 0;    // durability low: the tick's write goes on up to this index
  storage::WalSyncOp sync_op_;
  io::Completion sync_c_, tick_c_;
  __kernel_timespec tick_ts_{};
  uint64_t ticks_ = 0;
  // --lease: when (now_us) the raft node made each of its recent ticks, by its tick number %
  // 64 (raft::Node::now_ticks()); lease_holds_now() measures the lease from there.
  std::array<uint64_t, 64> tick_at_us_{};
  bool lease_holds_now() const;
  void confirm_by_lease();  // counts it (INFO window_lease_confirms) and releases under it
  uint64_t sync_every_ticks_ = 20;

  bool shutting_down_ = false;
  bool closed_ = false;
  uint64_t shutdown_deadline_ms_ = 0;
  uint64_t leader_changes_ = 0;
  ClusterRole published_role_ = ClusterRole::kNoLeader;
  struct PublishKey {
    ClusterRole role = ClusterRole::kNoLeader;
    uint64_t leader = UINT64_MAX;
    uint64_t config_index = UINT64_MAX;
    size_t hellos = 0;
    bool operator==(const PublishKey&) const = default;
  };
  PublishKey published_key_;
  std::string published_addr_;
  uint64_t last_leader_ = raft::kNoId;
  // What the leadership log said last (leadership_log.cpp).
  raft::Role logged_role_ = raft::Role::kFollower;
  uint64_t logged_leader_ = raft::kNoId;
  uint64_t named_leader_ = raft::kNoId;  // the last leader known (for "was node N")
  std::string campaign_why_;  // why the current campaign started
  std::string drop_why_;      // why the last known leader was lost
  uint64_t role_changes_dropped_logged_ = 0;
};

}  // namespace ticketd::cluster
