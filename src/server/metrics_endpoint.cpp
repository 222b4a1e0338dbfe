#include "metrics_endpoint.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "commands.h"
#include "node.h"
#include "ticketd/io/loop.h"
#include "ticketd/metrics/exposition.h"
#include "ticketd/metrics/http.h"

#ifndef TICKETD_VERSION
#define TICKETD_VERSION "0.1.0"
#endif

namespace ticketd::server {

namespace {

// Bounds of the histograms, in the exposed units. Durations: 100 us to 10 s (a durable
// write here takes 0.1-8 ms; a commit a round trip more). Tickets per write: 1 to 100k.
constexpr double kDurationBounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
constexpr double kTicketBounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536};

metrics::HistogramCounts counts_of(const metrics::LatencyHistogram& h) {
  metrics::HistogramCounts c;
  c.add(h);
  return c;
}

}  // namespace

std::string render_prometheus(Node& node) {
  metrics::TextExposition e;
  RaftMetricsView r = node.raft_metrics();
  LogStats& ls = node.log_stats();
  std::string id = std::to_string(node.opts().id);
  e.family("ticketd_info", "gauge", "This node: its id and version (always 1).");
  e.sample("ticketd_info", {{"node_id", id}, {"version", TICKETD_VERSION}}, 1);

  // Raft, as shard 0 last published it (every 100 ms).
  e.family("ticketd_raft_role", "gauge", "1 for this node's Raft role, 0 for the others.");
  for (const char* role : {"leader", "follower", "candidate", "precandidate"}) {
    e.sample("ticketd_raft_role", {{"role", role}}, r.role == role ? 1 : 0);
  }
  e.family("ticketd_raft_is_leader", "gauge", "1 if this node leads.");
  e.sample("ticketd_raft_is_leader", {}, r.role == "leader" ? 1 : 0);
  e.family("ticketd_raft_has_leader", "gauge", "1 if this node knows a leader (itself included).");
  e.sample("ticketd_raft_has_leader", {}, r.leader_id != 0 ? 1 : 0);
  e.family("ticketd_raft_leader_id", "gauge", "The id of the leader this node knows, 0: none.");
  e.sample("ticketd_raft_leader_id", {}, static_cast<double>(r.leader_id));
  e.family("ticketd_raft_term", "gauge", "The current Raft term.");
  e.sample("ticketd_raft_term", {}, static_cast<double>(r.term));
  e.family("ticketd_raft_leader_changes_seen_total", "counter",
           "Changes of the known leader this process has seen.");
  e.sample("ticketd_raft_leader_changes_seen_total", {}, static_cast<double>(r.leader_changes));
  e.family("ticketd_raft_commit_index", "gauge", "The highest log index known committed.");
  e.sample("ticketd_raft_commit_index", {}, static_cast<double>(r.commit_index));
  e.family("ticketd_raft_applied_index", "gauge", "The highest log index applied to the tickets.");
  e.sample("ticketd_raft_applied_index", {}, static_cast<double>(r.applied_index));
  e.family("ticketd_raft_last_log_index", "gauge", "The last index in this node's log.");
  e.sample("ticketd_raft_last_log_index", {}, static_cast<double>(r.last_index));
  e.family("ticketd_raft_snapshot_index", "gauge", "The index of the latest snapshot.");
  e.sample("ticketd_raft_snapshot_index", {}, static_cast<double>(r.snapshot_index));
  e.family("ticketd_raft_voter", "gauge", "1 if this node votes in its latest configuration.");
  e.sample("ticketd_raft_voter", {}, r.voter ? 1 : 0);
  uint64_t snap_ms = ls.snapshot_ms.load(std::memory_order_relaxed);
  if (snap_ms == 0) snap_ms = node.start_ms();
  e.family("ticketd_snapshot_age_seconds", "gauge",
           "Seconds since this process last made or installed a snapshot (or started).");
  e.sample("ticketd_snapshot_age_seconds", {},
           static_cast<double>(now_ms() - std::min(snap_ms, now_ms())) / 1000.0);

  // Peers: every other member of the latest configuration.
  e.family("ticketd_peer_up", "gauge", "1 if this node's link to the peer is connected.");
  for (const RaftMetricsView::Peer& p : r.peers) {
    std::string pid = std::to_string(p.id);
    const metrics::Label ls2[] = {{"peer", pid}, {"addr", p.raft_addr}, {"voter", p.voter ? "1" : "0"}};
    e.sample("ticketd_peer_up", ls2, p.link_up ? 1 : 0);
  }
  // What only the leader knows of each peer (its progress).
  auto per_peer = [&](const char* name, const char* help, auto value) {
    e.family(name, "gauge", help);
    for (const RaftMetricsView::Peer& p : r.peers) {
      if (!p.progress) continue;
      std::string pid = std::to_string(p.id);
      const metrics::Label l[] = {{"peer", pid}};
      e.sample(name, l, value(p));
    }
  };
  per_peer("ticketd_peer_match_index",
           "The leader's view of the last entry each peer has durable (on the leader only).",
           [](const RaftMetricsView::Peer& p) { return static_cast<double>(p.match); });
  per_peer("ticketd_peer_replication_lag_entries",
           "Entries the peer is behind the leader's last index (on the leader only).",
           [&](const RaftMetricsView::Peer& p) {
             return static_cast<double>(r.last_index - std::min(p.match, r.last_index));
           });
  per_peer("ticketd_peer_last_contact_seconds",
           "Seconds since the peer last answered the leader (on the leader only).",
           [](const RaftMetricsView::Peer& p) { return static_cast<double>(p.last_contact_ms) / 1000.0; });

  // The log.
  e.family("ticketd_wal_write_duration_seconds", "histogram",
           "Time of each WAL write until durable as --durability defines it.");
  e.histogram("ticketd_wal_write_duration_seconds", {}, counts_of(ls.wal_write_ns),
              ls.wal_write_ns_sum.get(), kDurationBounds, 1e9);
  e.family("ticketd_commit_duration_seconds", "histogram",
           "Time from proposing a ticket entry to applying it (the leader's commit latency).");
  e.histogram("ticketd_commit_duration_seconds", {}, counts_of(ls.commit_ns), ls.commit_ns_sum.get(),
              kDurationBounds, 1e9);
  e.family("ticketd_tickets_per_log_write", "histogram",
           "Tickets each WAL write carried (writes that carried tickets, on the leader).");
  e.histogram("ticketd_tickets_per_log_write", {}, counts_of(ls.write_tickets),
              ls.write_tickets_sum.get(), kTicketBounds, 1);
  e.family("ticketd_wal_writes_total", "counter", "WAL writes issued.");
  e.sample("ticketd_wal_writes_total", {}, static_cast<double>(ls.writes.load()));
  e.family("ticketd_wal_write_errors_total", "counter", "WAL writes that failed.");
  e.sample("ticketd_wal_write_errors_total", {}, static_cast<double>(ls.write_errors.load()));
  e.family("ticketd_wal_stalled", "gauge", "1 while no new WAL segment can be made (a full disk).");
  e.sample("ticketd_wal_stalled", {}, ls.wal_stalled.load() ? 1 : 0);
  e.family("ticketd_last_ticket", "gauge", "The last ticket of the default sequence handed out.");
  e.sample("ticketd_last_ticket", {}, static_cast<double>(ls.counter.load()));

  // Clients and commands (every shard summed).
  uint64_t connected = 0, tickets = 0;
  for (uint32_t i = 0; i < node.shard_count(); ++i) {
    connected += node.shard(i).stats().connected.load(std::memory_order_relaxed);
    tickets += node.shard(i).stats().tickets.load(std::memory_order_relaxed);
  }
  e.family("ticketd_connected_clients", "gauge", "Client connections open now.");
  e.sample("ticketd_connected_clients", {}, static_cast<double>(connected));
  e.family("ticketd_tickets_issued_total", "counter", "Tickets this node handed to its clients.");
  e.sample("ticketd_tickets_issued_total", {}, static_cast<double>(tickets));
  metrics::StatsView v = node.command_stats();
  static const std::vector<std::string_view> names = Commands::command_names();
  e.family("ticketd_commands_total", "counter",
           "Commands executed, by command (INFO commandstats' calls; CONFIG RESETSTAT resets).");
  for (size_t i = 0; i < v.cmds.size() && i < names.size(); ++i) {
    if (v.cmds[i].calls == 0) continue;
    const metrics::Label l[] = {{"cmd", names[i]}};
    e.sample("ticketd_commands_total", l, static_cast<double>(v.cmds[i].calls));
  }
  e.family("ticketd_errors_total", "counter", "Error replies by their first word (INFO errorstats).");
  for (const auto& [word, n] : v.errors) {
    const metrics::Label l[] = {{"err", word}};
    e.sample("ticketd_errors_total", l, static_cast<double>(n));
  }
  return e.take();
}

