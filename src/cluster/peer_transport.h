// Raft peer transport on ONE io::Loop: whole, checked frames only; a bad frame or refused hello
// closes that one link and is counted; per-peer queues are bounded (overflow drops and counts).
// Must never: block the loop, crash on peer input, or free a Completion the kernel still holds.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <chrono>
#include <unordered_map>
#include <vector>

#include "ticketd/auth/digest.h"
#include "ticketd/io/loop.h"
#include "ticketd/raft/types.h"
#include "ticketd/tls/context.h"

namespace ticketd::cluster {

// Wire: every frame is [u32 LE length][u8 kind][payload], length = 1 + payload bytes.
inline constexpr size_t kPeerFrameHeader = 5;
enum class PeerFrameKind : uint8_t {
  kHello = 1,    // payload: see append_hello_frame; always the first frame of an outbound link
  kMessage = 2,  // payload: raft::encode bytes (versioned, xxh3-checksummed by the codec)
  kRefuse = 3,   // payload: the refusal reason, sent back on an inbound link before closing
  // With a cluster secret (both sides), the hello starts a mutual challenge-response: the
  // hello carries the dialer's nonce; the listener answers CHALLENGE (its nonce and its proof);
  // the dialer checks that proof and answers PROOF (its own); only then do MESSAGEs flow.
  kChallenge = 4,  // listener -> dialer: see append_challenge_frame
  kProof = 5,      // dialer -> listener: see append_proof_frame
  // Wire version 2: the listener's answer to an accepted hello of version 4 (see
  // append_welcome_frame). Never sent to a dialer of an older hello.
  kWelcome = 6,
};

// The peer protocol ("wire") versions this build speaks. 1: hellos of version 2/3 and nothing
// back but CHALLENGE/REFUSE (every release before rolling upgrades); 2: the dialer's hello
// (version 4) offers its range, the listener answers WELCOME with the version chosen. Raft
// messages are codec version 1 (raft/codec.h) at both; a later message format is sent only
// on a link whose negotiated version has it. A node dials a peer with version 4 first; a peer
// of an older release closes such a link at once (it does not know the hello), and the next
// connection to it uses the version 2/3 hello (wire 1) until that link breaks (the peer was
// restarted: upgraded, maybe), when version 4 is tried again.
inline constexpr uint8_t kWireVersionMin = 1;
inline constexpr uint8_t kWireVersion = 2;

using PeerNonce = std::array<uint8_t, 32>;

struct PeerHello {
  uint64_t cluster_id = 0;
  uint64_t node_id = 0;
  uint64_t incarnation = 0;
  std::string service_addr;
  std::string raft_addr;
  // The node the sender means to reach (0: any). An address can change hands (a removed
  // node's host:port taken over by a fresh node): the receiver refuses a hello meant for
  // another id rather than take it for a newer link from the sender.
  uint64_t target_id = 0;
  // Version 3: the sender holds a cluster secret; its fresh nonce opens the challenge.
  bool has_nonce = false;
  PeerNonce nonce{};
  // The wire versions the sender speaks. [1, 1]: the hello of version 2/3 (every release before
  // wire version 2, and this build's fallback to one); otherwise the hello of version 4.
  uint8_t wire_min = 1;
  uint8_t wire_max = 1;

