#include "peer_transport.h"

#include <arpa/inet.h>
#include <endian.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "ticketd/base/check.h"
#include "ticketd/raft/codec.h"
#include "ticketd/tls/session.h"

namespace ticketd::cluster {

namespace {

constexpr unsigned kRecvBuffers = 64;
constexpr unsigned kRecvBufSize = 64 * 1024;
// A refused peer may keep sending until it reads our REFUSE; we read and discard up to this
// much (so our close does not reset the connection before the reason arrives), then close.
constexpr size_t kMaxDiscardBytes = 1u << 20;
constexpr char kHelloMagic[4] = {'T', 'K', 'D', 'P'};
constexpr uint8_t kHelloVersion = 2;      // 2: + target id
constexpr uint8_t kHelloVersionAuth = 3;  // 3: + the dialer's nonce (a cluster secret)
constexpr uint8_t kHelloVersionWire = 4;  // 4: + flags and the dialer's wire versions
constexpr uint8_t kHelloFlagNonce = 1;
constexpr char kWelcomeMagic[4] = {'T', 'K', 'D', 'W'};
constexpr char kChallengeMagic[4] = {'T', 'K', 'D', 'C'};
constexpr char kProofMagic[4] = {'T', 'K', 'D', 'A'};

void put16(std::string* out, uint16_t v) {
  v = htole16(v);
  out->append(reinterpret_cast<const char*>(&v), 2);
}
void put64(std::string* out, uint64_t v) {
  v = htole64(v);
  out->append(reinterpret_cast<const char*>(&v), 8);
}
uint16_t get16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return le16toh(v);
}
uint32_t get32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return le32toh(v);
}
uint64_t get64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return le64toh(v);
}
void set32(std::string* out, size_t at, uint32_t v) {
  v = htole32(v);
  std::memcpy(out->data() + at, &v, 4);
}

// Starts a frame of `kind` at the end of *out; returns where its length goes.
size_t begin_frame(std::string* out, PeerFrameKind kind) {
  size_t start = out->size();
  out->append(4, '\0');
  out->push_back(static_cast<char>(kind));
  return start;
}
void end_frame(std::string* out, size_t start) {
  set32(out, start, static_cast<uint32_t>(out->size() - start - 4));
}

// Resolves a peer's "host:port" / ":port" for connecting (empty host = 127.0.0.1).
bool resolve(const std::string& addr, sockaddr_storage* sa, socklen_t* len, std::string* err) {
  std::string host;
  uint16_t port = 0;
  if (!io::parse_host_port(addr, &host, &port)) {
    *err = "bad address '" + addr + "'";
    return false;
  }
  if (host.empty()) host = "127.0.0.1";
  std::memset(sa, 0, sizeof(*sa));
  auto* v4 = reinterpret_cast<sockaddr_in*>(sa);
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(sa);
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  // A name (rare for raft addresses): a blocking lookup, done once per connect attempt.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    *err = "cannot resolve '" + host + "': " + ::gai_strerror(rc);
    return false;
  }
  addrinfo* pick = res;
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  std::memcpy(sa, pick->ai_addr, pick->ai_addrlen);
  *len = pick->ai_addrlen;
  if (sa->ss_family == AF_INET) v4->sin_port = htons(port);
  if (sa->ss_family == AF_INET6) v6->sin6_port = htons(port);
  ::freeaddrinfo(res);
  return true;
}

// io::parse_host_port refuses port 0; for listening it means "any free port" (tests use it).
bool parse_listen_addr(const std::string& s, std::string* host, uint16_t* port) {
  if (io::parse_host_port(s, host, port)) return true;
  auto colon = s.rfind(':');
  std::string p = colon == std::string::npos ? s : s.substr(colon + 1);
  if (p != "0") return false;
  std::string h = colon == std::string::npos ? "" : s.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  *host = h;
  *port = 0;
  return true;
}

// "ip:port" of the other end of `fd` ("?" if it cannot be asked).
std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return "?";
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "?";
}

uint64_t xorshift(uint64_t* s) {
  uint64_t x = *s;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *s = x;
  return x;
}

}  // namespace

uint8_t negotiate_wire(uint8_t min_a, uint8_t max_a, uint8_t min_b, uint8_t max_b) {
  uint8_t hi = std::min(max_a, max_b);
  return hi >= std::max(min_a, min_b) ? hi : 0;
}

void append_hello_frame(const PeerHello& h, std::string* out) {
  size_t start = begin_frame(out, PeerFrameKind::kHello);
  size_t body = out->size();
  bool wire = h.wire_max >= 2;
  out->append(kHelloMagic, 4);
  out->push_back(static_cast<char>(wire ? kHelloVersionWire : kHelloVersion));
  if (wire) {
    out->push_back(static_cast<char>(h.has_nonce ? kHelloFlagNonce : 0));
    out->push_back(static_cast<char>(h.wire_min));
    out->push_back(static_cast<char>(h.wire_max));
  }
  put64(out, h.cluster_id);
  put64(out, h.node_id);
  put64(out, h.incarnation);
  for (const std::string* s : {&h.service_addr, &h.raft_addr}) {
    size_t n = std::min(s->size(), kMaxHelloAddrBytes);
    put16(out, static_cast<uint16_t>(n));
    out->append(s->data(), n);
  }
  put64(out, h.target_id);
  if (h.has_nonce) {
    if (!wire) (*out)[body + 4] = static_cast<char>(kHelloVersionAuth);
    out->append(reinterpret_cast<const char*>(h.nonce.data()), h.nonce.size());
  }
  put64(out, XXH3_64bits(out->data() + body, out->size() - body));
  end_frame(out, start);
}

std::string decode_hello(std::string_view in, PeerHello* out) {
  constexpr size_t kFixed = 4 + 1 + 8 * 3;
  if (in.size() < kFixed + 2 + 2 + 8 + 8) return "hello too short";
  if (std::memcmp(in.data(), kHelloMagic, 4) != 0) return "hello magic mismatch";
  size_t body = in.size() - 8;
  if (XXH3_64bits(in.data(), body) != get64(in.data() + body)) return "hello checksum mismatch";
  uint8_t version = static_cast<uint8_t>(in[4]);
  if (version != kHelloVersion && version != kHelloVersionAuth && version != kHelloVersionWire) {
    return "unsupported hello version " + std::to_string(version);
  }
  size_t ext = 0;  // version 4: flags, wire_min, wire_max after the version byte
  out->has_nonce = version == kHelloVersionAuth;
  out->wire_min = out->wire_max = 1;
  if (version == kHelloVersionWire) {
    ext = 3;
    if (in.size() < kFixed + ext + 2 + 2 + 8 + 8) return "hello too short";
    uint8_t flags = static_cast<uint8_t>(in[5]);
    if ((flags & ~kHelloFlagNonce) != 0) return "unknown hello flags";
    out->has_nonce = (flags & kHelloFlagNonce) != 0;
    out->wire_min = static_cast<uint8_t>(in[6]);
    out->wire_max = static_cast<uint8_t>(in[7]);
    if (out->wire_min == 0 || out->wire_max < 2 || out->wire_min > out->wire_max) {
      return "bad wire versions in hello";
    }
  }
  out->cluster_id = get64(in.data() + ext + 5);
  out->node_id = get64(in.data() + ext + 13);
  out->incarnation = get64(in.data() + ext + 21);
  size_t pos = kFixed + ext;
  for (std::string* s : {&out->service_addr, &out->raft_addr}) {
    if (pos + 2 > body) return "hello truncated";
    size_t n = get16(in.data() + pos);
    pos += 2;
    if (n > kMaxHelloAddrBytes || pos + n > body) return "hello address too long";
    s->assign(in.data() + pos, n);
    pos += n;
  }
  if (pos + 8 > body) return "hello truncated";
  out->target_id = get64(in.data() + pos);
  pos += 8;
  out->nonce = {};
  if (out->has_nonce) {
    if (pos + out->nonce.size() > body) return "hello truncated";
    std::memcpy(out->nonce.data(), in.data() + pos, out->nonce.size());
    pos += out->nonce.size();
  }
  if (pos != body) return "hello has trailing bytes";
  return "";
}

