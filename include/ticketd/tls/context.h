// tls: the node's certificate, key and CA loaded into OpenSSL contexts (one to accept, one
// to connect), checked at load (readable, the key matches the certificate, not expired) and
// reloadable while the node runs: a reload swaps in a complete new set or keeps the old one.
// Promises: thread-safe; sessions made before a reload keep the set they were made from.
// Must never: log or return a key's bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

struct ssl_ctx_st;

namespace ticketd::tls {

struct Files {
  std::string cert_file;     // PEM: the certificate (and its chain), served and presented
  std::string key_file;      // PEM: its private key (unencrypted)
  std::string ca_cert_file;  // PEM: the CA(s) the other side's certificate must chain to
};

// One loaded set of contexts. Immutable once made.
class ContextSet {
 public:
  ~ContextSet();
  ContextSet(const ContextSet&) = delete;
  ContextSet& operator=(const ContextSet&) = delete;

  // Loads and checks the files. nullptr with *err (naming the flag and file) on failure;
  // *warning says what is allowed but unwise (a key readable by others), else "".
  static std::shared_ptr<const ContextSet> load(const Files& f, std::string* err,
                                                std::string* warning = nullptr);

  ssl_ctx_st* acceptor() const { return accept_; }   // servers: clients and inbound peers
  ssl_ctx_st* connector() const { return connect_; }  // outbound peers, --join
  const std::string& subject() const { return subject_; }      // of our certificate
  const std::string& not_after() const { return not_after_; }  // "2027-03-01 12:00:00 UTC"

 private:
  ContextSet() = default;
  ssl_ctx_st* accept_ = nullptr;
  ssl_ctx_st* connect_ = nullptr;
  std::string subject_;
  std::string not_after_;
};

// The node's current set and the files it comes from.
class Contexts {
 public:
  explicit Contexts(Files files) : files_(std::move(files)) {}
  // Loads the files (again): on success the new set is current; on failure *err says why and
  // the current set (if any) stays.
  bool load(std::string* err, std::string* warning = nullptr);
  std::shared_ptr<const ContextSet> current() const;
  const Files& files() const { return files_; }
  uint64_t loads() const;  // successful loads, the first one included

 private:
  Files files_;
  mutable std::mutex mu_;  // taken once per new connection and per reload: never per request
  std::shared_ptr<const ContextSet> current_;
  uint64_t loads_ = 0;
};

}  // namespace ticketd::tls
