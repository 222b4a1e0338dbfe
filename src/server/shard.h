// A shard: one thread, one io_uring loop, its own connections and receive buffers.
// Promises: replies leave each connection in request order; the TICKETs of one turn on
// this shard travel to the ticket log as ONE batch. Never: touches another shard's
// connections, or blocks its loop on anything but io_uring.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "spsc_queue.h"
#include "ticketd/io/loop.h"
#include "ticketd/metrics/stats.h"
#include "ticketd/resp/parser.h"
#include "ticketd/tls/session.h"

namespace ticketd::auth {
struct User;
}

namespace ticketd::server {

class Node;
class Shard;

// Ticket log -> shard: why a batch (or one sequence's part of it) got no range.
enum class BatchStatus : uint8_t {
  kOk, kLogFailed, kNoLeader, kNotLeader, kLeadershipLost, kStopping, kExhausted,
  kNoSuchSequence,  // a named sequence's part only: the sequence does not exist
};
const char* batch_status_error(BatchStatus s);  // the -ERR text for a failed batch

// The named part of one batch: the tickets asked in it of each sequence other than
// `default`, one slot per sequence (names are interned per batch on the shard, so a
// sequence asked a thousand times in a turn is one slot). Allocated by the shard only for a
// batch that has a named request (the default TICKET never allocates one); the ticket
// log fills in each slot's answer and hands it back with the BatchResult; the shard frees it.
struct NamedBatch {
  struct Slot {
    std::string name;
    uint64_t total = 0;   // tickets of this sequence in the batch (shard)
    uint32_t item = 0;    // this sequence's item in the staged entry (log, while staged)
    uint64_t first = 0;   // the slot's range is [first, first + total) (log's answer)
    BatchStatus status = BatchStatus::kOk;
  };
  std::vector<Slot> slots;  // PendingRequest::slot s > 0 is slots[s - 1]
};
// A batch holds at most this many sequences besides `default` (bounds an entry's items).
inline constexpr size_t kMaxBatchSequences = 1024;

// Shard -> ticket log: every ticket request this shard collected in one loop turn: a sum
// for the default sequence, and the named part (nullptr when there is none).
struct BatchRequest {
  uint64_t total = 0;
  NamedBatch* named = nullptr;
};

// Ticket log -> shard: the default part's range [start, start + total) or its failure,
// and the named part (the same object the shard sent, answered slot by slot).
// Results come back in the order the shard sent its requests.
struct BatchResult {
  uint64_t start = 0;
  uint64_t total = 0;
  BatchStatus status = BatchStatus::kOk;
  NamedBatch* named = nullptr;
};

// Counters of one shard, read by INFO from any thread (relaxed: figures, not control).
struct ShardStats {
  std::atomic<uint64_t> connected{0};
  std::atomic<uint64_t> accepted{0};
  std::atomic<uint64_t> rejected{0};
  std::atomic<uint64_t> commands{0};
  std::atomic<uint64_t> tickets{0};
  std::atomic<uint64_t> ticket_requests{0};
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> auth_failures{0};      // AUTH / HELLO AUTH with a wrong pair
  std::atomic<uint64_t> perm_denied{0};        // -NOPERM
  std::atomic<uint64_t> protected_refused{0};  // -DENIED: not loopback, no password
  std::atomic<uint64_t> reply_bound_drops{0};  // clients dropped at the 64 MiB reply bound
  // TLS (src/server/shard_tls.cpp).
  std::atomic<uint64_t> tls_connected{0};          // TLS connections now
  std::atomic<uint64_t> tls_handshakes{0};         // handshakes that passed
  std::atomic<uint64_t> tls_handshake_failures{0}; // refused: bad certificate, not TLS...
  std::atomic<uint64_t> tls_handshake_timeouts{0}; // not done within the timeout
  std::atomic<uint64_t> tls_errors{0};             // broken TLS streams after the handshake
  std::atomic<uint64_t> tls_on_plaintext_port{0};  // a TLS ClientHello on the plaintext port
};

struct Connection {
  Shard* shard = nullptr;
  int fd = -1;
  uint64_t id = 0;
  io::Completion recv_c;
  io::Completion send_c;
  resp::Parser parser;
  std::string inbuf;    // the unparsed tail of earlier reads (an incomplete command)
  std::string out;      // replies ready to send, not yet handed to the kernel
  std::string sending;  // replies handed to the kernel by the send in flight
  size_t send_off = 0;
  bool recv_armed = false;
  bool send_inflight = false;
  bool closing = false;          // no more input is processed
  bool close_after_flush = false;
  bool dirty = false;            // queued for this turn's flush
  bool cancel_sent = false;      // the multishot recv was asked to stop
  bool shut_down = false;
  bool lingering = false;        // stopping: replies sent, write side shut, awaiting the ACK
  uint64_t outstanding = 0;      // ticket requests the shard still has to answer
  // Replies waiting behind a request whose answer has not come back yet (a TICKET waiting
  // for its range, or an admin command running on shard 0). Each entry is a pending ticket
  // request (tickets > 0), a pending admin command (admin), or encoded bytes; `bytes` of a
  // pending entry are filled in when it resolves. The front leaves once it is resolved.
  struct Segment {
    uint64_t tickets = 0;
    bool admin = false;
    bool pending = false;
    uint64_t admin_seq = 0;  // which admin command (they finish in any order)
    std::string bytes;
    size_t charged = 0;      // what this segment counts in waiting_bytes
    bool block = false;      // a TICKET.BLOCK: one [first, last] reply for its `tickets`
    uint16_t cmd = 0;        // a pending admin command: which one, and when it was read
    uint64_t t0_ns = 0;      // (INFO commandstats counts it when its reply arrives)
  };
  std::deque<Segment> waiting;
  // What `waiting` holds or will need, for the reply bound: encoded bytes, the replies a
  // pending ticket request will take, each segment's own size. The back segment's growth
  // is counted when it is checked (Shard::recharge), not on every append.
  size_t waiting_bytes = 0;
  uint64_t next_admin_seq = 0;
  uint64_t ticket_run = 0;  // consecutive TICKETs of the current read, not yet queued
  std::string name;         // CLIENT SETNAME
  // Who this connection is logged in as (null: nobody yet; only AUTH, HELLO, QUIT run).
  // Users live as long as the node.
  const auth::User* user = nullptr;
  bool user_counted = false;  // counted in the node's per-user client counts
  bool may_ticket = false;    // user may run TICKET: the fast path's only check
  uint64_t created_ms = 0;
  // TLS (src/server/shard_tls.cpp): the session over this socket (ciphertext in through
  // the receive buffers, out through `out`/`sending`); null on a plaintext connection.
  std::unique_ptr<tls::Session> tls;
  bool tls_handshaking = false;  // counted in Shard::handshaking_
  bool seen_input = false;       // plaintext: the first bytes were looked at (a TLS hello?)
  explicit Connection(const resp::Limits& l) : parser(l) {}
};

class Shard {
 public:
  Shard(Node& node, uint32_t index);
  ~Shard();