  bool operator==(const PeerHello&) const = default;
};

// The wire version two ranges share (the highest), or 0 if they do not overlap.
uint8_t negotiate_wire(uint8_t min_a, uint8_t max_a, uint8_t min_b, uint8_t max_b);

struct PeerChallenge {
  uint64_t listener_id = 0;  // who answers (the dialer checks it is the node it meant)
  PeerNonce nonce{};         // the listener's fresh nonce
  auth::Digest proof{};      // handshake_proof(key, true, ...)
};

// The proofs of the challenge-response: HMAC-SHA256 keyed with the cluster key over
// "TKDP-AUTH-1", the side ('L' listener, 'D' dialer), SHA-256 of the dialer's hello payload
// (its node id, nonce, cluster id, incarnation, addresses, target), the listener's node id
// and the listener's nonce. Both nonces and both ids are in it, so a recorded handshake
// proves nothing on a new connection and neither side's proof can stand in for the other's.
auth::Digest handshake_proof(const auth::Digest& key, bool listener, std::string_view hello_payload,
                             uint64_t listener_id, const PeerNonce& listener_nonce);

inline constexpr size_t kMaxHelloAddrBytes = 1024;
// The largest frame a link accepts before a valid hello (an inbound link) or at all (an outbound
// link, which only ever receives a REFUSE): a stranger cannot make us reserve more than this.
inline constexpr uint32_t kMaxHelloFrameBytes =
    1 + 4 + 1 + 3 + 8 * 3 + 2 * (2 + kMaxHelloAddrBytes) + 8 + 32 + 8;
inline constexpr uint32_t kMaxRefuseFrameBytes = 1 + 4096;

// Hello payload: "TKDP" | u8 version (2, or 3 with a nonce) | u64 cluster | u64 node |
// u64 incarnation | u16 len + service_addr | u16 len + raft_addr | u64 target |
// [version 3: 32-byte nonce] | u64 xxh3 of everything before it (all LE).
// Version 4 (wire_max >= 2): "TKDP" | u8 4 | u8 flags (1: nonce) | u8 wire_min | u8 wire_max |
// then as version 2 from the cluster id on, the nonce if flagged, the checksum.
void append_hello_frame(const PeerHello& h, std::string* out);
// Decodes a hello payload (the bytes after the kind). "" on success, else the error text.
std::string decode_hello(std::string_view payload, PeerHello* out);
// Challenge payload: "TKDC" | u64 listener id (LE) | 32-byte nonce | 32-byte proof.
void append_challenge_frame(const PeerChallenge& c, std::string* out);
std::string decode_challenge(std::string_view payload, PeerChallenge* out);
// Welcome payload: "TKDW" | u8 wire_min | u8 wire_max (the listener's) | u8 chosen.
struct PeerWelcome {
  uint8_t wire_min = 0;
  uint8_t wire_max = 0;
  uint8_t chosen = 0;
  bool operator==(const PeerWelcome&) const = default;
};
void append_welcome_frame(const PeerWelcome& w, std::string* out);
std::string decode_welcome(std::string_view payload, PeerWelcome* out);
// Proof payload: "TKDA" | 32-byte proof.
void append_proof_frame(const auth::Digest& proof, std::string* out);
std::string decode_proof(std::string_view payload, auth::Digest* out);
// Appends the MESSAGE frame for m; false (and nothing appended) if it exceeds max_frame_bytes.
bool append_message_frame(const raft::Message& m, uint32_t max_frame_bytes, std::string* out);
void append_refuse_frame(std::string_view reason, std::string* out);

// Reassembles frames from a TCP byte stream. Whole frames inside one chunk are handed over in
// place (no copy); only a frame split across chunks is stashed, and its full size is reserved
// once its header is known. The stash never grows past max_frame_bytes + header.
class PeerFrameReader {
 public:
  explicit PeerFrameReader(uint32_t max_frame_bytes) : max_frame_(max_frame_bytes) {}

  // Calls on_frame(PeerFrameKind-as-uint8, std::string_view payload) for each whole frame in
  // order; on_frame returns false to stop (the reader then fails). Returns false once the stream
  // is bad (a zero or too large length, or on_frame refused); error() says why.
  template <class F>
  bool feed(const char* data, size_t len, F&& on_frame);

  // The length limit for frames from now on (a link raises it once the hello is accepted).
  void set_max_frame(uint32_t max_frame_bytes) { max_frame_ = max_frame_bytes; }
  bool failed() const { return failed_; }
  const std::string& error() const { return error_; }
  size_t buffered() const { return stash_.size(); }

