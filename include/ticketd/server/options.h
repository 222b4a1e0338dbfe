// server: the flags a node runs with, parsed and validated by main.cpp (CLI11).
// Promises: plain values only; nothing here opens a socket or a file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ticketd/auth/digest.h"

namespace ticketd::server {

enum class Durability {
  kHigh,    // nothing is acknowledged before it is fdatasync'ed
  kMedium,  // written to the device on every batch; fdatasync'ed in the background every 200 ms
  kLow,     // buffered in memory; written and fdatasync'ed in the background every 200 ms
};

const char* durability_name(Durability d);
bool parse_durability(const std::string& s, Durability* out);

// One setting as CONFIG GET reports it (name without dashes, value as text).
struct ConfigParam {
  std::string name;
  std::string value;
  bool operator==(const ConfigParam&) const = default;
};

struct ServerOptions {
  uint64_t id = 1;
  std::string saddr = ":11001";  // client (RESP) address
  std::string raddr = ":12001";  // raft peer address
  bool no_bootstrap = false;     // a fresh node without --join waits to be added (RAFT.ADDVOTER)
  std::string join;              // address of any member to join, empty: bootstrap or restart
  // Recovery from a lost majority (etcd's name): restart this node from its own data as the
  // only voter of its cluster (raft::force_new_cluster), then add members with RAFT.ADDVOTER.
  bool force_new_cluster = false;
  // With force_new_cluster: every later ticket of each named sequence is above the value
  // (--floor NAME=N; the sequence is created if this node does not have it).
  struct Floor {
    std::string name;
    uint64_t value = 0;
    bool operator==(const Floor&) const = default;
  };
  std::vector<Floor> floors;
  std::string dir = "data";      // data lives under <dir>/<id>/
  Durability durability = Durability::kHigh;
  unsigned threads = 0;          // shard threads; 0 = online CPUs
  unsigned max_clients = 20000;  // connections past this are closed with -ERR max clients
  uint64_t snapshot_every = 10000;  // entries between automatic snapshots + WAL compaction
  uint64_t wal_segment_bytes = 16ull << 20;  // ~300k Allocate records; disk use is bounded by two
  unsigned wal_writes_in_flight = 2;  // durable WAL writes side by side (docs/BENCHMARKS.md)
  uint64_t max_sequences = 10000;  // TICKET.CREATE refuses past this many (default included)
  // The `default` sequence's mode where the ticket state starts (--default-mode window, issue
  // 15): a snapshot carries the mode from then on. Give every node of a cluster the same.
  bool default_window_mode = false;
  uint64_t default_window = 10000;  // its least reservation (--default-window)
  // --lease: window batches are released under the leader's lease (raft::Config::lease_ticks)
  // instead of after a quorum round each. Give every node the same.
  bool window_lease = false;
  // Clients. The default user's password, as its SHA-256 digest only (--requirepass*).
  std::optional<auth::Digest> requirepass;
  std::string aclfile;           // users and roles; read (and checked) at start
  bool protected_mode = true;    // no password for the default user: loopback clients only
  // What --join logs in as on the member it joins (like Redis's masteruser/masterauth): the
  // one secret kept in clear, since it is sent. Empty password: no AUTH is sent.
  std::string join_user = "default";
  std::string join_password;
  // Peers. The cluster key (SHA-256 of --cluster-secret-file's secret): every peer link and
  // every RAFT.JOIN must prove it. None: the raft port is unauthenticated (as before).
  std::optional<auth::Digest> cluster_secret;
  // Operations (issue 14): every flag as CONFIG GET reports it (server/config_params.h:
  // derived from the CLI11 app, secrets left out). The log level is process-wide
  // (base/log.h), set by main from --loglevel and by CONFIG SET loglevel.
  std::vector<ConfigParam> config_params;
  // TLS (issue 13; Redis's tls-* names). A TLS client listener on --saddr's host at tls_port
  // (0: none); with it, --saddr's port may be 0: no plaintext listener. The files are read at
  // start (a bad one stops the node) and again on SIGHUP / TLS.RELOAD.
  uint16_t tls_port = 0;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_ca_cert_file;
  enum class TlsAuthClients : uint8_t { kNo, kOptional, kYes };
  TlsAuthClients tls_auth_clients = TlsAuthClients::kYes;  // as Redis: clients need a certificate
  bool tls_cluster = false;               // peer links: mutual TLS, the certificate names the node
  unsigned tls_handshake_timeout_ms = 10000;  // a client's or peer's handshake, from accept
  // Prometheus metrics over HTTP (issue 14): host:port of GET /metrics, empty: none.
  std::string metrics_addr;
};

// TLS is configured (a TLS client listener or TLS peer links): the files must load.
bool tls_enabled(const ServerOptions& o);
// The client address this node tells others about (RAFT.JOIN, the configuration, -MOVED):
// the TLS one (--saddr's host, --tls-port) when there is a TLS listener, else --saddr.
std::string client_address(const ServerOptions& o);

}  // namespace ticketd::server
