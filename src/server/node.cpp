#include "node.h"
#include "trace.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "client_auth.h"
#include "metrics_endpoint.h"
#include "ticketd/io/loop.h"
#include "ticketd/server/server.h"

namespace ticketd::server {

uint64_t now_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

uint64_t now_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

uint64_t mono_ns() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

metrics::StatsView Node::command_stats() {
  metrics::StatsView v;
  for (auto& sh : shards_) v.add(sh->command_stats());
  std::lock_guard<std::mutex> g(stats_reset_mu_);
  v.subtract(stats_baseline_);
  return v;
}

void Node::reset_command_stats() {
  // Counters only grow and have one writer each, so the sum now is a baseline that every
  // later sum is at or above: INFO shows the difference (no writer is disturbed).
  metrics::StatsView v;
  for (auto& sh : shards_) v.add(sh->command_stats());
  std::lock_guard<std::mutex> g(stats_reset_mu_);
  stats_baseline_ = std::move(v);
}

namespace {
bool make_dirs(const std::string& path, std::string* err) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && ::mkdir(cur.c_str(), 0755) < 0 && errno != EEXIST) {
        *err = "cannot create directory " + cur + ": " + std::strerror(errno);
        return false;
      }
    }
    if (i < path.size()) cur += path[i];
  }
  return true;
}
// Why binding host:port must fail, for the reasons a probe can tell apart from a taken
// port: the address is not this machine's (EADDRNOTAVAIL), the port needs privileges
// (EACCES). Empty when the bind works or fails otherwise (EADDRINUSE: a listener, or the
// leftovers of a killed node, which the connect probe tells apart).
std::string bind_refusal(const std::string& host, uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), std::to_string(port).c_str(),
                          &hints, &res);
  if (gai != 0) return std::string("cannot resolve '") + host + "': " + ::gai_strerror(gai);
  std::string why;
  for (addrinfo* a = res; a != nullptr && why.empty(); a = a->ai_next) {
    int fd = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (::bind(fd, a->ai_addr, a->ai_addrlen) < 0) {
      int e = errno;
      if (e == EADDRNOTAVAIL) {
        why = std::string(std::strerror(e)) + " (not an address of this machine)";
      } else if (e == EACCES) {
        why = std::string(std::strerror(e)) + " (ports below 1024 need privileges)";
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return why;
}

// --saddr, where port 0 means "no plaintext listener" when there is a TLS one.
bool parse_client_addr(const ServerOptions& o, std::string* host, uint16_t* port) {
  if (io::parse_host_port(o.saddr, host, port)) return true;
  size_t colon = o.saddr.rfind(':');
  if (o.tls_port == 0 || colon == std::string::npos || o.saddr.substr(colon + 1) != "0") return false;
  if (!io::parse_host_port(o.saddr.substr(0, colon + 1) + std::to_string(o.tls_port), host, port)) {
    return false;
  }
  *port = 0;
  return true;
}

}  // namespace

Node::Node(const ServerOptions& opts) : opts_(opts) {
  unsigned n = opts_.threads;
  if (n == 0) {
    long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
    n = cpus > 0 ? static_cast<unsigned>(cpus) : 1;
  }
  for (unsigned i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>(*this, i));
  log_ = make_raft_ticket_log(*this);
}

Node::~Node() { stop(); }

std::string Node::data_dir() const { return opts_.dir + "/" + std::to_string(opts_.id); }

bool Node::start(std::string* err) {
  start_ms_ = now_ms();
  // Users first: a refused ACL file stops the node before it listens or writes anything.
  std::string auth_summary;
  if (!load_users(opts_, &users_, &auth_summary, err)) return false;
  user_clients_ = std::make_unique<std::atomic<uint64_t>[]>(users_.size());
  protected_mode_active_ = opts_.protected_mode && users_.default_is_open();
  uint16_t port = 0;
  if (!parse_client_addr(opts_, &service_host_, &port)) {
    *err = "bad --saddr '" + opts_.saddr + "' (want host:port or :port)";
    return false;
  }
  service_port_.store(port);
  if (tls_enabled(opts_)) {
    // Before anything listens or is written: unreadable, mismatched or expired files stop
    // the node here, naming the flag.
    tls_ = std::make_unique<tls::Contexts>(
        tls::Files{opts_.tls_cert_file, opts_.tls_key_file, opts_.tls_ca_cert_file});
    std::string warning;
    if (!tls_->load(err, &warning)) return false;
    if (!warning.empty()) log_line("warning: " + warning);
  }
  // Before anything is written to the data directory: an address this machine does not
  // have (or a port it may not use) is said as such. (The probe below would report a
  // foreign address that some proxy answers as "already listening".)
  std::string why = port == 0 ? std::string() : bind_refusal(service_host_, port);
  if (!why.empty()) {
    *err = "cannot listen on " + opts_.saddr + ": " + why;
    return false;
  }
  if (opts_.tls_port != 0) {
    why = bind_refusal(service_host_, opts_.tls_port);
    if (!why.empty()) {
      *err = "cannot listen on --tls-port " + std::to_string(opts_.tls_port) + ": " + why;
      return false;
    }
  }
  std::string raft_host;
  uint16_t raft_port = 0;
  if (io::parse_host_port(opts_.raddr, &raft_host, &raft_port)) {
    why = bind_refusal(raft_host, raft_port);
    if (!why.empty()) {
      // Said before a new node bootstraps a cluster that records this address.
      *err = "cannot listen on the raft address " + opts_.raddr + ": " + why;
      return false;
    }
  }
  // A node killed a moment ago can leave its listener behind for a few milliseconds while
  // the kernel tears its io_uring down: give that a moment before calling the port taken.
  bool taken = port != 0 && io::something_listens(service_host_, port);
  for (int i = 0; taken && i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    taken = io::something_listens(service_host_, port);
  }
  if (taken) {
    // SO_REUSEPORT would let a second ticketd bind the same port and take half of our
    // clients. (A plain bind is no test: it also fails on the leftover connections of a
    // node restarted after kill -9, which REUSEPORT sockets can coexist with.)
    *err = "cannot listen on " + opts_.saddr + ": a server is already listening there";
    return false;
  }
  taken = opts_.tls_port != 0 && io::something_listens(service_host_, opts_.tls_port);
  for (int i = 0; taken && i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    taken = io::something_listens(service_host_, opts_.tls_port);
  }
  if (taken) {
    *err = "cannot listen on --tls-port " + std::to_string(opts_.tls_port) +
           ": a server is already listening there";
    return false;
  }
  if (!opts_.metrics_addr.empty()) {
    // Bound before anything is written, so a taken port stops the node with nothing changed.
    metrics_ = std::make_unique<MetricsEndpoint>(*this);
    if (!metrics_->listen(opts_.metrics_addr, err)) {
      metrics_.reset();
      return false;
    }
  }
  if (!make_dirs(data_dir(), err)) return false;
  config_table_ = effective_config_table(*this);
  if (!log_->open(err)) return false;
  // Shard 0 first: it binds the port (which may be 0: pick one) and owns the log.
  shards_[0]->start();
  while (!shards_[0]->started()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (shards_[0]->start_failed(err)) {
    shards_[0]->join();
    return false;
  }
  for (size_t i = 1; i < shards_.size(); ++i) shards_[i]->start();
  for (size_t i = 1; i < shards_.size(); ++i) {
    while (!shards_[i]->started()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (shards_[i]->start_failed(err)) {
      stop();
      return false;
    }
  }
  log_line("serving on " + (service_host_.empty() ? std::string("*") : service_host_) + ":" +
           (port != 0 ? std::to_string(port) : std::to_string(opts_.tls_port) + " (TLS only)") + " with " + std::to_string(shards_.size()) +
           " shard(s), durability " + durability_name(opts_.durability) + ", io_uring " +
           shards_[0]->loop()->setup_mode());
  log_line(auth_summary);
  if (metrics_) {
    metrics_->start();
    log_line("metrics: Prometheus text format on http://" + opts_.metrics_addr + "/metrics (port " +
             std::to_string(metrics_->port()) + ")");
  }
  log(logging::Level::kVerbose, "settings: " + config_table_.describe());
  if (tls_) {
    auto set = tls_->current();
    const char* auth = opts_.tls_auth_clients == ServerOptions::TlsAuthClients::kYes ? "required"
                       : opts_.tls_auth_clients == ServerOptions::TlsAuthClients::kOptional
                           ? "optional"
                           : "not asked";
    log_line("TLS: certificate " + set->subject() + " (valid until " + set->not_after() + ")" +
             (opts_.tls_port != 0 ? "; TLS clients on port " + std::to_string(opts_.tls_port) +
                                        " (client certificates " + auth + ")" +
                                        (port == 0 ? ", no plaintext listener" : "")
                                  : std::string()) +
             (opts_.tls_cluster ? "; peer links use mutual TLS" : ""));
  }
  return true;
}

bool Node::reload_tls(std::string* err) {
  if (!tls_) {
    *err = "TLS is not configured on this node";
    return false;
  }
  std::string warning;
  if (!tls_->load(err, &warning)) {
    log_line("TLS reload refused, the old certificate stays in use: " + *err);
    return false;
  }
  if (!warning.empty()) log_line("warning: " + warning);
  auto set = tls_->current();
  log_line("TLS reloaded: certificate " + set->subject() + " (valid until " + set->not_after() +
           "); new connections use it");
  return true;
}

void Node::drain_requests() {
  for (uint32_t i = 1; i < shards_.size(); ++i) {
    BatchRequest r;
    while (shards_[i]->to_log().try_pop(&r)) {
      TICKETD_TRACE_EV("submit", i, r.total);
      log_->submit(i, r);
    }
  }
}

void Node::publish_role(ClusterRole role, const std::string& leader_service_addr) {
  {
    std::lock_guard<std::mutex> g(leader_mu_);
    if (leader_addr_ != leader_service_addr) leader_addr_ = leader_service_addr;
  }
  role_.store(static_cast<int>(role), std::memory_order_release);
}

std::string Node::leader_service_addr() {
  std::lock_guard<std::mutex> g(leader_mu_);
  return leader_addr_;
}

void Node::post_admin(AdminRequest&& req, io::Loop* from) {
  {
    std::lock_guard<std::mutex> g(admin_mu_);
    admin_inbox_.push_back(std::move(req));
  }
  shards_[0]->loop()->wake(from);
}

void Node::drain_admin() {
  std::vector<AdminRequest> reqs;
  {
    std::lock_guard<std::mutex> g(admin_mu_);
    reqs.swap(admin_inbox_);
  }
  for (AdminRequest& r : reqs) log_->admin(std::move(r));
}

void Node::reply_admin(const AdminRequest& req, std::string bytes) {
  shards_[req.shard]->post_admin_reply(req.conn, req.seq, std::move(bytes));
}

uint16_t Node::metrics_port() const { return metrics_ ? metrics_->port() : 0; }

void Node::stop() {
  std::lock_guard<std::mutex> g(stop_mu_);
  if (metrics_) metrics_->stop();  // first: it reads the shards' counters
  if (stopped_) return;
  stopped_ = true;
  // Other shards first: their in-flight TICKETs still need shard 0's log to answer.
  for (size_t i = 1; i < shards_.size(); ++i) shards_[i]->request_stop();
  for (size_t i = 1; i < shards_.size(); ++i) shards_[i]->join();
  if (!shards_.empty()) {
    shards_[0]->request_stop();
    shards_[0]->join();
  }
}

void Node::wait() {
  for (auto& s : shards_) s->join();
}

Server::Server(const ServerOptions& opts) : node_(std::make_unique<Node>(opts)) {}
Server::~Server() = default;
bool Server::start(std::string* err) { return node_->start(err); }
void Server::wait() { node_->wait(); }
void Server::stop() { node_->stop(); }
bool Server::reload_tls(std::string* err) { return node_->reload_tls(err); }
uint16_t Server::service_port() const { return node_->service_port(); }

}  // namespace ticketd::server
