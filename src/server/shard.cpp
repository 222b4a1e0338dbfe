#include "shard.h"
#include "trace.h"

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "client_auth.h"
#include "commands.h"
#include "node.h"
#include "ticketd/base/check.h"
#include "ticketd/resp/writer.h"
#include "ticketd/tickets/state_machine.h"

namespace ticketd::server {

namespace {
constexpr unsigned kRecvBuffers = 512;        // per shard, shared by all its connections
constexpr unsigned kRecvBufSize = 16 * 1024;
constexpr size_t kMaxStash = 2 * 1024 * 1024;  // an incomplete command may not grow past this
// Replies queued for one client (unsent, or waiting behind a pending request) before we
// drop it.
constexpr size_t kMaxOutput = 64 * 1024 * 1024;
constexpr size_t kSegmentBytes = 1024 * 1024;   // replies waiting: start a new segment past this
constexpr size_t kPendingAdminBytes = 256;      // an admin command in flight (its copy, its slot)
constexpr uint64_t kMaxOutstandingBatches = 512;  // stays below the result queue's capacity
constexpr size_t kMaxTicketReplyBytes = 1 + 20 + 2;  // ":<u64>\r\n"

// True while bytes we sent on `fd` (or our FIN) wait for the peer's acknowledgement on a
// connection that still stands (a reset one has nothing left to deliver).
bool replies_unacknowledged(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof(ti);
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0 || ti.tcpi_state == TCP_CLOSE) {
    return false;
  }
  int unacked = 0;
  return ::ioctl(fd, SIOCOUTQ, &unacked) == 0 && unacked > 0;
}

// Redis's protected-mode refusal, with ticketd's ways out.
constexpr std::string_view kProtectedModeDenied =
    "-DENIED ticketd is running in protected mode because protected mode is enabled and no "
    "password is set for the default user. In this mode connections are only accepted from the "
    "loopback interface. If you want to connect from external computers to ticketd you may "
    "adopt one of the following solutions: 1) Set up an authentication password for the "
    "default user: restart the server with '--requirepass-file FILE' (or the "
    "TICKETD_REQUIREPASS environment variable, or '--requirepass PASSWORD'), or give it users "
    "with '--aclfile FILE'. 2) If the server can be reached only from networks you trust, "
    "restart it with the '--protected-mode no' option. NOTE: You only need to do one of the "
    "above things in order for the server to start accepting connections from the outside.\r\n";

// Refuses a connection at accept, as Redis does: one error line (it fits in a fresh
// socket's buffer, so the send does not block), then close.
void refuse_connection(int fd, std::string_view line) {
  if (!line.empty()) {
    ssize_t n = ::send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    (void)n;
  }
  ::close(fd);
}

}  // namespace

const char* batch_status_error(BatchStatus s) {
  switch (s) {
    case BatchStatus::kOk: return "";
    case BatchStatus::kLogFailed: return "ERR write-ahead log write failed; ticket not issued";
    case BatchStatus::kNoLeader: return "CLUSTERDOWN no leader";
    case BatchStatus::kNotLeader: return "ERR node is not the leader";
    case BatchStatus::kLeadershipLost:
      return "CLUSTERDOWN leadership lost before the ticket committed; ticket not issued";
    case BatchStatus::kStopping: return "ERR server is shutting down";
    case BatchStatus::kExhausted: return "ERR ticket space exhausted; ticket not issued";
    case BatchStatus::kNoSuchSequence: return "ERR no such sequence";
  }
  return "ERR internal";
}

Shard::Shard(Node& node, uint32_t index)
    : node_(node),
      index_(index),
      cmd_stats_(Commands::command_count()),
      ticket_cmd_(Commands::ticket_id()),
      block_cmd_(Commands::ticket_block_id()) {}

uint64_t Shard::turn_ns() {
  if (turn_ns_ == 0) turn_ns_ = mono_ns();
  return turn_ns_;
}

namespace {
// A redirect is not a failure of the command: Redis counts -MOVED as a rejected call.
bool is_redirect(std::string_view reply) {
  std::string_view w = metrics::ErrorCounters::error_word(reply);
  return w == "MOVED" || w == "ASK";
}
bool is_error(std::string_view reply) { return !reply.empty() && reply[0] == '-'; }
}  // namespace

void Shard::finish_command(size_t id, uint64_t ns, std::string_view reply) {
  if (refused_at_admission_ || is_redirect(reply)) {
    reject(id, reply);
    return;
  }
  cmd_stats_.record_call(id, ns, 1, is_error(reply));
  count_error(reply);
}

void Shard::reject(size_t id, std::string_view reply, uint64_t n) {
  cmd_stats_.record_rejected(id, n);
  count_error(reply, n);
}

void Shard::count_error(std::string_view reply, uint64_t n) {
  if (is_error(reply)) cmd_stats_.errors().add(metrics::ErrorCounters::error_word(reply), n);
}

Shard::~Shard() {
  if (thread_.joinable()) thread_.join();
}

