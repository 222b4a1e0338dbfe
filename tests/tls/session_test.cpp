// tls::Session and tls::Contexts driven in memory: a server and a client session pass
// ciphertext to each other by hand (no sockets), with certificates made by test_pki.h.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>

#include "test_pki.h"
#include "ticketd/tls/context.h"
#include "ticketd/tls/session.h"

namespace ticketd::tls {
namespace {

using testing::KeyCert;
using testing::make_cert;
using testing::write_file;

// One CA with a node certificate (node 1) and a client certificate; a second CA; an expired
// client certificate. Written once into a scratch directory.
struct Pki {
  std::string dir;
  KeyCert ca, node1, node2, client, other_ca, other_client, expired;
  Pki() {
    char tmpl[] = "/tmp/ticketd-tls-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    ca = make_cert(nullptr, "test CA");
    node1 = make_cert(&ca, "node 1", "URI:ticketd:node:1,IP:127.0.0.1");
    node2 = make_cert(&ca, "node 2", "URI:ticketd:node:2,IP:127.0.0.1");
    client = make_cert(&ca, "client");
    other_ca = make_cert(nullptr, "other CA");
    other_client = make_cert(&other_ca, "other client", "URI:ticketd:node:1");
    expired = make_cert(&ca, "expired", "URI:ticketd:node:1", -30, -1);
    for (auto& [name, kc] : {std::pair<const char*, KeyCert*>{"ca", &ca}, {"node1", &node1},
                             {"node2", &node2}, {"client", &client}, {"other_ca", &other_ca},
                             {"other_client", &other_client}, {"expired", &expired}}) {
      write_file(path(name, "crt"), kc->cert_pem);
      write_file(path(name, "key"), kc->key_pem);
      ::chmod(path(name, "key").c_str(), 0600);
    }
  }
  ~Pki() {
    std::string cmd = "rm -rf '" + dir + "'";
    (void)std::system(cmd.c_str());
  }
  std::string path(const std::string& name, const char* ext) const {
    return dir + "/" + name + "." + ext;
  }
  Files files(const std::string& name, const std::string& ca_name = "ca") const {
    return Files{path(name, "crt"), path(name, "key"), path(ca_name, "crt")};
  }
};

Pki& pki() {
  static Pki* p = new Pki();  // shared by every test (key generation is the slow part)
  return *p;
}

std::shared_ptr<const ContextSet> load(const Files& f) {
  std::string err;
  auto set = ContextSet::load(f, &err);
  EXPECT_TRUE(set) << err;
  return set;
}

// Moves ciphertext between the two sessions until neither has any to give. Returns rounds.
int pump(Session& a, Session& b) {
  int rounds = 0;
  for (; rounds < 20; ++rounds) {
    std::string ab, ba;
    a.take_ciphertext(&ab);
    b.take_ciphertext(&ba);
    if (ab.empty() && ba.empty()) break;
    if (!ab.empty()) b.feed(ab.data(), ab.size());
    if (!ba.empty()) a.feed(ba.data(), ba.size());
  }
  return rounds;
}

std::string read_all(Session& s) {
  std::string out;
  char buf[4096];
  long n;
  while ((n = s.read(buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  return out;
}

TEST(TlsSession, HandshakeThenDataBothWaysWithMutualCertificates) {
  auto server_set = load(pki().files("node1"));
  auto client_set = load(pki().files("node2"));
  Session server(server_set->acceptor(), Role::kAccept, PeerVerify::kRequired);
  Session client(client_set->connector(), Role::kConnect, PeerVerify::kRequired);
  client.start();
  EXPECT_GT(client.ciphertext_bytes(), 0u);  // the ClientHello
  pump(client, server);
  ASSERT_TRUE(server.handshake_done()) << server.error();
  ASSERT_TRUE(client.handshake_done()) << client.error();
  EXPECT_STREQ(server.version(), "TLSv1.3");
  EXPECT_TRUE(server.peer_names_node(2));
  EXPECT_FALSE(server.peer_names_node(1));
  EXPECT_FALSE(server.peer_names_node(22));
  EXPECT_TRUE(client.peer_names_node(1));
  EXPECT_NE(server.peer_subject().find("node 2"), std::string::npos);

  std::string big(60000, 'x');  // below Session::kMaxBufferedInput: pump() feeds it at once
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE(client.write("PING\r\n"));
  ASSERT_TRUE(client.write(big));
  pump(client, server);
  EXPECT_TRUE(read_all(server) == "PING\r\n" + big);
  ASSERT_TRUE(server.write("+PONG\r\n"));
  pump(client, server);
  EXPECT_EQ(read_all(client), "+PONG\r\n");

  client.close_notify();
  pump(client, server);
  EXPECT_EQ(read_all(server), "");
  EXPECT_TRUE(server.peer_closed());
  EXPECT_FALSE(server.failed());
}

// A client context made by hand (as redis-cli's is): trusting our CA, presenting the
// certificate `name` of the test PKI, or none (nullptr). ContextSet would refuse the expired
// certificate as our own, so the tests of refusals build theirs this way.
SSL_CTX* client_ctx(const char* name) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  EXPECT_EQ(SSL_CTX_load_verify_locations(ctx, pki().path("ca", "crt").c_str(), nullptr), 1);
  if (name != nullptr) {
    EXPECT_EQ(SSL_CTX_use_certificate_file(ctx, pki().path(name, "crt").c_str(), SSL_FILETYPE_PEM), 1);
    EXPECT_EQ(SSL_CTX_use_PrivateKey_file(ctx, pki().path(name, "key").c_str(), SSL_FILETYPE_PEM), 1);
  }
  return ctx;
}

// Runs a handshake of a client presenting `name`'s certificate (nullptr: none) against node
// 1 asking `verify`; returns the server's error ("" if the handshake passed).
std::string server_error_for(const char* name, PeerVerify verify = PeerVerify::kRequired) {
  auto server_set = load(pki().files("node1"));
  SSL_CTX* ctx = client_ctx(name);
  Session server(server_set->acceptor(), Role::kAccept, verify);
  Session client(ctx, Role::kConnect, PeerVerify::kRequired);
  client.start();
  pump(client, server);
  SSL_CTX_free(ctx);
  if (!server.failed()) {
    EXPECT_TRUE(server.handshake_done());
    EXPECT_FALSE(server.peer_names_node(2));
    return "";
  }
  // TLS 1.3: the client believes it finished; it learns of the refusal from the alert.
  EXPECT_TRUE(client.failed() || read_all(client).empty());
  return server.error();
}

TEST(TlsSession, ClientCertificateOptionalOrNotAsked) {
  EXPECT_EQ(server_error_for(nullptr, PeerVerify::kNone), "");
  EXPECT_EQ(server_error_for(nullptr, PeerVerify::kOptional), "");
  EXPECT_EQ(server_error_for("client", PeerVerify::kOptional), "");
  EXPECT_NE(server_error_for("other_client", PeerVerify::kOptional), "");  // presented: checked
}

TEST(TlsSession, RefusesAClientCertificateFromAnotherCa) {
  // The client trusts our CA (it reaches the server) but its certificate is the other CA's.
  std::string e = server_error_for("other_client");
  EXPECT_NE(e.find("certificate verify failed"), std::string::npos) << e;
}

TEST(TlsSession, RefusesAMissingClientCertificateWhenRequired) {
  std::string e = server_error_for(nullptr);
  EXPECT_NE(e.find("certificate"), std::string::npos) << e;
}

TEST(TlsSession, RefusesAnExpiredClientCertificate) {
  std::string e = server_error_for("expired");
  EXPECT_NE(e.find("expired"), std::string::npos) << e;
}

TEST(TlsSession, ClientRefusesAServerFromAnotherCa) {
  auto server_set = load(Files{pki().path("other_client", "crt"), pki().path("other_client", "key"),
                               pki().path("ca", "crt")});
  auto client_set = load(pki().files("node2"));
  Session server(server_set->acceptor(), Role::kAccept, PeerVerify::kRequired);
  Session client(client_set->connector(), Role::kConnect, PeerVerify::kRequired);
  client.start();
  pump(client, server);
  EXPECT_TRUE(client.failed());
  EXPECT_NE(client.error().find("unable to get local issuer"), std::string::npos) << client.error();
  EXPECT_FALSE(server.handshake_done() && !server.failed() && !read_all(server).empty());
}

TEST(TlsSession, PlaintextAndRandomBytesFailWithoutCrashing) {
  auto set = load(pki().files("node1"));
  {
    Session s(set->acceptor(), Role::kAccept, PeerVerify::kNone);
    const char ping[] = "*1\r\n$4\r\nPING\r\n";
    EXPECT_FALSE(s.feed(ping, sizeof(ping) - 1));
    EXPECT_TRUE(s.failed());
    EXPECT_FALSE(s.error().empty());
    EXPECT_EQ(s.read(nullptr, 0), -1);
    EXPECT_FALSE(s.write("x"));
    std::string alert;
    s.take_ciphertext(&alert);  // the alert, if any, is bounded and harmless
    EXPECT_LT(alert.size(), 64u);
  }
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200; ++i) {
    Session s(set->acceptor(), Role::kAccept, PeerVerify::kOptional);
    std::string junk(1 + rng() % 3000, '\0');
    for (char& ch : junk) ch = static_cast<char>(rng());
    if (i % 2 == 0) junk[0] = 0x16;  // looks like a handshake record
    s.feed(junk.data(), junk.size());
    char buf[256];
    s.read(buf, sizeof(buf));
    EXPECT_FALSE(s.handshake_done());
  }
}

TEST(TlsSession, TruncatedHandshakeWaitsAndBoundsItsInput) {
  auto set = load(pki().files("node1"));
  Session server(set->acceptor(), Role::kAccept, PeerVerify::kNone);
  SSL_CTX* bare = SSL_CTX_new(TLS_client_method());
  Session client(bare, Role::kConnect, PeerVerify::kNone);
  client.start();
  std::string hello;
  client.take_ciphertext(&hello);
  ASSERT_GT(hello.size(), 20u);
  // Half a ClientHello: the server waits for the rest, neither done nor failed.
  EXPECT_TRUE(server.feed(hello.data(), hello.size() / 2));
  EXPECT_FALSE(server.handshake_done());
  EXPECT_FALSE(server.failed());
  EXPECT_EQ(server.ciphertext_bytes(), 0u);
  SSL_CTX_free(bare);
}

TEST(TlsSession, AReaderThatDoesNotDrainFailsInsteadOfBuffering) {
  auto server_set = load(pki().files("node1"));
  auto client_set = load(pki().files("node2"));
  Session server(server_set->acceptor(), Role::kAccept, PeerVerify::kRequired);
  Session client(client_set->connector(), Role::kConnect, PeerVerify::kRequired);
  client.start();
  pump(client, server);
  ASSERT_TRUE(server.handshake_done());
  ASSERT_TRUE(client.write(std::string(200000, 'y')));
  std::string ct;
  client.take_ciphertext(&ct);
  EXPECT_FALSE(server.feed(ct.data(), ct.size()));  // fed without ever reading
  EXPECT_NE(server.error().find("too much"), std::string::npos) << server.error();
}

TEST(TlsContexts, RefusesUnreadableMismatchedAndExpiredFilesWithTheFlagName) {
  std::string err;
  Files missing = pki().files("node1");
  missing.cert_file = pki().dir + "/nope.crt";
  EXPECT_FALSE(ContextSet::load(missing, &err));
  EXPECT_NE(err.find("cannot read --tls-cert-file"), std::string::npos) << err;

  Files mismatched{pki().path("node1", "crt"), pki().path("node2", "key"), pki().path("ca", "crt")};
  EXPECT_FALSE(ContextSet::load(mismatched, &err));
  EXPECT_NE(err.find("is not the key of the certificate"), std::string::npos) << err;

  Files garbage = pki().files("node1");
  garbage.cert_file = pki().path("node1", "key");  // a key where the certificate should be
  EXPECT_FALSE(ContextSet::load(garbage, &err));
  EXPECT_NE(err.find("--tls-cert-file"), std::string::npos) << err;

  Files bad_ca = pki().files("node1");
  bad_ca.ca_cert_file = pki().path("node1", "key");
  EXPECT_FALSE(ContextSet::load(bad_ca, &err));
  EXPECT_NE(err.find("--tls-ca-cert-file"), std::string::npos) << err;

  EXPECT_FALSE(ContextSet::load(pki().files("expired"), &err));
  EXPECT_NE(err.find("expired"), std::string::npos) << err;
  // No key material in any message.
  EXPECT_EQ(err.find("PRIVATE KEY"), std::string::npos);

  std::string warning;
  ::chmod(pki().path("client", "key").c_str(), 0644);
  EXPECT_TRUE(ContextSet::load(pki().files("client"), &err, &warning)) << err;
  EXPECT_NE(warning.find("chmod 600"), std::string::npos) << warning;
  ::chmod(pki().path("client", "key").c_str(), 0600);
}

TEST(TlsContexts, AFailedReloadKeepsTheCurrentSetAndSessionsKeepTheirs) {
  std::string dir = pki().dir + "/reload";
  ::mkdir(dir.c_str(), 0700);
  Files f{dir + "/node.crt", dir + "/node.key", pki().path("ca", "crt")};
  write_file(f.cert_file, pki().node1.cert_pem);
  write_file(f.key_file, pki().node1.key_pem);
  Contexts ctxs(f);
  std::string err;
  ASSERT_TRUE(ctxs.load(&err)) << err;
  auto first = ctxs.current();
  EXPECT_NE(first->subject().find("node 1"), std::string::npos);
  Session before(first->acceptor(), Role::kAccept, PeerVerify::kNone);

  write_file(f.cert_file, pki().node2.cert_pem);  // the key still is node 1's: mismatched
  EXPECT_FALSE(ctxs.load(&err));
  EXPECT_EQ(ctxs.current(), first);
  EXPECT_EQ(ctxs.loads(), 1u);

  write_file(f.key_file, pki().node2.key_pem);
  ASSERT_TRUE(ctxs.load(&err)) << err;
  EXPECT_NE(ctxs.current()->subject().find("node 2"), std::string::npos);
  EXPECT_EQ(ctxs.loads(), 2u);
  first.reset();  // the old set lives on in `before` (SSL_new took a reference)
  auto client_set = load(pki().files("client"));
  Session client(client_set->connector(), Role::kConnect, PeerVerify::kRequired);
  client.start();
  pump(client, before);
  EXPECT_TRUE(before.handshake_done()) << before.error();
  EXPECT_TRUE(client.peer_names_node(1));  // still node 1's certificate
}

}  // namespace
}  // namespace ticketd::tls