auth::Digest handshake_proof(const auth::Digest& key, bool listener, std::string_view hello_payload,
                             uint64_t listener_id, const PeerNonce& listener_nonce) {
  std::string t = "TKDP-AUTH-1";
  t.push_back(listener ? 'L' : 'D');
  auth::Digest h = auth::sha256(hello_payload);
  t.append(reinterpret_cast<const char*>(h.data()), h.size());
  put64(&t, listener_id);
  t.append(reinterpret_cast<const char*>(listener_nonce.data()), listener_nonce.size());
  return auth::hmac_sha256(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()), t);
}

void append_challenge_frame(const PeerChallenge& c, std::string* out) {
  size_t start = begin_frame(out, PeerFrameKind::kChallenge);
  out->append(kChallengeMagic, 4);
  put64(out, c.listener_id);
  out->append(reinterpret_cast<const char*>(c.nonce.data()), c.nonce.size());
  out->append(reinterpret_cast<const char*>(c.proof.data()), c.proof.size());
  end_frame(out, start);
}

std::string decode_challenge(std::string_view in, PeerChallenge* out) {
  if (in.size() != 4 + 8 + 32 + 32) return "challenge of " + std::to_string(in.size()) + " bytes";
  if (std::memcmp(in.data(), kChallengeMagic, 4) != 0) return "challenge magic mismatch";
  out->listener_id = get64(in.data() + 4);
  std::memcpy(out->nonce.data(), in.data() + 12, 32);
  std::memcpy(out->proof.data(), in.data() + 44, 32);
  return "";
}

void append_welcome_frame(const PeerWelcome& w, std::string* out) {
  size_t start = begin_frame(out, PeerFrameKind::kWelcome);
  out->append(kWelcomeMagic, 4);
  out->push_back(static_cast<char>(w.wire_min));
  out->push_back(static_cast<char>(w.wire_max));
  out->push_back(static_cast<char>(w.chosen));
  end_frame(out, start);
}

std::string decode_welcome(std::string_view in, PeerWelcome* out) {
  if (in.size() != 4 + 3) return "welcome of " + std::to_string(in.size()) + " bytes";
  if (std::memcmp(in.data(), kWelcomeMagic, 4) != 0) return "welcome magic mismatch";
  out->wire_min = static_cast<uint8_t>(in[4]);
  out->wire_max = static_cast<uint8_t>(in[5]);
  out->chosen = static_cast<uint8_t>(in[6]);
  if (out->chosen < out->wire_min || out->chosen > out->wire_max) return "welcome chose outside its range";
  return "";
}

void append_proof_frame(const auth::Digest& proof, std::string* out) {
  size_t start = begin_frame(out, PeerFrameKind::kProof);
  out->append(kProofMagic, 4);
  out->append(reinterpret_cast<const char*>(proof.data()), proof.size());
  end_frame(out, start);
}

std::string decode_proof(std::string_view in, auth::Digest* out) {
  if (in.size() != 4 + 32) return "proof of " + std::to_string(in.size()) + " bytes";
  if (std::memcmp(in.data(), kProofMagic, 4) != 0) return "proof magic mismatch";
  std::memcpy(out->data(), in.data() + 4, 32);
  return "";
}

bool append_message_frame(const raft::Message& m, uint32_t max_frame_bytes, std::string* out) {
  size_t start = begin_frame(out, PeerFrameKind::kMessage);
  raft::encode(m, out);  // straight into the queue: the only copy of the message's bytes
  if (out->size() - start - 4 > max_frame_bytes) {
    out->resize(start);
    return false;
  }
  end_frame(out, start);
  return true;
}

void append_refuse_frame(std::string_view reason, std::string* out) {
  size_t start = begin_frame(out, PeerFrameKind::kRefuse);
  out->append(reason.substr(0, 4096));
  end_frame(out, start);
}

// One TCP connection, either direction. Heap-allocated and freed only once no operation of its
// own is in the kernel (recv_armed / send_inflight / connect_inflight all false).
struct PeerTransport::Conn {
  Conn(PeerTransport* t_, int fd_, Link* link_, uint32_t max_frame)
      : t(t_), fd(fd_), link(link_), reader(max_frame) {}
  PeerTransport* t;
  int fd;
  Link* link;  // outbound: the peer link it serves; nullptr for an inbound connection
  io::Completion connect_c, recv_c, send_c;
  bool connect_inflight = false;
  bool recv_armed = false;
  bool send_inflight = false;
  bool cancel_recv_sent = false;
  bool cancel_connect_sent = false;
  bool shut = false;
  bool closing = false;
  bool up = false;          // outbound: connected
  bool hello_sent = false;  // outbound: our hello fully handed to the kernel
  bool hello_ok = false;    // inbound: the peer's hello was accepted
  bool refusing = false;    // inbound: REFUSE sent or sending; the rest is read and discarded
  size_t discarded = 0;
  PeerHello hello;  // inbound: the peer's hello
  std::string remote;  // inbound: the peer's address, for the log
  // With a cluster secret: the handshake. The dialer's hello payload (both sides prove over
  // it), our nonce (listener), whether the CHALLENGE went out (listener) and whether the
  // handshake passed; control frames (the PROOF, a REFUSE) go before any queued message.
  std::string hello_payload;
  PeerNonce nonce{};
  bool challenged = false;
  bool authed = false;
  bool auth_failed = false;  // closed for a failed proof (logged, rate-limited, already)
  uint8_t hello_wire_max = 0;  // outbound: the wire_max our hello offered
  bool welcomed = false;       // outbound: the listener answered WELCOME
  bool got_refuse = false;     // outbound: the listener answered REFUSE
  std::string control;
  PeerFrameReader reader;
  std::string sending;  // the bytes of the one send in flight (whole frames only)
  size_t send_off = 0;
  size_t hello_bytes = 0;
  std::string close_reason;
  std::chrono::steady_clock::time_point up_since;  // outbound: connected; inbound: accepted
  // --tls-cluster: the session; `wire` is the ciphertext of the send in flight, carrying the
  // `wire_plain` bytes of `sending` from send_off (0: handshake bytes only).
  std::unique_ptr<tls::Session> tls;
  std::string wire;
  size_t wire_off = 0;
  size_t wire_plain = 0;
};

// Our side of one peer: its address, its bounded queue, its outbound connection or timer.
struct PeerTransport::Link {
  PeerTransport* t = nullptr;
  uint64_t id = 0;
  std::string addr;
  sockaddr_storage sa{};
  socklen_t salen = 0;
  bool addr_ok = false;
  std::string pending;  // whole frames only, waiting for the next send
  uint64_t pending_msgs = 0;
  Conn* conn = nullptr;
  io::Completion timer_c;
  __kernel_timespec ts{};
  bool timer_armed = false;
  uint32_t backoff_ms = 0;  // the next reconnect delay before jitter
  bool attempted = false;
  bool removed = false;
  bool refused = false;      // the peer refused our hello: wait the longest backoff
  bool fail_logged = false;  // one log line per streak of failed attempts
  bool callback = false;     // dialled back to a caller outside our configuration (see Hooks)
  // Wire versions: the peer closed our version 4 hello unanswered (an older release), so the
  // next connections send the version 2/3 hello, until one of those breaks.
  bool legacy_hello = false;
  uint8_t wire = 0;          // of the current connection: 0 until known (see wire_version)
  uint64_t rng = 0;
};

