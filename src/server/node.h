// The node: its shards, and the ticket log that shard 0 runs.
// Promises: exactly one TicketLog, driven only from shard 0's thread; every other shard
// reaches it through its SPSC pipes. Never: shares a connection between shards.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config_command.h"
#include "shard.h"
#include "ticketd/base/log.h"
#include "ticketd/auth/acl.h"
#include "ticketd/server/options.h"
#include "ticketd/tls/context.h"

namespace ticketd::server {

class MetricsEndpoint;

// Figures the ticket log publishes for INFO and RAFT.* (written by shard 0, read anywhere).
struct LogStats {
  std::atomic<uint64_t> counter{0};         // the last ticket handed out (applied state)
  std::atomic<uint64_t> last_index{0};      // last log index
  std::atomic<uint64_t> durable_index{0};   // last index known durable locally
  std::atomic<uint64_t> writes{0};          // log writes issued
  std::atomic<uint64_t> syncs{0};           // fdatasyncs issued (beyond RWF_DSYNC writes)
  std::atomic<uint64_t> batched_tickets{0}; // tickets that went through the log
  std::atomic<uint64_t> snapshot_index{0};
  std::atomic<uint64_t> snapshots{0};
  std::atomic<uint64_t> write_errors{0};
  std::atomic<uint64_t> last_write_us{0};   // duration of the last durable write
  std::atomic<uint64_t> writes_in_flight{0};   // log writes in flight now
  std::atomic<uint64_t> max_writes_in_flight{1};  // --wal-writes-in-flight
  std::atomic<uint64_t> overlapped_writes{0};  // writes started while another was in flight
  // Window mode: times the leader's lease stood for a quorum round (--lease), and rounds run.
  std::atomic<uint64_t> window_lease_confirms{0};
  std::atomic<uint64_t> window_rounds{0};
  std::atomic<bool> direct_io{false};
  std::atomic<bool> wal_stalled{false};     // no new WAL segment could be made (full disk)
  std::atomic<uint64_t> sequences{1};       // named sequences, `default` included (applied state)
  std::atomic<uint64_t> snapshot_ms{0};     // now_ms() when this node last made or installed one
  // /metrics histograms (shard 0 writes, the metrics thread reads): how long each WAL write
  // took until durable (as the durability level defines it), how long from proposing an
  // Allocate entry to applying it (the leader's commit), and how many tickets each log write
  // that carried tickets held.
  metrics::LatencyHistogram wal_write_ns;
  metrics::Counter wal_write_ns_sum;
  metrics::LatencyHistogram commit_ns;
  metrics::Counter commit_ns_sum;
  metrics::LatencyHistogram write_tickets;
  metrics::Counter write_tickets_sum;
};

// What /metrics shows of Raft (src/server/metrics_endpoint.cpp), published by shard 0 with
// ReplicationView every 100 ms. Indexes are Raft log indexes.
struct RaftMetricsView {
  struct Peer {
    uint64_t id = 0;
    std::string raft_addr;
    bool voter = false;
    bool link_up = false;        // our link to it is connected
    bool progress = false;       // the fields below are known (this node leads)
    uint64_t match = 0;          // the last entry it has durable, as the leader knows
    uint64_t last_contact_ms = 0;
  };
  bool published = false;
  std::string role;              // leader, follower, candidate, precandidate
  uint64_t term = 0;
  uint64_t leader_id = 0;        // 0: none known
  uint64_t leader_changes = 0;
  uint64_t commit_index = 0;
  uint64_t applied_index = 0;
  uint64_t last_index = 0;
  uint64_t snapshot_index = 0;
  bool voter = false;            // this node votes in its latest configuration
  std::vector<Peer> peers;       // every other member of the latest configuration
};

// What INFO replication shows (src/server/cluster_api.cpp), published by the ticket log on
// shard 0 every 100 ms (RaftTicketLog::publish_replication). Offsets are Raft log indexes.
struct ReplicationView {
  struct Replica {
    std::string host;
    uint16_t port = 0;
    uint64_t offset = 0;  // its match index: the last entry it has durable
    uint64_t lag_s = 0;   // seconds since it last answered
  };
  bool master = false;            // this node leads
  std::string master_host;        // a follower's leader (its client address); empty: none known
  uint16_t master_port = 0;
  bool master_link_up = false;    // heard from the leader within an election timeout
  uint64_t master_last_io_s = 0;  // seconds since it last heard from the leader
  uint64_t offset = 0;            // this node's last log index
  std::string replid;             // the shard id (40 hex): the same on every member
  std::vector<Replica> replicas;  // the leader's followers that answered recently
};

// A command that must run on shard 0 (Raft admin, status). The reply goes back with
// Node::reply_admin, which keeps it in its place in the connection's pipeline.
struct AdminRequest {
  uint32_t shard = 0;
  Connection* conn = nullptr;
  uint64_t seq = 0;  // the connection's admin slot this answers (replies finish in any order)
  std::vector<std::string> args;
};

// The sequencer behind TICKET. It runs on shard 0's loop.
class TicketLog {
 public:
  virtual ~TicketLog() = default;
  // Opens/recovers storage. False with *err when the node must not start.
  virtual bool open(std::string* err) = 0;
  // Binds to shard 0's loop (called on shard 0's thread before any submit).
  virtual void attach(io::Loop* loop) = 0;
  // One batch from `shard`: a sum for the default sequence and its named part (which the
  // log holds until it hands it back in the result). Results go back through
  // Shard::post_result / deliver_result, in submission order per shard. May answer earlier
  // batches before it returns.
  virtual void submit(uint32_t shard, const BatchRequest& b) = 0;
  // End of shard 0's loop turn: start a write if none is in flight and work is pending.
  virtual void on_turn_end() = 0;
  // Graceful stop: finish what is in flight. True once nothing is pending.
  virtual bool drained() const = 0;
  // Synchronous best-effort flush at shutdown (low/medium durability).
  virtual void close() = 0;
  // An admin command (RAFT.*, INFO raft). Answer with Node::reply_admin, now or later.
  virtual void admin(AdminRequest&& req) = 0;
  // SIGTERM: a leader hands leadership over before the node goes (drained() waits for it).
  virtual void begin_shutdown() {}
};

std::unique_ptr<TicketLog> make_raft_ticket_log(Node& node);

// What shards need to know to admit or redirect a TICKET. kElection: this member knows no
// leader yet; its TICKETs wait in the log for one (at most kElectionHoldMs, raft_ticket_log.h),
// then leave as -MOVED to it, are proposed here, or fail -CLUSTERDOWN.
enum class ClusterRole : int { kNoLeader = 0, kLeader = 1, kFollower = 2, kElection = 3 };

class Node {
 public:
  explicit Node(const ServerOptions& opts);
  ~Node();

