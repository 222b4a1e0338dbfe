// server: wires io, resp, storage (and raft) into a running ticketd node.
// Promises: thread-per-core shards, replies in request order per connection, no ticket
// acknowledged before it is as durable as --durability says. Never: a mutex on the ticket path.
#pragma once

#include <memory>
#include <string>

#include "ticketd/server/options.h"

namespace ticketd::server {

class Node;

class Server {
 public:
  explicit Server(const ServerOptions& opts);
  ~Server();

  // Opens storage, binds sockets and starts the shard threads. False with *err set when
  // the node cannot start (port taken, data directory unusable, corrupt state...).
  bool start(std::string* err);
  // Blocks until stop() (or SIGTERM/SIGINT when install_signal_handlers was called).
  void wait();
  // Graceful stop: stop accepting, answer what is in flight, then return from wait().
  void stop();
  // Reloads the TLS certificate, key and CA files (SIGHUP). False with *err (the old ones
  // stay in use) if they do not load, or TLS is not configured.
  bool reload_tls(std::string* err);
  // The client port actually bound (useful when --saddr asked for port 0).
  uint16_t service_port() const;

 private:
  std::unique_ptr<Node> node_;
};

}  // namespace ticketd::server