PeerTransport::PeerTransport(io::Loop& loop, uint16_t buf_group, Options opts, Hooks hooks)
    : loop_(loop), opts_(std::move(opts)), hooks_(std::move(hooks)) {
  TICKETD_CHECK(opts_.backoff_min_ms > 0 && opts_.backoff_max_ms >= opts_.backoff_min_ms);
  TICKETD_CHECK(opts_.max_frame_bytes > 0);
  bufs_ = std::make_unique<io::BufferRing>(loop_, buf_group, kRecvBuffers, kRecvBufSize);
  accept_c_.owner = this;
  accept_c_.fn = &PeerTransport::on_accept;
}

PeerTransport::~PeerTransport() {
  if (!shut_) shutdown();
}

void PeerTransport::log(const std::string& s) const {
  if (hooks_.log) hooks_.log(s);
}

bool PeerTransport::listen(std::string* err) {
  TICKETD_CHECK(listen_fd_ < 0 && !shutting_down_);
  std::string host;
  uint16_t port = 0;
  if (!parse_listen_addr(opts_.listen_addr, &host, &port)) {
    *err = "bad raft address '" + opts_.listen_addr + "'";
    return false;
  }
  int fd = io::listen_tcp(host, port, /*reuseport=*/false, err);
  if (fd < 0) return false;
  listen_fd_ = fd;
  listen_port_ = io::local_port(fd);
  accept_armed_ = true;
  loop_.accept_multishot(listen_fd_, &accept_c_);
  return true;
}

PeerTransport::Conn* PeerTransport::new_conn(int fd, Link* link) {
  // Until a hello is accepted, a frame can be no larger than a hello; an outbound link only
  // ever receives a REFUSE.
  auto* c = new Conn(this, fd, link, link == nullptr ? kMaxHelloFrameBytes : kMaxRefuseFrameBytes);
  c->connect_c.owner = c;
  c->connect_c.fn = &PeerTransport::on_connect;
  c->recv_c.owner = c;
  c->recv_c.fn = &PeerTransport::on_recv;
  c->send_c.owner = c;
  c->send_c.fn = &PeerTransport::on_send;
  conns_.push_back(c);
  return c;
}

void PeerTransport::on_accept(io::Completion* comp, int32_t res, uint32_t flags) {
  auto* t = static_cast<PeerTransport*>(comp->owner);
  if (!io::cqe_more(flags)) {
    t->accept_armed_ = false;
    if (!t->shutting_down_) {
      t->accept_armed_ = true;
      t->loop_.accept_multishot(t->listen_fd_, &t->accept_c_);
    }
  }
  if (res < 0) return;  // EMFILE, ECONNABORTED...: keep accepting
  if (t->shutting_down_) {
    ::close(res);
    return;
  }
  if (t->inbound_ >= t->opts_.max_inbound || t->unhelloed_ >= t->opts_.max_unhelloed) {
    // Legitimate peers open one link each; a flood of strangers must not exhaust fds or memory.
    ::close(res);
    t->stats_.refused_conns++;
    if (!t->cap_logged_) {
      t->log("closing new inbound connections: " + std::to_string(t->inbound_) + " open, " +
             std::to_string(t->unhelloed_) + " without a hello (limits " +
             std::to_string(t->opts_.max_inbound) + "/" + std::to_string(t->opts_.max_unhelloed) +
             ")");
      t->cap_logged_ = true;
    }
    return;
  }
  t->cap_logged_ = false;
  int one = 1;
  ::setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  Conn* c = t->new_conn(res, nullptr);
  c->remote = peer_name(res);
  c->up_since = std::chrono::steady_clock::now();
  t->inbound_++;
  t->unhelloed_++;
  t->arm_recv(c);
  if (t->opts_.tls != nullptr && !t->tls_begin(c, false)) t->break_conn(c, c->close_reason);
}

void PeerTransport::arm_recv(Conn* c) {
  c->recv_armed = true;
  loop_.recv_multishot(c->fd, bufs_->group_id(), &c->recv_c);
}

void PeerTransport::start_send(Conn* c) {
  TICKETD_CHECK(!c->send_inflight && c->send_off < c->sending.size());
  c->send_inflight = true;
  if (c->tls) {
    // Encrypt what is left of the frames; the send completes (on_send) once its ciphertext
    // has left. A failed session sends nothing: the empty send's 0 breaks the link.
    c->wire_plain = c->sending.size() - c->send_off;
    if (!c->tls->write(std::string_view(c->sending).substr(c->send_off))) {
      c->wire_plain = 0;
      c->close_reason = c->tls->error();
    }
    c->wire.clear();
    c->wire_off = 0;
    c->tls->take_ciphertext(&c->wire);
    loop_.send(c->fd, c->wire.data(), c->wire.size(), &c->send_c);
    return;
  }
  loop_.send(c->fd, c->sending.data() + c->send_off, c->sending.size() - c->send_off, &c->send_c);
}

void PeerTransport::set_peer(uint64_t id, const std::string& raft_addr) {
  if (id == raft::kNoId || id == opts_.self_id || shutting_down_) return;
  auto it = links_.find(id);
  if (it != links_.end()) {
    Link* l = it->second.get();
    if (l->callback && !in_hello_hook_) {
      l->callback = false;  // our configuration names it now: a peer like any other
      callback_links_--;
    }
    if (l->addr == raft_addr) return;
    std::string err;
    l->addr = raft_addr;
    l->addr_ok = resolve(raft_addr, &l->sa, &l->salen, &err);
    if (!l->addr_ok) log("peer " + std::to_string(id) + ": " + err);
    l->backoff_ms = static_cast<uint32_t>(opts_.backoff_min_ms);
    // The old connection goes; the link reconnects to the new address after it drained.
    if (l->conn != nullptr) break_conn(l->conn, "peer address changed to " + raft_addr);
    return;
  }
  if (in_hello_hook_ && callback_links_ >= opts_.max_callback_links) {
    log("not dialling back node " + std::to_string(id) + " at " + raft_addr + ": already " +
        std::to_string(callback_links_) + " links to callers outside our configuration");
    return;
  }
  auto l = std::make_unique<Link>();
  l->t = this;
  l->id = id;
  l->callback = in_hello_hook_;
  if (l->callback) callback_links_++;
  l->addr = raft_addr;
  std::string err;
  l->addr_ok = resolve(raft_addr, &l->sa, &l->salen, &err);
  if (!l->addr_ok) log("peer " + std::to_string(id) + ": " + err);
  l->timer_c.owner = l.get();
  l->timer_c.fn = &PeerTransport::on_timer;
  l->backoff_ms = static_cast<uint32_t>(opts_.backoff_min_ms);
  // Seeded, not clock-random: the same ids give the same jitter sequence.
  l->rng = (opts_.self_id * 0x9E3779B97F4A7C15ull) ^ (id * 0xC2B2AE3D27D4EB4Full) ^
           opts_.incarnation ^ 0x5851F42D4C957F2Dull;
  if (l->rng == 0) l->rng = 1;
  links_.emplace(id, std::move(l));
  // Connects lazily: the next flush() starts it.
}

void PeerTransport::remove_peer(uint64_t id) {
  auto it = links_.find(id);
  if (it == links_.end()) return;
  Link* l = it->second.get();
  retired_links_.push_back(std::move(it->second));
  links_.erase(it);
  l->removed = true;
  if (l->callback) callback_links_--;
  stats_.dropped_msgs += l->pending_msgs;
  l->pending.clear();
  l->pending_msgs = 0;
  // Whichever operation is still out frees the link when it ends (never both: a link has a
  // timer only while it has no connection).
  if (l->timer_armed) {
    loop_.cancel(&l->timer_c, nullptr);
    return;
  }
  if (l->conn != nullptr) {
    break_conn(l->conn, "peer removed");
    return;
  }
  maybe_free_link(l);
}