  uint32_t index() const { return index_; }
  Node& node() { return node_; }
  io::Loop* loop() { return loop_.get(); }
  ShardStats& stats() { return stats_; }
  // INFO commandstats / errorstats / latencystats: written by this shard's thread only,
  // summed by Node::command_stats.
  const metrics::CommandStats& command_stats() const { return cmd_stats_; }
  // The command table's accounting (Commands::run): a command about to run (a command it
  // sends to shard 0 is counted when the answer returns), one that answered now, one refused
  // before it ran, an error reply outside any command.
  void begin_command(size_t id, uint64_t t0_ns) {
    current_cmd_ = id;
    current_t0_ = t0_ns;
    refused_at_admission_ = false;
  }
  void finish_command(size_t id, uint64_t ns, std::string_view reply);
  void reject(size_t id, std::string_view reply, uint64_t n = 1);
  void count_error(std::string_view reply, uint64_t n = 1);

  // Starts the thread; `ready` is signalled when the listener is armed (or failed).
  void start();
  void join();
  // Requests a graceful stop from any thread.
  void request_stop();
  bool start_failed(std::string* err) const;
  bool started() const { return started_.load(std::memory_order_acquire); }

  // The cross-thread pipes to the ticket log (shard 0). to_log_: this shard produces,
  // shard 0 consumes. from_log_: shard 0 produces, this shard consumes.
  SpscQueue<BatchRequest>& to_log() { return to_log_; }
  bool post_result(const BatchResult& r, io::Loop* from);
  // Shard 0 only: the ticket log answers its own shard's batches directly (same thread).
  void deliver_result(const BatchResult& r);