 private:
  static uint32_t load_le32(const char* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return le32toh_(v);
  }
  static uint32_t le32toh_(uint32_t v) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return __builtin_bswap32(v);
#else
    return v;
#endif
  }
  bool check_length(uint32_t n) {
    if (n == 0 || n > max_frame_) {
      fail("bad frame length " + std::to_string(n));
      return false;
    }
    return true;
  }
  void fail(std::string why) {
    failed_ = true;
    error_ = std::move(why);
    stash_.clear();
  }

  uint32_t max_frame_;
  bool failed_ = false;
  std::string error_;
  std::string stash_;
};

class PeerTransport {
 public:
  struct Options {
    uint64_t self_id = 0;
    uint64_t cluster_id = 0;  // 0 = unknown yet
    uint64_t incarnation = 0;
    std::string listen_addr;  // "host:port" or ":port" (port 0 picks a free port)
    std::string service_addr;
    std::string raft_addr;  // advertised
    size_t max_queue_bytes = 32u << 20;
    uint32_t max_frame_bytes = 64u << 20;
    int backoff_min_ms = 20;
    int backoff_max_ms = 1000;
    // Inbound links: closed if no hello is accepted (or a refused one does not hang up) within
    // this time; at most max_inbound at once, and at most max_unhelloed of them before their
    // hello (over either, a new connection is closed at once, counted and logged).
    int hello_timeout_ms = 3000;
    size_t max_inbound = 256;
    size_t max_unhelloed = 16;
    // Links dialled back to callers outside our configuration (set_peer from on_hello): at most
    // this many, each living only while that caller keeps an accepted link to us.
    size_t max_callback_links = 16;
    // The cluster key (SHA-256 of --cluster-secret-file): every link must pass the mutual
    // challenge-response before a MESSAGE crosses it. None: hellos are not authenticated,
    // and a hello that offers a challenge is refused.
    std::optional<auth::Digest> secret;
    // --tls-cluster yes: every link is mutual TLS (both certificates from the CA); the
    // listener's certificate must name the node we dial and the dialer's the node its hello
    // claims (SAN URI tls::node_uri(id)). A handshake not done within hello_timeout_ms is
    // closed. Null: plain TCP.
    tls::Contexts* tls = nullptr;
  };
  struct Hooks {
    // A message from a peer whose hello was accepted (m.from == its node id, m.to == self).
    std::function<void(raft::Message&&)> on_message;
    // "" accepts; anything else is the refusal reason (logged here and sent to the peer).
    std::function<std::string(const PeerHello&)> check_hello;
    // After acceptance (learn the peer's service address, incarnation...). A set_peer() it
    // makes for an id without a link creates a CALLBACK link: one for answering a caller our
    // configuration does not name yet (the leader adding us), removed once the caller's last
    // link to us closes, unless a set_peer() outside this hook made it a configured peer.
    std::function<void(const PeerHello&)> on_hello;
    std::function<void(std::string_view)> log;
    // The peer at the other end of our outbound link refused our hello (optional).
    std::function<void(uint64_t peer, std::string_view reason)> on_refused;
  };
  struct Stats {
    uint64_t sent_msgs = 0;        // MESSAGE frames fully handed to the kernel
    uint64_t recv_msgs = 0;        // messages delivered to on_message
    uint64_t dropped_msgs = 0;     // queue full, unknown peer, too large, torn by a broken link
    uint64_t bad_frames = 0;       // inbound links closed for a malformed frame or hello
    uint64_t refused_hellos = 0;   // hellos WE refused (cluster id, node id, check_hello)
    uint64_t refused_by_peer = 0;  // REFUSE frames we received on our outbound links
    uint64_t connects = 0;         // outbound connections established
    uint64_t reconnects = 0;       // outbound attempts started after an earlier attempt or link
    uint64_t refused_conns = 0;    // inbound connections closed at accept (max_inbound/unhelloed)
    uint64_t hello_timeouts = 0;   // inbound links closed for no accepted hello in time
    uint64_t auth_failures = 0;    // handshakes that failed the cluster secret, either side
  };