void PeerTransport::close_inbound(uint64_t id) {
  std::vector<Conn*> from;
  for (Conn* o : conns_) {
    if (o->link == nullptr && o->hello_ok && !o->closing && o->hello.node_id == id) from.push_back(o);
  }
  for (Conn* o : from) break_conn(o, "node " + std::to_string(id) + " left our configuration");
}

void PeerTransport::maybe_free_link(Link* l) {
  if (!l->removed || l->conn != nullptr || l->timer_armed) return;
  for (size_t i = 0; i < retired_links_.size(); ++i) {
    if (retired_links_[i].get() == l) {
      retired_links_[i] = std::move(retired_links_.back());
      retired_links_.pop_back();
      return;
    }
  }
}

void PeerTransport::send(const raft::Message& m) {
  auto it = links_.find(m.to);
  if (it == links_.end() || shutting_down_) {
    stats_.dropped_msgs++;
    return;
  }
  Link* l = it->second.get();
  size_t before = l->pending.size();
  if (!append_message_frame(m, opts_.max_frame_bytes, &l->pending)) {
    stats_.dropped_msgs++;
    log("message of type " + std::string(raft::to_string(m.type)) + " to peer " +
        std::to_string(m.to) + " exceeds the frame limit; dropped");
    return;
  }
  size_t inflight = l->conn != nullptr ? l->conn->sending.size() - l->conn->send_off : 0;
  if (l->pending.size() + inflight > opts_.max_queue_bytes) {
    // Full: drop the newest (raft retries; a follower that cannot keep up gets a snapshot).
    l->pending.resize(before);
    stats_.dropped_msgs++;
    return;
  }
  l->pending_msgs++;
}

void PeerTransport::flush() {
  if (shutting_down_) return;
  if (unhelloed_ > 0) expire_hellos();
  for (auto& [id, lp] : links_) {
    Link* l = lp.get();
    if (l->conn == nullptr) {
      if (!l->timer_armed && !l->attempted) start_connect(l);
      continue;
    }
    start_next_send(l->conn);
  }
  if (opts_.tls != nullptr) expire_tls_handshakes();
  if (opts_.secret) {
    // An outbound link whose peer never answers our hello with a CHALLENGE carries nothing:
    // close it after the hello timeout and try again later.
    auto deadline =
        std::chrono::steady_clock::now() - std::chrono::milliseconds(opts_.hello_timeout_ms);
    std::vector<Conn*> stuck;
    for (auto& [id, lp] : links_) {
      Conn* c = lp->conn;
      if (c != nullptr && c->up && !c->authed && !c->closing && c->up_since < deadline) {
        stuck.push_back(c);
      }
    }
    for (Conn* c : stuck) {
      stats_.hello_timeouts++;
      c->link->refused = true;  // the longest backoff
      break_conn(c, "no cluster-secret challenge from the peer within " +
                        std::to_string(opts_.hello_timeout_ms) + " ms");
    }
  }
}

