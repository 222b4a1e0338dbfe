// TLS for client connections (issue 13): a tls::Session per connection over memory BIOs,
// under the shard's own io_uring receive and send. The ring still owns the socket:
// ciphertext arrives in the provided buffers (on_recv -> receive -> tls_receive), is
// decrypted into one per-shard buffer and parsed as any plaintext input; replies are
// encrypted from `out` just before a send (flush -> tls_seal), so reply order, the reply
// bound and partial sends work as they do without TLS. A handshake costs no blocking call;
// one not done within --tls-handshake-timeout is closed.
#include <algorithm>
#include <string>
#include <vector>

#include "node.h"
#include "shard.h"
#include "ticketd/resp/writer.h"

namespace ticketd::server {

namespace {
constexpr size_t kPlainBuf = 16 * 1024;  // a TLS record's plaintext at most
// The first bytes of a TLS ClientHello: a handshake record (0x16) of version 3.x. No RESP
// or inline command starts with 0x16.
bool looks_like_tls(const char* data, size_t len) {
  return len > 0 && static_cast<unsigned char>(data[0]) == 0x16 &&
         (len < 2 || static_cast<unsigned char>(data[1]) == 0x03);
}
}  // namespace

bool Shard::tls_adopt(Connection* c) {
  tls::Contexts* ctxs = node_.tls();
  std::shared_ptr<const tls::ContextSet> set = ctxs != nullptr ? ctxs->current() : nullptr;
  if (!set) return false;
  tls::PeerVerify verify = tls::PeerVerify::kRequired;
  switch (node_.opts().tls_auth_clients) {
    case ServerOptions::TlsAuthClients::kNo: verify = tls::PeerVerify::kNone; break;
    case ServerOptions::TlsAuthClients::kOptional: verify = tls::PeerVerify::kOptional; break;
    case ServerOptions::TlsAuthClients::kYes: verify = tls::PeerVerify::kRequired; break;
  }
  // The session holds its own reference to the context: a reload does not touch it.
  c->tls = std::make_unique<tls::Session>(set->acceptor(), tls::Role::kAccept, verify);
  if (c->tls->failed()) return false;
  if (!tls_plain_) tls_plain_ = std::make_unique<char[]>(kPlainBuf);
  c->tls_handshaking = true;
  handshaking_++;
  stats_.tls_connected.fetch_add(1, std::memory_order_relaxed);
  tls_arm_timer();
  return true;
}

void Shard::tls_receive(Connection* c, const char* data, size_t len) {
  tls::Session& t = *c->tls;
  bool was_done = t.handshake_done();
  if (!t.feed(data, len)) {
    tls_failed(c, !was_done);
    return;
  }
  if (!was_done && t.handshake_done()) {
    c->tls_handshaking = false;
    handshaking_--;
    stats_.tls_handshakes.fetch_add(1, std::memory_order_relaxed);
  }
  char* buf = tls_plain_.get();
  while (!c->closing) {
    long n = t.read(buf, kPlainBuf);
    if (n < 0) {
      tls_failed(c, false);
      return;
    }
    if (n == 0) break;
    handle_input(c, buf, static_cast<size_t>(n));
    if (!t.has_input()) break;
  }
  if (t.peer_closed() && !c->closing) {
    // close_notify: as an EOF, answer what was sent, then close.
    c->closing = true;
    c->close_after_flush = true;
    queue_ticket_run(c);
  }
  if (t.ciphertext_bytes() > 0 || c->closing) mark_dirty(c);  // handshake bytes go out too
}

void Shard::tls_failed(Connection* c, bool in_handshake) {
  (in_handshake ? stats_.tls_handshake_failures : stats_.tls_errors)
      .fetch_add(1, std::memory_order_relaxed);
  // A stranger can fail as often as it connects: one line per 10 s per shard, with a count.
  uint64_t now = now_ms();
  if (now - tls_logged_ms_ >= 10000 || tls_logged_ms_ == 0) {
    std::string more = tls_unlogged_ == 0 ? std::string()
                                          : " (and " + std::to_string(tls_unlogged_) +
                                                " more since the last such line)";
    node_.log_line("TLS client connection refused: " + c->tls->error() + more);
    tls_logged_ms_ = now;
    tls_unlogged_ = 0;
  } else {
    tls_unlogged_++;
  }
  c->closing = true;
  // In the handshake, the alert OpenSSL wrote tells the client why: send it, then close.
  // Later, nothing can be sent on a broken stream.
  c->close_after_flush = in_handshake;
  c->inbuf.clear();
  if (in_handshake) {
    c->out.clear();
    c->tls->take_ciphertext(&c->out);  // the alert: the close waits until it has left
    mark_dirty(c);
  } else {
    start_close(c);
  }
}

void Shard::tls_seal(Connection* c) {
  tls::Session& t = *c->tls;
  // Failed: `out` holds the alert already (tls_failed). Before the handshake no plaintext
  // is made (replies come from decrypted input), so `out` is empty until then.
  if (t.failed()) return;
  if (c->fd < 0) {
    c->out.clear();  // closed already (the client went first): nothing more can leave
    return;
  }
  if (t.handshake_done() && !c->out.empty() && !(c->closing && !c->close_after_flush)) {
    if (!t.write(c->out)) {
      c->out.clear();
      tls_failed(c, false);
      return;
    }
    c->out.clear();
  }
  if (c->closing && c->close_after_flush && c->waiting.empty() && c->ticket_run == 0) {
    t.close_notify();  // the last bytes: the client reads a clean end, not a truncation
  }
  if (t.ciphertext_bytes() > 0) t.take_ciphertext(&c->out);
}

bool Shard::tls_refuse_on_plaintext(Connection* c, const char* data, size_t len) {
  if (!looks_like_tls(data, len)) return false;
  // A TLS client on the plaintext port would wait for a ServerHello forever: our plain
  // error is not a TLS record, so its TLS stack fails at once, and we close.
  c->seen_input = true;
  stats_.tls_on_plaintext_port.fetch_add(1, std::memory_order_relaxed);
  std::string msg = "ERR this is the plaintext port; TLS clients connect to ";
  msg += node_.opts().tls_port != 0 ? "--tls-port " + std::to_string(node_.opts().tls_port)
                                    : std::string("a node with --tls-port");
  resp::append_error(reply_buffer(c), msg);
  c->closing = true;
  c->close_after_flush = true;
  mark_dirty(c);
  return true;
}

void Shard::tls_forget(Connection* c) {
  stats_.tls_connected.fetch_sub(1, std::memory_order_relaxed);
  if (c->tls_handshaking) {
    c->tls_handshaking = false;
    handshaking_--;
  }
}

void Shard::tls_arm_timer() {
  if (tls_timer_armed_ || handshaking_ == 0) return;
  // Checked four times per timeout: a handshake lives at most 1.25 timeouts.
  uint64_t period_ms = std::clamp<uint64_t>(node_.opts().tls_handshake_timeout_ms / 4, 10, 1000);
  tls_ts_.tv_sec = static_cast<long long>(period_ms / 1000);
  tls_ts_.tv_nsec = static_cast<long long>(period_ms % 1000) * 1000000;
  tls_timer_c_.owner = this;
  tls_timer_c_.fn = [](io::Completion* comp, int32_t, uint32_t) {
    auto* s = static_cast<Shard*>(comp->owner);
    s->tls_timer_armed_ = false;
    s->tls_expire();
    s->tls_arm_timer();
  };
  tls_timer_armed_ = true;
  loop_->timeout(&tls_ts_, &tls_timer_c_);
}

void Shard::tls_expire() {
  uint64_t now = now_ms();
  uint64_t limit = node_.opts().tls_handshake_timeout_ms;
  std::vector<Connection*> late;
  for (Connection* c : all_) {
    if (c->tls_handshaking && !c->closing && now - c->created_ms >= limit) late.push_back(c);
  }
  for (Connection* c : late) {
    stats_.tls_handshake_timeouts.fetch_add(1, std::memory_order_relaxed);
    c->closing = true;
    c->close_after_flush = false;
    start_close(c);  // may free c
  }
}

}  // namespace ticketd::server