MetricsEndpoint::~MetricsEndpoint() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool MetricsEndpoint::listen(const std::string& addr, std::string* err) {
  std::string host;
  uint16_t port = 0;
  if (!io::parse_host_port(addr, &host, &port)) {
    *err = "bad --metrics-addr '" + addr + "' (want host:port or :port)";
    return false;
  }
  std::string why;
  int fd = io::listen_tcp(host, port, false, &why);
  if (fd < 0) {
    *err = "--metrics-addr: " + why;
    return false;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                           : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    ::close(fd);
    *err = std::string("eventfd: ") + std::strerror(errno);
    return false;
  }
  listen_fd_ = fd;
  return true;
}

void MetricsEndpoint::start() { thread_ = std::thread([this] { run(); }); }

void MetricsEndpoint::stop() {
  if (!thread_.joinable()) return;
  stop_.store(true, std::memory_order_release);
  uint64_t one = 1;
  ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  (void)n;
  thread_.join();
  for (Client& c : clients_) ::close(c.fd);
  clients_.clear();
}

void MetricsEndpoint::run() {
  std::vector<pollfd> fds;
  while (!stop_.load(std::memory_order_acquire)) {
    uint64_t now = now_ms();
    // Clients past their deadline are closed: a slow or silent client holds nothing for long.
    for (size_t i = 0; i < clients_.size();) {
      if (now >= clients_[i].deadline_ms) {
        ::close(clients_[i].fd);
        clients_[i] = std::move(clients_.back());
        clients_.pop_back();
      } else {
        ++i;
      }
    }
    fds.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    fds.push_back(pollfd{listen_fd_, static_cast<short>(clients_.size() < kMaxClients ? POLLIN : 0), 0});
    int timeout = -1;
    for (const Client& c : clients_) {
      short ev = c.replied ? (c.sent < c.out.size() ? POLLOUT : POLLIN) : POLLIN;
      fds.push_back(pollfd{c.fd, ev, 0});
      int left = static_cast<int>(c.deadline_ms - now);
      timeout = timeout < 0 ? left : std::min(timeout, left);
    }
    int n = ::poll(fds.data(), fds.size(), timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      node_.log_warning(std::string("metrics: poll failed: ") + std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) continue;  // stop_ is set
    // Clients first (their indexes match fds), then new ones.
    for (size_t i = clients_.size(); i-- > 0;) {
      short re = fds[i + 2].revents;
      if (re == 0) continue;
      Client& c = clients_[i];
      bool keep = true;
      if (re & (POLLERR | POLLNVAL)) {
        keep = false;
      } else if (c.replied && c.sent < c.out.size()) {
        keep = on_writable(c);
      } else {
        keep = on_readable(c);
      }
      if (!keep) {
        ::close(c.fd);
        clients_[i] = std::move(clients_.back());
        clients_.pop_back();
      }
    }
    if (fds[1].revents & POLLIN) accept_clients();
  }
}

void MetricsEndpoint::accept_clients() {
  while (clients_.size() < kMaxClients) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or an error that the next poll shows again
    Client c;
    c.fd = fd;
    c.deadline_ms = now_ms() + kRequestTimeoutMs;
    clients_.push_back(std::move(c));
  }
}

