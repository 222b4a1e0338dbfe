// --metrics-addr: Prometheus's text format over plain HTTP/1.1, GET /metrics.
// Promises: served by a thread of its own with blocking-free sockets under poll(), which
// reads only what the shards and shard 0 publish for any thread (single-writer counters,
// histograms, the Raft view published every 100 ms); a request is bounded in size
// (metrics::kMaxRequestBytes), in time (kRequestTimeoutMs from accept to the last byte
// sent) and in number (kMaxClients at once); a bad request gets a 4xx. Never: touches a
// shard's ring, a connection, or anything on the ticket path; keeps a connection open.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace ticketd::server {

class Node;

// The exposition of everything /metrics shows (any thread).
std::string render_prometheus(Node& node);

class MetricsEndpoint {
 public:
  static constexpr uint64_t kRequestTimeoutMs = 5000;
  static constexpr size_t kMaxClients = 16;

  explicit MetricsEndpoint(Node& node) : node_(node) {}
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // Binds and listens (false with *err); start() then serves on a thread of its own.
  bool listen(const std::string& addr, std::string* err);
  void start();
  void stop();
  uint16_t port() const { return port_; }

 private:
  struct Client {
    int fd = -1;
    std::string in;
    std::string out;
    size_t sent = 0;
    bool replied = false;   // `out` is the whole response; then the write side is shut
    uint64_t deadline_ms = 0;
  };
  void run();
  void accept_clients();
  // Reads, answers once the head is complete or bad; false: close it now.
  bool on_readable(Client& c);
  bool on_writable(Client& c);
  void answer(Client& c, int status, std::string_view why);

  Node& node_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop()
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::vector<Client> clients_;
};

}  // namespace ticketd::server