  // Reply helpers used by the command handlers.
  void reply(Connection* c, std::string_view bytes);
  std::string& reply_buffer(Connection* c);  // where the next reply's bytes go (ordered)
  // TICKET name / TICKET.BLOCK name count: `n` tickets of sequence `name` (checked by the
  // caller), answered as `n` simple strings or, for a block, one [first, last] array. A
  // request of `default` joins the default sum (plain TICKET's path).
  void queue_sequence_request(Connection* c, std::string_view name, uint64_t n, bool block);
  // Runs `args` on shard 0 (Raft admin commands, INFO raft...); the reply comes back later
  // and keeps its place in the connection's pipeline.
  void submit_admin(Connection* c, std::span<const std::string_view> args);
  // Shard 0 -> this shard: the answer to an admin command (any thread).
  void post_admin_reply(Connection* c, uint64_t seq, std::string bytes);
  // Another shard accepted `fd` (on the TLS listener if `tls`) for this one (any thread);
  // false if this shard has stopped taking connections (the caller keeps the fd).
  bool post_connection(int fd, bool tls, io::Loop* from);

 private:
  void thread_main();
  void arm_accept(bool tls);
  static void on_accept(io::Completion* c, int32_t res, uint32_t flags);
  Shard* placement();       // where a newly accepted connection should live
  void adopt(int fd, bool tls);  // makes `fd` a connection of this shard
  void drain_handoffs();
  void close_handoffs();    // at exit: no more handoffs; closes those not adopted
  static void on_recv(io::Completion* c, int32_t res, uint32_t flags);
  static void on_send(io::Completion* c, int32_t res, uint32_t flags);
  void receive(Connection* c, const char* data, size_t len);  // bytes from the socket
  void handle_input(Connection* c, const char* data, size_t len);  // plaintext
  // Stopping: reads what the socket holds now (sent before the stop), then closes after
  // answering it.
  void finish_input(Connection* c);
  void begin_stop();        // stop accepting and reading; answer what is in flight
  void linger_check();      // closes the lingering connections whose replies were ACKed
  // Runs the complete commands at the front of [data, data+len); returns bytes consumed.
  size_t run_commands(Connection* c, const char* data, size_t len);
  void queue_ticket_run(Connection* c);
  void mark_dirty(Connection* c);
  void flush(Connection* c);
  void start_close(Connection* c);
  void maybe_free(Connection* c);
  void on_turn_end();
  void on_wake();
  void send_batch();
  void drain_results();
  void apply_result(const BatchResult& r);
  // The reply for one ticket request that got no range (`name`: its sequence, if named).
  void append_ticket_error(std::string& out, BatchStatus st, const std::string* name);
  void drain_admin_replies();
  void release_ready(Connection* c);  // moves resolved replies at the front to `out`
  void push_segment(Connection* c, Connection::Segment seg);
  void recharge(Connection* c, Connection::Segment& seg);  // updates waiting_bytes
  bool over_reply_bound(Connection* c);  // queued replies (all of them) past kMaxOutput
  // Would `extra` more bytes of replies (replacing `replaced` bytes already charged) take
  // `c` past kMaxOutput?
  bool would_pass_reply_bound(const Connection* c, size_t replaced, size_t extra) const;
  // Drops a client whose replies passed the bound: they are discarded, not written out.
  void drop_unread(Connection* c);
  // `n` copies of `reply` behind what `out` holds (one refusal per refused ticket).
  static void append_repeated(std::string& out, std::string_view reply, uint64_t n);
  // TLS (src/server/shard_tls.cpp): a session per connection over memory BIOs; the ring
  // still owns the socket. Ciphertext in: tls_receive; out: tls_seal turns `out` into
  // ciphertext just before a send. A handshake not done in time is closed (tls_expire).
  bool tls_adopt(Connection* c);  // false: no session could be made
  void tls_receive(Connection* c, const char* data, size_t len);
  void tls_seal(Connection* c);
  void tls_failed(Connection* c, bool in_handshake);
  void tls_forget(Connection* c);  // the connection closes: uncount its handshake
  bool tls_refuse_on_plaintext(Connection* c, const char* data, size_t len);
  void tls_arm_timer();
  void tls_expire();