  const ServerOptions& opts() const { return opts_; }
  std::string data_dir() const;  // <dir>/<id>
  Shard& shard(uint32_t i) { return *shards_[i]; }
  uint32_t shard_count() const { return static_cast<uint32_t>(shards_.size()); }
  TicketLog& log() { return *log_; }
  LogStats& log_stats() { return log_stats_; }

  bool start(std::string* err);
  void wait();
  void stop();

  // The client listener host/port (resolved once at start; shards bind their own sockets).
  const std::string& service_host() const { return service_host_; }
  uint16_t service_port() const { return service_port_.load(); }
  void set_service_port(uint16_t p) { service_port_.store(p); }

  // The users clients log in as (built at start, then read-only) and the clients per user.
  const auth::UserTable& users() const { return users_; }
  std::atomic<uint64_t>& user_clients(uint32_t user_id) { return user_clients_[user_id]; }
  std::atomic<uint64_t>& unauthenticated_clients() { return unauthenticated_clients_; }
  // Protected mode is on and no password protects the default user: loopback clients only.
  bool protected_mode_active() const { return protected_mode_active_; }

  // CONFIG GET's table: the flags, the node's effective values and Redis's names for them
  // (built in start() before any shard runs, then read-only).
  const ConfigTable& config_table() const { return config_table_; }
  // TLS: the certificate, key and CA contexts (null when TLS is not configured). Loaded at
  // start; reload_tls (SIGHUP, TLS.RELOAD) swaps in new ones or keeps the old with *err.
  tls::Contexts* tls() { return tls_.get(); }
  bool reload_tls(std::string* err);