bool MetricsEndpoint::on_readable(Client& c) {
  char buf[4096];
  ssize_t n = ::recv(c.fd, buf, sizeof(buf), 0);
  if (n == 0) return false;  // EOF (after our reply, or before a whole request)
  if (n < 0) return errno == EAGAIN || errno == EINTR;
  if (c.replied) return true;  // after the reply: read and drop until the client closes
  size_t room = metrics::kMaxRequestBytes + 1 - std::min(c.in.size(), metrics::kMaxRequestBytes + 1);
  c.in.append(buf, std::min(static_cast<size_t>(n), room));
  metrics::HttpRequest req = metrics::parse_http_request(c.in);
  if (req.status == metrics::HttpRequest::Status::kIncomplete) return true;
  if (req.status == metrics::HttpRequest::Status::kBad) {
    answer(c, req.error_code, req.why);
    return on_writable(c);
  }
  metrics::HttpRoute route = metrics::route_http_request(req);
  if (route.status == 200 && route.metrics) {
    c.out = metrics::http_response(200, metrics::kExpositionContentType, render_prometheus(node_),
                                   route.head);
    c.replied = true;
  } else if (route.status == 200) {
    c.out = metrics::http_response(200, "text/html; charset=utf-8",
                                   "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n",
                                   route.head);
    c.replied = true;
  } else {
    answer(c, route.status, route.status == 404 ? "only /metrics is served" : "only GET and HEAD");
  }
  return on_writable(c);
}

void MetricsEndpoint::answer(Client& c, int status, std::string_view why) {
  std::string body(why);
  body += '\n';
  c.out = metrics::http_response(status, "text/plain; charset=utf-8", body, false);
  c.replied = true;
}

bool MetricsEndpoint::on_writable(Client& c) {
  while (c.sent < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    c.sent += static_cast<size_t>(n);
  }
  // All sent: end our side; the client's close (or the deadline) ends the connection, so
  // input it sent after its request cannot reset the connection under the reply.
  ::shutdown(c.fd, SHUT_WR);
  c.deadline_ms = std::min(c.deadline_ms, now_ms() + 1000);
  return true;
}

}  // namespace ticketd::server
