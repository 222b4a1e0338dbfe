// The replicated ticket log: drives raft::Node on shard 0's loop. Proposals are Allocate{n}
// entries summing every TICKET that arrived while the previous entry was in flight; ranges
// come from the applied state, in log order, and a request is answered only by the entry it
// proposed (same index AND term). The WAL is the Raft log; hard state and snapshots live
// beside it. The peer transport runs on the same loop.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <thread>

#include "node.h"
#include "peer_transport.h"
#include "trace.h"
#include "ticketd/base/check.h"
#include "ticketd/io/loop.h"
#include "ticketd/raft/codec.h"
#include "ticketd/raft/node.h"
#include "ticketd/resp/parser.h"
#include "ticketd/resp/reply_reader.h"
#include "ticketd/resp/writer.h"
#include "ticketd/storage/hard_state_file.h"
#include "ticketd/storage/snapshot_file.h"
#include "ticketd/storage/wal.h"
#include "ticketd/tickets/state_machine.h"

namespace ticketd::server {

namespace {

constexpr int64_t kTickNs = 10'000'000;         // one raft tick = 10 ms
constexpr int kElectionTicks = 25;              // election timeout 250..500 ms
constexpr int kHeartbeatTicks = 5;              // heartbeat every 50 ms
constexpr uint64_t kProposalTimeoutMs = 5000;   // a proposal never committed fails after this
constexpr int64_t kBackgroundSyncNs = 200'000'000;
constexpr uint16_t kPeerBufGroup = 2;
// The exit status after a WAL write/sync failure (a supervisor restarts; recovery decides).
constexpr int kExitWalFailed = 3;

void put_u64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }
void put_u32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
bool get_u64(std::string_view* s, uint64_t* v) {
  if (s->size() < 8) return false;
  std::memcpy(v, s->data(), 8);
  s->remove_prefix(8);
  return true;
}
bool get_u32(std::string_view* s, uint32_t* v) {
  if (s->size() < 4) return false;
  std::memcpy(v, s->data(), 4);
  s->remove_prefix(4);
  return true;
}

// tools/latency-trace's message fields: type << 8 | peer id, and the last index it carries.
[[maybe_unused]] uint64_t trace_peer(const raft::Message& m, uint64_t peer) {
  return static_cast<uint64_t>(m.type) << 8 | peer;
}
[[maybe_unused]] uint64_t trace_index(const raft::Message& m) {
  return m.entries.empty() ? m.index : m.entries.back().index;
}

// One Allocate entry for everything staged: today the default sequence only.
std::string allocate_payload(uint64_t n) {
  return tickets::encode(
      tickets::Command::allocate({{std::string(tickets::kDefaultSequence), n}}));
}

std::string hex(uint64_t v) {
  char buf[17];
  auto [p, ec] = std::to_chars(buf, buf + 16, v, 16);
  (void)ec;
  return std::string(buf, p);
}

uint64_t parse_hex(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v, 16);
  return v;
}

bool parse_u64(std::string_view s, uint64_t* v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && p == s.data() + s.size();
}

// A server address in a configuration: far below raft's per-server context limit.
constexpr size_t kMaxServerAddrBytes = 255;

// The opaque per-server context raft keeps in the configuration: our addresses and the
// incarnation id of the node's data directory.
struct ServerContext {
  std::string raft_addr;
  std::string service_addr;
  uint64_t incarnation = 0;
};

std::string encode_context(const ServerContext& c) {
  return "r=" + c.raft_addr + " s=" + c.service_addr + " i=" + hex(c.incarnation);
}

ServerContext decode_context(std::string_view s) {
  ServerContext c;
  while (!s.empty()) {
    size_t sp = s.find(' ');
    std::string_view kv = s.substr(0, sp);
    s = sp == std::string_view::npos ? std::string_view{} : s.substr(sp + 1);
    if (kv.size() < 2 || kv[1] != '=') continue;
    std::string_view v = kv.substr(2);
    if (kv[0] == 'r') c.raft_addr = v;
    if (kv[0] == 's') c.service_addr = v;
    if (kv[0] == 'i') c.incarnation = parse_hex(v);
  }
  return c;
}

// ":port" binds every interface, but peers and clients need an address to reach us.
std::string advertised(const std::string& addr) {
  std::string host;
  uint16_t port = 0;
  if (!io::parse_host_port(addr, &host, &port)) return addr;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  return host + ":" + std::to_string(port);
}

// An address a client or a peer gives us for a server: "host:port" with a real port and a
// host of printable characters without spaces (the context is space-separated), short
// enough that a configuration of kMaxServers always encodes. "" if fine, else why not.
std::string check_server_addr(std::string_view a, const char* what) {
  std::string host;
  uint16_t port = 0;
  if (a.empty()) return std::string("ERR empty ") + what;
  if (a.size() > kMaxServerAddrBytes) {
    return std::string("ERR ") + what + " longer than " + std::to_string(kMaxServerAddrBytes) +
           " bytes";
  }
  for (char ch : a) {
    if (ch <= ' ' || ch > '~') return std::string("ERR ") + what + " has a space or control character";
  }
  if (!io::parse_host_port(std::string(a), &host, &port) || host.empty()) {
    return std::string("ERR bad ") + what + " '" + std::string(a) + "' (want host:port, port 1-65535)";
  }
  return "";
}

// The snapshot file: raft's Snapshot {index, term, configuration, data = counter}.
std::string encode_snapshot(const raft::Snapshot& s) {
  std::string out;
  put_u64(&out, s.index);
  put_u64(&out, s.term);
  std::string conf = raft::encode_configuration(s.configuration);
  put_u32(&out, static_cast<uint32_t>(conf.size()));
  out += conf;
  put_u32(&out, static_cast<uint32_t>(s.data.size()));
  out += s.data;
  return out;
}

bool decode_snapshot(std::string_view in, raft::Snapshot* s) {
  uint32_t n = 0;
  if (!get_u64(&in, &s->index) || !get_u64(&in, &s->term) || !get_u32(&in, &n) || in.size() < n)
    return false;
  if (!raft::decode_configuration(in.substr(0, n), &s->configuration)) return false;
  in.remove_prefix(n);
  if (!get_u32(&in, &n) || in.size() != n) return false;
  s->data.assign(in);
  return true;
}

uint64_t random_u64() {
  uint64_t v = 0;
  while (v == 0) {
    if (::getrandom(&v, sizeof(v), 0) != sizeof(v)) v = static_cast<uint64_t>(now_us()) * 2654435761u;
  }
  return v;
}

// Joins an existing cluster through any member's client port: sends RAFT.JOIN and follows
// -MOVED to the leader, retrying with backoff until accepted or stopped. A plain thread
// with blocking sockets: it runs once, before the node has anything else to do.
class JoinClient {
 public:
  JoinClient(std::string target, std::string command, std::function<void(std::string_view)> log)
      : target_(std::move(target)), command_(std::move(command)), log_(std::move(log)) {}
  ~JoinClient() { stop(); }
  void start() { thread_ = std::thread([this] { run(); }); }
  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
  }
  // The cluster id from the accepted join, 0 until then.
  uint64_t cluster_id() const { return cluster_id_.load(); }

 private:
  void run();
  bool attempt(const std::string& addr, std::string* reply);

  std::string target_;
  std::string command_;
  std::function<void(std::string_view)> log_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> cluster_id_{0};
};

// Writes snapshot files off the loop thread: a save is temp + fsync + rename + fsync dir, and
// on a busy disk an fsync can take long enough to stall every client of shard 0. One save
// at a time; the loop learns of its end through done() on its next tick.
class SnapshotWriter {
 public:
  SnapshotWriter() : thread_([this] { run(); }) {}
  ~SnapshotWriter() {
    {
      std::lock_guard<std::mutex> g(mu_);
      quit_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }
  bool busy() const { return busy_.load(std::memory_order_acquire); }
  void save(std::string path, std::string bytes, uint64_t index) {
    {
      std::lock_guard<std::mutex> g(mu_);
      path_ = std::move(path);
      bytes_ = std::move(bytes);
      index_ = index;
      pending_ = true;
      busy_.store(true, std::memory_order_release);
    }
    cv_.notify_one();
  }
  // After busy() turned false: the index saved, and the save's result.
  uint64_t index() const { return done_index_; }
  const storage::Status& status() const { return done_status_; }

 private:
  void run() {
    std::unique_lock<std::mutex> lk(mu_);
    while (true) {
      cv_.wait(lk, [this] { return quit_ || pending_; });
      if (pending_) {
        pending_ = false;
        std::string path = path_, bytes = std::move(bytes_);
        uint64_t index = index_;
        lk.unlock();
        storage::Status st = storage::SnapshotFile::save(
            path, std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.data()),
                                             bytes.size()));
        lk.lock();
        done_index_ = index;
        done_status_ = st;
        busy_.store(false, std::memory_order_release);  // publishes done_* to the loop
        continue;
      }
      if (quit_) return;
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::string path_, bytes_;
  uint64_t index_ = 0;
  bool pending_ = false;
  bool quit_ = false;
  std::atomic<bool> busy_{false};
  uint64_t done_index_ = 0;
  storage::Status done_status_;
  std::thread thread_;
};

class RaftTicketLog final : public TicketLog {
 public:
  explicit RaftTicketLog(Node& node) : node_(node), durability_(node.opts().durability) {}
  ~RaftTicketLog() override {
    if (join_) join_->stop();
  }