  // Must be constructed, used and shut down on the loop's thread (the ring is SINGLE_ISSUER; the
  // BufferRing registration needs that thread). `buf_group` must be unique on this loop.
  PeerTransport(io::Loop& loop, uint16_t buf_group, Options opts, Hooks hooks);
  // Calls shutdown() if it was not called (which runs the loop a few turns).
  ~PeerTransport();
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  bool listen(std::string* err);  // binds the raft address (plain bind, no SO_REUSEPORT)
  uint16_t listen_port() const { return listen_port_; }
  void set_peer(uint64_t id, const std::string& raft_addr);  // add or update; connects lazily
  void remove_peer(uint64_t id);
  // Closes the links `id` opened to us (the caller reconnects with a fresh hello, which
  // then decides again whether we answer it, e.g. on a callback link once it is removed).
  void close_inbound(uint64_t id);
  void set_cluster_id(uint64_t id) { opts_.cluster_id = id; }
  // To m.to: encodes straight into that peer's bounded queue (drop + count when full).
  void send(const raft::Message& m);
  // End of a loop turn: starts connects for idle peers and a send for every peer with queued
  // bytes and no send in flight, and closes inbound links whose hello is overdue. The driver
  // calls it at least every few milliseconds (it owns the clock; we only read it here).
  void flush();
  // Cancels everything and runs the loop until every operation of ours has reported its final
  // completion. Afterwards the loop may be destroyed. Must NOT be called from inside a loop
  // callback (it runs loop turns itself); call it from the loop's thread between turns.
  void shutdown();

  const Stats& stats() const { return stats_; }
  bool connected(uint64_t id) const;  // outbound link up and hello sent
  // The wire version of our link to `id` (0: not negotiated yet; 1 after a fallback to the
  // older hello; else what its WELCOME chose).
  uint8_t wire_version(uint64_t id) const;
  bool has_peer(uint64_t id) const { return links_.count(id) != 0; }  // configured or callback
  size_t inbound_conns() const { return inbound_; }
  // Kernel operations of ours not yet finally completed (0 after shutdown()).
  size_t inflight_ops() const;
  size_t queued_bytes(uint64_t id) const;  // waiting + in flight for that peer (0 if unknown)

 private:
  struct Conn;
  struct Link;

  static void on_accept(io::Completion* c, int32_t res, uint32_t flags);
  static void on_connect(io::Completion* c, int32_t res, uint32_t flags);
  static void on_recv(io::Completion* c, int32_t res, uint32_t flags);
  static void on_send(io::Completion* c, int32_t res, uint32_t flags);
  static void on_timer(io::Completion* c, int32_t res, uint32_t flags);

  Conn* new_conn(int fd, Link* link);
  void link_up(Conn* c);  // an outbound connection is ready (TCP, and TLS if any): the hello
  // --tls-cluster: the socket carries ciphertext. `sending` stays whole plaintext frames;
  // Conn::wire holds the ciphertext of the one send in flight.
  bool tls_begin(Conn* c, bool dial);
  bool tls_receive(Conn* c, const char* data, size_t len);  // false: close (close_reason says)
  void tls_send_handshake(Conn* c);  // handshake bytes, when no send is in flight
  void expire_tls_handshakes();
  void start_connect(Link* l);
  void start_send(Conn* c);
  void arm_recv(Conn* c);
  bool handle_frame(Conn* c, uint8_t kind, std::string_view payload);
  bool handle_hello(Conn* c, std::string_view payload);
  bool handle_proof(Conn* c, std::string_view payload);      // listener, secret set
  bool handle_challenge(Conn* c, std::string_view payload);  // dialer, secret set
  bool accept_hello(Conn* c);  // the checks after the hello (and the proof) passed
  bool may_send_messages(const Conn* c) const;
  void start_next_send(Conn* c);  // control frames, then the link's queue, when allowed
  // Rate-limited per `key` (the kind of failure and the claimed node): one line per 10 s.
  void log_auth_failure(const std::string& key, const std::string& line);
  void refuse(Conn* c, const std::string& reason, bool rate_limited = false);
  void break_conn(Conn* c, const std::string& why);
  void start_close(Conn* c);
  void finish_if_drained(Conn* c);
  void link_conn_gone(Link* l, Conn* c);
  void expire_hellos();
  void drop_callback_link_if_unused(uint64_t id);
  bool configured_peer(uint64_t id) const;
  void schedule_reconnect(Link* l);
  void maybe_free_link(Link* l);
  void log(const std::string& s) const;