void PeerTransport::expire_hellos() {
  auto deadline = std::chrono::steady_clock::now() - std::chrono::milliseconds(opts_.hello_timeout_ms);
  Conn* expired[16];
  size_t n = 0;
  for (Conn* c : conns_) {
    if (c->link == nullptr && !c->hello_ok && !c->closing && c->up_since < deadline && n < 16) {
      expired[n++] = c;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    stats_.hello_timeouts++;
    Conn* c = expired[i];
    break_conn(c, c->refusing ? "refused peer did not hang up within " +
                                    std::to_string(opts_.hello_timeout_ms) + " ms"
                              : "no hello within " + std::to_string(opts_.hello_timeout_ms) + " ms");
  }
}

bool PeerTransport::configured_peer(uint64_t id) const {
  auto it = links_.find(id);
  return it != links_.end() && !it->second->callback;
}

void PeerTransport::drop_callback_link_if_unused(uint64_t id) {
  auto it = links_.find(id);
  if (it == links_.end() || !it->second->callback) return;
  for (const Conn* o : conns_) {
    if (o->link == nullptr && o->hello_ok && !o->closing && o->hello.node_id == id) return;
  }
  log("dropping the link to node " + std::to_string(id) + " (not in our configuration; its link "
      "to us closed)");
  remove_peer(id);
}

void PeerTransport::start_connect(Link* l) {
  if (l->attempted) stats_.reconnects++;
  l->attempted = true;
  std::string err;
  if (!l->addr_ok) l->addr_ok = resolve(l->addr, &l->sa, &l->salen, &err);
  if (!l->addr_ok) {
    if (!l->fail_logged) log("peer " + std::to_string(l->id) + ": " + err);
    l->fail_logged = true;
    schedule_reconnect(l);
    return;
  }
  int fd = ::socket(l->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    if (!l->fail_logged) log("peer " + std::to_string(l->id) + ": socket: " + std::strerror(errno));
    l->fail_logged = true;
    schedule_reconnect(l);
    return;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  // After a partition heals, a link whose segments were dropped may sit out TCP's
  // exponential retransmission backoff for seconds while the cluster has no leader. Give
  // up on unacknowledged data after 1 s instead: the link breaks and reconnects fresh.
  unsigned user_timeout_ms = 1000;
  ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof(user_timeout_ms));
  Conn* c = new_conn(fd, l);
  l->conn = c;
  c->connect_inflight = true;
  // l->sa lives in the link, which outlives the connection (a link is freed only after its
  // connection has drained).
  loop_.connect(fd, &l->sa, l->salen, &c->connect_c);
}

void PeerTransport::schedule_reconnect(Link* l) {
  uint32_t b = l->backoff_ms;
  if (l->refused) {
    b = static_cast<uint32_t>(opts_.backoff_max_ms);
    l->refused = false;
  }
  uint32_t delay = b / 2 + static_cast<uint32_t>(xorshift(&l->rng) % (b - b / 2 + 1));
  l->ts.tv_sec = delay / 1000;
  l->ts.tv_nsec = static_cast<long long>(delay % 1000) * 1000000;
  l->timer_armed = true;
  loop_.timeout(&l->ts, &l->timer_c);
  l->backoff_ms = std::min<uint32_t>(b * 2, static_cast<uint32_t>(opts_.backoff_max_ms));
}

void PeerTransport::on_timer(io::Completion* comp, int32_t, uint32_t) {
  auto* l = static_cast<Link*>(comp->owner);
  PeerTransport* t = l->t;
  l->timer_armed = false;
  if (l->removed || t->shutting_down_) {
    t->maybe_free_link(l);  // may free l: nothing touches it after this
    return;
  }
  t->start_connect(l);
}

void PeerTransport::on_connect(io::Completion* comp, int32_t res, uint32_t) {
  auto* c = static_cast<Conn*>(comp->owner);
  PeerTransport* t = c->t;
  c->connect_inflight = false;
  if (c->closing) {
    t->finish_if_drained(c);
    return;
  }
  Link* l = c->link;
  if (res < 0) {
    std::string why = "connect failed: " + std::string(std::strerror(-res));
    if (!l->fail_logged) {
      t->log("peer " + std::to_string(l->id) + " at " + l->addr + ": " + why +
             " (retrying with backoff)");
    }
    l->fail_logged = true;
    c->close_reason = why;
    t->break_conn(c, why);
    return;
  }
  c->up_since = std::chrono::steady_clock::now();
  if (t->opts_.tls != nullptr) {
    // The hello waits for the TLS handshake (tls_receive calls link_up).
    t->arm_recv(c);
    if (!t->tls_begin(c, true)) t->break_conn(c, c->close_reason);
    return;
  }
  t->link_up(c);
}

void PeerTransport::link_up(Conn* c) {
  PeerTransport* t = this;
  Link* l = c->link;
  c->up = true;
  t->stats_.connects++;
  if (l->fail_logged) t->log("peer " + std::to_string(l->id) + " at " + l->addr + ": connected");
  l->fail_logged = false;
  // A new connection begins with our hello, then only whole frames from the queue (a frame
  // torn by an earlier connection's break was dropped, never resent in part).
  PeerHello h{t->opts_.cluster_id, t->opts_.self_id, t->opts_.incarnation, t->opts_.service_addr,
              t->opts_.raft_addr, l->id};
  h.wire_min = kWireVersionMin;
  h.wire_max = l->legacy_hello ? kWireVersionMin : kWireVersion;
  c->hello_wire_max = h.wire_max;
  l->wire = l->legacy_hello ? kWireVersionMin : 0;
  if (t->opts_.secret) {
    h.has_nonce = true;  // fresh per connection: a recorded handshake proves nothing here
    auth::random_bytes(h.nonce.data(), h.nonce.size());
  }
  c->sending.clear();
  append_hello_frame(h, &c->sending);
  c->hello_payload.assign(c->sending, kPeerFrameHeader, std::string::npos);
  c->hello_bytes = c->sending.size();
  c->send_off = 0;
  // Outbound links receive only a possible REFUSE, or the EOF that tells us the peer is gone.
  if (!c->recv_armed) t->arm_recv(c);
  if (!c->send_inflight) t->start_send(c);  // else after the handshake bytes in flight
}

void PeerTransport::on_send(io::Completion* comp, int32_t res, uint32_t) {
  auto* c = static_cast<Conn*>(comp->owner);
  PeerTransport* t = c->t;
  if (c->tls && res > 0 && !c->closing) {
    // The ciphertext goes out whole, then whatever the session wrote meanwhile; only then
    // are the plaintext bytes it carries reported sent.
    c->wire_off += static_cast<size_t>(res);
    if (c->wire_off >= c->wire.size() && c->tls->ciphertext_bytes() > 0) {
      c->wire.clear();
      c->wire_off = 0;
      c->tls->take_ciphertext(&c->wire);
    }
    if (c->wire_off < c->wire.size()) {
      t->loop_.send(c->fd, c->wire.data() + c->wire_off, c->wire.size() - c->wire_off, &c->send_c);
      return;
    }
    c->wire.clear();
    c->wire_off = 0;
    res = static_cast<int32_t>(c->wire_plain);
    c->wire_plain = 0;
    if (res == 0) {
      // Handshake bytes only. A hello queued behind them (link_up) goes now.
      c->send_inflight = false;
      if (c->send_off < c->sending.size()) t->start_send(c);
      return;
    }
  }
  c->send_inflight = false;
  if (res > 0) c->send_off += static_cast<size_t>(res);
  if (c->closing) {
    t->finish_if_drained(c);  // may free c
    return;
  }
  if (res <= 0) {
    t->break_conn(
        c, res == 0 ? "send returned 0" : "send failed: " + std::string(std::strerror(-res)));
    return;
  }
  if (!c->hello_sent && c->hello_bytes > 0 && c->send_off >= c->hello_bytes) c->hello_sent = true;
  if (c->send_off < c->sending.size()) {
    t->start_send(c);  // a partial send: the rest goes before anything newer
    return;
  }
  if (c->link != nullptr) {
    size_t pos = 0;
    while (pos + kPeerFrameHeader <= c->sending.size()) {
      if (static_cast<uint8_t>(c->sending[pos + 4]) ==
          static_cast<uint8_t>(PeerFrameKind::kMessage)) {
        t->stats_.sent_msgs++;
      }
      pos += 4 + get32(c->sending.data() + pos);
    }
  }
  c->sending.clear();
  c->send_off = 0;
  c->hello_bytes = 0;
  if (c->refusing) {
    if (!c->control.empty()) {
      // The refusal waited for the CHALLENGE's send to end.
      c->sending.swap(c->control);
      c->control.clear();
      t->start_send(c);
      return;
    }
    // The reason is on its way; FIN after it. We keep reading until the peer closes.
    ::shutdown(c->fd, SHUT_WR);
    return;
  }
  if (c->link == nullptr && !c->control.empty()) {
    c->sending.swap(c->control);  // an inbound link's WELCOME that waited for the CHALLENGE
    c->control.clear();
    t->start_send(c);
    return;
  }
  t->start_next_send(c);
}

bool PeerTransport::may_send_messages(const Conn* c) const { return !opts_.secret || c->authed; }

void PeerTransport::start_next_send(Conn* c) {
  Link* l = c->link;
  // Inbound links send only a CHALLENGE and a REFUSE; an outbound one sends nothing but its
  // hello until the handshake passed.
  if (l == nullptr || !c->up || c->closing || c->send_inflight || !may_send_messages(c)) return;
  if (c->control.empty() && l->pending.empty()) return;
  c->sending.clear();
  if (c->control.empty()) {
    c->sending.swap(l->pending);
  } else {
    c->sending.swap(c->control);  // once per connection: the PROOF, before the queue
    c->control.clear();
    c->sending.append(l->pending);
    l->pending.clear();
  }
  l->pending_msgs = 0;
  c->send_off = 0;
  c->hello_bytes = 0;
  start_send(c);
}

void PeerTransport::log_auth_failure(const std::string& key, const std::string& line) {
  // A stranger can fail the handshake as often as it connects: per kind and claimed node, one
  // line per 10 s at most, with the count of those left out.
  auto now = std::chrono::steady_clock::now();
  if (auth_log_.size() > 64 && auth_log_.count(key) == 0) auth_log_.clear();
  AuthLog& e = auth_log_[key];
  if (e.at != std::chrono::steady_clock::time_point{} && now - e.at < std::chrono::seconds(10)) {
    e.suppressed++;
    return;
  }
  std::string more = e.suppressed == 0 ? std::string()
                                       : " (and " + std::to_string(e.suppressed) +
                                             " more like it since the last such line)";
  e.at = now;
  e.suppressed = 0;
  log(line + more);
}

bool PeerTransport::tls_begin(Conn* c, bool dial) {
  std::shared_ptr<const tls::ContextSet> set = opts_.tls->current();
  if (!set) {
    c->close_reason = "no TLS context";
    return false;
  }
  if (!tls_plain_) tls_plain_ = std::make_unique<char[]>(16 * 1024);
  c->tls = std::make_unique<tls::Session>(dial ? set->connector() : set->acceptor(),
                                          dial ? tls::Role::kConnect : tls::Role::kAccept,
                                          tls::PeerVerify::kRequired);
  if (c->tls->failed()) {
    c->close_reason = c->tls->error();
    return false;
  }
  if (dial) {
    c->tls->start();  // the ClientHello
    tls_send_handshake(c);
  }
  return true;
}

void PeerTransport::tls_send_handshake(Conn* c) {
  if (c->send_inflight || c->closing || c->tls->ciphertext_bytes() == 0) return;
  c->send_inflight = true;
  c->wire.clear();
  c->wire_off = 0;
  c->wire_plain = 0;
  c->tls->take_ciphertext(&c->wire);
  loop_.send(c->fd, c->wire.data(), c->wire.size(), &c->send_c);
}

bool PeerTransport::tls_receive(Conn* c, const char* data, size_t len) {
  tls::Session& s = *c->tls;
  bool was_done = s.handshake_done();
  auto who = [c] {
    return c->link != nullptr ? "peer " + std::to_string(c->link->id) + " at " + c->link->addr
                              : "inbound peer at " + c->remote;
  };
  if (!s.feed(data, len)) {
    stats_.auth_failures++;
    c->auth_failed = true;  // logged here, rate-limited, not again by break_conn
    if (c->link != nullptr) c->link->refused = true;
    c->close_reason = "TLS: " + s.error();
    log_auth_failure(c->link != nullptr ? "tls " + std::to_string(c->link->id) : "tls inbound",
                     who() + ": " + c->close_reason);
    return false;
  }
  if (!was_done && s.handshake_done() && c->link != nullptr) {
    // The listener's certificate must be the one of the node we mean to reach.
    Link* l = c->link;
    if (!s.peer_names_node(l->id)) {
      stats_.auth_failures++;
      c->auth_failed = true;
      l->refused = true;
      c->close_reason = "its TLS certificate (" + s.peer_subject() + ") does not name node " +
                        std::to_string(l->id) + " (" + tls::node_uri(l->id) + ")";
      log_auth_failure("tls-name " + std::to_string(l->id), who() + ": " + c->close_reason);
      return false;
    }
    link_up(c);
    if (c->closing) return true;
  }
  tls_send_handshake(c);
  char* buf = tls_plain_.get();
  while (!c->closing && !c->refusing) {
    long n = s.read(buf, 16 * 1024);
    if (n < 0) {
      c->close_reason = "TLS: " + s.error();
      return false;
    }
    if (n == 0) break;
    bool ok = c->reader.feed(buf, static_cast<size_t>(n), [this, c](uint8_t kind, std::string_view p) {
      return handle_frame(c, kind, p);
    });
    if (!ok) return false;
  }
  if (s.peer_closed() && c->close_reason.empty()) c->close_reason = "closed by the peer (TLS)";
  return !s.peer_closed();
}

void PeerTransport::expire_tls_handshakes() {
  auto deadline = std::chrono::steady_clock::now() - std::chrono::milliseconds(opts_.hello_timeout_ms);
  std::vector<Conn*> stuck;
  for (auto& [id, lp] : links_) {
    Conn* c = lp->conn;
    if (c != nullptr && c->tls && !c->up && !c->connect_inflight && !c->closing &&
        c->up_since < deadline) {
      stuck.push_back(c);
    }
  }
  for (Conn* c : stuck) {
    stats_.hello_timeouts++;
    c->link->refused = true;  // the longest backoff
    break_conn(c, "no TLS handshake with the peer within " + std::to_string(opts_.hello_timeout_ms) +
                      " ms");
  }
}

void PeerTransport::on_recv(io::Completion* comp, int32_t res, uint32_t flags) {
  auto* c = static_cast<Conn*>(comp->owner);
  PeerTransport* t = c->t;
  if (!io::cqe_more(flags)) c->recv_armed = false;
  bool want_close = false;
  std::string why;
  if (res > 0 && io::cqe_has_buffer(flags)) {
    uint16_t bid = io::cqe_buffer_id(flags);
    const char* data = t->bufs_->buffer(bid);
    if (!c->closing) {
      if (c->refusing) {
        c->discarded += static_cast<size_t>(res);
        if (c->discarded > kMaxDiscardBytes) {
          want_close = true;
          why = "refused peer kept sending";
        }
      } else {
        bool ok = c->tls ? t->tls_receive(c, data, static_cast<size_t>(res))
                         : c->reader.feed(data, static_cast<size_t>(res),
                                          [t, c](uint8_t kind, std::string_view p) {
                                            return t->handle_frame(c, kind, p);
                                          });
        if (!ok && !c->refusing) {
          want_close = true;
          if (c->close_reason.empty()) {
            // The reader itself rejected the stream (a zero or oversized length).
            t->stats_.bad_frames++;
            why = "bad frame: " + c->reader.error();
          } else {
            why = c->close_reason;
          }
        }
      }
    }
    t->bufs_->recycle(bid);
  } else if (res == -ENOBUFS) {
    // Every buffer is busy this turn; they come back as their completions are handled.
  } else if (res == 0) {
    want_close = true;
    why = "connection closed by the peer";
  } else if (res < 0 && res != -ECANCELED) {
    want_close = true;
    why = "recv failed: " + std::string(std::strerror(-res));
  }
  if (!c->recv_armed && !c->closing && !want_close) t->arm_recv(c);
  if (want_close) {
    t->break_conn(c, why);  // may free c
  } else if (c->closing) {
    t->finish_if_drained(c);  // may free c
  }
}

bool PeerTransport::handle_frame(Conn* c, uint8_t kind, std::string_view payload) {
  if (c->link != nullptr) {
    // Outbound: the peer only ever answers with a REFUSE.
    Link* l = c->link;
    if (kind == static_cast<uint8_t>(PeerFrameKind::kRefuse)) {
      std::string reason(payload.substr(0, 512));
      log("peer " + std::to_string(l->id) + " at " + l->addr + " refused our hello: " + reason);
      stats_.refused_by_peer++;
      l->refused = true;
      c->got_refuse = true;
      c->close_reason = "refused by the peer: " + reason;
      if (hooks_.on_refused) hooks_.on_refused(l->id, reason);
      return false;
    }
    if (kind == static_cast<uint8_t>(PeerFrameKind::kChallenge) && opts_.secret && !c->authed) {
      return handle_challenge(c, payload);
    }
    if (kind == static_cast<uint8_t>(PeerFrameKind::kWelcome) && c->hello_wire_max >= 2 && !c->welcomed) {
      PeerWelcome w;
      std::string err = decode_welcome(payload, &w);
      if (err.empty() && negotiate_wire(kWireVersionMin, c->hello_wire_max, w.chosen, w.chosen) == 0) {
        err = "it chose wire version " + std::to_string(w.chosen) + ", which we did not offer";
      }
      if (!err.empty()) {
        stats_.bad_frames++;
        c->close_reason = "bad welcome: " + err;
        return false;
      }
      c->welcomed = true;
      if (l->wire != w.chosen) {
        log("peer " + std::to_string(l->id) + " at " + l->addr + ": wire version " +
            std::to_string(w.chosen) + " (it speaks " + std::to_string(w.wire_min) + " to " +
            std::to_string(w.wire_max) + ")");
      }
      l->wire = w.chosen;
      return true;
    }
    stats_.bad_frames++;
    c->close_reason = "unexpected frame kind " + std::to_string(kind) + " on an outbound link";
    return false;
  }
  if (!c->hello_ok) {
    if (c->challenged) {
      if (kind != static_cast<uint8_t>(PeerFrameKind::kProof)) {
        stats_.bad_frames++;
        c->close_reason = "expected the cluster-secret proof, got frame kind " + std::to_string(kind);
        return false;
      }
      return handle_proof(c, payload);
    }
    if (kind != static_cast<uint8_t>(PeerFrameKind::kHello)) {
      stats_.bad_frames++;
      c->close_reason = "first frame is not a hello (kind " + std::to_string(kind) + ")";
      return false;
    }
    return handle_hello(c, payload);
  }
  if (kind != static_cast<uint8_t>(PeerFrameKind::kMessage)) {
    stats_.bad_frames++;
    c->close_reason = "unexpected frame kind " + std::to_string(kind) + " after the hello";
    return false;
  }
  raft::Message m;
  std::string err = raft::decode(payload, &m);
  if (!err.empty()) {
    stats_.bad_frames++;
    c->close_reason = "bad message from node " + std::to_string(c->hello.node_id) + ": " + err;
    return false;
  }
  // The hello said who is speaking; a message claiming another sender, or meant for another
  // node, means a confused or hostile peer: it never reaches raft.
  if (m.from != c->hello.node_id || m.to != opts_.self_id) {
    stats_.bad_frames++;
    c->close_reason = "message from " + std::to_string(m.from) + " to " + std::to_string(m.to) +
                      " on the link of node " + std::to_string(c->hello.node_id);
    return false;
  }
  stats_.recv_msgs++;
  if (hooks_.on_message) hooks_.on_message(std::move(m));
  return true;
}

bool PeerTransport::handle_hello(Conn* c, std::string_view payload) {
  PeerHello h;
  std::string err = decode_hello(payload, &h);
  if (!err.empty()) {
    stats_.bad_frames++;
    c->close_reason = "bad hello: " + err;
    return false;
  }
  c->hello = h;
  if (opts_.secret) {
    // Nothing about us (cluster id, members, incarnations) is said to a peer before it proved
    // the secret: the checks below run after the proof.
    if (!h.has_nonce) {
      stats_.auth_failures++;
      refuse(c, "this node requires the cluster secret: start node " + std::to_string(h.node_id) +
                    " with --cluster-secret-file", true);
      return false;
    }
    c->hello_payload.assign(payload);
    PeerChallenge ch;
    ch.listener_id = opts_.self_id;
    auth::random_bytes(ch.nonce.data(), ch.nonce.size());
    ch.proof = handshake_proof(*opts_.secret, true, payload, ch.listener_id, ch.nonce);
    c->nonce = ch.nonce;
    c->challenged = true;
    TICKETD_CHECK(!c->send_inflight);  // an inbound link has sent nothing before
    c->sending.clear();
    c->send_off = 0;
    append_challenge_frame(ch, &c->sending);
    start_send(c);
    return true;
  }
  if (h.has_nonce) {
    stats_.auth_failures++;
    refuse(c, "this node has no cluster secret (start it with --cluster-secret-file too)", true);
    return false;
  }
  return accept_hello(c);
}

bool PeerTransport::handle_proof(Conn* c, std::string_view payload) {
  auth::Digest proof{};
  std::string err = decode_proof(payload, &proof);
  auth::Digest want = handshake_proof(*opts_.secret, false, c->hello_payload, opts_.self_id, c->nonce);
  if (!err.empty() || !auth::equal_constant_time(proof, want)) {
    stats_.auth_failures++;
    c->auth_failed = true;
    c->close_reason = "failed the cluster-secret proof";
    log_auth_failure("proof " + std::to_string(c->hello.node_id),
                     "peer at " + c->remote + " (claiming node " + std::to_string(c->hello.node_id) +
                     ") failed the cluster-secret proof" + (err.empty() ? "" : " (" + err + ")") +
                     "; closed");
    return false;
  }
  c->authed = true;
  return accept_hello(c);
}

bool PeerTransport::handle_challenge(Conn* c, std::string_view payload) {
  Link* l = c->link;
  PeerChallenge ch;
  std::string err = decode_challenge(payload, &ch);
  std::string why;
  if (!err.empty()) {
    why = err;
  } else if (ch.listener_id != l->id) {
    why = "it answers as node " + std::to_string(ch.listener_id);
  } else if (!auth::equal_constant_time(
                 ch.proof, handshake_proof(*opts_.secret, true, c->hello_payload, ch.listener_id,
                                           ch.nonce))) {
    why = "it does not hold our cluster secret";
  }
  if (!why.empty()) {
    stats_.auth_failures++;
    c->auth_failed = true;
    l->refused = true;  // retry after the longest backoff
    c->close_reason = "the peer failed the cluster-secret proof: " + why;
    log_auth_failure("challenge " + std::to_string(l->id),
                     "peer " + std::to_string(l->id) + " at " + l->addr +
                     " failed the cluster-secret proof: " + why + " (retrying with backoff)");
    return false;
  }
  c->authed = true;
  append_proof_frame(handshake_proof(*opts_.secret, false, c->hello_payload, ch.listener_id, ch.nonce),
                     &c->control);
  start_next_send(c);  // now, or when the hello's send ends
  return true;
}

bool PeerTransport::accept_hello(Conn* c) {
  const PeerHello& h = c->hello;
  std::string reason;
  uint8_t wire = negotiate_wire(kWireVersionMin, kWireVersion, h.wire_min, h.wire_max);
  if (wire == 0) {
    reason = "no common wire version: node " + std::to_string(h.node_id) + " speaks " +
             std::to_string(h.wire_min) + " to " + std::to_string(h.wire_max) + ", this node " +
             std::to_string(kWireVersionMin) + " to " + std::to_string(kWireVersion) +
             " (upgrade one release at a time)";
  } else if (h.cluster_id != 0 && opts_.cluster_id != 0 && h.cluster_id != opts_.cluster_id) {
    reason = "cluster id mismatch: ours " + std::to_string(opts_.cluster_id) + ", theirs " +
             std::to_string(h.cluster_id);
  } else if (h.cluster_id == 0 && opts_.cluster_id != 0 && !configured_peer(h.node_id)) {
    // Only a node we are adding may call without a cluster id: a --join node learns it from
    // the RAFT.JOIN reply, which can arrive after our leader's first append reached it.
    reason = "no cluster id, and node " + std::to_string(h.node_id) +
             " is not in our configuration (ours " + std::to_string(opts_.cluster_id) + ")";
  } else if (h.node_id == raft::kNoId) {
    reason = "node id 0 is not valid";
  } else if (h.node_id == opts_.self_id) {
    reason = "node id " + std::to_string(h.node_id) + " is our own id";
  } else if (h.target_id != raft::kNoId && h.target_id != opts_.self_id) {
    // It dialled an address that used to be node target_id's. Accepting would make this
    // link replace the sender's real link to us, and the real one would then replace this.
    reason = "this address belongs to node " + std::to_string(opts_.self_id) + ", not node " +
             std::to_string(h.target_id);
  } else if (c->tls && !c->tls->peer_names_node(h.node_id)) {
    // --tls-cluster: the certificate is the CA's, but it must also be node h.node_id's.
    reason = "its TLS certificate (" + c->tls->peer_subject() + ") does not name node " +
             std::to_string(h.node_id) + " (" + tls::node_uri(h.node_id) + ")";
  } else if (hooks_.check_hello) {
    reason = hooks_.check_hello(h);
  }
  if (!reason.empty()) {
    refuse(c, reason);
    return false;
  }
  c->hello_ok = true;
  unhelloed_--;
  c->reader.set_max_frame(opts_.max_frame_bytes);
  log("accepted peer node " + std::to_string(h.node_id) + " (raft " + h.raft_addr + ", service " +
      h.service_addr + ", wire version " + std::to_string(wire) + ")");
  if (h.wire_max >= 2) {
    // Only a dialer of the version 4 hello expects (and understands) the answer.
    std::string frame;
    append_welcome_frame(PeerWelcome{kWireVersionMin, kWireVersion, wire}, &frame);
    if (c->send_inflight) {
      c->control += frame;  // after the CHALLENGE's send (on_send)
    } else {
      c->sending = std::move(frame);
      c->send_off = 0;
      start_send(c);
    }
  }
  // A newer link from the same node replaces any older one (the peer opens one outbound link
  // at a time; an older one is half-open or about to close).
  std::vector<Conn*> older;
  for (Conn* o : conns_) {
    if (o != c && o->link == nullptr && o->hello_ok && !o->closing &&
        o->hello.node_id == h.node_id) {
      older.push_back(o);
    }
  }
  for (Conn* o : older) break_conn(o, "replaced by a newer link from the same node");
  if (hooks_.on_hello) {
    in_hello_hook_ = true;
    hooks_.on_hello(h);
    in_hello_hook_ = false;
  }
  return true;
}

void PeerTransport::refuse(Conn* c, const std::string& reason, bool rate_limited) {
  stats_.refused_hellos++;
  std::string line = "refused peer node " + std::to_string(c->hello.node_id) + " at " + c->remote +
                     " (raft " + c->hello.raft_addr + ", cluster " +
                     std::to_string(c->hello.cluster_id) + "): " + reason;
  if (rate_limited) {
    log_auth_failure("refused " + std::to_string(c->hello.node_id) + " " + reason, line);
  } else {
    log(line);
  }
  c->refusing = true;
  c->close_reason = "refused: " + reason;
  // An inbound link sends nothing but a CHALLENGE before this: if that is still in flight,
  // the refusal follows it (on_send).
  std::string frame;
  append_refuse_frame(reason, &frame);
  if (c->send_inflight) {
    c->control = std::move(frame);
    return;
  }
  c->sending = std::move(frame);
  c->send_off = 0;
  start_send(c);
}

void PeerTransport::break_conn(Conn* c, const std::string& why) {
  if (c->closing) {
    finish_if_drained(c);
    return;
  }
  c->closing = true;
  if (c->close_reason.empty()) c->close_reason = why;
  if (c->link != nullptr) {
    Link* l = c->link;
    if (c->up && !c->auth_failed && !shutting_down_) {
      log("link to peer " + std::to_string(l->id) + " at " + l->addr + " closed: " + why);
    }
    if (c->up && !shutting_down_ && !l->removed) {
      if (c->hello_wire_max >= 2 && !c->welcomed && !c->got_refuse && !c->auth_failed) {
        // A release before wire version 2 closes a hello it cannot read, without a word.
        if (!l->legacy_hello) {
          log("peer " + std::to_string(l->id) + " at " + l->addr + " closed the link without "
              "answering our hello: it may run an older release; the next connection offers "
              "wire version " + std::to_string(kWireVersionMin) + " only");
        }
        l->legacy_hello = true;
      } else if (c->hello_wire_max < 2) {
        l->legacy_hello = false;  // the peer may have been upgraded meanwhile: offer ours again
      }
    }
  } else if (c->hello_ok && !shutting_down_) {
    log("link from peer node " + std::to_string(c->hello.node_id) + " closed: " + why);
    drop_callback_link_if_unused(c->hello.node_id);
  } else if (!c->refusing && !c->auth_failed && !shutting_down_) {
    log("inbound peer connection closed: " + why);
  }
  start_close(c);
}

void PeerTransport::start_close(Conn* c) {
  // shutdown() ends a send stuck on a peer that does not read, and makes the multishot recv
  // finish; the cancels cover the recv and a connect still in progress. The fd is closed only
  // after every one of them has reported its final completion (finish_if_drained).
  if (c->fd >= 0 && !c->shut) {
    ::shutdown(c->fd, SHUT_RDWR);
    c->shut = true;
  }
  if (c->recv_armed && !c->cancel_recv_sent) {
    c->cancel_recv_sent = true;
    loop_.cancel(&c->recv_c, nullptr);
  }
  if (c->connect_inflight && !c->cancel_connect_sent) {
    c->cancel_connect_sent = true;
    loop_.cancel(&c->connect_c, nullptr);
  }
  finish_if_drained(c);
}

void PeerTransport::finish_if_drained(Conn* c) {
  if (!c->closing || c->recv_armed || c->send_inflight || c->connect_inflight) return;
  if (c->fd >= 0) {
    ::close(c->fd);
    c->fd = -1;
  }
  if (c->link == nullptr) {
    inbound_--;
    if (!c->hello_ok) unhelloed_--;
  }
  for (size_t i = 0; i < conns_.size(); ++i) {
    if (conns_[i] == c) {
      conns_[i] = conns_.back();
      conns_.pop_back();
      break;
    }
  }
  if (c->link != nullptr) link_conn_gone(c->link, c);
  delete c;
}

void PeerTransport::link_conn_gone(Link* l, Conn* c) {
  l->conn = nullptr;
  // Give back the frames of the last send that never left, whole: the frame the break cut
  // (if any) is dropped, so the next connection starts at a frame boundary after its hello.
  bool keep = !l->removed && !shutting_down_;
  std::string back;
  uint64_t back_msgs = 0;
  const std::string& s = c->sending;
  size_t pos = 0;
  while (pos + kPeerFrameHeader <= s.size()) {
    size_t end = pos + 4 + get32(s.data() + pos);
    bool is_msg = static_cast<uint8_t>(s[pos + 4]) == static_cast<uint8_t>(PeerFrameKind::kMessage);
    if (is_msg) {
      if (end <= c->send_off) {
        stats_.sent_msgs++;
      } else if (pos < c->send_off || !keep) {
        stats_.dropped_msgs++;
      } else {
        back.append(s, pos, end - pos);
        back_msgs++;
      }
    }
    pos = end;
  }
  if (!back.empty()) {
    back.append(l->pending);
    l->pending.swap(back);
    l->pending_msgs += back_msgs;
  }
  if (!keep) {
    maybe_free_link(l);  // may free l
    return;
  }
  // A link that stayed up a while earns a fast retry; repeated quick failures back off.
  if (c->up && std::chrono::steady_clock::now() - c->up_since >=
                   std::chrono::milliseconds(opts_.backoff_max_ms)) {
    l->backoff_ms = static_cast<uint32_t>(opts_.backoff_min_ms);
  }
  schedule_reconnect(l);
}

void PeerTransport::shutdown() {
  if (shut_) return;
  shutting_down_ = true;
  if (accept_armed_) loop_.cancel(&accept_c_, nullptr);
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  for (auto& [id, l] : links_) {
    l->removed = true;
    stats_.dropped_msgs += l->pending_msgs;
    l->pending.clear();
    l->pending_msgs = 0;
    retired_links_.push_back(std::move(l));
  }
  links_.clear();
  std::vector<Link*> links;
  for (auto& l : retired_links_) links.push_back(l.get());
  for (Link* l : links) {
    if (l->timer_armed) loop_.cancel(&l->timer_c, nullptr);  // on_timer frees the link
  }
  std::vector<Conn*> conns = conns_;
  for (Conn* c : conns) break_conn(c, "shutting down");
  // A link with neither timer nor connection has nothing to wait for. (Re-scan the vector:
  // break_conn above may already have freed some links.)
  for (size_t i = 0; i < retired_links_.size();) {
    Link* l = retired_links_[i].get();
    if (!l->timer_armed && l->conn == nullptr) {
      retired_links_[i] = std::move(retired_links_.back());
      retired_links_.pop_back();
    } else {
      ++i;
    }
  }
  // Every operation of ours has been cancelled or cut short; turn the loop until each one has
  // reported its final completion, so that no Completion we own is referenced by the kernel
  // when we are destroyed.
  while (inflight_ops() > 0) loop_.run_once(true);
  TICKETD_CHECK(conns_.empty());
  TICKETD_CHECK(retired_links_.empty());
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
  }
  bufs_.reset();  // unregisters the buffer group: no recv of ours can use it any more
  shut_ = true;
}

size_t PeerTransport::inflight_ops() const {
  size_t n = accept_armed_ ? 1 : 0;
  for (const Conn* c : conns_) n += c->recv_armed + c->send_inflight + c->connect_inflight;
  for (const auto& [id, l] : links_) n += l->timer_armed;
  for (const auto& l : retired_links_) n += l->timer_armed;
  return n;
}

uint8_t PeerTransport::wire_version(uint64_t id) const {
  auto it = links_.find(id);
  return it == links_.end() || it->second->conn == nullptr ? 0 : it->second->wire;
}

bool PeerTransport::connected(uint64_t id) const {
  auto it = links_.find(id);
  if (it == links_.end() || it->second->conn == nullptr) return false;
  const Conn* c = it->second->conn;
  return c->up && c->hello_sent && !c->closing && may_send_messages(c);
}

size_t PeerTransport::queued_bytes(uint64_t id) const {
  auto it = links_.find(id);
  if (it == links_.end()) return 0;
  const Link* l = it->second.get();
  size_t n = l->pending.size();
  if (l->conn != nullptr) n += l->conn->sending.size() - l->conn->send_off;
  return n;
}

}  // namespace ticketd::cluster