  bool open(std::string* err) override;
  void attach(io::Loop* loop) override;
  void submit(uint32_t shard, uint64_t n) override {
    if (shard >= outcomes_.size()) outcomes_.resize(shard + 1);
    ShardOutcomes& o = outcomes_[shard];
    o.results.push_back(BatchResult{0, 0, BatchStatus::kOk});
    o.resolved.push_back(false);
    staged_.push_back(Waiter{shard, n, o.next_seq++});
    staged_total_ += n;
  }
  void on_turn_end() override;
  bool drained() const override;
  void close() override;
  void admin(AdminRequest&& req) override;
  void begin_shutdown() override;

 private:
  struct Waiter {
    uint32_t shard;
    uint64_t n;
    uint64_t seq;  // position in the shard's submission order
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
  struct Proposal {
    uint64_t index;
    uint64_t term;
    uint64_t total;
    uint64_t created_ms;
    std::vector<Waiter> waiters;
  };
  // An admin command answered once the entry it proposed is applied (same index and term).
  struct AdminWaiter {
    uint64_t index;
    uint64_t term;
    AdminRequest req;
    std::string ok_reply;
    uint64_t created_ms;
  };
  // A Ready being persisted; see the contract in raft/node.h. Items are staged into the WAL
  // in order and released (on_persisted, persist_then_send, apply) in order once durable.
  struct PendingReady {
    raft::Ready rd;
    bool staged = false;
    uint64_t need = 0;  // the WAL index that must be durable before release
  };

  // storage
  bool check_own_addresses(std::string* err);
  bool load_state(raft::InitialState* st, bool* fresh, std::string* err);
  bool persist_initial(const raft::InitialState& st, std::string* err);
  bool save_hard_state(const raft::HardState& hs);
  bool install_snapshot(const raft::Snapshot& s);
  void maybe_snapshot(bool force);
  void finish_snapshot();
  raft::Configuration configuration_at(uint64_t index) const;
  uint64_t durable_mark() const;

  // the Ready pipeline
  void pump();
  bool stage(PendingReady& p);  // false: could not persist now (retried later)
  void note_storage_trouble(const std::string& what);
  void release(PendingReady& p);
  void apply(const raft::Entry& e);
  void start_write();
  void on_write_done(int32_t res);
  void finish_write(int64_t res);
  void start_background_sync();
  bool may_start_write() const;
  void note_wal_stall();
  void hand_over_while_stalled();
  [[noreturn]] void stop_on_wal_failure(const std::string& what);

  // proposals and answers
  void propose_staged();
  void fail_waiters(std::vector<Waiter>& ws, BatchStatus st);
  void hand_out(const Proposal& p, uint64_t start);
  void resolve(const Waiter& w, const BatchResult& r);
  void deliver(uint32_t shard, const BatchResult& r);
  void expire_proposals();
  void fail_uncommitted_proposals();
  void publish();
  void sync_peers();
  void on_peer_hello(const PeerHello& h);
  void note_refusal(const raft::Message& m, const raft::StepResult& r);
  void note_removal();
  void update_member_addresses();

  // admin
  void reply(const AdminRequest& req, std::string bytes) { node_.reply_admin(req, std::move(bytes)); }
  void reply_error(const AdminRequest& req, std::string_view msg) {
    std::string out;
    resp::append_error(out, msg);
    reply(req, std::move(out));
  }
  bool redirect_if_follower(const AdminRequest& req);
  void admin_membership(AdminRequest&& req, raft::ConfChangeRequest cc, std::string ok);
  void admin_join(AdminRequest&& req);
  void admin_addvoter(AdminRequest&& req);
  void add_member(AdminRequest&& req, uint64_t id, const ServerContext& ctx, std::string ok);
  void admin_removeserver(AdminRequest&& req);
  std::string check_new_member(uint64_t id, const std::string& raft_addr,
                               const std::string& service_addr) const;
  std::string address_taken(uint64_t id, const std::string& raft_addr,
                            const std::string& service_addr) const;
  std::string stats_reply();
  std::string configuration_reply();
  std::string info_raft();
  std::string service_addr_of(uint64_t id) const;

  void on_tick();

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

  std::vector<Waiter> staged_;
  uint64_t staged_total_ = 0;
  std::vector<ShardOutcomes> outcomes_;
  std::deque<Proposal> proposals_;
  std::vector<AdminWaiter> admin_waiters_;
  std::deque<PendingReady> pipeline_;
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