  io::Loop& loop_;
  Options opts_;
  Hooks hooks_;
  std::unique_ptr<io::BufferRing> bufs_;
  int listen_fd_ = -1;
  uint16_t listen_port_ = 0;
  io::Completion accept_c_;
  bool accept_armed_ = false;
  bool shutting_down_ = false;
  bool shut_ = false;
  std::unordered_map<uint64_t, std::unique_ptr<Link>> links_;
  std::vector<std::unique_ptr<Link>> retired_links_;  // removed, waiting for their ops to end
  std::vector<Conn*> conns_;                          // every live connection, both directions
  size_t inbound_ = 0;         // inbound connections not yet freed
  size_t unhelloed_ = 0;       // ... of which no hello was accepted
  size_t callback_links_ = 0;  // links with Link::callback set
  bool in_hello_hook_ = false;
  bool cap_logged_ = false;    // one log line per spell of connections refused at accept
  struct AuthLog {
    std::chrono::steady_clock::time_point at{};  // when this kind was last logged
    uint64_t suppressed = 0;
  };
  std::unordered_map<std::string, AuthLog> auth_log_;  // bounded: cleared past 64 kinds
  std::unique_ptr<char[]> tls_plain_;                  // decrypted input (--tls-cluster)
  Stats stats_;
};

template <class F>
bool PeerFrameReader::feed(const char* data, size_t len, F&& on_frame) {
  if (failed_) return false;
  if (!stash_.empty()) {
    // Finish the frame that began in an earlier chunk.
    while (stash_.size() < 4 && len > 0) {
      stash_.push_back(*data++);
      --len;
    }
    if (stash_.size() < 4) return true;
    uint32_t n = load_le32(stash_.data());
    if (!check_length(n)) return false;
    size_t total = 4 + static_cast<size_t>(n);
    if (stash_.capacity() < total) stash_.reserve(total);
    size_t take = std::min(len, total - stash_.size());
    stash_.append(data, take);
    data += take;
    len -= take;
    if (stash_.size() < total) return true;
    bool ok = on_frame(static_cast<uint8_t>(stash_[4]), std::string_view(stash_).substr(5));
    // A large frame's buffer is not kept per link once it has been used.
    if (stash_.capacity() > (1u << 20)) {
      std::string().swap(stash_);
    } else {
      stash_.clear();
    }
    if (!ok) {
      fail("frame refused");
      return false;
    }
  }
  while (len >= 4) {
    uint32_t n = load_le32(data);
    if (!check_length(n)) return false;
    size_t total = 4 + static_cast<size_t>(n);
    if (len < total) break;
    if (!on_frame(static_cast<uint8_t>(data[4]), std::string_view(data + 5, n - 1))) {
      fail("frame refused");
      return false;
    }
    data += total;
    len -= total;
  }
  if (len > 0) {
    if (len >= 4) {
      // Reject a bad length now instead of buffering towards it.
      uint32_t n = load_le32(data);
      if (!check_length(n)) return false;
      stash_.reserve(4 + static_cast<size_t>(n));
    }
    stash_.assign(data, len);
  }
  return true;
}

}  // namespace ticketd::cluster
