// libFuzzer target for tls::Session, the TLS engine under every TLS client and peer
// connection: what a hostile client can send the TLS listener before, during and after a
// handshake. Input: [control byte][bytes].
//   control & 3 == 0: the bytes are the whole client stream (random records, a plaintext
//     client...), fed to a server session in chunks (sizes from control bits 2-4);
//   control & 3 == 1: a real ClientHello (made once at start), then the bytes;
//   control & 3 == 2: a live handshake with a real client session; the bytes choose where the
//     client's stream is cut (first two bytes), which of its bytes are flipped (the rest, as
//     offset/xor pairs), and bit 5 whether the server asks for a client certificate; after a
//     completed handshake the rest is sent as application data and must come out unchanged;
//   control & 3 == 3: a completed handshake, then the bytes raw into the server (records
//     after the handshake: alerts, garbage, a close_notify).
// Certificates are made in memory at start (tests/tls/test_pki.h).
// Traps on: a session that is done and failed at once, recovers after failing, reads more
// than asked, holds more unprocessed input than kMaxBufferedInput, gives ciphertext beyond a
// bound when fed junk, or (mode 2, unmutated and uncut) fails to complete a handshake or
// changes application data.
#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <string>

#include "../tls/test_pki.h"
#include "ticketd/tls/session.h"

namespace {

using ticketd::tls::PeerVerify;
using ticketd::tls::Role;
using ticketd::tls::Session;

void require(bool cond) {
  if (!cond) __builtin_trap();
}

struct World {
  SSL_CTX* server = nullptr;
  SSL_CTX* client = nullptr;
  std::string hello;  // a real ClientHello, fixed for the process
};

World& world() {
  static World* w = [] {
    auto* w = new World();
    using namespace ticketd::tls::testing;
    static KeyCert ca = make_cert(nullptr, "fuzz CA");
    KeyCert node = make_cert(&ca, "fuzz node", "URI:ticketd:node:1");
    KeyCert client = make_cert(&ca, "fuzz client");
    auto make = [](const SSL_METHOD* method, const KeyCert& kc) {
      SSL_CTX* ctx = SSL_CTX_new(method);
      SSL_CTX_use_certificate(ctx, kc.cert);
      SSL_CTX_use_PrivateKey(ctx, kc.key);
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca.cert);
      SSL_CTX_set_num_tickets(ctx, 0);
      return ctx;
    };
    w->server = make(TLS_server_method(), node);
    w->client = make(TLS_client_method(), client);
    Session c(w->client, Role::kConnect, PeerVerify::kRequired);
    c.start();
    c.take_ciphertext(&w->hello);
    require(!w->hello.empty());
    return w;
  }();
  return *w;
}

// Feeds `in` to the server in chunks; reads everything; checks the session's promises. The
// ciphertext the server writes is appended to *reply (if given).
void feed_checked(Session& s, const char* in, size_t len, size_t chunk, std::string* plain,
                  std::string* reply = nullptr) {
  char buf[4096];
  for (size_t off = 0; off < len;) {
    size_t n = std::min(chunk, len - off);
    bool was_failed = s.failed();
    bool ok = s.feed(in + off, n);
    require(ok == !s.failed());
    require(!was_failed || s.failed());  // failing is for good
    off += n;
    while (true) {
      long r = s.read(buf, sizeof(buf));
      require(r >= -1 && r <= static_cast<long>(sizeof(buf)));
      if (r <= 0) {
        require(r == 0 || s.failed());
        break;
      }
      require(s.handshake_done());
      plain->append(buf, static_cast<size_t>(r));
    }
    if (s.failed()) {
      require(s.read(buf, sizeof(buf)) == -1 && !s.write("x") && !s.error().empty());
    }
    std::string out;
    s.take_ciphertext(&out);
    require(s.ciphertext_bytes() == 0);
    // Before its handshake a server writes its own flight (a few KiB) or an alert, nothing more.
    if (!s.handshake_done()) require(out.size() < 16384);
    if (reply != nullptr) reply->append(out);
  }
}

// A live handshake: client <-> server, the client's bytes cut at `cut` and mutated.
void live(const uint8_t* data, size_t size, bool ask_cert) {
  World& w = world();
  size_t cut = size >= 2 ? (static_cast<size_t>(data[0]) << 8 | data[1]) : SIZE_MAX;
  if (cut == 0xffff) cut = SIZE_MAX;
  const uint8_t* flips = size >= 2 ? data + 2 : data;
  size_t nflips = size >= 2 ? (size - 2) / 2 : 0;
  Session server(w.server, Role::kAccept, ask_cert ? PeerVerify::kRequired : PeerVerify::kNone);
  Session client(w.client, Role::kConnect, PeerVerify::kRequired);
  client.start();
  size_t sent = 0;
  bool mutated = false;
  std::string plain;
  for (int round = 0; round < 8; ++round) {
    std::string c2s, s2c;
    client.take_ciphertext(&c2s);
    for (size_t i = 0; i < nflips && !c2s.empty(); ++i) {
      size_t at = flips[2 * i] % (c2s.size() + 1);
      if (at < c2s.size() && flips[2 * i + 1] != 0 && round == flips[2 * i] % 3) {
        c2s[at] = static_cast<char>(c2s[at] ^ flips[2 * i + 1]);
        mutated = true;
      }
    }
    if (sent + c2s.size() > cut) c2s.resize(cut > sent ? cut - sent : 0);
    sent += c2s.size();
    if (!c2s.empty()) feed_checked(server, c2s.data(), c2s.size(), c2s.size(), &plain, &s2c);
    if (!s2c.empty()) client.feed(s2c.data(), s2c.size());
    if (c2s.empty() && s2c.empty()) break;
  }
  if (!mutated && cut == SIZE_MAX) {
    require(server.handshake_done() && !server.failed() && client.handshake_done());
    // Application data survives the trip (in records of any size).
    std::string msg(reinterpret_cast<const char*>(data), size);
    require(client.write(msg));
    std::string ct;
    client.take_ciphertext(&ct);
    feed_checked(server, ct.data(), ct.size(), 1 + size % 977, &plain);
    require(plain == msg);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  World& w = world();
  uint8_t control = data[0];
  ++data;
  --size;
  size_t chunk = 1 + (static_cast<size_t>(control >> 2 & 7) * 613) % 4096;
  std::string plain;
  switch (control & 3) {
    case 0: {
      Session s(w.server, Role::kAccept, PeerVerify::kOptional);
      feed_checked(s, reinterpret_cast<const char*>(data), size, chunk, &plain);
      require(plain.empty() || s.handshake_done());
      break;
    }
    case 1: {
      Session s(w.server, Role::kAccept, PeerVerify::kNone);
      std::string in = w.hello;
      in.append(reinterpret_cast<const char*>(data), size);
      feed_checked(s, in.data(), in.size(), chunk, &plain);
      break;
    }
    case 2:
      live(data, size, (control & 0x20) != 0);
      break;
    case 3: {
      Session server(w.server, Role::kAccept, PeerVerify::kNone);
      Session client(w.client, Role::kConnect, PeerVerify::kRequired);
      client.start();
      for (int i = 0; i < 6; ++i) {
        std::string a, b;
        client.take_ciphertext(&a);
        if (!a.empty()) server.feed(a.data(), a.size());
        server.take_ciphertext(&b);
        if (!b.empty()) client.feed(b.data(), b.size());
      }
      require(server.handshake_done());
      feed_checked(server, reinterpret_cast<const char*>(data), size, chunk, &plain);
      break;
    }
  }
  return 0;
}