  bool writing_ = false;
  bool syncing_ = false;
  bool wal_stalled_ = false;     // no new segment could be started (full disk); see note_wal_stall
  uint64_t low_flush_to_ = 0;    // durability low: the tick's write goes on up to this index
  storage::WalWriteOp op_;
  storage::WalSyncOp sync_op_;
  uint64_t write_started_us_ = 0;
  io::Completion write_c_, fsync_after_write_c_, sync_c_, tick_c_;
  __kernel_timespec tick_ts_{};
  uint64_t ticks_ = 0;
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
};

// ------------------------------------------------------------------------------------------
// Start-up: load, or bootstrap, or wait to join.

bool RaftTicketLog::load_state(raft::InitialState* st, bool* fresh, std::string* err) {
  const std::string dir = node_.data_dir();
  storage::HardState hs;
  bool hs_found = false;
  storage::Status s = storage::HardStateFile::open(dir + "/hardstate", &hs_file_, &hs, &hs_found);
  if (!s) {
    *err = "cannot open hard state: " + s.message();
    return false;
  }
  if (hs_found && hs.blob.size() >= 16) {
    std::memcpy(&incarnation_, hs.blob.data(), 8);
    std::memcpy(&cluster_id_, hs.blob.data() + 8, 8);
  }
  std::optional<raft::Snapshot> snap;
  snapshot_path_ = dir + "/snapshot";
  std::vector<std::byte> snap_bytes;
  s = storage::SnapshotFile::load(snapshot_path_, &snap_bytes);
  if (s) {
    raft::Snapshot sn;
    if (!decode_snapshot(std::string_view(reinterpret_cast<const char*>(snap_bytes.data()),
                                          snap_bytes.size()),
                         &sn)) {
      *err = "snapshot file " + snapshot_path_ + " does not decode";
      return false;
    }
    snap = std::move(sn);
  } else if (s.code() != storage::Status::Code::kNotFound) {
    *err = "cannot load snapshot: " + s.message();
    return false;
  }

  storage::WalOptions wo;
  wo.segment_bytes = node_.opts().wal_segment_bytes;
  wo.log = [this](std::string_view msg) { node_.log_line("wal: " + std::string(msg)); };
  storage::WalRecoveryReport report;
  std::vector<storage::WalRecord> records;
  s = storage::Wal::open(dir + "/wal", wo, &wal_, &report, &records);
  if (!s) {
    *err = "cannot open the write-ahead log: " + s.message();
    return false;
  }
  node_.log_line("recovered: " + report.describe());
  uint64_t base = snap ? snap->index : 0;
  std::vector<raft::Entry> entries;
  bool discard = false;
  for (storage::WalRecord& r : records) {
    if (r.index < base) continue;
    if (r.index == base) {
      // The log must agree with the snapshot where they meet; after a crash in the middle of
      // resetting the log to an installed snapshot, it may not: then it is stale history.
      if (snap && r.term != snap->term) discard = true;
      continue;
    }
    if (r.index != base + 1 + entries.size()) {
      discard = true;  // a gap between snapshot and log
      break;
    }
    raft::Entry e;
    e.term = r.term;
    e.index = r.index;
    e.type = static_cast<raft::EntryType>(r.type);
    e.data.assign(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
    entries.push_back(std::move(e));
  }
  // A log that ends before the snapshot (a crash between saving an installed snapshot and
  // resetting the log, or a log cut short by recovery) is history the snapshot covers: the
  // next entry is snapshot.index + 1, which such a WAL could not take.
  if (snap && wal_->last_index() != 0 && wal_->last_index() < base) discard = true;
  if (discard) {
    node_.log_line("wal does not continue the snapshot at index " + std::to_string(base) +
                   ": discarding the log after it (the leader will send it again)");
    entries.clear();
    if (wal_->last_index() != 0) {
      s = wal_->truncate_suffix(wal_->first_index());
      if (!s) {
        *err = "cannot reset the log: " + s.message();
        return false;
      }
    }
  }
  *fresh = !hs_found && !snap && records.empty();
  st->hard_state = raft::HardState{hs.term, hs.vote, hs.commit};
  st->snapshot = snap;
  st->entries = std::move(entries);
  saved_hs_ = st->hard_state;
  return true;
}

bool RaftTicketLog::save_hard_state(const raft::HardState& hs) {
  storage::HardState out;
  out.term = hs.term;
  out.vote = hs.vote;
  // The file is written before this Ready's entries are durable, so it must not claim a
  // commit index those entries back: a crash in between would make a restart apply stale
  // entries. Term and vote alone are safe to land first; commit is a hint, relearned from
  // the leader (or by a lone voter's first commit) after a restart.
  out.commit = 0;
  out.blob.resize(16);
  std::memcpy(out.blob.data(), &incarnation_, 8);
  std::memcpy(out.blob.data() + 8, &cluster_id_, 8);
  storage::Status s = hs_file_->save(out);
  if (!s) {
    node_.log_line("hard state save failed: " + s.message());
    return false;
  }
  saved_hs_ = hs;
  return true;
}

bool RaftTicketLog::persist_initial(const raft::InitialState& st, std::string* err) {
  for (const raft::Entry& e : st.entries) {
    wal_->append(static_cast<uint8_t>(e.type), e.term, e.index,
                 std::span<const std::byte>(reinterpret_cast<const std::byte*>(e.data.data()),
                                            e.data.size()));
  }
  storage::Status s = wal_->sync_write(true);
  if (!s) {
    *err = "cannot write the initial log: " + s.message();
    return false;
  }
  if (!save_hard_state(st.hard_state)) {
    *err = "cannot save the initial hard state";
    return false;
  }
  return true;
}

bool RaftTicketLog::check_own_addresses(std::string* err) {
  const ServerOptions& o = node_.opts();
  std::string rhost, shost;
  uint16_t rport = 0, sport = 0;
  if (!io::parse_host_port(o.raddr, &rhost, &rport)) {
    *err = "bad --raddr '" + o.raddr + "' (want host:port or :port)";
    return false;
  }
  for (const auto& [flag, addr] : {std::pair<const char*, const std::string&>{"--raddr", raft_addr_},
                                   {"--saddr", service_addr_}}) {
    std::string bad = check_server_addr(addr, "address");
    if (!bad.empty()) {
      *err = std::string(flag) + ": " + bad.substr(4);
      return false;
    }
  }
  auto wildcard = [](const std::string& h) { return h.empty() || h == "0.0.0.0" || h == "::"; };
  if (io::parse_host_port(o.saddr, &shost, &sport) && sport == rport &&
      (shost == rhost || wildcard(shost) || wildcard(rhost))) {
    *err = "--raddr " + o.raddr + " and --saddr " + o.saddr + " are the same port: give the " +
           "raft port its own";
    return false;
  }
  // The raft listener binds without SO_REUSEPORT: try that bind now. A node killed a moment
  // ago may leave its listener behind for a few milliseconds, so retry briefly.
  std::string why;
  for (int i = 0; i < 100; ++i) {
    int fd = io::listen_tcp(rhost, rport, false, &why);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    if (fd != -EADDRINUSE) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  *err = "cannot listen on the raft address " + o.raddr + ": " + why;
  return false;
}

bool RaftTicketLog::open(std::string* err) {
  const ServerOptions& o = node_.opts();
  raft_addr_ = advertised(o.raddr);
  service_addr_ = advertised(o.saddr);
  // Every address is checked before anything is written: a node that bootstrapped with an
  // address it cannot use would record it in its configuration.
  if (!check_own_addresses(err)) return false;
  raft::InitialState st;
  bool fresh = false;
  if (!load_state(&st, &fresh, err)) return false;
  bool needs_save = false;
  if (incarnation_ == 0) {
    incarnation_ = random_u64();
    needs_save = true;
  }
  bool has_log = st.snapshot.has_value() || !st.entries.empty();
  if (!has_log && o.join.empty()) {
    if (!fresh) {
      node_.log_line("this node has state but no configuration and no --join: waiting to be "
                     "added by a leader");
    } else {
      // Only a node with no state and no --join founds a cluster.
      cluster_id_ = random_u64();
      ServerContext ctx{raft_addr_, service_addr_, incarnation_};
      st = raft::bootstrap_single(o.id, encode_context(ctx));
      if (!persist_initial(st, err)) return false;
      needs_save = false;
      node_.log_line("bootstrapped a new cluster " + hex(cluster_id_) + " with this node as its "
                     "only voter");
    }
  } else if (has_log && !o.join.empty()) {
    node_.log_line("--join " + o.join + " ignored: this node already has cluster state");
  } else if (!has_log && !o.join.empty()) {
    std::string cmd = "RAFT.JOIN " + std::to_string(o.id) + " " + raft_addr_ + " " +
                      service_addr_ + " " + hex(incarnation_);
    join_ = std::make_unique<JoinClient>(advertised(o.join), cmd, [this](std::string_view m) {
      node_.log_line("join: " + std::string(m));
    });
  }
  if (needs_save && !save_hard_state(st.hard_state)) {
    *err = "cannot save hard state";
    return false;
  }
  if (st.snapshot) {
    // From disk: validated, never assumed (it also reads the data of earlier builds).
    std::string bad = tickets_.decode_snapshot(st.snapshot->data, st.snapshot->index);
    if (!bad.empty()) {
      *err = "snapshot " + snapshot_path_ + ": the ticket state does not decode: " + bad;
      return false;
    }
    applied_index_ = snapshot_index_ = st.snapshot->index;
  }
  raft::Config cfg;
  cfg.id = o.id;
  cfg.election_ticks = kElectionTicks;
  cfg.heartbeat_ticks = kHeartbeatTicks;
  cfg.max_inflight_msgs = 4;
  cfg.max_msg_bytes = 256 * 1024;
  cfg.seed = random_u64();
  // The core refuses an InstallSnapshot whose ticket state we could not restore.
  cfg.valid_snapshot_data = [](std::string_view d) {
    tickets::StateMachine probe;
    return probe.decode_snapshot(d, 1).empty();
  };
  raft_ = std::make_unique<raft::Node>(cfg, std::move(st));
  LogStats& ls = node_.log_stats();
  ls.counter.store(last_ticket());
  ls.last_index.store(raft_->last_index());
  ls.durable_index.store(raft_->last_index());
  ls.snapshot_index.store(snapshot_index_);
  ls.direct_io.store(wal_->direct_io());
  return true;
}

void RaftTicketLog::attach(io::Loop* loop) {
  loop_ = loop;
  write_c_.owner = fsync_after_write_c_.owner = sync_c_.owner = tick_c_.owner = this;
  write_c_.fn = [](io::Completion* c, int32_t res, uint32_t) {
    static_cast<RaftTicketLog*>(c->owner)->on_write_done(res);
  };
  fsync_after_write_c_.fn = [](io::Completion* c, int32_t res, uint32_t) {
    auto* self = static_cast<RaftTicketLog*>(c->owner);
    self->finish_write(res < 0 ? res : static_cast<int64_t>(self->op_.len));
  };
  sync_c_.fn = [](io::Completion* c, int32_t res, uint32_t) {
    auto* self = static_cast<RaftTicketLog*>(c->owner);
    self->syncing_ = false;
    storage::Status s = self->wal_->end_sync(self->sync_op_, res);
    if (!s) self->stop_on_wal_failure("background fdatasync failed");
    self->node_.log_stats().durable_index.store(self->wal_->durable_index());
    self->pump();
  };
  tick_c_.fn = [](io::Completion* c, int32_t, uint32_t) {
    static_cast<RaftTicketLog*>(c->owner)->on_tick();
  };
  tick_ts_.tv_sec = 0;
  tick_ts_.tv_nsec = kTickNs;
  sync_every_ticks_ = static_cast<uint64_t>(kBackgroundSyncNs / kTickNs);
  loop_->timeout(&tick_ts_, &tick_c_);

  PeerTransport::Options po;
  po.self_id = node_.opts().id;
  po.cluster_id = cluster_id_;
  po.incarnation = incarnation_;
  po.listen_addr = node_.opts().raddr;
  po.service_addr = service_addr_;
  po.raft_addr = raft_addr_;
  PeerTransport::Hooks hooks;
  hooks.on_message = [this](raft::Message&& m) {
    TICKETD_TRACE_EV("recv", trace_peer(m, m.from), trace_index(m));
    raft::StepResult r = raft_->step(m);
    if (!r.ok()) note_refusal(m, r);
  };
  hooks.check_hello = [this](const PeerHello& h) -> std::string {
    const raft::Server* s = raft_->configuration().find(h.node_id);
    if (s != nullptr) {
      ServerContext ctx = decode_context(s->context);
      if (ctx.incarnation != 0 && h.incarnation != ctx.incarnation) {
        return "node " + std::to_string(h.node_id) +
               " has a new incarnation (its data directory was wiped?); remove it with "
               "RAFT.REMOVESERVER " + std::to_string(h.node_id) + " and join it again";
      }
    }
    return "";
  };
  hooks.on_hello = [this](const PeerHello& h) { on_peer_hello(h); };
  hooks.log = [this](std::string_view m) { node_.log_line("peer: " + std::string(m)); };
  transport_ = std::make_unique<PeerTransport>(*loop_, kPeerBufGroup, po, hooks);
  std::string err;
  if (!transport_->listen(&err)) {
    // The raft port is part of the node's identity: refuse to run without it.
    node_.log_line("cannot listen on the raft address " + node_.opts().raddr + ": " + err);
    std::_Exit(1);
  }
  sync_peers();
  // A cluster of one elects itself at once instead of waiting out an election timeout.
  const raft::Configuration& conf = raft_->configuration();
  if (conf.voter_count() == 1 && conf.is_voter(node_.opts().id)) raft_->campaign();
  if (join_) join_->start();
  pump();
  publish();
}

// ------------------------------------------------------------------------------------------
// The loop turn.

void RaftTicketLog::on_turn_end() {
  propose_staged();
  pump();
  if (transport_) transport_->flush();
}

void RaftTicketLog::on_tick() {
  if (closed_) return;
  ++ticks_;
  raft_->tick();
  expire_proposals();
  if (join_ && join_->cluster_id() != 0 && cluster_id_ == 0) {
    cluster_id_ = join_->cluster_id();
    transport_->set_cluster_id(cluster_id_);
    save_hard_state(saved_hs_);
    node_.log_line("joined cluster " + hex(cluster_id_));
  }
  if (durability_ != Durability::kHigh && ticks_ % sync_every_ticks_ == 0) {
    // Low: write what is staged (finish_write goes on until it is all out, then syncs).
    // Both levels: sync what is written; a write may overlap the sync (the WAL allows it).
    if (durability_ == Durability::kLow) {
      low_flush_to_ = wal_->last_index();
      if (may_start_write()) start_write();
    }
    start_background_sync();
  }
  if (wal_stalled_) hand_over_while_stalled();
  finish_snapshot();
  // Zero-fill the next WAL segment ahead of time, one 1 MiB step per tick, so a segment
  // switch never waits for it. Only between writes: it is a short blocking write.
  // A failed attempt (a full disk) leaves the log healthy; try again a second later.
  if (!writing_ && !wal_->spare_ready() && !wal_->failed() && now_ms() >= spare_retry_ms_) {
    if (!wal_->prepare_spare_step() && !wal_->spare_error().is_ok()) {
      spare_retry_ms_ = now_ms() + 1000;
    }
  }
  update_member_addresses();
  note_removal();
  // Periodic snapshot even when the load is light, so the log stays short.
  if (ticks_ % 1000 == 0) maybe_snapshot(true);
  if (shutting_down_ && now_ms() > shutdown_deadline_ms_) shutting_down_ = false;
  loop_->timeout(&tick_ts_, &tick_c_);
  pump();
  transport_->flush();
}

void RaftTicketLog::propose_staged() {
  if (staged_total_ == 0) return;
  if (raft_->role() != raft::Role::kLeader) {
    fail_waiters(staged_, raft_->leader_id() == raft::kNoId ? BatchStatus::kNoLeader
                                                            : BatchStatus::kNotLeader);
    staged_total_ = 0;
    return;
  }
  // Batching: while a log write is in flight, tickets keep gathering; they are proposed
  // as ONE entry the moment the next write can start (finish_write), so every write
  // carries everything that arrived meanwhile. (At durability low nothing waits on writes.)
  if (writing_ && durability_ != Durability::kLow) return;
  if (wal_stalled_) {
    // Our log cannot take more (note_wal_stall): refuse rather than queue without bound.
    fail_waiters(staged_, BatchStatus::kLogFailed);
    staged_total_ = 0;
    return;
  }
  raft::ProposeResult r = raft_->propose(allocate_payload(staged_total_));
  if (r.status == raft::ProposeStatus::kTransferInProgress) return;  // retry next turn
  if (!r.ok()) {
    fail_waiters(staged_, r.leader_hint == raft::kNoId ? BatchStatus::kNoLeader
                                                       : BatchStatus::kNotLeader);
    staged_total_ = 0;
    return;
  }
  // apply() answers proposals front to back by index (see fail_uncommitted_proposals).
  TICKETD_CHECK(proposals_.empty() || proposals_.back().index < r.index);
  Proposal p{r.index, r.term, staged_total_, now_ms(), {}};
  p.waiters.swap(staged_);
  staged_total_ = 0;
  TICKETD_TRACE_EV("propose", p.index, p.total);
  proposals_.push_back(std::move(p));
  node_.log_stats().batched_tickets.fetch_add(proposals_.back().total, std::memory_order_relaxed);
}

void RaftTicketLog::pump() {
  if (closed_) return;
  // 1. Take every Ready the core has; messages that may leave now, leave now.
  bool applied_early = false;
  while (raft_->has_ready()) {
    PendingReady p;
    raft_->ready(&p.rd);
    for (const raft::Message& m : p.rd.messages) {
      TICKETD_TRACE_EV("send", trace_peer(m, m.to), trace_index(m));
      transport_->send(m);
    }
    p.rd.messages.clear();
    // Committed entries are durable on a quorum already: apply them now rather than behind
    // the local writes queued ahead of them, unless a snapshot install or a truncation is
    // still waiting in the pipeline (entries must apply after the snapshot they follow).
    // Also blocked while an earlier Ready still holds committed entries of its own (it
    // was held back): batches must apply in order.
    bool blocked = p.rd.snapshot.has_value() || p.rd.truncate_from != 0;
    for (const PendingReady& q : pipeline_) {
      blocked = blocked || !q.staged || !q.rd.committed_entries.empty();
    }
    if (!blocked && !p.rd.committed_entries.empty()) {
      for (const raft::Entry& e : p.rd.committed_entries) apply(e);
      p.rd.committed_entries.clear();
      applied_early = true;
    }
    pipeline_.push_back(std::move(p));
  }
  if (applied_early) maybe_snapshot(false);
  if (raft_->role() != raft::Role::kLeader) fail_uncommitted_proposals();
  // 2. Stage them into storage, in order. A snapshot install or a log truncation waits
  //    until everything before it is durable and released, and no write is in flight.
  for (PendingReady& p : pipeline_) {
    if (p.staged) continue;
    bool heavy = p.rd.snapshot.has_value() || p.rd.truncate_from != 0;
    if (heavy && (&p != &pipeline_.front() || writing_ || wal_->has_pending())) break;
    // Installing a snapshot rewrites the snapshot file: never while our own save runs.
    if (p.rd.snapshot && snapshot_writer_.busy()) break;
    if (!stage(p)) break;  // storage trouble: retried on the next pump (every tick)
  }
  // 3. One write at a time: everything staged meanwhile goes into the next (group commit).
  if (durability_ != Durability::kLow && may_start_write()) {
    // Replication first: queue the AppendEntries sends ahead of the write, so they leave
    // before the disk submission (a virtio kick) in the same io_uring_enter.
    transport_->flush();
    start_write();
  }
  // 4. Release what is durable, in order.
  bool released = false;
  while (!pipeline_.empty() && pipeline_.front().staged &&
         pipeline_.front().need <= durable_mark()) {
    PendingReady p = std::move(pipeline_.front());
    pipeline_.pop_front();
    release(p);
    released = true;
  }
  if (released && raft_->has_ready()) {
    pump();  // releasing (on_persisted, applying) may have produced more work
    return;
  }
  publish();
  sync_peers();
}

uint64_t RaftTicketLog::durable_mark() const {
  switch (durability_) {
    case Durability::kHigh: return wal_->durable_index();
    case Durability::kMedium: return wal_->written_index();
    // Low acknowledges from memory, but not past a stalled WAL (note_wal_stall): a follower
    // would otherwise take the leader's entries into memory without bound.
    case Durability::kLow: return wal_stalled_ ? wal_->written_index() : wal_->last_index();
  }
  return 0;
}

bool RaftTicketLog::stage(PendingReady& p) {
  raft::Ready& rd = p.rd;
  if (rd.hard_state && (rd.hard_state->term != saved_hs_.term ||
                        rd.hard_state->vote != saved_hs_.vote)) {
    // Term and vote must be on disk before any vote or ack of this Ready leaves. If the
    // file cannot be written (disk full), the Ready waits and is retried: nothing after it
    // is acknowledged meanwhile, so no vote is ever given twice.
    if (!save_hard_state(*rd.hard_state)) {
      note_storage_trouble("cannot save term/vote");
      return false;
    }
  }
  if (rd.snapshot && !install_snapshot(*rd.snapshot)) return false;
  if (rd.truncate_from != 0 && wal_->last_index() >= rd.truncate_from) {
    if (!wal_->truncate_suffix(rd.truncate_from)) stop_on_wal_failure("log truncation failed");
  }
  for (const raft::Entry& e : rd.entries) {
    wal_->append(static_cast<uint8_t>(e.type), e.term, e.index,
                 std::span<const std::byte>(reinterpret_cast<const std::byte*>(e.data.data()),
                                            e.data.size()));
  }
  node_.log_stats().last_index.store(wal_->last_index(), std::memory_order_relaxed);
  p.staged = true;
  p.need = wal_->last_index();
  if (storage_trouble_) {
    node_.log_line("storage writable again");
    storage_trouble_ = false;
  }
  return true;
}

bool RaftTicketLog::install_snapshot(const raft::Snapshot& s) {
  // The leader's ticket state is checked before anything is written: a snapshot that does
  // not decode is refused (nothing further is acknowledged; a restart asks again).
  tickets::StateMachine next;
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
  node_.log_line("installed snapshot at index " + std::to_string(s.index) + " (last ticket " +
                 std::to_string(last_ticket()) + ")");
  return true;
}

void RaftTicketLog::note_storage_trouble(const std::string& what) {
  // Said once per trouble spell, not on every retry.
  if (!storage_trouble_) node_.log_line(what + " (retrying; nothing is acknowledged meanwhile)");
  storage_trouble_ = true;
}

void RaftTicketLog::release(PendingReady& p) {
  raft::Ready& rd = p.rd;
  if (rd.durable_mark) raft_->on_persisted(rd.durable_mark->index, rd.durable_mark->term);
  for (const raft::Message& m : rd.persist_then_send) {
    TICKETD_TRACE_EV("send_p", trace_peer(m, m.to), trace_index(m));
    transport_->send(m);
  }
  for (const raft::Entry& e : rd.committed_entries) apply(e);
  if (!rd.committed_entries.empty()) maybe_snapshot(false);
}

void RaftTicketLog::apply(const raft::Entry& e) {
  TICKETD_TRACE_EV("apply", e.index, 0);
  if (e.index <= applied_index_) return;  // covered by a snapshot we installed
  // Ranges come from the applied state, in log order, on every node alike. The entry came
  // from a leader, possibly a buggy or hostile one: one that does not decode, or that
  // would wrap a counter, allocates nothing (the state machine's rules depend only on the
  // entry and the state, so every node refuses alike), and is never handed out.
  uint64_t start = 0;
  uint64_t n = 0;
  bool refused = false;
  if (e.type == raft::EntryType::kNormal) {
    tickets::Command cmd;
    std::string bad = tickets::decode(e.data, &cmd);
    if (bad.empty()) {
      // Every command changes the state; this build proposes (and so answers) only
      // Allocate entries of the default sequence.
      tickets::ApplyResult r = tickets_.apply(e.index, cmd);
      bool ours = cmd.kind == tickets::Command::Kind::kAllocate && cmd.items.size() == 1 &&
                  cmd.items[0].name == tickets::kDefaultSequence;
      if (ours && r.items[0].status == tickets::Status::kOk) {
        start = r.items[0].first;
        n = cmd.items[0].n;
      } else if (ours) {
        bad = tickets::to_string(r.items[0].status);
      }
    }
    if (!bad.empty()) {
      node_.log_line("log entry " + std::to_string(e.index) + " allocates nothing: " + bad);
      refused = true;
    }
  }
  applied_index_ = e.index;
  // Answer the proposals at or below this index: ours only if index AND term match.
  while (!proposals_.empty() && proposals_.front().index <= e.index) {
    Proposal& p = proposals_.front();
    if (p.index == e.index && p.term == e.term && e.type == raft::EntryType::kNormal) {
      if (refused) {
        fail_waiters(p.waiters, BatchStatus::kExhausted);
      } else {
        TICKETD_CHECK(n == p.total);  // our own entry: we proposed exactly this
        hand_out(p, start);
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
        reply(w.req, w.ok_reply);
      } else {
        reply_error(w.req, "ERR leadership lost before the change committed; try again");
      }
      admin_waiters_[i] = std::move(admin_waiters_.back());
      admin_waiters_.pop_back();
    } else {
      ++i;
    }
  }
  node_.log_stats().counter.store(last_ticket(), std::memory_order_relaxed);
}

void RaftTicketLog::hand_out(const Proposal& p, uint64_t start) {
  uint64_t next = start;
  for (const Waiter& w : p.waiters) {
    resolve(w, BatchResult{next, w.n, BatchStatus::kOk});
    next += w.n;
  }
}

void RaftTicketLog::fail_waiters(std::vector<Waiter>& ws, BatchStatus st) {
  for (const Waiter& w : ws) resolve(w, BatchResult{0, w.n, st});
  ws.clear();
}

void RaftTicketLog::resolve(const Waiter& w, const BatchResult& r) {
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
                  "ERR the change did not commit in time here; check RAFT.CONFIGURATION");
      admin_waiters_[i] = std::move(admin_waiters_.back());
      admin_waiters_.pop_back();
    } else {
      ++i;
    }
  }
}

bool RaftTicketLog::may_start_write() const {
  // While stalled, only once the spare segment could be made (on_tick retries it every
  // second): each attempt in between would be a blocking write that is bound to fail.
  // After close() no write starts: no loop turn would complete it.
  return !writing_ && !closed_ && wal_->has_pending() && (!wal_stalled_ || wal_->spare_ready());
}

void RaftTicketLog::start_write() {
  auto op = wal_->begin_write(durability_ == Durability::kHigh);
  if (!op) {
    if (wal_->failed()) stop_on_wal_failure("cannot write");
    if (!wal_->blocked().is_ok()) note_wal_stall();
    return;
  }
  if (wal_stalled_) {
    wal_stalled_ = false;
    node_.log_stats().wal_stalled.store(false, std::memory_order_relaxed);
    node_.log_line("wal: a new segment was started; writing and acknowledging again");
  }
  op_ = *op;
  TICKETD_TRACE_EV("wstart", wal_->last_index(), op_.len);
  writing_ = true;
  write_started_us_ = now_us();
  node_.log_stats().writes.fetch_add(1, std::memory_order_relaxed);
  loop_->write(op_.fd, op_.buf, op_.len, op_.offset, op_.dsync, &write_c_);
}

void RaftTicketLog::on_write_done(int32_t res) {
  if (res >= 0 && static_cast<size_t>(res) == op_.len && op_.needs_fdatasync) {
    node_.log_stats().syncs.fetch_add(1, std::memory_order_relaxed);
    loop_->fdatasync(op_.fd, &fsync_after_write_c_);
    return;
  }
  finish_write(res);
}

void RaftTicketLog::finish_write(int64_t res) {
  TICKETD_TRACE_EV("wdone", res, 0);
  writing_ = false;
  storage::Status s = wal_->end_write(res);
  LogStats& ls = node_.log_stats();
  ls.last_write_us.store(now_us() - write_started_us_, std::memory_order_relaxed);
  if (!s) stop_on_wal_failure("write failed");
  ls.durable_index.store(wal_->durable_index(), std::memory_order_relaxed);
  if (durability_ == Durability::kLow) {
    // The tick's flush goes on until everything staged before it is out (a write carries at
    // most one buffer), then syncs; what staged since waits for the next tick.
    if (wal_->written_index() < low_flush_to_ && may_start_write()) {
      start_write();
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
    node_.log_line("wal: cannot start a new segment (" + wal_->blocked().message() +
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
  node_.log_line("wal: " + what + ": " + wal_->error().message() +
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
    node_.log_line("snapshot save failed: " + snapshot_writer_.status().message() +
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
  if (!st) node_.log_line("wal compaction failed: " + st.message());
  LogStats& ls = node_.log_stats();
  ls.snapshot_index.store(snapshot_index_);
  ls.snapshots.fetch_add(1);
}

void RaftTicketLog::note_refusal(const raft::Message& m, const raft::StepResult& r) {
  // The core refused a peer's message without touching its state. Said the first time per
  // (peer, kind of refusal), then at most every 10 s with a count: a removed node that is
  // still running sends refused votes every election timeout.
  RefusalLog& l = refusal_log_[{m.from, static_cast<uint8_t>(r.status)}];
  ++l.count;
  uint64_t now = now_ms();
  if (l.logged_ms != 0 && now - l.logged_ms < 10'000) return;
  node_.log_line("raft: refused " + std::string(raft::to_string(m.type)) + " from node " +
                 std::to_string(m.from) + " (" + raft::to_string(r.status) + "): " + r.why +
                 (l.count > 1 ? " (" + std::to_string(l.count) + " refusals so far)" : ""));
  l.logged_ms = now;
  if (refusal_log_.size() > 256) refusal_log_.clear();  // bounded whoever sends
}

void RaftTicketLog::note_removal() {
  std::optional<raft::RemovalNotice> n = raft_->removal_notice();
  if (!n || (logged_removal_ && *logged_removal_ == *n)) return;
  logged_removal_ = n;
  if (n->from == node_.opts().id) {
    node_.log_line("this node was removed from the cluster (its committed configuration at index " +
                   std::to_string(n->at_index) + " no longer holds it): stop it, or wipe its "
                   "data directory and --join it again");
  } else {
    node_.log_line("node " + std::to_string(n->from) + " says this node is not in the cluster's "
                   "committed configuration (its commit index " + std::to_string(n->at_index) +
                   "): it was removed; stop it, or wipe its data directory and --join it again");
  }
}

void RaftTicketLog::on_peer_hello(const PeerHello& h) {
  // Only what a member (or, while we join, the leader adding us) says is remembered: an
  // unknown sender must not make us keep state of its choosing.
  const raft::Configuration& conf = raft_->configuration();
  bool member = conf.find(h.node_id) != nullptr;
  bool joining = conf.servers.empty();
  bool addrs_ok = check_server_addr(h.raft_addr, "raft address").empty() &&
                  check_server_addr(h.service_addr, "service address").empty();
  if (!addrs_ok) return;
  if (member || joining) hello_service_addr_[h.node_id] = h.service_addr;
  if (member) {
    hello_seen_[h.node_id] = ServerContext{h.raft_addr, h.service_addr, h.incarnation};
    return;
  }
  // A caller outside our configuration still needs our answers: the leader adding us
  // (before its configuration entry reaches us), or a removed node, whose refused votes
  // carry the notice that it was removed. The transport makes this a callback link: at
  // most 16, each gone when the caller's own link to us closes; sync_peers turns it into
  // an ordinary link if the caller joins our configuration.
  if (known_peers_.count(h.node_id) == 0) transport_->set_peer(h.node_id, h.raft_addr);
}

void RaftTicketLog::update_member_addresses() {
  // A member restarted with a new --raddr/--saddr announces it in its hello (and the leader
  // knows its own); the leader records it with a configuration change, so the change takes
  // effect everywhere, in log order, instead of the first start's address staying forever.
  // One change at a time; retried on the next tick while another is pending.
  if (raft_->role() != raft::Role::kLeader || shutting_down_) return;
  const raft::Configuration& conf = raft_->configuration();
  auto wanted = [&](uint64_t id, const ServerContext& now) -> std::optional<ServerContext> {
    if (id == node_.opts().id) return ServerContext{raft_addr_, service_addr_, incarnation_};
    auto it = hello_seen_.find(id);
    if (it == hello_seen_.end()) return std::nullopt;
    const ServerContext& h = it->second;
    if (now.incarnation == 0) {
      // Added by RAFT.ADDVOTER (no incarnation yet): it proved the address by dialling from
      // it; record its incarnation and service address, never a different raft address.
      if (h.raft_addr != now.raft_addr) return std::nullopt;
      return h;
    }
    if (h.incarnation != now.incarnation) return std::nullopt;  // refused at hello anyway
    return h;
  };
  for (const raft::Server& s : conf.servers) {
    ServerContext now = decode_context(s.context);
    std::optional<ServerContext> w = wanted(s.id, now);
    if (!w) continue;
    std::string ctx = encode_context(*w);
    if (ctx == s.context) {
      if (s.id != node_.opts().id) hello_seen_.erase(s.id);
      continue;
    }
    if (!address_taken(s.id, w->raft_addr, w->service_addr).empty()) {
      continue;  // would collide with another member's address: leave it to the operator
    }
    raft::ConfChangeRequest cc;
    cc.kind = raft::ConfChangeRequest::Kind::kSetContext;
    cc.id = s.id;
    cc.context = ctx;
    // Proposing replaces the configuration that `s` lives in: nothing of it is used after.
    raft::ProposeResult r = raft_->propose_conf_change(cc);
    if (r.ok()) {
      node_.log_line("recording node " + std::to_string(cc.id) + " at raft " + w->raft_addr +
                     ", service " + w->service_addr + " (was " + now.raft_addr + ", " +
                     now.service_addr + ")");
    }
    return;  // one change at a time
  }
}

void RaftTicketLog::publish() {
  uint64_t leader = raft_->leader_id();
  if (leader != last_leader_) {
    if (leader != raft::kNoId) leader_changes_++;
    last_leader_ = leader;
    node_.log_line(leader == raft::kNoId
                       ? std::string("no leader known (term ") + std::to_string(raft_->term()) + ")"
                       : "leader is node " + std::to_string(leader) + " (term " +
                             std::to_string(raft_->term()) + ")");
  }
  ClusterRole role = ClusterRole::kNoLeader;
  if (raft_->role() == raft::Role::kLeader && !shutting_down_) {
    role = ClusterRole::kLeader;
  } else if (leader != raft::kNoId && leader != node_.opts().id) {
    role = ClusterRole::kFollower;
  }
  // Cheap when nothing changed (every turn): the address is looked up only when the role,
  // the leader, the configuration or what peers told us changed.
  PublishKey key{role, leader, raft_->configuration_index(), hello_service_addr_.size()};
  if (key == published_key_) return;
  published_key_ = key;
  std::string addr = role == ClusterRole::kFollower ? service_addr_of(leader) : "";
  if (role != published_role_ || addr != published_addr_) {
    published_role_ = role;
    published_addr_ = addr;
    node_.publish_role(role, addr);
  }
}

std::string RaftTicketLog::service_addr_of(uint64_t id) const {
  if (id == node_.opts().id) return service_addr_;
  const raft::Server* s = raft_->configuration().find(id);
  if (s != nullptr) {
    ServerContext ctx = decode_context(s->context);
    if (!ctx.service_addr.empty()) return ctx.service_addr;
  }
  auto it = hello_service_addr_.find(id);
  return it == hello_service_addr_.end() ? std::string() : it->second;
}

void RaftTicketLog::sync_peers() {
  // Servers that left the configuration keep their links until the configuration that
  // removed them is committed: a leader that removed itself still needs our
  // acknowledgements to commit its removal. After that the link goes, or it would keep
  // dialling an address that may now belong to another node (a replacement on the same
  // host:port), or to nobody, for the life of the process.
  if (!departed_.empty() && raft_->commit_index() >= departed_at_) {
    for (uint64_t id : departed_) {
      if (known_peers_.count(id) != 0) continue;
      transport_->remove_peer(id);
      // Its links to us go too: if it still runs, it reconnects, and its fresh hello gets
      // it a callback link, on which our refusals of its votes tell it it was removed.
      transport_->close_inbound(id);
    }
    departed_.clear();
  }
  if (raft_->configuration_index() == peers_config_index_) return;
  peers_config_index_ = raft_->configuration_index();
  const raft::Configuration& conf = raft_->configuration();
  // What only non-members told us goes once we have a configuration of our own.
  if (!conf.servers.empty()) {
    std::erase_if(hello_service_addr_, [&](const auto& kv) { return conf.find(kv.first) == nullptr; });
    std::erase_if(hello_seen_, [&](const auto& kv) { return conf.find(kv.first) == nullptr; });
  }
  std::unordered_set<uint64_t> before;
  before.swap(known_peers_);
  for (const raft::Server& s : conf.servers) {
    if (s.id == node_.opts().id) continue;
    known_peers_.insert(s.id);
    ServerContext ctx = decode_context(s.context);
    // Never dial our own address: a configuration replayed from the log can name a removed
    // server whose address is ours now.
    if (!ctx.raft_addr.empty() && ctx.raft_addr != raft_addr_) {
      transport_->set_peer(s.id, ctx.raft_addr);
    }
  }
  for (uint64_t id : before) {
    if (known_peers_.count(id) == 0) departed_.push_back(id);
  }
  if (!departed_.empty()) departed_at_ = raft_->configuration_index();
  if (!joined_ && conf.find(node_.opts().id) != nullptr) {
    joined_ = true;
    if (join_) join_->stop();
  }
}

bool RaftTicketLog::drained() const {
  // The hand-over is over once this node stepped down, or the core gave the transfer up
  // (or its 2 s bound passed: on_tick clears shutting_down_). Waiting out the bound after
  // a transfer that finished in milliseconds only delayed the exit.
  bool handing_over = shutting_down_ && raft_->role() == raft::Role::kLeader &&
                      raft_->transfer_target() != raft::kNoId;
  return staged_total_ == 0 && proposals_.empty() && !writing_ && !syncing_ && !handing_over;
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
    storage::Status st = writing_ ? storage::Status::ok() : wal_->sync_write(true);
    if (!st) node_.log_line("wal: final flush failed: " + st.message());
    st = wal_->sync_now();  // also after a refused write (a stalled WAL): what is written
    if (!st) node_.log_line("wal: final fdatasync failed: " + st.message());
  }
  if (join_) join_->stop();
}

// ------------------------------------------------------------------------------------------
// Admin commands (run on shard 0).

bool RaftTicketLog::redirect_if_follower(const AdminRequest& req) {
  if (raft_->role() == raft::Role::kLeader) return false;
  uint64_t leader = raft_->leader_id();
  std::string addr = leader == raft::kNoId ? std::string() : service_addr_of(leader);
  if (addr.empty()) {
    reply_error(req, "CLUSTERDOWN no leader");
  } else {
    reply_error(req, "MOVED 0 " + addr);
  }
  return true;
}

void RaftTicketLog::admin_membership(AdminRequest&& req, raft::ConfChangeRequest cc,
                                     std::string ok) {
  if (redirect_if_follower(req)) return;
  raft::ProposeResult r = raft_->propose_conf_change(cc);
  switch (r.status) {
    case raft::ProposeStatus::kOk:
      admin_waiters_.push_back(
          AdminWaiter{r.index, r.term, std::move(req), std::move(ok), now_ms()});
      return;
    case raft::ProposeStatus::kChangePending:
      reply_error(req, "ERR a configuration change is in progress; try again");
      return;
    case raft::ProposeStatus::kTransferInProgress:
      reply_error(req, "ERR leadership transfer in progress; try again");
      return;
    case raft::ProposeStatus::kInvalid:
      reply_error(req, "ERR invalid configuration change");
      return;
    case raft::ProposeStatus::kNotLeader:
      redirect_if_follower(req);
      return;
  }
}

std::string RaftTicketLog::check_new_member(uint64_t id, const std::string& raft_addr,
                                            const std::string& service_addr) const {
  std::string taken = address_taken(id, raft_addr, service_addr);
  if (!taken.empty()) return taken;
  if (raft_->configuration().servers.size() >= raft::kMaxServers) {
    return "ERR the configuration is full (" + std::to_string(raft::kMaxServers) + " servers)";
  }
  return "";
}

std::string RaftTicketLog::address_taken(uint64_t id, const std::string& raft_addr,
                                         const std::string& service_addr) const {
  // Two members on one address would each take the other's links and clients.
  for (const raft::Server& s : raft_->configuration().servers) {
    if (s.id == id) continue;
    ServerContext ctx = decode_context(s.context);
    if (ctx.raft_addr == raft_addr) {
      return "ERR raft address " + raft_addr + " belongs to node " + std::to_string(s.id);
    }
    if (!service_addr.empty() && ctx.service_addr == service_addr) {
      return "ERR service address " + service_addr + " belongs to node " + std::to_string(s.id);
    }
  }
  return "";
}

void RaftTicketLog::admin_addvoter(AdminRequest&& req) {
  // RAFT.ADDVOTER id raft_addr [service_addr]: every argument is checked before anything
  // is proposed, and an existing member is never silently "added" again.
  uint64_t id = 0;
  if (req.args.size() < 3 || req.args.size() > 4 || !parse_u64(req.args[1], &id) || id == 0) {
    reply_error(req, "ERR usage: RAFT.ADDVOTER id raft_addr [service_addr]");
    return;
  }
  std::string bad = check_server_addr(req.args[2], "raft address");
  if (bad.empty() && req.args.size() == 4) bad = check_server_addr(req.args[3], "service address");
  if (!bad.empty()) {
    reply_error(req, bad);
    return;
  }
  if (redirect_if_follower(req)) return;
  std::string ok;
  resp::append_simple(ok, "OK");
  if (const raft::Server* s = raft_->configuration().find(id)) {
    ServerContext ctx = decode_context(s->context);
    if (ctx.raft_addr != req.args[2]) {
      reply_error(req, "ERR node " + std::to_string(id) + " is already a member at " +
                           ctx.raft_addr + " (a member's address changes when it restarts with "
                           "the new --raddr; to replace it, RAFT.REMOVESERVER " +
                           std::to_string(id) + " first)");
      return;
    }
    reply(req, ok);  // already a member at that address (it is promoted once caught up)
    return;
  }
  std::string service = req.args.size() == 4 ? req.args[3] : "";
  add_member(std::move(req), id, ServerContext{req.args[2], service, 0}, ok);
}

void RaftTicketLog::add_member(AdminRequest&& req, uint64_t id, const ServerContext& ctx,
                               std::string ok) {
  std::string bad = check_new_member(id, ctx.raft_addr, ctx.service_addr);
  if (!bad.empty()) {
    reply_error(req, bad);
    return;
  }
  raft::ConfChangeRequest cc;
  cc.kind = raft::ConfChangeRequest::Kind::kAddNonVoter;
  cc.id = id;
  cc.context = encode_context(ctx);
  admin_membership(std::move(req), cc, std::move(ok));
}

void RaftTicketLog::admin_removeserver(AdminRequest&& req) {
  // RAFT.REMOVESERVER id [raft_addr]: with an address, only if it is that member's.
  uint64_t id = 0;
  if (req.args.size() < 2 || req.args.size() > 3 || !parse_u64(req.args[1], &id) || id == 0) {
    reply_error(req, "ERR usage: RAFT.REMOVESERVER id [raft_addr]");
    return;
  }
  if (redirect_if_follower(req)) return;
  const raft::Server* s = raft_->configuration().find(id);
  if (s == nullptr) {
    reply_error(req, "ERR node " + std::to_string(id) + " is not in the configuration");
    return;
  }
  if (req.args.size() == 3) {
    ServerContext ctx = decode_context(s->context);
    if (ctx.raft_addr != req.args[2]) {
      reply_error(req, "ERR node " + std::to_string(id) + " is at " + ctx.raft_addr + ", not " +
                           req.args[2]);
      return;
    }
  }
  raft::ConfChangeRequest cc;
  cc.kind = raft::ConfChangeRequest::Kind::kRemove;
  cc.id = id;
  std::string ok;
  resp::append_simple(ok, "OK");
  admin_membership(std::move(req), cc, ok);
}

void RaftTicketLog::admin_join(AdminRequest&& req) {
  // RAFT.JOIN id raft_addr service_addr incarnation (sent by a node started with --join).
  uint64_t id = 0;
  if (req.args.size() != 5 || !parse_u64(req.args[1], &id) || id == 0) {
    reply_error(req, "ERR usage: RAFT.JOIN id raft_addr service_addr incarnation");
    return;
  }
  std::string bad = check_server_addr(req.args[2], "raft address");
  if (bad.empty()) bad = check_server_addr(req.args[3], "service address");
  if (!bad.empty()) {
    reply_error(req, bad);
    return;
  }
  if (redirect_if_follower(req)) return;
  std::string ok;
  resp::append_simple(ok, "OK " + hex(cluster_id_));
  uint64_t inc = parse_hex(req.args[4]);
  if (const raft::Server* s = raft_->configuration().find(id)) {
    ServerContext ctx = decode_context(s->context);
    if (ctx.incarnation != 0 && ctx.incarnation != inc) {
      reply_error(req, "ERR node " + std::to_string(id) +
                           " is already a member with another incarnation (was its data "
                           "directory wiped?); remove it first with RAFT.REMOVESERVER " +
                           std::to_string(id));
      return;
    }
    reply(req, ok);  // already a member: joining again is a no-op
    return;
  }
  add_member(std::move(req), id, ServerContext{req.args[2], req.args[3], inc}, ok);
}

std::string RaftTicketLog::configuration_reply() {
  std::string out;
  const raft::Configuration& conf = raft_->configuration();
  resp::append_array_header(out, conf.servers.size());
  for (const raft::Server& s : conf.servers) {
    ServerContext ctx = decode_context(s.context);
    resp::append_array_header(out, 8);
    resp::append_bulk(out, "id");
    resp::append_bulk(out, std::to_string(s.id));
    resp::append_bulk(out, "address");
    resp::append_bulk(out, ctx.raft_addr);
    resp::append_bulk(out, "service_address");
    resp::append_bulk(out, service_addr_of(s.id));
    resp::append_bulk(out, "suffrage");
    resp::append_bulk(out, s.suffrage == raft::Suffrage::kVoter ? "Voter" : "Nonvoter");
  }
  return out;
}

std::string RaftTicketLog::stats_reply() {
  std::vector<std::pair<std::string, std::string>> kv;
  auto add = [&](const char* k, std::string v) { kv.emplace_back(k, std::move(v)); };
  add("applied_index", std::to_string(applied_index_));
  add("commit_index", std::to_string(raft_->commit_index()));
  add("fsm_pending", std::to_string(proposals_.size()));
  uint64_t lc = raft_->role() == raft::Role::kLeader ? 0 : raft_->ticks_since_leader_contact();
  add("last_contact", raft_->role() == raft::Role::kLeader ? "0" : std::to_string(lc * 10) + "ms");
  add("last_log_index", std::to_string(raft_->last_index()));
  add("last_log_term", std::to_string(raft_->last_term()));
  add("last_snapshot_index", std::to_string(raft_->snapshot_index()));
  add("last_snapshot_term", std::to_string(raft_->snapshot_term()));
  std::string conf = "[";
  for (const raft::Server& s : raft_->configuration().servers) {
    if (conf.size() > 1) conf += " ";
    conf += "{" + std::string(s.suffrage == raft::Suffrage::kVoter ? "Voter" : "Nonvoter") + " " +
            std::to_string(s.id) + " " + decode_context(s.context).raft_addr + "}";
  }
  conf += "]";
  add("latest_configuration", conf);
  add("latest_configuration_index", std::to_string(raft_->configuration_index()));
  add("num_peers", std::to_string(raft_->configuration().servers.empty()
                                      ? 0
                                      : raft_->configuration().servers.size() - 1));
  add("protocol_version", "1");
  add("state", raft::to_string(raft_->role()));
  add("term", std::to_string(raft_->term()));
  add("leader_id", std::to_string(raft_->leader_id()));
  add("durable_index", std::to_string(wal_->durable_index()));
  add("last_ticket", std::to_string(last_ticket()));
  add("leader_changes_seen", std::to_string(leader_changes_));
  const PeerTransport::Stats& ts = transport_->stats();
  add("peer_msgs_sent", std::to_string(ts.sent_msgs));
  add("peer_msgs_received", std::to_string(ts.recv_msgs));
  add("peer_msgs_dropped", std::to_string(ts.dropped_msgs));
  add("peer_msgs_refused_malformed", std::to_string(raft_->refused(raft::StepStatus::kMalformed)));
  add("peer_msgs_refused_outsider", std::to_string(raft_->refused(raft::StepStatus::kOutsider)));
  add("peer_msgs_refused_conflict", std::to_string(raft_->refused(raft::StepStatus::kConflict)));
  add("peer_conns_refused", std::to_string(ts.refused_conns));
  add("peer_hello_timeouts", std::to_string(ts.hello_timeouts));
  std::string out;
  resp::append_array_header(out, kv.size() * 2);
  for (auto& [k, v] : kv) {
    resp::append_bulk(out, k);
    resp::append_bulk(out, v);
  }
  return out;
}

std::string RaftTicketLog::info_raft() {
  std::string r = "# Raft\r\n";
  auto add = [&](const std::string& k, const std::string& v) { r += k + ":" + v + "\r\n"; };
  add("raft_state", raft::to_string(raft_->role()));
  add("raft_node_id", std::to_string(node_.opts().id));
  add("raft_leader_id", std::to_string(raft_->leader_id()));
  add("raft_leader_address", raft_->leader_id() == raft::kNoId ? "" : service_addr_of(raft_->leader_id()));
  add("raft_term", std::to_string(raft_->term()));
  add("raft_commit_index", std::to_string(raft_->commit_index()));
  add("raft_applied_index", std::to_string(applied_index_));
  add("raft_last_log_index", std::to_string(raft_->last_index()));
  add("raft_snapshot_index", std::to_string(raft_->snapshot_index()));
  add("raft_num_servers", std::to_string(raft_->configuration().servers.size()));
  add("raft_num_voters", std::to_string(raft_->configuration().voter_count()));
  add("raft_leader_changes_seen", std::to_string(leader_changes_));
  add("raft_cluster_id", hex(cluster_id_));
  return r;
}

void RaftTicketLog::admin(AdminRequest&& req) {
  std::string out;
  const std::string& cmd = req.args[0];
  auto is = [&](const char* name) { return resp::iequals(cmd, name); };
  if (is("RAFT.CONFIGURATION")) {
    reply(req, configuration_reply());
  } else if (is("RAFT.STATS")) {
    reply(req, stats_reply());
  } else if (is("RAFT.LEADER")) {
    uint64_t l = raft_->leader_id();
    std::string addr = l == raft::kNoId ? "" : service_addr_of(l);
    if (addr.empty()) {
      reply_error(req, "CLUSTERDOWN no leader");
    } else {
      resp::append_bulk(out, addr);
      reply(req, std::move(out));
    }
  } else if (is("RAFT.LASTCONTACT")) {
    // Milliseconds since this node last heard from a leader; 0 on the leader itself.
    uint64_t ms = raft_->role() == raft::Role::kLeader ? 0 : raft_->ticks_since_leader_contact() * 10;
    resp::append_integer(out, static_cast<int64_t>(ms));
    reply(req, std::move(out));
  } else if (is("RAFT.SNAPSHOT")) {
    maybe_snapshot(true);
    if (snapshot_saving_) {
      snapshot_waiters_.push_back(std::move(req));  // answered once it is durable
    } else {
      resp::append_simple(out, "OK");
      reply(req, std::move(out));
    }
  } else if (is("RAFT.ADDVOTER")) {
    admin_addvoter(std::move(req));
  } else if (is("RAFT.REMOVESERVER")) {
    admin_removeserver(std::move(req));
  } else if (is("RAFT.TRANSFERLEADER")) {
    uint64_t id = 0;
    if (req.args.size() != 2 || !parse_u64(req.args[1], &id) || id == 0) {
      reply_error(req, "ERR usage: RAFT.TRANSFERLEADER id");
      return;
    }
    if (redirect_if_follower(req)) return;
    if (id == node_.opts().id) {
      resp::append_simple(out, "OK");
      reply(req, std::move(out));
      return;
    }
    if (!raft_->transfer_leadership(id)) {
      reply_error(req, "ERR node " + std::to_string(id) + " is not a voter");
      return;
    }
    resp::append_simple(out, "OK");
    reply(req, std::move(out));
  } else if (is("RAFT.JOIN")) {
    admin_join(std::move(req));
  } else if (is("INFO")) {
    // The shard built the other sections; shard 0 adds the raft one.
    resp::append_bulk(out, req.args.size() > 1 ? req.args[1] + info_raft() : info_raft());
    reply(req, std::move(out));
  } else {
    reply_error(req, "ERR unknown admin command '" + cmd + "'");
  }
  pump();
  transport_->flush();
}

// ------------------------------------------------------------------------------------------

bool JoinClient::attempt(const std::string& addr, std::string* reply) {
  std::string host;
  uint16_t port = 0;
  if (!io::parse_host_port(addr, &host, &port)) {
    *reply = "-ERR bad address " + addr;
    return false;
  }
  if (host.empty()) host = "127.0.0.1";
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) {
    ::close(fd);
    *reply = "cannot connect to " + addr;
    return false;
  }
  std::string req = command_ + "\r\n";
  bool ok = ::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size());
  std::string buf;
  char tmp[512];
  while (ok && buf.find("\r\n") == std::string::npos && buf.size() < 4096) {
    ssize_t n = ::recv(fd, tmp, sizeof(tmp), 0);
    if (n <= 0) {
      ok = false;
      break;
    }
    buf.append(tmp, static_cast<size_t>(n));
  }
  ::close(fd);
  if (!ok) {
    *reply = "no reply from " + addr;
    return false;
  }
  *reply = buf.substr(0, buf.find("\r\n"));
  return true;
}

void JoinClient::run() {
  std::string target = target_;
  int backoff_ms = 100;
  int hops = 0;
  while (!stop_.load()) {
    std::string reply;
    bool got = attempt(target, &reply);
    if (got && reply.rfind("+OK", 0) == 0) {
      uint64_t cid = reply.size() > 4 ? parse_hex(std::string_view(reply).substr(4)) : 0;
      cluster_id_.store(cid == 0 ? 1 : cid);
      log_("accepted by " + target + " (" + reply + ")");
      return;
    }
    if (got && reply.rfind("-MOVED ", 0) == 0 && hops < 8) {
      size_t sp = reply.rfind(' ');
      target = reply.substr(sp + 1);
      ++hops;
      continue;
    }
    log_("not yet: " + (reply.empty() ? std::string("no answer") : reply) + " (retrying)");
    hops = 0;
    target = target_;
    for (int waited = 0; waited < backoff_ms && !stop_.load(); waited += 20)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    backoff_ms = std::min(backoff_ms * 2, 2000);
  }
}

}  // namespace

std::unique_ptr<TicketLog> make_raft_ticket_log(Node& node) {
  return std::make_unique<RaftTicketLog>(node);
}

}  // namespace ticketd::server
