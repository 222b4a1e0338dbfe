// tls: one TLS session (OpenSSL 3) over two memory BIOs, for a connection whose socket
// someone else reads and writes (the shard's io_uring). Ciphertext goes in with feed() and
// out with take_ciphertext(); plaintext comes out of read() and goes in with write().
// Promises: never touches a socket, never blocks, holds at most kMaxBufferedInput bytes of
// unprocessed ciphertext (more fails the session). Must never: know what io_uring is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct ssl_st;
struct ssl_ctx_st;
struct bio_st;

namespace ticketd::tls {

// What a session asks of the other side's certificate.
enum class PeerVerify : uint8_t {
  kNone,      // not asked for (a server that does not authenticate clients)
  kOptional,  // checked against the CA if presented (a client may present none)
  kRequired,  // must be presented and check against the CA
};

enum class Role : uint8_t { kAccept, kConnect };

// The SAN a node's certificate carries so peers can tell it is the one meant for that node
// (docs/SECURITY.md): URI "ticketd:node:<id>".
std::string node_uri(uint64_t node_id);

class Session {
 public:
  // Unprocessed ciphertext a session holds at most (a record is at most ~16.6 KiB; one
  // receive buffer on top of a partial record fits easily).
  static constexpr size_t kMaxBufferedInput = 96 * 1024;

  // `ctx` from tls::Contexts (a reference is taken: a reload does not affect this session).
  // A session that could not be made is failed() at once.
  Session(ssl_ctx_st* ctx, Role role, PeerVerify verify);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // kConnect: writes the ClientHello (take_ciphertext then has bytes to send).
  void start();
  // Ciphertext from the network; runs the handshake as far as it can. False once failed().
  bool feed(const char* data, size_t len);
  // Up to `cap` bytes of decrypted plaintext into buf. > 0: bytes; 0: nothing more now (or
  // the peer sent close_notify: peer_closed()); -1: the session failed.
  long read(char* buf, size_t cap);
  // Could read() return more now? False once every fed byte was decrypted and taken: the
  // reader stops there instead of paying for a call that can only say "want more".
  bool has_input() const;
  // Encrypts plaintext into the outgoing ciphertext. Only after handshake_done(); false if
  // the session failed (or the handshake is not done: nothing is written then).
  bool write(std::string_view plaintext);
  // Queues a close_notify alert (once; after the handshake only).
  void close_notify();

  size_t ciphertext_bytes() const;  // waiting to be taken
  // Appends every waiting ciphertext byte to *out and forgets them.
  void take_ciphertext(std::string* out);

  bool handshake_done() const { return done_; }
  bool failed() const { return failed_; }
  bool peer_closed() const { return peer_closed_; }
  // Why it failed (OpenSSL's reason and, for a certificate, the verify error). Never secret.
  const std::string& error() const { return error_; }

  // The verified peer certificate names node `id` (SAN URI node_uri(id)). False without a
  // verified certificate.
  bool peer_names_node(uint64_t id) const;
  // The peer certificate's subject, for log lines ("" without one).
  std::string peer_subject() const;
  // "TLSv1.3", for INFO/CLIENT INFO ("" before the handshake).
  const char* version() const;

 private:
  void drive_handshake();
  void fail(const char* what, int ssl_error);

  ssl_st* ssl_ = nullptr;
  bio_st* rbio_ = nullptr;  // ciphertext in (owned by ssl_)
  bio_st* wbio_ = nullptr;  // ciphertext out (owned by ssl_)
  bool done_ = false;
  bool failed_ = false;
  bool peer_closed_ = false;
  bool notified_ = false;
  std::string error_;
};

}  // namespace ticketd::tls