void Shard::start() { thread_ = std::thread([this] { thread_main(); }); }

void Shard::join() {
  if (thread_.joinable()) thread_.join();
}

bool Shard::start_failed(std::string* err) const {
  if (failed_.load(std::memory_order_acquire)) {
    *err = fail_msg_;
    return true;
  }
  return false;
}

void Shard::request_stop() {
  stop_requested_.store(true, std::memory_order_release);
  if (loop_) loop_->wake();
}

void Shard::thread_main() {
  try {
    // The ring is created on the thread that submits to it (SINGLE_ISSUER).
    loop_ = std::make_unique<io::Loop>();
    bufs_ = std::make_unique<io::BufferRing>(*loop_, 1, kRecvBuffers, kRecvBufSize);
  } catch (const std::exception& e) {
    fail_msg_ = e.what();
    failed_.store(true, std::memory_order_release);
    started_.store(true, std::memory_order_release);
    return;
  }
  std::string err;
  // The plaintext listener (none with --saddr port 0) and the TLS one (--tls-port).
  for (bool tls : {false, true}) {
    uint16_t port = tls ? node_.opts().tls_port : node_.service_port();
    if (port == 0) continue;
    int fd = io::listen_tcp(node_.service_host(), port, true, &err);
    if (fd < 0) {
      fail_msg_ = err;
      failed_.store(true, std::memory_order_release);
      started_.store(true, std::memory_order_release);
      return;
    }
    (tls ? tls_listen_fd_ : listen_fd_) = fd;
    io::Completion& ac = tls ? tls_accept_c_ : accept_c_;
    ac.owner = this;
    ac.fn = &Shard::on_accept;
    arm_accept(tls);
  }
  loop_->set_on_turn_end([this] { on_turn_end(); });
  loop_->set_on_wake([this] { on_wake(); });
  if (index_ == 0) node_.log().attach(loop_.get());
  started_.store(true, std::memory_order_release);

  bool closed_listener = false;
  uint64_t stop_deadline = 0;
  while (true) {
    loop_->run_once(true);
    if (!stop_requested_.load(std::memory_order_acquire)) continue;
    if (!closed_listener) {
      closed_listener = true;
      begin_stop();
      stop_deadline = now_ms() + 5000;
    }
    linger_check();
    bool idle = requests_.empty() && all_.empty() && (index_ != 0 || node_.log().drained());
    if (idle) break;
    if (now_ms() > stop_deadline) {
      size_t lingering = 0, unsent = 0;
      for (Connection* c : all_) {
        lingering += c->lingering ? 1 : 0;
        unsent += c->waiting.empty() && c->out.empty() && !c->send_inflight ? 0 : 1;
      }
      node_.log_line("shard " + std::to_string(index_) + ": stop deadline passed with " +
                     std::to_string(all_.size()) + " connection(s) open (" +
                     std::to_string(unsent) + " with replies unsent, " +
                     std::to_string(lingering) + " with replies unacknowledged), " +
                     std::to_string(requests_.size()) + " ticket request(s) pending" +
                     (index_ == 0 && !node_.log().drained() ? ", the log not drained" : ""));
      break;
    }
    // Keep turning while draining: a short timer makes sure we wake to re-check.
    if (!drain_timer_armed_) {
      drain_timer_armed_ = true;
      drain_timer_c_.owner = this;
      drain_timer_c_.fn = [](io::Completion* c, int32_t, uint32_t) {
        static_cast<Shard*>(c->owner)->drain_timer_armed_ = false;
      };
      loop_->timeout(&drain_ts_, &drain_timer_c_);
    }
  }
  // No more turn-end or wake work: close() may run loop turns of its own (the peer
  // transport drains its operations) and must not start new ticket work meanwhile.
  loop_->set_on_turn_end(nullptr);
  loop_->set_on_wake(nullptr);
  close_handoffs();
  if (index_ == 0) node_.log().close();
  for (Connection* c : all_) {
    if (c->fd >= 0) ::close(c->fd);
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (tls_listen_fd_ >= 0) ::close(tls_listen_fd_);
  // Leave the ring to the destructor; the completions it still references are ours and
  // no further turn runs.
}

void Shard::begin_stop() {
  // Stop accepting; end every receive, then answer what was read, then leave.
  stopping_ = true;
  close_handoffs();
  if (index_ == 0) node_.log().begin_shutdown();
  if (accept_armed_) loop_->cancel(&accept_c_, nullptr);
  if (tls_accept_armed_) loop_->cancel(&tls_accept_c_, nullptr);
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (tls_listen_fd_ >= 0) ::shutdown(tls_listen_fd_, SHUT_RDWR);
  std::vector<Connection*> conns = all_;  // finish_input may free a connection
  for (Connection* c : conns) {
    if (c->closing) continue;
    if (!c->recv_armed) {
      finish_input(c);
    } else if (!c->cancel_sent) {
      // Its final completion (-ECANCELED, after any data already received) calls
      // finish_input.
      c->cancel_sent = true;
      loop_->cancel(&c->recv_c, nullptr);
    }
  }
}

void Shard::finish_input(Connection* c) {
  // The receive has ended, so what the client sent before the stop is in the socket now:
  // read that much (not what it keeps sending), so every request sent before the signal
  // is answered. Shutdown only: synchronous reads are fine here.
  int queued = 0;
  if (c->fd >= 0 && ::ioctl(c->fd, FIONREAD, &queued) == 0) {
    char buf[16 * 1024];
    size_t left = queued > 0 ? static_cast<size_t>(queued) : 0;
    while (left > 0 && !c->closing) {
      ssize_t n = ::recv(c->fd, buf, std::min(left, sizeof(buf)), MSG_DONTWAIT);
      if (n <= 0) break;
      stats_.bytes_in.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
      receive(c, buf, static_cast<size_t>(n));
      left -= static_cast<size_t>(n);
    }
  }
  if (!c->closing) {
    c->closing = true;
    c->close_after_flush = true;
  }
  queue_ticket_run(c);
  mark_dirty(c);
}

void Shard::linger_check() {
  std::vector<Connection*> conns;
  for (Connection* c : all_) {
    if (c->lingering) conns.push_back(c);
  }
  for (Connection* c : conns) start_close(c);  // closes those whose replies were ACKed
}

void Shard::arm_accept(bool tls) {
  if (tls) {
    loop_->accept_multishot(tls_listen_fd_, &tls_accept_c_);
    tls_accept_armed_ = true;
  } else {
    loop_->accept_multishot(listen_fd_, &accept_c_);
    accept_armed_ = true;
  }
}

void Shard::on_accept(io::Completion* comp, int32_t res, uint32_t flags) {
  auto* s = static_cast<Shard*>(comp->owner);
  bool tls = comp == &s->tls_accept_c_;
  if (!io::cqe_more(flags)) {
    (tls ? s->tls_accept_armed_ : s->accept_armed_) = false;
    if (!s->stop_requested_.load(std::memory_order_acquire)) s->arm_accept(tls);
  }
  if (res < 0) return;  // EMFILE, ECONNABORTED...: keep accepting
  int fd = res;
  if (s->stop_requested_.load(std::memory_order_acquire)) {
    ::close(fd);
    return;
  }
  if (s->node_.protected_mode_active() && !io::peer_is_loopback(fd)) {
    // A TLS client could not read the plaintext reason: it is only closed.
    refuse_connection(fd, tls ? std::string_view() : kProtectedModeDenied);
    s->stats_.protected_refused.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t live = s->node_.connections_total().fetch_add(1, std::memory_order_relaxed) + 1;
  if (live > s->node_.opts().max_clients) {
    s->node_.connections_total().fetch_sub(1, std::memory_order_relaxed);
    refuse_connection(fd, tls ? "" : "-ERR max number of clients reached\r\n");
    s->stats_.rejected.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Placement: the shard with the fewest connections takes it, the lowest index on a tie.
  // The kernel's SO_REUSEPORT hash spreads connections at random; a few connections then
  // often miss shard 0, where the ticket log lives, and pay two cross-thread wakes per
  // request (~25 us each on an idle vCPU). Counting it on the target at once keeps
  // concurrent accepts from piling onto one shard.
  Shard* target = s->placement();
  if (target != s) {
    target->stats_.connected.fetch_add(1, std::memory_order_relaxed);
    if (target->post_connection(fd, tls, s->loop_.get())) return;
    target->stats_.connected.fetch_sub(1, std::memory_order_relaxed);
  }
  s->stats_.connected.fetch_add(1, std::memory_order_relaxed);
  s->adopt(fd, tls);
}

Shard* Shard::placement() {
  Shard* best = this;
  uint64_t best_n = stats_.connected.load(std::memory_order_relaxed);
  for (uint32_t i = 0; i < node_.shard_count(); ++i) {
    Shard& o = node_.shard(i);
    if (&o == this || !o.started() || o.failed_.load(std::memory_order_acquire)) continue;
    uint64_t n = o.stats_.connected.load(std::memory_order_relaxed);
    if (n < best_n || (n == best_n && o.index_ < best->index_)) {
      best = &o;
      best_n = n;
    }
  }
  return best;
}

bool Shard::post_connection(int fd, bool tls, io::Loop* from) {
  {
    std::lock_guard<std::mutex> g(handoff_mu_);
    if (handoffs_closed_ || stop_requested_.load(std::memory_order_acquire)) return false;
    handoffs_.push_back(Handoff{fd, tls});
  }
  loop_->wake(from);
  return true;
}

void Shard::drain_handoffs() {
  std::vector<Handoff> fds;
  {
    std::lock_guard<std::mutex> g(handoff_mu_);
    if (handoffs_.empty()) return;
    fds.swap(handoffs_);
  }
  for (Handoff h : fds) adopt(h.fd, h.tls);  // already counted in stats_.connected by the sender
}

void Shard::close_handoffs() {
  std::vector<Handoff> fds;
  {
    std::lock_guard<std::mutex> g(handoff_mu_);
    handoffs_closed_ = true;
    fds.swap(handoffs_);
  }
  for (Handoff h : fds) {
    ::close(h.fd);
    stats_.connected.fetch_sub(1, std::memory_order_relaxed);
    node_.connections_total().fetch_sub(1, std::memory_order_relaxed);
  }
}

void Shard::adopt(int fd, bool tls) {
  if (stop_requested_.load(std::memory_order_acquire)) {
    ::close(fd);
    stats_.connected.fetch_sub(1, std::memory_order_relaxed);
    node_.connections_total().fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  auto* c = new Connection(resp::Limits{});
  c->shard = this;
  c->fd = fd;
  c->id = (static_cast<uint64_t>(index_) << 48) | next_conn_id_++;
  c->created_ms = now_ms();
  set_user(node_, c, node_.users().implicit_user());
  c->recv_c.owner = c;
  c->recv_c.fn = &Shard::on_recv;
  c->send_c.owner = c;
  c->send_c.fn = &Shard::on_send;
  all_.push_back(c);
  stats_.accepted.fetch_add(1, std::memory_order_relaxed);
  if (tls && !tls_adopt(c)) {
    c->closing = true;
    start_close(c);  // nothing is armed yet: closes and frees it
    return;
  }
  loop_->recv_multishot(fd, bufs_->group_id(), &c->recv_c);
  c->recv_armed = true;
}

void Shard::on_recv(io::Completion* comp, int32_t res, uint32_t flags) {
  auto* c = static_cast<Connection*>(comp->owner);
  Shard* s = c->shard;
  if (!io::cqe_more(flags)) c->recv_armed = false;
  if (res > 0 && io::cqe_has_buffer(flags)) {
    uint16_t bid = io::cqe_buffer_id(flags);
    s->stats_.bytes_in.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
    TICKETD_TRACE_EV("crecv", s->index_, res);
    if (!c->closing) s->receive(c, s->bufs_->buffer(bid), static_cast<size_t>(res));
    s->bufs_->recycle(bid);
  } else if (res == -ENOBUFS || res == -ECANCELED) {
    // ENOBUFS: every receive buffer is busy; this turn's completions return them, read
    // again. ECANCELED: we ended the receive (closing, or the shard is stopping): no error.
  } else if (res == 0) {
    // EOF: the client may have only half-closed (`nc -q`): answer what it sent, then close.
    if (!c->closing) {
      c->closing = true;
      c->close_after_flush = true;
      s->queue_ticket_run(c);
      s->mark_dirty(c);
    }
  } else if (res < 0) {
    // A reset or other error: the client is gone; answer nothing more.
    c->closing = true;
    c->close_after_flush = false;
  }
  if (!c->recv_armed && !c->closing) {
    if (s->stopping_) {
      s->finish_input(c);  // read what is left of the input sent before the stop
    } else if (res == -ENOBUFS || res == -ECANCELED || res > 0) {
      s->loop_->recv_multishot(c->fd, s->bufs_->group_id(), &c->recv_c);
      c->recv_armed = true;
    }
  }
  if (c->closing) s->start_close(c);
}

void Shard::receive(Connection* c, const char* data, size_t len) {
  if (c->tls) {
    tls_receive(c, data, len);
  } else if (c->seen_input || !tls_refuse_on_plaintext(c, data, len)) {
    c->seen_input = true;
    handle_input(c, data, len);
  }
}

void Shard::handle_input(Connection* c, const char* data, size_t len) {
  if (c->inbuf.empty()) {
    // Fast path: parse straight from the kernel's buffer; stash only an incomplete tail.
    size_t used = run_commands(c, data, len);
    if (!c->closing && used < len) c->inbuf.assign(data + used, len - used);
  } else {
    c->inbuf.append(data, len);
    size_t hint = c->parser.pending_hint();
    if (hint == 0 || c->inbuf.size() >= hint) {
      size_t used = run_commands(c, c->inbuf.data(), c->inbuf.size());
      if (!c->closing) c->inbuf.erase(0, used);
    }
  }
  if (!c->closing && c->inbuf.size() > kMaxStash) {
    resp::append_error(reply_buffer(c), "ERR Protocol error: too big request");
    cmd_stats_.errors().add("ERR");
    c->closing = true;
    c->close_after_flush = true;
  }
  if (c->closing) c->inbuf.clear();
  queue_ticket_run(c);
  // One turn can bring hundreds of receive buffers, and refused TICKETs answer ~10 bytes of
  // input with up to ~80 of errors: the bound is checked per chunk, not only at the flush.
  if (!(c->closing && !c->close_after_flush) && over_reply_bound(c)) {
    drop_unread(c);
    return;
  }
  mark_dirty(c);
}

size_t Shard::run_commands(Connection* c, const char* data, size_t len) {
  std::string_view in(data, len);
  size_t off = 0;
  uint64_t commands = 0;
  while (off < len && !c->closing) {
    size_t consumed = 0;
    resp::ParseStatus st = c->parser.parse(in.substr(off), &consumed);
    if (st == resp::ParseStatus::kNeedMore) {
      off += consumed;
      break;
    }
    if (st == resp::ParseStatus::kError) {
      queue_ticket_run(c);
      std::string& out = reply_buffer(c);
      size_t before = out.size();
      resp::append_error(out, c->parser.error());
      count_error(std::string_view(out).substr(before));
      stats_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      c->closing = true;
      c->close_after_flush = true;
      off += consumed;
      break;
    }
    off += consumed;
    ++commands;
    auto args = c->parser.args();
    if (c->may_ticket && args.size() == 1 && resp::iequals(args[0], "TICKET")) {
      // The hot path: consecutive TICKETs collapse into one request. Its permission is the
      // one bool above (a connection that may not gets NOAUTH/NOPERM from Commands::run).
      ++c->ticket_run;
      continue;
    }
    queue_ticket_run(c);
    Commands::run(*this, c, args);
  }
  stats_.commands.fetch_add(commands, std::memory_order_relaxed);
  return off;
}

void Shard::queue_sequence_request(Connection* c, std::string_view name, uint64_t n,
                                   bool block) {
  if (!block && name == tickets::kDefaultSequence) {
    ++c->ticket_run;  // `TICKET default` is `TICKET`
    return;
  }
  BatchStatus refuse = Commands::ticket_admission(*this);
  uint32_t slot = 0;
  if (refuse == BatchStatus::kOk && name != tickets::kDefaultSequence) {
    auto it = unsent_slots_.find(name);
    if (it != unsent_slots_.end()) {
      slot = it->second;
    } else {
      if (unsent_named_ && unsent_named_->slots.size() >= kMaxBatchSequences) send_batch();
      if (unsent_named_ && unsent_named_->slots.size() >= kMaxBatchSequences) {
        // The log takes no more batches from us right now (kMaxOutstandingBatches).
        resp::append_error(reply_buffer(c), "ERR too many sequences in flight; try again");
        return;
      }
      if (!unsent_named_) unsent_named_ = std::make_unique<NamedBatch>();
      unsent_named_->slots.push_back(NamedBatch::Slot{std::string(name), 0, 0, 0, BatchStatus::kOk});
      slot = static_cast<uint32_t>(unsent_named_->slots.size());
      unsent_slots_.emplace(std::string(name), slot);
    }
  }
  if (refuse != BatchStatus::kOk) {
    append_repeated(reply_buffer(c), Commands::refusal(*this, refuse, name), block ? 1 : n);
    refused_at_admission_ = true;  // Commands::run counts it as a rejected call
    return;
  }
  push_segment(c, Connection::Segment{n, false, true, 0, {}, 0, block});
  c->outstanding++;
  requests_.push_back(PendingRequest{c, n, slot, block, current_t0_});
  if (slot == 0) {
    unsent_total_ += n;
  } else {
    unsent_named_->slots[slot - 1].total += n;
  }
  stats_.ticket_requests.fetch_add(1, std::memory_order_relaxed);
}

void Shard::queue_ticket_run(Connection* c) {
  if (c->ticket_run == 0) return;
  uint64_t n = c->ticket_run;
  c->ticket_run = 0;
  BatchStatus refuse = Commands::ticket_admission(*this);
  if (refuse != BatchStatus::kOk) {
    std::string r = Commands::refusal(*this, refuse);
    append_repeated(reply_buffer(c), r, n);
    reject(ticket_cmd_, r, n);
    return;
  }
  push_segment(c, Connection::Segment{n, false, true, 0, {}, 0});
  c->outstanding++;
  requests_.push_back(PendingRequest{c, n, 0, false, turn_ns()});
  unsent_total_ += n;
  stats_.ticket_requests.fetch_add(1, std::memory_order_relaxed);
}

std::string& Shard::reply_buffer(Connection* c) {
  if (c->waiting.empty()) return c->out;
  // Behind a pending TICKET: the bytes wait in order.
  // A new segment after a pending one, and past 1 MiB: a string doubling its way up to
  // the bound would leave the allocator twice that in freed blocks.
  if (c->waiting.back().pending || c->waiting.back().bytes.size() >= kSegmentBytes) {
    push_segment(c, Connection::Segment{});
  }
  return c->waiting.back().bytes;
}

void Shard::recharge(Connection* c, Connection::Segment& seg) {
  size_t now = sizeof(Connection::Segment);
  if (!seg.pending) {
    now += seg.bytes.capacity();  // what it holds: a growing string doubles
  } else if (seg.admin) {
    now += kPendingAdminBytes;
  } else if (seg.block) {
    now += 2 * kMaxTicketReplyBytes + sizeof(PendingRequest);
  } else {
    now += static_cast<size_t>(seg.tickets) * ticket_reply_bytes_ + sizeof(PendingRequest);
  }
  c->waiting_bytes = c->waiting_bytes - seg.charged + now;
  seg.charged = now;
}

void Shard::push_segment(Connection* c, Connection::Segment seg) {
  if (!c->waiting.empty()) recharge(c, c->waiting.back());  // the old back may have grown
  c->waiting.push_back(std::move(seg));
  recharge(c, c->waiting.back());
}

bool Shard::over_reply_bound(Connection* c) {
  if (!c->waiting.empty()) recharge(c, c->waiting.back());
  return c->out.size() + c->sending.size() + c->waiting_bytes > kMaxOutput;
}

bool Shard::would_pass_reply_bound(const Connection* c, size_t replaced, size_t extra) const {
  size_t queued = c->out.size() + c->sending.size() + c->waiting_bytes - replaced;
  return queued > kMaxOutput || extra > kMaxOutput - queued;
}

void Shard::drop_unread(Connection* c) {
  // The client does not read its replies (or piles them up behind a TICKET that waits for
  // its commit): drop it rather than grow without bound. What is still pending resolves
  // into nothing (apply_result and drain_admin_replies skip a dropped client).
  c->closing = true;
  c->close_after_flush = false;
  c->out.clear();
  c->out.shrink_to_fit();
  c->waiting.clear();
  c->waiting_bytes = 0;
  c->inbuf.clear();
  c->inbuf.shrink_to_fit();
  c->ticket_run = 0;
  stats_.reply_bound_drops.fetch_add(1, std::memory_order_relaxed);
  start_close(c);
}

void Shard::append_repeated(std::string& out, std::string_view reply, uint64_t n) {
  out.reserve(out.size() + n * reply.size());
  for (uint64_t i = 0; i < n; ++i) out.append(reply);
}

void Shard::reply(Connection* c, std::string_view bytes) { reply_buffer(c).append(bytes); }

void Shard::mark_dirty(Connection* c) {
  if (!c->dirty) {
    c->dirty = true;
    dirty_.push_back(c);
  }
}

void Shard::on_turn_end() {
  send_batch();
  if (index_ == 0) {
    node_.drain_requests();
    node_.drain_admin();
    node_.log().on_turn_end();
  }
  // Flush every connection that got replies this turn: one send per connection per turn.
  // (Iterate by index: flush() may close and never appends to dirty_.)
  for (size_t i = 0; i < dirty_.size(); ++i) {
    Connection* c = dirty_[i];
    c->dirty = false;
    flush(c);
  }
  dirty_.clear();
  turn_ns_ = 0;  // the next turn reads the clock again
}

void Shard::send_batch() {
  if (unsent_total_ == 0 && !unsent_named_) return;
  BatchRequest b{unsent_total_, unsent_named_.get()};
  if (index_ != 0) {
    if (outstanding_batches_ >= kMaxOutstandingBatches) return;  // keep accumulating
    if (!to_log_.try_push(b)) return;                              // full: next turn
  }
  // The named part now belongs to the log until it comes back in the BatchResult.
  (void)unsent_named_.release();
  if (b.named != nullptr) unsent_slots_.clear();
  unsent_total_ = 0;
  outstanding_batches_++;
  stats_.batches.fetch_add(1, std::memory_order_relaxed);
  if (index_ == 0) {
    // Same thread as the log: no queue needed (it may answer earlier batches at once).
    TICKETD_TRACE_EV("submit", 0, b.total);
    node_.log().submit(0, b);
    return;
  }
  node_.shard(0).loop()->wake(loop_.get());
}

bool Shard::post_result(const BatchResult& r, io::Loop* from) {
  // Cannot fail: a shard never has more outstanding batches than the queue holds.
  bool ok = from_log_.try_push(r);
  TICKETD_CHECK(ok);
  loop_->wake(from);
  return ok;
}

void Shard::deliver_result(const BatchResult& r) { apply_result(r); }

void Shard::on_wake() {
  TICKETD_TRACE_EV("wake", index_, 0);
  drain_handoffs();
  drain_results();
  drain_admin_replies();
  if (index_ == 0) {
    node_.drain_requests();
    node_.drain_admin();
  }
}

void Shard::drain_results() {
  BatchResult r;
  while (from_log_.try_pop(&r)) apply_result(r);
}

void Shard::apply_result(const BatchResult& r) {
  TICKETD_CHECK(outstanding_batches_ > 0);
  outstanding_batches_--;
  std::unique_ptr<NamedBatch> named(r.named);  // ours again: freed when this returns
  // Hand the batch's ranges to its requests in the order they were made: this is what
  // makes each connection's tickets increase. The default part's cursor is `next`; each
  // named slot's is its `first`.
  uint64_t next = r.start;
  uint64_t left = r.total;
  if (named) {
    for (const NamedBatch::Slot& sl : named->slots) left += sl.total;
  }
  if (r.status == BatchStatus::kOk && r.total > 0) {
    size_t digits = 1;
    for (uint64_t v = r.start + r.total - 1; v >= 10; v /= 10) ++digits;
    ticket_reply_bytes_ = digits + 4;  // '+', CRLF, and one digit to spare
  }
  while (left > 0) {
    TICKETD_CHECK(!requests_.empty());
    PendingRequest pr = requests_.front();
    requests_.pop_front();
    TICKETD_CHECK(pr.n <= left);
    left -= pr.n;
    uint64_t first = next;
    BatchStatus status = r.status;
    const std::string* name = nullptr;
    if (pr.slot == 0) {
      next += pr.n;
    } else {
      TICKETD_CHECK(named && pr.slot <= named->slots.size());
      NamedBatch::Slot& sl = named->slots[pr.slot - 1];
      first = sl.first;
      sl.first += pr.n;
      status = sl.status;
      name = &sl.name;
    }
    Connection* c = pr.conn;
    c->outstanding--;
    // INFO commandstats: each TICKET of the request took from its read until now; a block
    // is one call. Counted whether or not the client is still there to read it.
    uint64_t calls = pr.block ? 1 : pr.n;
    size_t cmd = pr.block ? block_cmd_ : ticket_cmd_;
    uint64_t now = turn_ns();
    uint64_t took = now - std::min(pr.t0_ns, now);
    if (status == BatchStatus::kOk) cmd_stats_.record_call(cmd, took, calls, false);
    if (!c->closing || c->close_after_flush) {
      // Ticket requests resolve in the order they were made: the first pending one is ours.
      Connection::Segment* seg = nullptr;
      for (auto& w : c->waiting) {
        if (w.pending && !w.admin) {
          seg = &w;
          break;
        }
      }
      TICKETD_CHECK(seg != nullptr && seg->tickets == pr.n && seg->block == pr.block);
      seg->pending = false;
      if (status == BatchStatus::kOk && pr.block) {
        resp::append_array_header(seg->bytes, 2);
        resp::append_integer_u64(seg->bytes, first);
        resp::append_integer_u64(seg->bytes, first + pr.n - 1);
        stats_.tickets.fetch_add(pr.n, std::memory_order_relaxed);
      } else if (status == BatchStatus::kOk) {
        for (uint64_t i = 0; i < pr.n; ++i) resp::append_simple_u64(seg->bytes, first + i);
        stats_.tickets.fetch_add(pr.n, std::memory_order_relaxed);
      } else {
        // A refusal is longer than the ticket it was charged as (a CLUSTERDOWN line is ~78
        // bytes, a ticket ~10): a few million of them would be hundreds of MiB. Check the
        // bound before writing them, not after.
        std::string err;
        append_ticket_error(err, status, name);
        cmd_stats_.record_call(cmd, took, calls, true);
        count_error(err, calls);
        if (calls > kMaxOutput / err.size() ||
            would_pass_reply_bound(c, seg->charged, calls * err.size())) {
          drop_unread(c);
          continue;
        }
        append_repeated(seg->bytes, err, calls);
      }
      recharge(c, *seg);
      release_ready(c);
    } else {
      if (status != BatchStatus::kOk) cmd_stats_.record_call(cmd, took, calls, true);
      maybe_free(c);
    }
  }
}

void Shard::append_ticket_error(std::string& out, BatchStatus st, const std::string* name) {
  if (st == BatchStatus::kNoSuchSequence && name != nullptr) {
    // Names are checked (printable, no spaces, bounded) before they are queued.
    resp::append_error(out, "ERR no such sequence '" + *name + "'");
  } else {
    Commands::append_refusal(*this, out, st, name != nullptr ? std::string_view(*name) : "default");
  }
}

void Shard::release_ready(Connection* c) {
  // Whatever is resolved at the front can go now, up to the next pending entry.
  while (!c->waiting.empty() && !c->waiting.front().pending) {
    recharge(c, c->waiting.front());  // it may be the back, grown since last counted
    c->waiting_bytes -= c->waiting.front().charged;
    if (c->out.empty()) {
      c->out.swap(c->waiting.front().bytes);
    } else {
      c->out.append(c->waiting.front().bytes);
    }
    c->waiting.pop_front();
  }
  mark_dirty(c);
}

void Shard::submit_admin(Connection* c, std::span<const std::string_view> args) {
  uint64_t seq = c->next_admin_seq++;
  Connection::Segment seg{0, true, true, seq, {}, 0};
  seg.cmd = static_cast<uint16_t>(current_cmd_);
  seg.t0_ns = current_t0_;
  push_segment(c, std::move(seg));
  c->outstanding++;
  std::vector<std::string> copy(args.begin(), args.end());
  node_.post_admin(AdminRequest{index_, c, seq, std::move(copy)}, loop_.get());
}

void Shard::post_admin_reply(Connection* c, uint64_t seq, std::string bytes) {
  {
    std::lock_guard<std::mutex> g(admin_mu_);
    admin_replies_.push_back(AdminReply{c, seq, std::move(bytes)});
  }
  loop_->wake(node_.shard(0).loop());  // called on shard 0's thread
}

void Shard::drain_admin_replies() {
  std::vector<AdminReply> replies;
  {
    std::lock_guard<std::mutex> g(admin_mu_);
    replies.swap(admin_replies_);
  }
  for (AdminReply& r : replies) {
    Connection* c = r.conn;
    c->outstanding--;
    if (c->closing && !c->close_after_flush) {
      maybe_free(c);
      continue;
    }
    // Admin commands finish in any order (RAFT.SNAPSHOT waits for the disk, RAFT.LEADER
    // does not): each reply goes to its own slot.
    Connection::Segment* seg = nullptr;
    for (auto& w : c->waiting) {
      if (w.pending && w.admin && w.admin_seq == r.seq) {
        seg = &w;
        break;
      }
    }
    TICKETD_CHECK(seg != nullptr);
    seg->pending = false;
    seg->bytes = std::move(r.bytes);
    refused_at_admission_ = false;  // (a flag of Commands::run's command only)
    uint64_t now = mono_ns();
    finish_command(seg->cmd, now - std::min(seg->t0_ns, now), seg->bytes);
    recharge(c, *seg);
    release_ready(c);
  }
}

void Shard::flush(Connection* c) {
  if (!(c->closing && !c->close_after_flush) && over_reply_bound(c)) {
    drop_unread(c);
    return;
  }
  if (c->send_inflight) return;
  if (c->tls) tls_seal(c);  // `out` becomes ciphertext (with the handshake's own bytes)
  if (!c->out.empty() && c->fd >= 0 && !(c->closing && !c->close_after_flush)) {
    c->sending.swap(c->out);
    c->out.clear();
    c->send_off = 0;
    c->send_inflight = true;
    TICKETD_TRACE_EV("csend", index_, c->sending.size());
    loop_->send(c->fd, c->sending.data(), c->sending.size(), &c->send_c);
    return;
  }
  if (c->closing) start_close(c);
}

void Shard::on_send(io::Completion* comp, int32_t res, uint32_t) {
  auto* c = static_cast<Connection*>(comp->owner);
  Shard* s = c->shard;
  c->send_inflight = false;
  if (res <= 0) {
    c->closing = true;
    c->close_after_flush = false;
    c->sending.clear();
    c->out.clear();
    s->start_close(c);
    return;
  }
  s->stats_.bytes_out.fetch_add(static_cast<uint64_t>(res), std::memory_order_relaxed);
  c->send_off += static_cast<size_t>(res);
  if (c->send_off < c->sending.size()) {
    // A partial send: the rest goes before anything newer.
    c->send_inflight = true;
    s->loop_->send(c->fd, c->sending.data() + c->send_off, c->sending.size() - c->send_off,
                   &c->send_c);
    return;
  }
  c->sending.clear();
  c->send_off = 0;
  s->flush(c);
}

void Shard::start_close(Connection* c) {
  c->closing = true;
  // With close_after_flush, wait until every queued reply has left.
  if (c->close_after_flush &&
      (!c->waiting.empty() || !c->out.empty() || c->send_inflight || c->ticket_run > 0)) {
    return;
  }
  if (stopping_ && c->close_after_flush && c->fd >= 0 && !c->recv_armed) {
    // Stopping, every reply handed to the kernel. A close with unread input resets the
    // connection and drops replies still in our send queue: shut the write side (the FIN
    // follows the replies) and close once the client's kernel has acknowledged them
    // (linger_check, until the stop deadline).
    if (!c->lingering) {
      c->lingering = true;
      ::shutdown(c->fd, SHUT_WR);
    }
    if (replies_unacknowledged(c->fd)) return;
    c->lingering = false;
  }
  if (!c->close_after_flush && c->fd >= 0 && c->send_inflight && !c->shut_down) {
    // A send may wait forever on a client that does not read: shutting the socket down
    // ends it (and the receive) with an error, so the connection can be freed.
    ::shutdown(c->fd, SHUT_RDWR);
    c->shut_down = true;
  }
  if (c->recv_armed && !c->cancel_sent) {
    c->cancel_sent = true;
    loop_->cancel(&c->recv_c, nullptr);
    // The recv's final completion will call back here.
  }
  if (c->fd >= 0 && !c->recv_armed && !c->send_inflight) {
    ::close(c->fd);
    c->fd = -1;
    if (c->tls) tls_forget(c);
    forget_user(node_, c);
    stats_.connected.fetch_sub(1, std::memory_order_relaxed);
    node_.connections_total().fetch_sub(1, std::memory_order_relaxed);
  }
  maybe_free(c);
}

void Shard::maybe_free(Connection* c) {
  if (c->fd >= 0 || c->recv_armed || c->send_inflight || c->outstanding > 0) return;
  if (c->dirty) return;  // freed after this turn's flush loop (it will call back)
  for (size_t i = 0; i < all_.size(); ++i) {
    if (all_[i] == c) {
      all_[i] = all_.back();
      all_.pop_back();
      break;
    }
  }
  delete c;
}

}  // namespace ticketd::server