  // Every shard's command and error counters summed, less the last CONFIG RESETSTAT's
  // baseline (any thread; never on the ticket path).
  metrics::StatsView command_stats();
  void reset_command_stats();

  uint64_t start_ms() const { return start_ms_; }
  std::atomic<uint64_t>& connections_total() { return conn_total_; }

  // Called on shard 0 by its loop: drain every shard's requests into the ticket log.
  void drain_requests();
  // Any shard -> shard 0: queue an admin command and wake shard 0.
  void post_admin(AdminRequest&& req, io::Loop* from);
  void drain_admin();
  void reply_admin(const AdminRequest& req, std::string bytes);

  // Log lines (base/log.h: timestamp, node id, level marker). log_line is notice.
  void log_line(const std::string& msg) { log(logging::Level::kNotice, msg); }
  void log_warning(const std::string& msg) { log(logging::Level::kWarning, msg); }
  void log(logging::Level level, const std::string& msg) { logging::write(level, opts_.id, msg); }

  // Published by the ticket log on shard 0; read by every shard.
  void publish_role(ClusterRole role, const std::string& leader_service_addr);
  ClusterRole role() const { return static_cast<ClusterRole>(role_.load(std::memory_order_acquire)); }
  std::string leader_service_addr();
  // INFO replication's figures (cluster_api.h), published by shard 0, read by any shard.
  void publish_replication(ReplicationView v) {
    std::lock_guard<std::mutex> g(replication_mu_);
    replication_ = std::move(v);
  }
  ReplicationView replication() {
    std::lock_guard<std::mutex> g(replication_mu_);
    return replication_;
  }
  void publish_raft_metrics(RaftMetricsView v) {
    std::lock_guard<std::mutex> g(replication_mu_);
    raft_metrics_ = std::move(v);
  }
  RaftMetricsView raft_metrics() {
    std::lock_guard<std::mutex> g(replication_mu_);
    return raft_metrics_;
  }
  // --metrics-addr: the port bound (0: none).
  uint16_t metrics_port() const;

 private:
  ServerOptions opts_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<TicketLog> log_;
  LogStats log_stats_;
  auth::UserTable users_;
  std::unique_ptr<std::atomic<uint64_t>[]> user_clients_;
  std::atomic<uint64_t> unauthenticated_clients_{0};
  bool protected_mode_active_ = false;
  std::unique_ptr<tls::Contexts> tls_;
  std::string service_host_;
  std::atomic<uint16_t> service_port_{0};
  std::atomic<uint64_t> conn_total_{0};
  uint64_t start_ms_ = 0;
  ConfigTable config_table_;
  std::mutex stop_mu_;  // only start/stop/wait, never the ticket path
  bool stopped_ = false;
  std::mutex admin_mu_; // admin commands only, never the TICKET path
  std::vector<AdminRequest> admin_inbox_;
  std::atomic<int> role_{0};
  std::mutex leader_mu_;  // guards leader_addr_: read only when refusing a TICKET
  std::string leader_addr_;
  std::mutex stats_reset_mu_;  // INFO and CONFIG RESETSTAT only
  metrics::StatsView stats_baseline_;
  std::mutex replication_mu_;  // INFO replication only, never the ticket path
  ReplicationView replication_;
  RaftMetricsView raft_metrics_;
  std::unique_ptr<MetricsEndpoint> metrics_;  // --metrics-addr (metrics_endpoint.h)
};

uint64_t now_ms();
uint64_t now_us();
uint64_t mono_ns();  // steady clock, nanoseconds

}  // namespace ticketd::server
