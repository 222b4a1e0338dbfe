#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "ticketd/auth/digest.h"
#include "ticketd/tls/context.h"

namespace ticketd::cluster {

// RAFT.JOIN's proof of the cluster secret: HMAC-SHA256 with the cluster key over the join's
// arguments, so that a node without the secret cannot join even with an operator's login.
auth::Digest join_proof(const auth::Digest& key, std::string_view id, std::string_view raft_addr,
                        std::string_view service_addr, std::string_view incarnation);

// Joins an existing cluster through any member's client port: sends RAFT.JOIN and follows
// -MOVED to the leader, retrying with backoff until accepted or stopped. A plain thread
// with blocking sockets: it runs once, before the node has anything else to do. With a
// password it logs in first (AUTH user password, on every connection it makes). With `tls`
// (the node serves clients over TLS, so the members' client addresses are TLS ones) it speaks
// TLS, checking the member's certificate against the CA and presenting the node's own.
class JoinClient {
 public:
  JoinClient(std::string target, std::string command, std::string user, std::string password,
             std::function<void(std::string_view)> log, tls::Contexts* tls = nullptr);
  ~JoinClient();
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
  std::string login_;  // the AUTH request, RESP-encoded (it holds the password), or empty
  std::function<void(std::string_view)> log_;
  tls::Contexts* tls_ = nullptr;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> cluster_id_{0};
};

}  // namespace ticketd::cluster