  Node& node_;
  uint32_t index_;
  std::unique_ptr<io::Loop> loop_;
  std::unique_ptr<io::BufferRing> bufs_;
  int listen_fd_ = -1;         // plaintext clients (-1: --saddr port 0, none)
  io::Completion accept_c_;
  bool accept_armed_ = false;
  int tls_listen_fd_ = -1;     // TLS clients (--tls-port), -1: none
  io::Completion tls_accept_c_;
  bool tls_accept_armed_ = false;
  uint32_t handshaking_ = 0;   // TLS connections whose handshake is not done
  io::Completion tls_timer_c_;
  __kernel_timespec tls_ts_{};
  bool tls_timer_armed_ = false;
  std::unique_ptr<char[]> tls_plain_;  // decrypted input, handed to handle_input
  uint64_t tls_logged_ms_ = 0;         // refused handshakes: one log line per 10 s
  uint64_t tls_unlogged_ = 0;
  std::thread thread_;
  std::atomic<bool> started_{false};
  std::atomic<bool> failed_{false};
  std::string fail_msg_;
  std::atomic<bool> stop_requested_{false};
  bool stopping_ = false;  // begin_stop ran (this thread only)
  ShardStats stats_;
  metrics::CommandStats cmd_stats_;
  size_t ticket_cmd_ = 0;             // TICKET's and TICKET.BLOCK's places in the table
  size_t block_cmd_ = 0;
  size_t current_cmd_ = 0;            // the command Commands::run is running
  uint64_t current_t0_ = 0;
  bool refused_at_admission_ = false; // it asked for tickets this node does not take now
  // One clock read per loop turn for the ticket path's latency (cleared at the turn's end).
  uint64_t turn_ns_ = 0;
  uint64_t turn_ns();

  SpscQueue<BatchRequest> to_log_{1024};
  SpscQueue<BatchResult> from_log_{1024};
  uint64_t next_conn_id_ = 1;
  io::Completion drain_timer_c_;
  __kernel_timespec drain_ts_{.tv_sec = 0, .tv_nsec = 10'000'000};
  bool drain_timer_armed_ = false;

  struct PendingRequest {
    Connection* conn;
    uint64_t n;
    uint32_t slot = 0;   // 0: the default sequence; s > 0: its batch's named slot s - 1
    bool block = false;  // one [first, last] reply instead of n simple strings
    uint64_t t0_ns = 0;  // when it was read (its latency ends when its range arrives)
  };
  // Every request waiting for its range, oldest first. The newest ones have not been sent
  // to the log yet (this turn's, or the queue was full): unsent_total_ tickets of the
  // default sequence, and unsent_named_'s slots.
  std::deque<PendingRequest> requests_;
  uint64_t unsent_total_ = 0;
  std::unique_ptr<NamedBatch> unsent_named_;
  // Interns the names of unsent_named_: name -> slot (cleared when the batch is sent).
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view v) const { return std::hash<std::string_view>{}(v); }
  };
  std::unordered_map<std::string, uint32_t, NameHash, std::equal_to<>> unsent_slots_;
  // What one TICKET reply takes, for the reply bound: "+<n>\r\n" for the latest range's
  // end plus a digit to spare; the most a u64 takes until the first range arrives.
  size_t ticket_reply_bytes_ = 23;
  uint64_t outstanding_batches_ = 0;
  std::mutex admin_mu_;  // admin replies only: never on the TICKET path
  struct AdminReply {
    Connection* conn;
    uint64_t seq;
    std::string bytes;
  };
  std::vector<AdminReply> admin_replies_;
  std::mutex handoff_mu_;  // accepts handed over by other shards (rare: once per connection)
  struct Handoff {
    int fd;
    bool tls;
  };
  std::vector<Handoff> handoffs_;
  bool handoffs_closed_ = false;
  std::vector<Connection*> dirty_;
  std::vector<Connection*> all_;  // every live connection (for shutdown)

  friend class Commands;
};

}  // namespace ticketd::server
